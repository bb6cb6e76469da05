"""History older than ema_start_date (emas.md OP-22, amended 2026-12-06): the six EMA tables equal
an independent pandas reference of the spec (tests/python/reference_emas.py) on synthetic ids whose
history starts two years before the start date, with the date and without one (''), and
incremental runs that cross the date equal a full refresh."""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pytest

from driver.dbt import command_line

from .helpers import DbtProject, compare_frames, drop_database, new_database, table_rows
from .histories import write_rows
from .reference_emas import KEYS, KINDS, TABLES, load_inputs, reference_tables

START = "2018-01-01"
EQUITY, CRYPTO = 7, 8
FIRST = {EQUITY: date(2015, 11, 2), CRYPTO: date(2016, 1, 13)}
EARLIER = {EQUITY: date(2015, 10, 19)}   # the equity's two weeks before FIRST, loaded late (a backfill)
LAST = date(2019, 10, 31)
# a few timeframes of each family (the logic is the same for all) and three periods (v2's too)
TIMEFRAMES = ["1D", "5D", "20D", "60D", "1W_CAL_US", "1W_CAL_ISO", "1M_CAL", "3M_CAL", "1W_CAL_ANCHOR_US",
              "2W_CAL_ANCHOR_ISO", "1M_CAL_ANCHOR", "1Y_CAL_ANCHOR"]
PERIODS = [3, 5, 10]
SELECT = "stg_price_histories+ ema_alpha_lookup"
LOADED = datetime(2025, 1, 1, tzinfo=timezone.utc)
CLIPPED = ["ema_multi_tf", "ema_multi_tf_cal_us", "ema_multi_tf_cal_iso", "ema_multi_tf_cal_anchor_us",
           "ema_multi_tf_cal_anchor_iso"]


def vars_for(start: str) -> dict:
    return {"ema_start_date": start}


def seed(project: DbtProject) -> None:
    """The seeds, cut down to TIMEFRAMES and PERIODS in the test's database. (The vars
    `timeframes` / `ema_periods` would do the same, but an EMA run filtered by them records no
    input fingerprints, so every such run rebuilds its ids and never resumes a series.)"""
    project.dbt(["seed"])
    project.execute("delete from dim_timeframe where tf <> all(%s)", [TIMEFRAMES])
    project.execute("delete from ema_periods")
    for p in PERIODS:
        project.execute("insert into ema_periods (period, label, is_v2_default) values (%s, %s, true)",
                        [p, f"{p}-period"])


def trading_days(asset: int) -> list[date]:
    """Equity: weekdays without a few holidays; crypto: every day."""
    first = EARLIER.get(asset, FIRST[asset])
    days = [first + timedelta(days=i) for i in range((LAST - first).days + 1)]
    if asset == CRYPTO:
        return days
    holidays = {(1, 1), (7, 4), (12, 25), (5, 30), (9, 5)}
    return [d for d in days if d.weekday() < 5 and (d.month, d.day) not in holidays]


def history(asset: int) -> dict[date, dict]:
    """A deterministic random walk of daily candles (CMC instants: ts = D 23:59:59.999Z)."""
    rng = np.random.default_rng(asset)
    rows, close = {}, 50.0 if asset == EQUITY else 400.0
    for d in trading_days(asset):
        o = close * (1 + rng.normal(0, 0.003))
        close = o * float(np.exp(rng.normal(0.0003, 0.02)))
        start = datetime.combine(d, time(0), tzinfo=timezone.utc)
        rows[d] = {
            "id": asset, "name": f"asset{asset}", "timeopen": start,
            "timeclose": start + timedelta(milliseconds=86399999),
            "timehigh": start + timedelta(hours=int(rng.integers(0, 24))),
            "timelow": start + timedelta(hours=int(rng.integers(0, 24))),
            "timestamp": start + timedelta(milliseconds=86399999),
            "open": o, "high": max(o, close) * (1 + rng.uniform(0, 0.01)),
            "low": min(o, close) * (1 - rng.uniform(0, 0.01)), "close": close,
            "volume": float(rng.uniform(1e3, 1e5)), "marketcap": close * 1e6, "circulatingsupply": None,
            "date": d, "source_file": "synthetic", "load_ts": None,
        }
    return rows


HISTORY = {asset: history(asset) for asset in (EQUITY, CRYPTO)}


