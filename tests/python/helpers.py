"""Shared test helpers: running dbt against a test database, reading tables, parity checks."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import psycopg

from driver import db as dbmod
from driver import load as loadmod
from driver.dbt import invoke


class DbtProject:
    """The barsmith dbt project pointed at one test database."""

    def __init__(self, connection: dbmod.Connection, tmp: Path):
        self.connection = connection
        self.tmp = tmp

    def load(self, *paths: Path) -> loadmod.LoadResult:
        return loadmod.load_files(self.connection, list(paths), "public", "price_histories")

    def dbt(self, command: list[str], vars: dict[str, Any] | None = None, expect_success: bool = True, **kw):
        """dbt against the test database. Test data is historical (years old), so runs and builds
        turn the freshness gate off unless the caller sets skip_stale_check (the gate's own tests
        go through the driver)."""
        os.environ["DBT_TARGET_PATH"] = str(self.tmp / "target")
        if command and command[0] in ("run", "build"):
            vars = {"skip_stale_check": True, **(vars or {})}
        inv = invoke(self.connection, command, vars, kw.get("extra"))
        if expect_success:
            failed = [f"{n.resource_type} {n.name}: {n.status}: {n.message[:400]}" for n in inv.failed]
            assert inv.success, f"dbt {' '.join(command)} failed: {inv.error}\n" + "\n".join(failed)
        return inv

    def build(self, select: str | None = None, full_refresh: bool = False, vars: dict | None = None, **kw):
        extra = []
        if select:
            extra += ["--select", select, "--indirect-selection", "cautious"]
        if full_refresh:
            extra.append("--full-refresh")
        return self.dbt(["build"], vars, extra=extra, **kw)

    def run(self, select: str | None = None, full_refresh: bool = False, vars: dict | None = None, **kw):
        extra = []
        if select:
            extra += ["--select", select]
        if full_refresh:
            extra.append("--full-refresh")
        return self.dbt(["run"], vars, extra=extra, **kw)

    def query(self, query: str, params: Iterable | None = None) -> list[tuple]:
        with self.connection.connect() as conn:
            return conn.execute(query, params).fetchall()

    def execute(self, statement: str, params: Iterable | None = None) -> None:
        with self.connection.connect() as conn:
            conn.execute(statement, params)

    def frame(self, table: str, order_by: list[str], exclude: Iterable[str] = ()) -> pd.DataFrame:
        with self.connection.connect() as conn:
            cur = conn.execute(f'select * from {table} order by {", ".join(order_by)}')
            cols = [d.name for d in cur.description]
            df = pd.DataFrame(cur.fetchall(), columns=cols)
        return df.drop(columns=[c for c in exclude if c in df.columns])


def new_database(server: dbmod.Connection, prefix: str = "barsmith_test") -> dbmod.Connection:
    """A new empty database on the test server (the caller drops it, or the server goes away)."""
    import uuid

    from psycopg import conninfo, sql

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = conninfo.make_conninfo(server.url, dbname=server.dbname)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return dbmod.Connection(server.host, server.port, server.user, server.password, name, "public", server.embedded)


def drop_database(server: dbmod.Connection, connection: dbmod.Connection) -> None:
    from psycopg import conninfo, sql

    admin = conninfo.make_conninfo(server.url, dbname=server.dbname)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(connection.dbname)))


def read_golden(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=str)
    return df


def _to_float(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        if v == "" or v.lower() == "nan":
            return None
        return float(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return float(v)


def _norm(v: Any, kind: str) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, str) and v == "":
        return None
    if kind == "float":
        return _to_float(v)
    if kind == "ts":
        ts = pd.Timestamp(v)
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        return ts.tz_convert("UTC")
    if kind == "date":
        return pd.Timestamp(v).date()
    if kind == "bool":
        if isinstance(v, str):
            return v in ("t", "true", "True", "1")
        return bool(v)
    if kind == "int":
        return int(float(v))
    return str(v)


def compare_frames(
    ours: pd.DataFrame,
    golden: pd.DataFrame,
    keys: list[str],
    kinds: dict[str, str],
    skip: Iterable[str] = (),
    rel_tol: float = 1e-9,
) -> dict[str, list[str]]:
    """Compare golden rows with ours on keys; returns {column: [sample mismatches]} (empty = parity).

    Rows missing on either side are reported under '__rows__'.
    """
    skip = set(skip)
    g = golden.copy()
    o = ours.copy()
    for k in keys:
        g[k] = [_norm(v, kinds.get(k, "str")) for v in g[k]]
        o[k] = [_norm(v, kinds.get(k, "str")) for v in o[k]]
    g_idx = {tuple(r): i for i, r in enumerate(g[keys].itertuples(index=False, name=None))}
    o_idx = {tuple(r): i for i, r in enumerate(o[keys].itertuples(index=False, name=None))}
    problems: dict[str, list[str]] = {}
    missing = [k for k in g_idx if k not in o_idx]
    extra = [k for k in o_idx if k not in g_idx]
    if missing or extra:
        problems["__rows__"] = [f"missing {len(missing)} e.g. {missing[:3]}", f"extra {len(extra)} e.g. {extra[:3]}"]
    common = [k for k in g_idx if k in o_idx]
    gi = [g_idx[k] for k in common]
    oi = [o_idx[k] for k in common]
    for col in golden.columns:
        if col in keys or col in skip:
            continue
        if col not in ours.columns:
            problems[col] = ["column missing in ours"]
            continue
        kind = kinds.get(col, "str")
        gv = g[col].to_numpy()[gi]
        ov = o[col].to_numpy()[oi]
        bad = []
        for key, a, b in zip(common, gv, ov):
            a, b = _norm(a, kind), _norm(b, kind)
            if kind == "float" and a is not None and b is not None:
                same = math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0) or a == b
            else:
                same = a == b
            if not same:
                bad.append(f"{key}: golden={a!r} ours={b!r}")
                if len(bad) >= 5:
                    break
        if bad:
            problems[col] = bad
    return problems


def table_rows(project: DbtProject, table: str, order_by: list[str], exclude: Iterable[str] = ()) -> list[tuple]:
    df = project.frame(table, order_by, exclude)
    return [tuple(None if (isinstance(v, float) and math.isnan(v)) else v for v in row)
            for row in df.itertuples(index=False, name=None)]


def index_definitions(project: DbtProject) -> list[tuple[str, str]]:
    """(table, definition) of every index in the schema, dbt's generated index names left out."""
    rows = project.query(
        "select tablename, indexname, indexdef from pg_indexes where schemaname = current_schema()")
    return sorted((t, d.replace(f"INDEX {n} ON", "INDEX ON").replace(f'INDEX "{n}" ON', "INDEX ON"))
                  for t, n, d in rows)


