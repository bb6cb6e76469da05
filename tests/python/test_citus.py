"""barsmith on a Citus cluster (README: Scaling out): the same project, every model distributed by id.

The session builds Citus from ../shared/citus/build.sh (deps, build and install into Debian's
PostgreSQL 15, then a coordinator and two workers on 127.0.0.1; idempotent, so a machine that has it
built only starts it) and runs each test in a database of its own on the three nodes, with
citus.shard_count = 4. The equality test drives the golden data and a generated data set through
`driver load` + `driver refresh --all` + `driver gaps` (full, then incremental: appends, corrections,
a rejected row, a backfill) on the plain test server and on the cluster, and compares every table row
for row; test_gaps' hand-written exchange sessions run on the cluster; the property test replays
random source changes on the cluster (incremental == full refresh).
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from typer.testing import CliRunner

from driver import db as dbmod
from driver.cli import app
from driver.load import COLUMNS

from . import test_gaps
from . import test_properties as props
from .helpers import DbtProject
from .histories import day_row

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = Path(os.environ.get("BARSMITH_CITUS_BUILD", ROOT.parent / "shared" / "citus" / "build.sh"))
# The session's own cluster: ports below Linux's ephemeral range (32768-60999 by default; build.sh's
# 57101-57103 lie in it, and a client connection of the suite once held 57102 as its local port when
# the cluster started), in a base directory of its own (the ports are written there at initdb).
# CITUS_PORTS (with CITUS_BASE, when not build.sh's default) points the tests at another cluster.
PORTS = [int(p) for p in os.environ.get("CITUS_PORTS", "29101 29102 29103").split()]
CITUS_BASE = os.environ.get("CITUS_BASE") or (
    None if "CITUS_PORTS" in os.environ else str(Path(tempfile.gettempdir()) / "barsmith-citus-tests"))
SHARD_COUNT = 4
runner = CliRunner()

# Tables that hold run metadata (invocation ids, clocks), not data: not compared.
RUN_METADATA = {"barsmith_changes", "barsmith_run_log", "barsmith_refresh_runs"}
# Columns that hold a clock (when a row was written or loaded), not data: not compared.
CLOCK_COLUMNS = {"ingested_at", "created_at", "recorded_at", "load_ts", "src_load_ts", "changed_at",
                 "max_changed_at", "written_at"}
# Where each table must live on the cluster (everything else: distributed by id, co-located with the source).
REFERENCE_TABLES = {"dim_timeframe", "ema_periods", "assets", "ema_alpha_lookup", "barsmith_changes",
                    "trading_sessions", "trading_calendar_coverage"}
CALENDAR_TABLES = {"trading_sessions", "trading_calendar_coverage"}
COORDINATOR_TABLES = {"barsmith_run_log", "barsmith_refresh_runs"}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Cluster:
    ports: list[int]
    build_seconds: float

    def url(self, port: int, dbname: str) -> str:
        return f"host=127.0.0.1 port={port} user=postgres dbname={dbname}"


@pytest.fixture(scope="session")
def citus_cluster():
    """The local 3-node cluster of build.sh (built and installed first when missing); stopped at the
    end when this session started it."""
    assert BUILD_SCRIPT.is_file(), f"{BUILD_SCRIPT} not found (BARSMITH_CITUS_BUILD points elsewhere)"
    was_running = _port_open(PORTS[0])
    started = time.monotonic()
    # no LLVM bitcode: a third less build time, and the models run with jit off anyway
    env = {"CITUS_WITH_LLVM": "no", **os.environ, "CITUS_PORTS": " ".join(map(str, PORTS)),
           **({"CITUS_BASE": CITUS_BASE} if CITUS_BASE else {})}
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, f"build.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    cluster = Cluster(PORTS, time.monotonic() - started)
    print(f"\nCitus cluster ready in {cluster.build_seconds:.1f} s:\n{proc.stdout[-1500:]}")
    yield cluster
    if not was_running:
        subprocess.run(["bash", str(BUILD_SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def citus_db(citus_cluster: Cluster) -> dbmod.Connection:
    """A new database on the three nodes with the citus extension, the workers added and a small shard
    count; dropped afterwards."""
    name = f"barsmith_citus_{uuid.uuid4().hex[:10]}"
    coordinator, *workers = citus_cluster.ports
    for port in citus_cluster.ports:
        with psycopg.connect(citus_cluster.url(port, "postgres"), autocommit=True) as conn:
            conn.execute("set client_min_messages = warning")
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        with psycopg.connect(citus_cluster.url(port, name), autocommit=True) as conn:
            conn.execute("create extension citus")
    with psycopg.connect(citus_cluster.url(coordinator, name), autocommit=True) as conn:
        conn.execute("select citus_set_coordinator_host('127.0.0.1', %s)", (coordinator,))
        for port in workers:
            conn.execute("select citus_add_node('127.0.0.1', %s)", (port,))
        conn.execute(sql.SQL("alter database {} set citus.shard_count = {}").format(
            sql.Identifier(name), sql.Literal(SHARD_COUNT)))
    yield dbmod.Connection("127.0.0.1", coordinator, "postgres", "", name, "public", False)
    for port in citus_cluster.ports:
        with psycopg.connect(citus_cluster.url(port, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


# ------------------------------------------------------------------ the data sets

GENERATED_IDS = (2001, 2002)
GENERATED_START = date(2023, 10, 1)


def _write_csv(path: Path, rows: list[dict], load_ts: datetime) -> Path:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(list(COLUMNS))
        for row in rows:
            values = {**row, "load_ts": load_ts}
            out.writerow(["" if values[c] is None else
                          (values[c].isoformat() if isinstance(values[c], (datetime, date)) else values[c])
                          for c in COLUMNS])
    return path


def _generated(asset: int, days: range, version: int = 0) -> list[dict]:
    """Days of a generated history (tests/python/histories.py): a 5-day gap and a missing day."""
    return [day_row(asset, GENERATED_START + timedelta(days=n), version) for n in days
            if not (100 <= n < 105 or n == 230)]


def _golden_rows(golden_dir: Path, name: str) -> list[dict]:
    with (golden_dir / name).open() as fh:
        return list(csv.DictReader(fh))


def _golden_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows(rows)
    return path


def source_steps(golden_dir: Path, tmp: Path) -> list[tuple[str, list[Path]]]:
    """(name, CSV files to load) of each refresh: the full build, then one incremental refresh of
    appends, corrections (one row becomes a 1D reject) and backfills."""
    tmp.mkdir(parents=True, exist_ok=True)
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    golden = _golden_rows(golden_dir, "price_histories.csv")
    corrected = []
    for row in golden:
        day = row["timestamp"][:10]
        if (row["id"], day) in {("52", "2023-05-17"), ("825", "2024-06-30")}:
            corrected.append({**row, "close": str(float(row["close"]) * 1.013), "high": str(float(row["high"]) * 1.02)})
        elif (row["id"], day) == ("1", "2023-09-09"):
            corrected.append({**row, "open": ""})  # no open: the row becomes a 1D reject
    first = min(r["timestamp"] for r in golden if r["id"] == "1")
    backfill = []
    for n in range(1, 21):
        shift = timedelta(days=n)
        row = next(r for r in golden if r["id"] == "1" and r["timestamp"] == first)
        new = dict(row)
        for c in ("timeopen", "timeclose", "timehigh", "timelow", "timestamp"):
            if new[c]:
                new[c] = (datetime.fromisoformat(new[c].replace("Z", "+00:00")) - shift).isoformat()
        new["date"] = (date.fromisoformat(row["date"]) - shift).isoformat()
        new["close"] = str(float(row["close"]) * (1 + n / 1000))
        backfill.append(new)
    assert len(corrected) == 3, "the golden rows to correct exist"

    def gen(days: range) -> list[dict]:
        return [r for a in GENERATED_IDS for r in _generated(a, days)]

    corrections = [day_row(2001, GENERATED_START + timedelta(days=n), 1) for n in (50, 51, 380)]
    backfill_gen = [day_row(2002, GENERATED_START - timedelta(days=n)) for n in range(1, 15)]
    # one incremental refresh takes the appends, the corrections (one a reject) and the backfills
    # together: each refresh costs about a minute on the cluster (CI time)
    return [
        ("full", [golden_dir / "incremental_part1.csv", _write_csv(tmp / "gen_1.csv", gen(range(0, 400)), at)]),
        ("incremental", [golden_dir / "incremental_part2.csv",
                         _write_csv(tmp / "gen_2.csv", gen(range(400, 430)), at + timedelta(days=1)),
                         _golden_csv(tmp / "golden_corrections.csv", corrected),
                         _write_csv(tmp / "gen_3.csv", corrections, at + timedelta(days=2)),
                         _golden_csv(tmp / "golden_backfill.csv", backfill),
                         _write_csv(tmp / "gen_4.csv", backfill_gen, at + timedelta(days=3))]),
    ]


# ------------------------------------------------------------------ comparing databases

def data_tables(conn: psycopg.Connection) -> list[str]:
    return [t for (t,) in conn.execute(
        "select table_name from information_schema.tables where table_schema = 'public' "
        "and table_type = 'BASE TABLE' order by 1").fetchall() if t not in RUN_METADATA]


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [c for (c,) in conn.execute(
        "select column_name from information_schema.columns where table_schema = 'public' and table_name = %s "
        "order by ordinal_position", (table,)).fetchall() if c not in CLOCK_COLUMNS]


def _rows_query(table: str, columns: list[str]) -> sql.Composed:
    """The table's rows as text (the columns compared)."""
    row = sql.SQL("row({})::text").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
    return sql.SQL("select {row} as r from {table}").format(row=row, table=sql.Identifier("public", table))