def load(project: DbtProject, first: date | None, last: date, backfill: bool = False) -> None:
    """Upsert the days first..last (None: from each id's FIRST day); backfill: the days before FIRST."""
    rows = [r for asset, h in HISTORY.items() for d, r in h.items()
            if (d < FIRST[asset] if backfill else (d >= (first or FIRST[asset]) and d <= last))]
    with project.connection.connect() as conn:
        write_rows(conn, rows, load_ts=LOADED)


def reference_problems(project: DbtProject, start: str) -> dict[str, dict]:
    """{table: compare_frames problems} of the built tables against the reference."""
    expected = reference_tables(load_inputs(project), PERIODS, TIMEFRAMES, start)
    out = {}
    for table in TABLES:
        ours = project.frame(table, KEYS, exclude=["ingested_at"])
        problems = compare_frames(ours, expected[table], KEYS, KINDS)
        if problems:
            out[table] = problems
    return out


@pytest.fixture(scope="module", params=[START, ""], ids=["start_date", "no_start_date"])
def built(request, server, tmp_path_factory):
    """The whole synthetic history, built once per value of ema_start_date (with the date a dbt
    build: the models' data tests run on it too)."""
    conn_info = new_database(server, "barsmith_emahist")
    project = DbtProject(conn_info, tmp_path_factory.mktemp("emahist"))
    seed(project)
    load(project, None, LAST)
    if request.param:
        project.build(SELECT, vars=vars_for(request.param))
    else:
        project.run(SELECT, vars=vars_for(request.param))
    yield project, request.param, reference_tables(load_inputs(project), PERIODS, TIMEFRAMES, request.param)
    drop_database(server, conn_info)


@pytest.mark.parametrize("table", TABLES)
def test_ema_tables_equal_the_pandas_reference(built, table):
    project, start, expected = built
    ours = project.frame(table, KEYS, exclude=["ingested_at"])
    assert len(expected[table]) > 100
    assert compare_frames(ours, expected[table], KEYS, KINDS) == {}


def test_the_reference_reads_history_before_the_start_date(built):
    """What OP-22 means, on the reference itself: the families whose recursion reads the whole
    bar table (multi_tf, cal_anchor) emit from the start date on with values that were seeded
    before it; cal seeds inside the spine; v2 ignores the date."""
    project, start, expected = built
    if start == "":
        assert min(expected["ema_multi_tf"]["ts"]) < datetime(2017, 1, 1, tzinfo=timezone.utc)
        return
    begin = datetime(2018, 1, 1, tzinfo=timezone.utc)
    for table in CLIPPED:
        assert min(expected[table]["ts"]) >= begin, table
    assert min(expected["ema_multi_tf_v2"]["ts"]) < datetime(2016, 1, 1, tzinfo=timezone.utc)
    mtf = expected["ema_multi_tf"]
    # 1D, p = 10: seeded in 2015 / 2016, so the first spine day already carries an ema
    first = mtf[(mtf["tf"] == "1D") & (mtf["period"] == 10)].groupby("id")["ts"].min()
    assert first.to_dict() == {EQUITY: datetime(2018, 1, 2, 23, 59, 59, 999000, tzinfo=timezone.utc),
                               CRYPTO: datetime(2018, 1, 1, 23, 59, 59, 999000, tzinfo=timezone.utc)}
    # cal_anchor 1Y with p = 3 (the crypto id; the equity has no close on two of the year ends):
    # seeded on 2018-12-31 by the closes of 2016, 2017 (before the date) and 2018
    anchor = expected["ema_multi_tf_cal_anchor_us"]
    assert set(anchor[(anchor["tf"] == "1Y_CAL_ANCHOR") & (anchor["period"] == 3)]["ts"].dt.year) == {2018, 2019}
    # cal 1M with p = 10: the seed needs ten month ends inside the spine
    cal = expected["ema_multi_tf_cal_us"]
    assert min(cal[(cal["tf"] == "1M_CAL") & (cal["period"] == 10)]["ts"]) >= datetime(2018, 10, 1, tzinfo=timezone.utc)


