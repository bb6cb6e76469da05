"""The five snapshot families (bars.md §4-§8): parity with the reference on the golden data,
the OP resolutions checked against their rule, worked examples, incremental == full."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from .helpers import DbtProject, compare_frames, new_database, read_golden

FAMILIES = [
    "price_bars_multi_tf",
    "price_bars_multi_tf_cal_iso",
    "price_bars_multi_tf_cal_us",
    "price_bars_multi_tf_cal_anchor_iso",
    "price_bars_multi_tf_cal_anchor_us",
]
KINDS = {c: "float" for c in ("open", "high", "low", "close", "volume", "market_cap")}
KINDS.update({c: "ts" for c in ("time_open", "time_close", "time_high", "time_low", "timestamp", "last_ts_half_open")})
KINDS.update({c: "int" for c in ("id", "tf_days", "bar_seq", "count_days", "count_days_remaining", "count_missing_days",
                                 "count_missing_days_start", "count_missing_days_end", "count_missing_days_interior",
                                 "pos_in_bar", "bar_anchor_offset")})
KINDS.update({c: "bool" for c in ("is_partial_start", "is_partial_end", "is_missing_days")})
KINDS.update({c: "date" for c in ("first_missing_day", "last_missing_day")})
KEYS = ["id", "tf", "time_close"]

# Columns an OP resolution changes on purpose, per family (checked against the rule below).
OP_COLUMNS = {
    "all": {"timestamp": "OP-8", "last_ts_half_open": "OP-8", "pos_in_bar": "OP-8", "missing_days_where": "OP-6",
            "first_missing_day": "OP-7", "last_missing_day": "OP-7"},
    "price_bars_multi_tf": {"count_missing_days_start": "OP-8", "count_missing_days_interior": "OP-8",
                            "count_missing_days_end": "OP-8"},
    "price_bars_multi_tf_cal_iso": {"count_days": "OP-3", "count_missing_days": "OP-3", "is_missing_days": "OP-3",
                                    "count_missing_days_interior": "OP-3"},
    "price_bars_multi_tf_cal_us": {},
    "price_bars_multi_tf_cal_anchor_iso": {"count_missing_days": "OP-4", "is_missing_days": "OP-4",
                                           "count_missing_days_interior": "OP-4", "count_days_remaining": "OP-5"},
    "price_bars_multi_tf_cal_anchor_us": {"count_missing_days": "OP-4", "is_missing_days": "OP-4",
                                          "count_missing_days_interior": "OP-4", "count_days_remaining": "OP-5"},
}


@pytest.fixture(scope="module")
def raw_build(server, golden_dir, tmp_path_factory):
    """Golden input built with var bars_daily_source = raw, as the reference was."""
    project = DbtProject(new_database(server), tmp_path_factory.mktemp("fam"))
    project.load(golden_dir / "price_histories.csv")
    project.build(vars={"bars_daily_source": "raw"})
    return project


def ours_for(project, table: str, golden: pd.DataFrame) -> pd.DataFrame:
    ours = project.frame(table, KEYS)
    return ours[ours["tf"].isin(set(golden["tf"]))]


def missing_days(project) -> dict[int, set[date]]:
    """Every missing local day between an id's first and last observed day."""
    out: dict[int, set[date]] = {}
    for asset, days in project.query(
            "select id, array_agg((\"timestamp\" at time zone 'America/New_York')::date order by 1) "
            "from price_histories group by id"):
        have = set(days)
        out[asset] = {days[0] + timedelta(n) for n in range((days[-1] - days[0]).days) if days[0] + timedelta(n) not in have}
    return out


@pytest.mark.parametrize("table", FAMILIES)
def test_parity_with_reference(raw_build, golden_dir, table):
    golden = read_golden(golden_dir / f"cmc_{table}.csv.gz")
    ours = ours_for(raw_build, table, golden)
    skip = {**OP_COLUMNS["all"], **OP_COLUMNS[table]}
    problems = compare_frames(ours, golden, KEYS, KINDS, skip=skip)
    assert problems == {}, problems
    assert len(ours) == len(golden)


@pytest.mark.parametrize("table", FAMILIES)
def test_full_build_writes_rows_in_key_order(raw_build, table):
    """A full build writes its rows in the order of the unique key (id, tf, time_close), so the
    index built after the load sorts presorted input (a speed property, checked as an order)."""
    out_of_order, rows = raw_build.query(
        "select count(*) filter (where (id, tf, time_close) <= prev), count(*) from ("
        f"select id, tf, time_close, lag((id, tf, time_close)) over (order by ctid) as prev from {table}) as s")[0]
    assert rows > 1000
    assert out_of_order == 0


@pytest.mark.parametrize("table", FAMILIES)
def test_op_resolved_columns_follow_their_rule(raw_build, table):
    df = raw_build.frame(table, KEYS)
    assert (df["timestamp"] == df["time_close"]).all(), "OP-8"
    assert (df["last_ts_half_open"] == df["time_close"] + pd.Timedelta(milliseconds=1)).all(), "OP-8"
    assert (df["pos_in_bar"] == df["count_days"]).all(), "OP-8"
    counts = df.groupby(["id", "tf", "bar_seq"])["count_days"]
    assert (counts.transform(lambda s: list(range(1, len(s) + 1)) == list(s)).all()), "OP-3: observed rows"
    local = df["time_close"].dt.tz_convert("America/New_York").dt.date
    exp = df["count_days"] + df["count_missing_days"]
    start_eff = [d - timedelta(int(e) - 1) for d, e in zip(local, exp)]
    gaps = missing_days(raw_build)
    first_seen_by_id = pd.Series(list(local)).groupby(df["id"].to_numpy()).min().to_dict()
    for i, row in enumerate(df.itertuples(index=False)):
        # OP-7: the real missing local days of [bar_start_eff, d]: days before the id's first
        # observed day (partial-start windows) or gaps of the id
        first_seen = first_seen_by_id[row.id]
        window = [start_eff[i] + timedelta(n) for n in range((local.iloc[i] - start_eff[i]).days + 1)]
        missing = [d for d in window if d in gaps[row.id] or d < first_seen]
        assert len(missing) == row.count_missing_days, "OP-4: missing = expected days - observed rows"
        if not missing:
            assert pd.isna(row.first_missing_day) and pd.isna(row.missing_days_where)
        else:
            assert (row.first_missing_day, row.last_missing_day) == (missing[0], missing[-1]), "OP-7"
            parts = [p for p, n in (("start", row.count_missing_days_start),
                                    ("interior", row.count_missing_days_interior)) if n > 0]
            assert row.missing_days_where == ",".join(parts), "OP-6"
    if "anchor" in table:
        ends = [d + timedelta(int(r)) for d, r in zip(local, df["count_days_remaining"])]
        canonical = ~df["is_partial_end"]
        assert all((r == 0) == c for r, c in zip(df["count_days_remaining"], canonical)), "OP-5"
        assert len(set(zip(df["id"], df["tf"], df["bar_seq"], ends))) == len(set(zip(df["id"], df["tf"], df["bar_seq"])))