def table_digest(conn: psycopg.Connection, table: str, columns: list[str]) -> tuple[int, str]:
    """(rows, md5 of every row's text in one order on every server, collation C): float8 prints its
    shortest exact text, so equal digests are equal rows, bit for bit."""
    query = sql.SQL("select count(*), md5(string_agg(x.r, E'\\n' order by x.r collate \"C\")) from ({}) as x").format(
        _rows_query(table, columns))
    return conn.execute(query).fetchone()


def assert_same_tables(plain: dbmod.Connection, citus: dbmod.Connection, step: str) -> int:
    """Every data table of the two databases holds the same rows (all columns but the clocks); returns
    the rows compared. The rows are compared by digest; a difference fetches them to show it."""
    compared = 0
    with plain.connect() as p, citus.connect() as c:
        tables = data_tables(p)
        # the exchange calendars exist from the first run on Citus (reference tables), on PostgreSQL
        # once a completeness model or `driver gaps` needs them
        extra = set(data_tables(c)) - set(tables)
        assert extra <= CALENDAR_TABLES and set(tables) <= set(data_tables(c)), \
            f"{step}: the two databases hold different tables: {sorted(set(tables) ^ set(data_tables(c)))}"
        for table in extra:
            assert c.execute(sql.SQL("select count(*) from {}").format(sql.Identifier("public", table))).fetchone()[0] == 0
        for table in tables:
            columns = _columns(p, table)
            assert _columns(c, table) == columns, f"{step}: {table} has other columns on Citus"
            p_digest, c_digest = table_digest(p, table, columns), table_digest(c, table, columns)
            if p_digest != c_digest:
                p_rows = [r for (r,) in p.execute(_rows_query(table, columns)).fetchall()]
                c_rows = [r for (r,) in c.execute(_rows_query(table, columns)).fetchall()]
                only_p = sorted(set(p_rows) - set(c_rows))[:3]
                only_c = sorted(set(c_rows) - set(p_rows))[:3]
                pytest.fail(f"{step}: {table} differs ({p_digest[0]} rows on PostgreSQL, {c_digest[0]} on Citus); "
                            f"only on PostgreSQL: {only_p}; only on Citus: {only_c}")
            compared += p_digest[0]
    return compared


