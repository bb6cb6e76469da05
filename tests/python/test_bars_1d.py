"""1D family (bars.md §5): parity with the reference, repairs and rejects, incremental == full."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from .helpers import compare_frames, read_golden, table_rows

ONE_D = "stg_price_histories price_bars_1d price_bars_1d_rejects price_bars_1d_state"
KINDS_1D = {
    "id": "int", "timestamp": "ts", "bar_seq": "int", "time_open": "ts", "time_close": "ts", "time_high": "ts",
    "time_low": "ts", "open": "float", "high": "float", "low": "float", "close": "float", "volume": "float",
    "market_cap": "float", "is_partial_start": "bool", "is_partial_end": "bool", "is_missing_days": "bool",
    "src_load_ts": "ts", "repaired_timehigh": "bool", "repaired_timelow": "bool",
}
KEYS = {"price_bars_1d": ['id', '"timestamp"'], "price_bars_1d_rejects": ['id', '"timestamp"']}


def snapshot(project) -> dict[str, list[tuple]]:
    return {t: table_rows(project, t, k) for t, k in KEYS.items()}


def assert_incremental_equals_full(project):
    """The tables after incremental runs equal a full refresh over the current source."""
    incremental = snapshot(project)
    project.run(ONE_D, full_refresh=True)
    full = snapshot(project)
    for table in KEYS:
        assert incremental[table] == full[table], f"{table}: incremental differs from full refresh"
    return full


def test_parity_with_reference_1d(project, golden_dir):
    """Same rows and values as cmc_price_bars_1d; no rejects (none in this data set)."""
    project.load(golden_dir / "price_histories.csv")
    project.build(ONE_D + " dim_timeframe")
    ours = project.frame("price_bars_1d", ["id", '"timestamp"'])
    golden = read_golden(golden_dir / "cmc_price_bars_1d.csv.gz")
    assert len(ours) == len(golden) == 2401
    assert compare_frames(ours, golden, ["id", "timestamp"], KINDS_1D) == {}
    assert project.query("select count(*) from price_bars_1d_rejects")[0][0] == 0
    assert len(read_golden(golden_dir / "cmc_price_bars_1d_rejects.csv.gz")) == 0
    repaired = project.query("select count(*) filter (where repaired_timehigh), count(*) filter (where repaired_timelow) "
                             "from price_bars_1d")[0]
    assert repaired[0] > 0 and repaired[1] > 0, "the golden input exercises the NULL timehigh/timelow repairs"


def _write(path: Path, rows: list[dict]) -> Path:
    cols = ["id", "name", "timeopen", "timeclose", "timehigh", "timelow", "timestamp", "open", "high", "low", "close",
            "volume", "marketcap", "load_ts"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return path


def _day(d: str, **over) -> dict:
    base = {"id": 7, "name": "Example", "timeopen": f"{d}T00:00:00.000Z", "timeclose": f"{d}T23:59:59.999Z",
            "timehigh": f"{d}T12:00:00.000Z", "timelow": f"{d}T01:00:00.000Z", "timestamp": f"{d}T23:59:59.999Z",
            "open": 10, "high": 12, "low": 9, "close": 11, "volume": 100, "marketcap": 1000,
            "load_ts": "2026-01-01T00:00:00Z"}
    base.update(over)
    return base


def test_repairs_and_rejects_follow_the_spec_example(project, tmp_path):
    """bars.md §12.4, with the OP-11 decision (NULL volume / market cap rows are kept)."""
    rows = [
        _day("2024-01-01"),
        _day("2024-01-02", timehigh=None, open=11, close=10.5, high=15),
        _day("2024-01-03", timelow="2024-01-04T05:00:00.000Z", open=10.5, close=11.2, low=8),
        _day("2024-01-04", volume=None),
        _day("2024-01-05", open=None),
        _day("2024-01-06", timeopen="2024-01-07T00:00:00.000Z"),
        _day("2024-01-07", open=11, close=11.5, high=10, low=12, timehigh="2024-01-07T05:00:00Z",
             timelow="2024-01-07T06:00:00Z"),
        _day("2024-01-08", marketcap=None),
    ]
    project.load(_write(tmp_path / "ex.csv", rows))
    project.build(ONE_D)
    bars = {r[0].day: r[1:] for r in project.query(
        'select "timestamp", bar_seq, high, low, time_high, time_low, repaired_timehigh, repaired_timelow, volume, '
        'market_cap from price_bars_1d order by 1')}
    assert sorted(bars) == [1, 2, 3, 4, 7, 8]
    seq, high, low, th, tl, rh, rl, vol, mcap = bars[2]
    assert (high, rh, th.isoformat()) == (11, True, "2024-01-02T00:00:00+00:00")  # down day: time_high = timeopen
    seq, high, low, th, tl, rh, rl, vol, mcap = bars[3]
    assert (low, rl, tl.isoformat()) == (10.5, True, "2024-01-03T00:00:00+00:00")  # up day: time_low = timeopen
    assert bars[4][7] is None and bars[8][8] is None  # OP-11: kept with NULL volume / market cap
    seq, high, low, *_ = bars[7]
    assert (seq, high, low) == (7, 12, 10)  # raw high < low swapped, rank 7 keeps the hole-free rank
    rejects = dict((r[0].day, r[1]) for r in project.query('select "timestamp", reason from price_bars_1d_rejects'))
    assert rejects == {5: "null_open_close", 6: "time_open_gt_time_close"}
    assert project.query("select count(*) from price_bars_1d")[0][0] + len(rejects) == len(rows)


def test_incremental_append_matches_full_refresh_and_reference(project, golden_dir):
    project.load(golden_dir / "incremental_part1.csv")
    project.run(ONE_D)
    project.load(golden_dir / "incremental_part2.csv")
    project.run(ONE_D)
    full = assert_incremental_equals_full(project)
    assert len(full["price_bars_1d"]) == 2401


@pytest.fixture()
def built(project, golden_dir):
    project.load(golden_dir / "price_histories.csv")
    project.run(ONE_D)
    return project


def test_corrected_old_row_is_applied(built, tmp_path):
    """A correction far outside the lookback window (OP-15) reaches the 1D table."""
    built.execute("""update price_histories set close = close * 1.01, high = high * 1.02, load_ts = now()
                     where id = 52 and "timestamp"::date = '2022-06-15'""")
    built.run(ONE_D)
    (close,) = built.query("""select b.close = s.close from price_bars_1d b join price_histories s using (id, "timestamp")
                               where b.id = 52 and b."timestamp"::date = '2022-06-15'""")[0]
    assert close
    assert_incremental_equals_full(built)


def test_backfill_before_first_row_rebuilds_the_id(built):
    """A row before the id's earliest row shifts every bar_seq of the id (OP-14)."""
    built.execute("""insert into price_histories select id, name, timeopen - interval '1 day', timeclose - interval '1 day',
                     timehigh - interval '1 day', timelow - interval '1 day', "timestamp" - interval '1 day', open, high,
                     low, close, volume, marketcap, circulatingsupply, date - 1, source_file, load_ts
                     from price_histories where id = 825 order by "timestamp" limit 1""")
    built.run(ONE_D)
    (n,) = built.query("select count(*) from price_histories where id = 825")[0]
    assert built.query("select min(bar_seq), max(bar_seq), count(*) from price_bars_1d where id = 825")[0] == (1, n, n)
    assert built.query("select bar_seq from price_bars_1d where id = 825 order by 1 limit 1 offset 1")[0][0] == 2
    assert_incremental_equals_full(built)


