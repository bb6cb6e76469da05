"""Issue 18, items 1-3: identifiers from outside are validated and quoted, passwords never shown.

The reproductions of the issue are run as a user runs them (the CLI, in a subprocess where a
traceback would show), against a real database holding a canary table.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from driver import config
from driver import db as dbmod
from driver import freshness as freshnessmod
from driver.cli import app

runner = CliRunner()
DRIVER_DIR = Path(__file__).resolve().parents[2] / "driver"
SECRET = "Sx9@Pw:rd"
SECRET_PARTS = ("Sx9", "Pw:rd", "Pw", "rd@")


def driver(*args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "driver.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture()
def canary(database, tmp_path):
    """A test database with a table `canary` that an injection would drop."""
    with database.connect() as conn:
        conn.execute("create table canary (x int)")
        conn.commit()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BARSMITH_SOURCE", "BARSMITH_SCHEMA"))}
    env.update(BARSMITH_DB_URL=database.url, BARSMITH_LOG_DIR=str(tmp_path / "logs"),
               BARSMITH_STATE_DIR=str(tmp_path / "state"), DBT_TARGET_PATH=str(tmp_path / "target"))
    return database, env


def canary_alive(database) -> bool:
    with database.connect() as conn:
        return conn.execute("select to_regclass('public.canary') is not null").fetchone()[0]


def schemas(database) -> set[str]:
    with database.connect() as conn:
        return {r[0] for r in conn.execute("select nspname from pg_namespace")}


# ------------------------------------------------------------------ item 1: injection


def test_source_table_injection_is_refused_and_drops_nothing(canary):
    database, env = canary
    env["BARSMITH_SOURCE_TABLE"] = 'price_histories"; drop table canary; select 1,2,3,4 --'
    res = driver("refresh", "--all", env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "BARSMITH_SOURCE_TABLE" in res.stderr and "not a plain lower-case PostgreSQL identifier" in res.stderr
    assert "Traceback" not in res.stderr
    assert canary_alive(database)
    assert not Path(env["BARSMITH_LOG_DIR"]).exists(), "refused before the run started"
    for command in (["load", "x.csv"], ["freshness"], ["validate"], ["refresh", "--bars", "--dry-run"],
                    ["fetch", "--gaps"], ["gaps"], ["plot", "--id", "1"], ["report"], ["docs"]):
        other = driver(*command, env=env)
        assert other.returncode == 2 and "BARSMITH_SOURCE_TABLE" in other.stderr, (command, other.stderr)
    assert canary_alive(database)


@pytest.mark.parametrize("name, value", [
    ("BARSMITH_SOURCE_SCHEMA", "public; drop table canary"),
    ("BARSMITH_SOURCE_TABLE", "Price_Histories"),
    ("BARSMITH_SOURCE_TABLE", "select"),
    ("BARSMITH_SCHEMA", "public; drop table canary; --"),
    ("BARSMITH_SCHEMA", "my-schema"),
    ("BARSMITH_SCHEMA", "Analytics"),
    ("BARSMITH_SCHEMA", "pg_mine"),
    ("BARSMITH_SCHEMA", "x" * 64),
])
def test_identifiers_from_the_environment_are_refused_before_the_database(canary, name, value):
    database, env = canary
    env[name] = value
    before = schemas(database)
    res = driver("refresh", "--all", env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    assert name in res.stderr and "Traceback" not in res.stderr
    assert canary_alive(database) and schemas(database) == before, "nothing created, nothing dropped"
    status = driver("db", "status", env=env)
    assert status.returncode == 2 and name in status.stderr


def test_upper_case_schema_gets_a_hint():
    with pytest.raises(config.ConfigError, match="did you mean 'analytics'"):
        config.check_identifier("Analytics", "BARSMITH_SCHEMA", schema=True)


def test_identifier_vars_are_validated_like_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://u@127.0.0.1:1/x")
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path / "logs"))
    for args in (["refresh", "--all"], ["validate"], ["freshness"]):
        res = runner.invoke(app, [*args, "--vars", '{source_table: "p\\"; drop table canary; --"}'])
        assert res.exit_code == 2, res.output
        assert "--vars source_table" in res.output and "not a plain lower-case" in res.output
    res = runner.invoke(app, ["refresh", "--all", "--vars", "{source_schema: Public}"])
    assert res.exit_code == 2 and "--vars source_schema: 'Public'" in res.output
    assert not (tmp_path / "logs").exists()


def test_keyword_list_covers_the_servers_reserved_words(server):
    with psycopg.connect(server.url) as conn:
        words = {r[0] for r in conn.execute("select word from pg_get_keywords() where catcode in ('R', 'T', 'C')")}
    assert words, "the server lists its keywords"
    assert words <= config._KEYWORDS, sorted(words - config._KEYWORDS)
    # and an unreserved one is fine
    assert config.check_identifier("name", "x") == "name"


def test_driver_source_query_quotes_the_source_even_if_validation_were_bypassed(canary):
    """Defence in depth: the driver's own SQL over the source (the freshness query) composes
    identifiers with psycopg.sql, so even a name that skipped validation is one (non-existent)
    relation, never SQL."""
    database, _env = canary
    with pytest.raises(psycopg.errors.UndefinedTable):
        freshnessmod.per_id(database, None, "public", 'price_histories"; drop table canary; select 1,2,3,4 --')
    assert canary_alive(database)


def _sql_argument_is_built_from_strings(node: ast.AST) -> bool:
    """An f-string, a concatenation, %-formatting or str.format() as the SQL of an execute()."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return not (isinstance(node.func.value, ast.Call) and getattr(node.func.value.func, "attr", "") == "SQL")
    return False