def assert_distributed(citus: dbmod.Connection) -> None:
    """Every model table is distributed by id and co-located with the source; seeds, plain tables and
    barsmith_changes are reference tables; the run log stays on the coordinator; no work table is left."""
    with citus.connect() as conn:
        placed = {t: (method, column, group) for t, method, column, group in conn.execute(
            "select logicalrelid::regclass::text, partmethod, column_to_column_name(logicalrelid, partkey), "
            "colocationid from pg_dist_partition").fetchall()}
        tables = [t for (t,) in conn.execute("select table_name from information_schema.tables where "
                                             "table_schema = 'public' and table_type = 'BASE TABLE'").fetchall()]
    source_group = placed["price_histories"][2]
    assert placed["price_histories"][:2] == ("h", "id")
    assert not [t for t in tables if "__" in t], f"work tables left behind: {tables}"
    for table in tables:
        if table in REFERENCE_TABLES:
            assert placed.get(table, ("?",))[0] == "n", f"{table} should be a reference table: {placed.get(table)}"
        elif table in COORDINATOR_TABLES:
            assert table not in placed, f"{table} should be a local table of the coordinator"
        else:
            assert placed.get(table) == ("h", "id", source_group), \
                f"{table} should be distributed by id, co-located with the source: {placed.get(table)}"