def test_late_row_inside_history_and_deleted_row_are_applied(built):
    built.execute("""delete from price_histories where id = 1 and "timestamp"::date = '2023-01-10'""")
    built.run(ONE_D)
    assert_incremental_equals_full(built)
    # the golden data misses one day of id 1 somewhere: insert a synthetic late row in a gap
    gap = built.query("""select "timestamp" + interval '1 day' from price_histories p where id = 1 and not exists (
                         select 1 from price_histories q where q.id = 1 and q."timestamp" = p."timestamp" + interval '1 day')
                         order by 1 limit 1""")[0][0]
    built.execute("""insert into price_histories (id, name, timeopen, timeclose, timehigh, timelow, "timestamp", open, high,
                     low, close, volume, marketcap, load_ts) values (1, 'SynthOne', %s - interval '86399.999 seconds', %s,
                     %s, %s, %s, 100, 110, 90, 105, 1, 1, '2020-01-01')""", (gap, gap, gap, gap, gap))
    built.run(ONE_D)
    assert_incremental_equals_full(built)


def test_row_becoming_invalid_moves_to_rejects_and_back(built):
    built.execute("""update price_histories set open = null, load_ts = now()
                     where id = 1 and "timestamp"::date = '2022-08-01'""")
    built.run(ONE_D)
    assert built.query("select reason from price_bars_1d_rejects")[0][0] == "null_open_close"
    assert_incremental_equals_full(built)
    built.execute("""update price_histories set open = close, load_ts = now()
                     where id = 1 and "timestamp"::date = '2022-08-01'""")
    built.run(ONE_D)
    assert built.query("select count(*) from price_bars_1d_rejects")[0][0] == 0
    assert_incremental_equals_full(built)


def test_asset_filter_builds_only_the_requested_ids(built):
    built.execute("""update price_histories set close = close + 1, load_ts = now()
                     where "timestamp"::date = '2023-05-05'""")
    built.run(ONE_D, vars={"asset_ids": [52]})
    stale = built.query("""select b.id, b.close = s.close from price_bars_1d b join price_histories s using (id, "timestamp")
                           where b."timestamp"::date = '2023-05-05' order by 1""")
    assert stale == [(1, False), (52, True), (825, False)]
    built.run(ONE_D)
    assert_incremental_equals_full(built)