def test_no_sql_is_built_from_strings_in_the_driver():
    offenders = []
    for path in sorted(DRIVER_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("execute", "copy", "executemany") and node.args:
                if _sql_argument_is_built_from_strings(node.args[0]):
                    offenders.append(f"{path.name}:{node.lineno}")
            # sql.SQL(...) must wrap a constant, never a formatted string
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "SQL" \
                    and node.args and _sql_argument_is_built_from_strings(node.args[0]):
                offenders.append(f"{path.name}:{node.lineno} (sql.SQL of a built string)")
    assert offenders == []


def test_the_static_check_catches_an_f_string():
    tree = ast.parse('conn.execute(f"select * from {table}")')
    call = tree.body[0].value
    assert _sql_argument_is_built_from_strings(call.args[0])


# ------------------------------------------------------------------ item 2: passwords


@pytest.mark.parametrize("url", [
    f"host=127.0.0.1 port=1 user=admin password={SECRET} dbname=prod",
    f"host=127.0.0.1 port=1 user=admin password='{SECRET} x' dbname=prod",
    "postgresql://admin:Sx9%40Pw%3Ard@127.0.0.1:1/prod",
])
def test_db_status_and_dry_run_never_show_the_password(url, tmp_path):
    env = dict(os.environ, BARSMITH_DB_URL=url, BARSMITH_STATE_DIR=str(tmp_path / "state"),
               BARSMITH_LOG_DIR=str(tmp_path / "logs"))
    for args in (["db", "status"], ["refresh", "--all", "--dry-run"]):
        res = driver(*args, env=env)
        assert res.returncode == 0, res.stderr
        out = res.stdout + res.stderr
        for part in SECRET_PARTS + ("Sx9%40Pw",):
            assert part not in out, (args, part, out)
        assert "admin" in out and "127.0.0.1" in out


@pytest.mark.parametrize("url", [
    f"postgresql://admin:{SECRET}@127.0.0.1:55432/prod",  # unencoded '@' (and ':') in the password
    f"postgresql://admin:{SECRET}@127.0.0.1/prod",
    f"host=127.0.0.1 user=admin password={SECRET} dbname",  # unparsable key=value
    "postgresql://admin:Sx9%zzPw:rd@127.0.0.1/prod",  # bad percent-encoding, quoted by libpq's message
])
def test_unparsable_url_is_refused_without_showing_the_secret(url, tmp_path):
    env = dict(os.environ, BARSMITH_DB_URL=url, BARSMITH_STATE_DIR=str(tmp_path / "state"),
               BARSMITH_LOG_DIR=str(tmp_path / "logs"))
    for args in (["db", "status"], ["refresh", "--all"], ["refresh", "--all", "--dry-run"], ["load", "x.csv"],
                 ["freshness"]):
        res = driver(*args, env=env)
        out = res.stdout + res.stderr
        assert res.returncode == 2, (args, out)
        assert "BARSMITH_DB_URL" in res.stderr and "Traceback" not in out
        for part in SECRET_PARTS + ("Sx9%zz",):
            assert part not in out, (args, part, out)
    assert not any((tmp_path / "logs").glob("*")) if (tmp_path / "logs").exists() else True


def test_database_errors_and_logs_mask_the_password(tmp_path):
    """A parsable URL of an unreachable server: the error, the log and the alert text hold no secret."""
    env = dict(os.environ, BARSMITH_DB_URL=f"host=127.0.0.1 port=1 user=admin password={SECRET} dbname=prod",
               BARSMITH_LOG_DIR=str(tmp_path / "logs"), BARSMITH_STATE_DIR=str(tmp_path / "state"))
    res = driver("refresh", "--all", env=env)
    assert res.returncode == 1
    log = next((tmp_path / "logs").glob("refresh-*.log")).read_text()
    for part in SECRET_PARTS:
        assert part not in res.stdout + res.stderr and part not in log


@pytest.mark.parametrize("text, hidden", [
    ("postgresql://u:s3cret@h:5432/db", "s3cret"),
    ("failed for postgresql://u:Sx9@Pw:rd@h/db now", "Pw:rd"),
    ("postgresql://u:Sx9@Pw/rd@h/db", "Pw/rd"),
    ("host=h password=Sx9@Pw:rd dbname=d", "Sx9"),
    ("host=h password='a b c d' dbname=d", "b c d"),
    ("host=h sslpassword=kk22zz dbname=d", "kk22zz"),
])
def test_mask_secrets_forms(text, hidden):
    assert hidden not in dbmod.mask_secrets(text)


def test_a_password_from_the_url_is_masked_anywhere(monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", f"postgresql://u:{SECRET}@h/db")
    masked = dbmod.mask_secrets(f"ValueError: invalid literal for int() with base 10: '{SECRET.split('@')[1]}@h'")
    assert "Pw:rd" not in masked
    assert "password" not in repr(dbmod.Connection("h", 1, "u", "pw-in-repr", "d", "public", False))