# `driver gaps` of every step: one as-of instant (the second run recomputes only the ids whose rows
# changed), and no failure on the long gaps of the data sets (their trailing gaps reach the as-of)
GAPS_ARGS = ["gaps", "--as-of", "2025-01-01T00:00:00Z", "--max-gap-days", "100000", "--quiet"]


def _driver_args(step: str, files: list[Path]) -> list[list[str]]:
    """The driver commands of a step: one `driver load` per file (a correction repeats a row of an
    earlier file), then `driver refresh --all` (incremental steps skip the freshness gate: the data
    is historical), then `driver gaps` (the completeness models, which refresh does not build)."""
    return [["load", str(path)] for path in files] + [
        ["refresh", "--all", "--quiet"] + ([] if step == "full" else ["--skip-stale-check"]), GAPS_ARGS]


def drive(connection: dbmod.Connection, tmp: Path, monkeypatch, step: str, files: list[Path]) -> None:
    """The step's driver commands against `connection`, in this process."""
    monkeypatch.setenv("BARSMITH_DB_URL", connection.url)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp / f"target-{connection.dbname}"))
    for args in _driver_args(step, files):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, f"{step}: driver {' '.join(args)} on {connection.dbname}:\n{res.output[-3000:]}"


def drive_in_background(connection: dbmod.Connection, tmp: Path, step: str, files: list[Path]) -> subprocess.Popen:
    """The step's driver commands against `connection` in a child Python process (the driver's app),
    so that the plain build runs while this process drives the cluster (CI time)."""
    env = {**os.environ, "BARSMITH_DB_URL": connection.url,
           "DBT_TARGET_PATH": str(tmp / f"target-{connection.dbname}"),
           "BARSMITH_LOG_DIR": str(tmp / f"logs-{connection.dbname}"),
           "BARSMITH_STATE_DIR": str(tmp / f"state-{connection.dbname}")}
    script = ("import sys\nfrom typer.testing import CliRunner\nfrom driver.cli import app\n"
              "for args in " + repr(_driver_args(step, files)) + ":\n"
              "    res = CliRunner().invoke(app, args)\n"
              "    if res.exit_code:\n"
              "        sys.exit(f'driver {args}: exit {res.exit_code}\\n{res.output[-3000:]}')\n")
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture()
def driver_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("BARSMITH_STATE_DIR", str(tmp_path / "state"))
    for var in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "BARSMITH_ALERT_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_citus_build_equals_postgresql_row_for_row(database, citus_db, golden_dir, driver_env, monkeypatch):
    """Golden + generated histories, a full refresh and `driver gaps`, then an incremental refresh
    and `driver gaps` of appends, corrections (one row becomes a reject) and backfills: after each
    step every table of the cluster (the completeness models included) equals the plain build, and
    the second step was incremental on the cluster."""
    timings = {}
    for step, files in source_steps(golden_dir, driver_env / "data"):
        started = time.monotonic()
        plain = drive_in_background(database, driver_env, step, files)
        try:
            drive(citus_db, driver_env, monkeypatch, step, files)
            timings[(step, "citus")] = time.monotonic() - started
        finally:
            output, _ = plain.communicate(timeout=900)
        timings[(step, "both")] = time.monotonic() - started
        assert plain.returncode == 0, f"{step} on PostgreSQL:\n{output[-3000:]}"
        compared = assert_same_tables(database, citus_db, step)
        assert compared > 100_000, f"{step}: only {compared} rows compared"
        assert_distributed(citus_db)
        if step == "full":
            with citus_db.connect() as conn:
                full_done = conn.execute("select max(recorded_at) from barsmith_run_log").fetchone()[0]
    with citus_db.connect() as conn:
        # the second refresh went through the incremental path of the Citus materialization
        runs = dict(conn.execute("select model, bool_or(full_build) from barsmith_run_log where recorded_at > %s "
                                 "group by model", (full_done,)).fetchall())
        assert len(runs) > 10 and not any(runs.values()), f"the second refresh rebuilt models on Citus: {runs}"
        assert {"source_gaps", "source_completeness"} <= set(runs), f"driver gaps did not run incrementally: {runs}"
        # the second `driver gaps` recomputed the ids whose rows changed (a replace on the cluster)
        assert conn.execute("select count(*) from source_gaps").fetchone()[0] > 0
        assert conn.execute("select count(*) from price_bars_1d_rejects").fetchone()[0] == 1
        assert conn.execute("select count(distinct id) from ema_multi_tf_v2").fetchone()[0] == 5
    print("\n" + "\n".join(f"{step:12s} {engine:8s} {s:6.1f} s" for (step, engine), s in timings.items()))