def connect(connection: dbmod.Connection) -> psycopg.Connection:
    return connection.connect()


# ---------------------------------------------------------------- incremental == full refresh

FAMILY_TABLES = ["price_bars_multi_tf", "price_bars_multi_tf_cal_iso", "price_bars_multi_tf_cal_us",
                 "price_bars_multi_tf_cal_anchor_iso", "price_bars_multi_tf_cal_anchor_us"]
EMA_TABLES = ["ema_multi_tf", "ema_multi_tf_v2", "ema_multi_tf_cal_us", "ema_multi_tf_cal_iso",
              "ema_multi_tf_cal_anchor_us", "ema_multi_tf_cal_anchor_iso"]
FEATURE_TABLES = ["features_1d", "features_multi_tf", "features_multi_tf_cal_us", "features_multi_tf_cal_iso",
                  "features_multi_tf_cal_anchor_us", "features_multi_tf_cal_anchor_iso"]
# every incremental table: (table, key columns, columns that differ between two builds by design)
INCREMENTAL_TABLES = [
    ("price_bars_1d", ["id", '"timestamp"'], ()),
    ("price_bars_1d_rejects", ["id", '"timestamp"'], ()),
    ("int_bars_daily_prep", ["id", "ts"], ()),
    *[(t, ["id", "tf", "time_close"], ("ingested_at",)) for t in FAMILY_TABLES],
    *[(t, ["id", "tf", "period", "ts"], ("ingested_at",)) for t in EMA_TABLES],
    ("ema_rejects", ["source_table", "id", "tf", "period", '"timestamp"'], ("created_at",)),
    # ema_rejects' bookkeeping: the windows an incremental run keeps equal those of a full build
    ("barsmith_ema_stat_windows", ["model", "id", "tf", "period"], ()),
    *[(t, ["id", "tf", "time_close"], ()) for t in FEATURE_TABLES],
]


def snapshot(project: DbtProject, tables: Iterable[str] | None = None,
             ids: Iterable[int] | None = None) -> dict[str, list[tuple]]:
    """The rows of the incremental tables (all of INCREMENTAL_TABLES, or those named) that exist,
    in key order, without the columns that differ by design (optionally only some ids)."""
    wanted = None if tables is None else set(tables)
    keep = None if ids is None else set(ids)
    out = {}
    for table, key, exclude in INCREMENTAL_TABLES:
        if wanted is not None and table not in wanted:
            continue
        if project.query("select to_regclass(%s)", (table,))[0][0] is None:
            continue
        rows = table_rows(project, table, key, exclude)
        out[table] = [r for r in rows if keep is None or r[1 if table in ("ema_rejects", "barsmith_ema_stat_windows") else 0] in keep]
    return out


def assert_equals_full_refresh(project: DbtProject, rebuild, tables: Iterable[str] | None = None,
                               context: str = "", ids: Iterable[int] | None = None) -> dict[str, list[tuple]]:
    """Snapshot the tables as the incremental runs left them, call rebuild() (a full refresh of the
    same source), snapshot again: every table must be equal, row for row. Returns the snapshot."""
    incremental = snapshot(project, tables, ids)
    rebuild()
    full = snapshot(project, tables, ids)
    assert set(incremental) == set(full), f"tables differ {context}: {sorted(set(incremental) ^ set(full))}"
    for table, rows in incremental.items():
        if rows != full[table]:
            ours_keys, full_keys = set(map(repr, rows)), set(map(repr, full[table]))  # rows may hold dicts (jsonb)
            extra = [r for r in rows if repr(r) not in full_keys][:3]
            missing = [r for r in full[table] if repr(r) not in ours_keys][:3]
            raise AssertionError(f"{table} differs from a full refresh {context}: "
                                 f"{len(rows)} vs {len(full[table])} rows; only incremental: {extra}; "
                                 f"only full: {missing}")
    return incremental