def test_incremental_runs_across_the_start_date_equal_a_full_refresh(project):
    """First load ends before ema_start_date (no spine yet: only v2 has rows), then appends that
    cross it, more appends (resumed, not rebuilt), then a correction of a day in 2016 and a
    backfill: every run equals the reference, and the end state a full refresh. Then ema_start_date: '' rebuilds
    (range signature) to the unclipped tables."""
    seed(project)
    load(project, None, date(2017, 12, 20))
    project.run(SELECT, vars=vars_for(START))
    for table in CLIPPED:
        assert project.query(f"select count(*) from {table}") == [(0,)], table
    assert project.query("select count(*) from ema_multi_tf_v2")[0][0] > 1000
    assert reference_problems(project, START) == {}

    for first, last in ((date(2017, 12, 21), date(2018, 3, 15)), (date(2018, 3, 16), LAST)):
        load(project, first, last)
        run_start = project.query("select now()")[0][0]
        project.run(SELECT, vars=vars_for(START))
        assert reference_problems(project, START) == {}
    for table in TABLES:
        assert project.query(f"select count(*) from {table} where ts < '2018-03-01' and ingested_at >= %s",
                             [run_start]) == [(0,)], f"{table}: the appending run resumed its series"

    # correct a close of 2016 that closes a 20D bar and a 1M anchored bar: the seeds of multi_tf,
    # cal_anchor and v2 move, cal (seeded inside the spine) keeps every value
    asset, day = project.query(
        "select m.id, (m.time_close at time zone 'UTC')::date from price_bars_multi_tf as m "
        "inner join price_bars_multi_tf_cal_anchor_us as a on a.id = m.id and a.time_close = m.time_close "
        "and a.tf = '1M_CAL_ANCHOR' and not a.is_partial_end "
        "where m.tf = '20D' and not m.is_partial_end order by m.time_close limit 1")[0]
    assert day.year == 2016
    before = {t: table_rows(project, t, KEYS, exclude=["ingested_at"]) for t in TABLES}
    row = dict(HISTORY[asset][day], close=HISTORY[asset][day]["close"] * 1.2)
    row["high"] = max(row["high"], row["close"])
    with project.connection.connect() as conn:
        write_rows(conn, [row])
    project.run(SELECT, vars=vars_for(START))
    assert reference_problems(project, START) == {}
    after = {t: table_rows(project, t, KEYS, exclude=["ingested_at"]) for t in TABLES}
    changed = {t for t in TABLES if before[t] != after[t]}
    assert changed == {"ema_multi_tf", "ema_multi_tf_v2", "ema_multi_tf_cal_anchor_us", "ema_multi_tf_cal_anchor_iso"}

    # backfill the equity's two weeks before its first day (the 3M_CAL grid moves with them)
    load(project, None, LAST, backfill=True)
    project.run(SELECT, vars=vars_for(START))
    assert reference_problems(project, START) == {}
    incremental = {t: table_rows(project, t, KEYS, exclude=["ingested_at"]) for t in TABLES}

    project.run(SELECT, full_refresh=True, vars=vars_for(START))
    assert {t: table_rows(project, t, KEYS, exclude=["ingested_at"]) for t in TABLES} == incremental

    project.run(SELECT, vars=vars_for(""))
    assert reference_problems(project, "") == {}


def compile_inline(project: DbtProject, sql: str, yaml_vars: str):
    """dbt compile --inline with --vars given as YAML text (as a user types it)."""
    from dbt.cli.main import dbtRunner

    os.environ.update(project.connection.dbt_env())
    os.environ["DBT_TARGET_PATH"] = str(project.tmp / "target")
    return dbtRunner().invoke(command_line(["compile", "--inline", sql], None, ["--vars", yaml_vars]))


def test_ema_start_date_is_a_date_or_empty(project):
    """A YAML date (`--vars '{ema_start_date: 2018-01-01}'`; a string works alike), '' and null are accepted
    ('' and null: no clipping); anything else is refused with a message naming the var."""
    for given, expected in (("2018-01-01", "('2018-01-01'::timestamp at time zone 'UTC')"),
                            ("''", "'-infinity'::timestamptz"), ("null", "'-infinity'::timestamptz")):
        result = compile_inline(project, "select {{ ema_start_ts() }} as t", f"{{ema_start_date: {given}}}")
        assert result.success, given
        assert result.result.results[0].node.compiled_code.strip() == f"select {expected} as t", given
    result = compile_inline(project, "select {{ ema_start_ts() }} as t", "{ema_start_date: 01/02/2018}")
    assert not result.success
    assert "var ema_start_date must be a date YYYY-MM-DD or '' (no clipping), got '01/02/2018'" in str(result.exception)