def test_gaps_per_exchange_calendar_on_citus(citus_db, tmp_path, monkeypatch):
    """tests/python/test_gaps.py's hand-written sessions on the cluster (the data sets of the equality
    test are all 24/7): XNYS without its holiday and with its half day, weekend gaps of 24/7 ids, an id
    outside the assets table; the completeness models join the exchange sessions (reference tables)
    with the distributed source, and a second build over a window recomputes every id."""
    test_gaps.test_gaps_follow_each_assets_calendar(test_gaps.write_histories(citus_db, tmp_path, monkeypatch))


def test_driver_detects_citus(citus_db, database):
    """The driver passes barsmith_engine: citus to dbt on a Citus coordinator, nothing on PostgreSQL."""
    from driver.dbt import with_engine

    assert dbmod.engine(citus_db) == "citus" and dbmod.engine(database) == "postgres"
    assert with_engine(citus_db, {"asset_ids": [1]}) == {"asset_ids": [1], "barsmith_engine": "citus"}
    assert with_engine(database, {"asset_ids": [1]}) == {"asset_ids": [1]}
    assert with_engine(citus_db, {"barsmith_engine": "postgres"}) == {"barsmith_engine": "postgres"}


# ------------------------------------------------------------------ the property test on the cluster

@pytest.fixture()
def citus_project(citus_db: dbmod.Connection, tmp_path: Path) -> DbtProject:
    return DbtProject(citus_db, tmp_path)


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          database=None)
@given(
    gaps=st.lists(st.integers(1, 80), max_size=4),
    length=st.integers(30, 90),
    # at most two incremental runs per example: each dbt run costs about 20 s on the local cluster
    ops=st.lists(st.lists(props.operation, min_size=1, max_size=3), min_size=1, max_size=2),
)
def test_incremental_equals_full_refresh_on_citus(citus_project, monkeypatch, gaps, length, ops):
    """tests/python/test_properties.py on the cluster, with fewer examples. Its histories are
    dated 2023-2024, so the freshness gate would defer every id of an incremental run
    (stale_ids) and the EMAs would never resume: skip_stale_check computes them."""
    monkeypatch.setattr(props, "VARS", {**props.VARS, "skip_stale_check": True})
    monkeypatch.setattr(props, "apply", _apply_on_citus)
    props.test_incremental_equals_full_refresh.hypothesis.inner_test(citus_project, gaps, length, ops)


def _apply_on_citus(conn, history, op) -> None:
    """test_properties.apply, with the source rows of a day picked by a timestamp range: Citus
    refuses `"timestamp"::date = ...` (a STABLE cast of a column) in the WHERE of a DELETE or
    UPDATE of a distributed table. The same rows (both casts use the session's time zone)."""
    kind, asset, arg = op
    mine = sorted(d for (i, d) in history.days if i == asset)
    day = "id = %s and \"timestamp\" >= %s::date::timestamptz and \"timestamp\" < (%s::date + 1)::timestamptz"
    if kind == "delete" and len(mine) > 2:
        d = mine[arg % len(mine)]
        del history.days[(asset, d)]
        conn.execute(f"delete from price_histories where {day}", (asset, d, d))
    elif kind == "invalidate" and mine:
        d = mine[arg % len(mine)]
        conn.execute(f"update price_histories set open = null, load_ts = now() where {day}", (asset, d, d))
    elif kind not in ("delete", "invalidate"):
        _original_apply(conn, history, op)


_original_apply = props.apply
