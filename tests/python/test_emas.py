"""EMA families (emas.md): parity with the reference, the operator against pandas, worked
examples, incremental resume == full refresh."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pandas as pd
import pytest

from .helpers import (DbtProject, assert_equals_full_refresh, compare_frames, drop_database, index_definitions,
                      new_database, read_golden)

EMA_KINDS = {
    "id": "int", "tf": "str", "ts": "ts", "period": "int", "tf_days": "int", "roll": "bool", "roll_bar": "bool",
    **{c: "float" for c in ("ema", "d1", "d2", "d1_roll", "d2_roll", "ema_bar", "d1_bar", "d2_bar", "d1_roll_bar",
                            "d2_roll_bar")},
}
KEYS = ["id", "tf", "period", "ts"]


def golden_groups(project, golden: pd.DataFrame, table: str) -> pd.DataFrame:
    """Our rows restricted to the (id, tf, period) groups present in the golden file."""
    ours = project.frame(table, ["id", "tf", "period", "ts"])
    groups = set(zip(golden["id"].astype(int), golden["tf"], golden["period"].astype(int)))
    mask = [(int(i), t, int(p)) in groups for i, t, p in zip(ours["id"], ours["tf"], ours["period"])]
    return ours[mask]


@pytest.fixture(scope="module")
def golden_build(server, golden_dir, tmp_path_factory):
    """One database with the golden input, built once with the default vars (bars_1d input)."""
    conn_info = new_database(server, "barsmith_ema")
    project = DbtProject(conn_info, tmp_path_factory.mktemp("ema"))
    project.load(golden_dir / "price_histories.csv")
    project.build()
    yield project
    drop_database(server, conn_info)


def test_v2_parity_with_reference(golden_build, golden_dir):
    golden = read_golden(golden_dir / "cmc_ema_multi_tf_v2.csv.gz")
    ours = golden_groups(golden_build, golden, "ema_multi_tf_v2")
    assert compare_frames(ours, golden, KEYS, EMA_KINDS) == {}
    assert len(ours) == len(golden) == 41876


def test_v2_emits_every_seedable_series_op3(golden_build, golden_dir):
    """OP-3: a (id, tf, p) series exists iff its seed can be formed; the reference's 3p filter
    dropped some of them, which we keep (they are not in the golden file)."""
    golden = read_golden(golden_dir / "cmc_ema_multi_tf_v2.csv.gz")
    golden_keys = set(zip(golden["id"].astype(int), golden["tf"], golden["period"].astype(int)))
    extra = golden_build.query(
        """select b.id, d.tf, p.period, count(*) from price_bars_1d b
           cross join dim_timeframe d cross join (values (10), (21), (50), (100)) p(period)
           where d.tf in (select distinct tf from ema_multi_tf_v2) group by 1, 2, 3, d.tf_days_nominal
           having count(*) >= d.tf_days_nominal * p.period""")
    expected = {(i, t, p) for i, t, p, _n in extra if t in set(golden["tf"])}
    ours = set(golden_build.query("select distinct id, tf, period from ema_multi_tf_v2 where period in (10, 21, 50, 100)"))
    ours = {k for k in ours if k[1] in set(golden["tf"])}
    assert ours == expected
    assert golden_keys < ours


def test_operator_matches_pandas_ewm_after_the_seed(golden_build):
    """v2 1D series: after the SMA seed, ema equals pandas ewm(adjust=False) started from the seed."""
    rows = golden_build.query(
        "select b.id, b.close, e.ema from price_bars_1d b left join ema_multi_tf_v2 e on e.id = b.id "
        "and e.ts = b.time_close and e.tf = '7D' and e.period = 10 order by b.id, b.time_close")
    df = pd.DataFrame(rows, columns=["id", "close", "ema"])
    checked = 0
    for _id, g in df.groupby("id"):
        n = 70
        alpha = 2 / (n + 1)
        closes = g["close"].to_numpy()
        seed = closes[:n].mean()
        series = pd.Series(np.concatenate([[seed], closes[n:]])).ewm(alpha=alpha, adjust=False).mean().to_numpy()
        ours = g["ema"].to_numpy()[n - 1:]
        assert np.isnan(g["ema"].to_numpy()[: n - 1].astype(float)).all()
        assert np.allclose(ours.astype(float), series, rtol=1e-12, atol=0)
        checked += len(series)
    assert checked > 1000


@pytest.mark.parametrize("table", ["ema_multi_tf_v2", "ema_multi_tf", "ema_multi_tf_cal_us", "ema_multi_tf_cal_iso",
                                   "ema_multi_tf_cal_anchor_us", "ema_multi_tf_cal_anchor_iso"])
def test_incremental_resume_equals_full_refresh(project, golden_dir, table, tmp_path):
    """Full build, then two appends that resume every series from its last stored rows (read from
    the table itself, emas.md OP-15): both equal a full refresh. Each run records in
    barsmith_changes what it wrote, per series from its first new instant (what ema_rejects and the
    run's data tests read)."""
    changes_sql = ("select id, tf, period, from_ts from barsmith_changes where model = %s and not full_build"
                   " and tf is not null and invocation_id = (select invocation_id from barsmith_changes"
                   " where model = %s order by seq desc limit 1) order by 1, 2, 3")
    project.load(golden_dir / "incremental_part1.csv")
    project.dbt(["seed"])
    project.run(f"+{table}")
    assert project.query("select full_build, id from barsmith_changes where model = %s", [table]) == [(True, None)], \
        "a full build records one full_build change"
    lines = (golden_dir / "incremental_part2.csv").read_text().splitlines(keepends=True)
    early = [ln for ln in lines[1:] if ln.split(",")[6] < "2024-03-01"]
    late = [ln for ln in lines[1:] if ln.split(",")[6] >= "2024-03-01"]
    assert early and late
    for n, rows in enumerate((early, late)):
        part = tmp_path / f"part2_{n}.csv"
        part.write_text(lines[0] + "".join(rows))
        project.load(part)
        project.run(f"+{table}")
        written = project.query(
            f"select id, tf, period, min(ts) from {table} where ingested_at = (select max(ingested_at) from {table})"
            " group by 1, 2, 3 order by 1, 2, 3")
        assert written and project.query(changes_sql, [table, table]) == written, \
            "the run's changes are the series it wrote, each from its first new row"
    indexes = index_definitions(project)
    full = assert_equals_full_refresh(project, lambda: project.run(f"+{table}", full_refresh=True), [table])
    assert len(full[table]) > 10000
    # a full refresh replaces the tables with every index they had
    assert index_definitions(project) == indexes
    assert any(t == table and "WHERE (NOT roll)" in d for t, d in indexes), "the canonical index exists"
    # the full build's finish hook drops its work tables (<model>__walk_calls, __walk_spine)
    assert project.query("select relname from pg_class where relname like %s", [table + "\\_\\_walk\\_%"]) == []


@pytest.mark.parametrize("table, op_columns", [
    ("ema_multi_tf", {}),
    ("ema_multi_tf_cal_us", {"tf_days": "OP-7"}),
    ("ema_multi_tf_cal_iso", {"tf_days": "OP-7"}),
])
def test_parity_with_reference(golden_build, golden_dir, table, op_columns):
    golden = read_golden(golden_dir / f"cmc_{table}.csv.gz")
    ours = golden_groups(golden_build, golden, table)
    assert compare_frames(ours, golden, KEYS, EMA_KINDS, skip=op_columns) == {}
    assert len(ours) == len(golden)
    if op_columns:
        nominal = dict(golden_build.query("select tf, tf_days_nominal from dim_timeframe"))
        assert all(int(d) == nominal[t] for t, d in zip(ours["tf"], ours["tf_days"])), "OP-7: tf_days = nominal"
        assert (golden.loc[golden["tf"] == "1M_CAL", "tf_days"].astype(int) == 28).all(), "the reference stored 28"


ANCHOR_OP6 = {c: "OP-6" for c in ("ema", "d1", "d2", "d1_roll", "d2_roll", "ema_bar", "d1_roll_bar", "d2_roll_bar",
                                  "tf_days")}


@pytest.mark.parametrize("table", ["ema_multi_tf_cal_anchor_us", "ema_multi_tf_cal_anchor_iso"])
def test_cal_anchor_parity_and_resolved_alpha(golden_build, golden_dir, table):
    golden = read_golden(golden_dir / f"cmc_{table}.csv.gz")
    seeded = golden[golden["ema"].notna()]
    ours = golden_groups(golden_build, golden, table)
    # OP-11: the reference wrote all-NULL rows before the seed; we emit from the seed on
    assert golden[golden["ema"].isna()]["ema_bar"].isna().all()
    problems = compare_frames(ours, seeded, KEYS, EMA_KINDS, skip=ANCHOR_OP6)
    assert problems == {}, problems
    assert len(ours) == len(seeded)
    # bar-space values do not depend on the daily alpha: canonical ema_bar, d1_bar, d2_bar match
    canon_g = seeded[seeded["roll"] == "f"]
    canon_o = ours[~ours["roll"].astype(bool)]
    assert compare_frames(canon_o[KEYS + ["ema_bar", "d1_bar", "d2_bar"]],
                          canon_g[KEYS + ["ema_bar", "d1_bar", "d2_bar"]], KEYS, EMA_KINDS) == {}
    # OP-6: the daily path compounds with 1-(1-2/(p+1))^(1/tf_days_nominal), tf_days = nominal
    nominal = dict(golden_build.query("select tf, tf_days_nominal from dim_timeframe"))
    closes = {(i, t): x for i, t, x in golden_build.query("select id, time_close, close from price_bars_1d")}
    checked = 0
    for (asset, tf, period), g in ours.groupby(["id", "tf", "period"]):
        d = nominal[tf]
        assert (g["tf_days"] == d).all()
        alpha = 1 - (1 - 2 / (period + 1)) ** (1 / d)
        prev = None
        for ts, ema in zip(g["ts"], g["ema"]):
            if prev is not None:
                assert math.isclose(ema, alpha * closes[(asset, ts)] + (1 - alpha) * prev, rel_tol=1e-12)
                checked += 1
            prev = ema
    assert checked > 10000


def test_ema_rejects_report_bad_values_with_a_reason(golden_build):
    golden_build.execute("""insert into ema_multi_tf (id, tf, ts, period, ema, tf_days, roll)
                            values (1, '7D', '2030-01-01', 10, -5, 7, true), (1, '7D', '2030-01-02', 10, 'NaN', 7, true),
                                   (1, '7D', '2030-01-03', 10, 'Infinity', 7, true)""")
    try:
        golden_build.run("ema_rejects", full_refresh=True)
        found = dict(golden_build.query(
            "select \"timestamp\"::date::text, violation_type from ema_rejects where source_table = 'ema_multi_tf'"
            " and \"timestamp\" >= '2030-01-01'"))
        assert found == {"2030-01-01": "negative", "2030-01-02": "nan", "2030-01-03": "infinity"}
        assert golden_build.query("select count(*) from ema_multi_tf where ts >= '2030-01-01'")[0][0] == 3, \
            "reported, not dropped"
    finally:
        golden_build.execute("delete from ema_multi_tf where ts >= '2030-01-01'")
        golden_build.run("ema_rejects", full_refresh=True)


def test_ema_rejects_judges_the_rows_the_ema_runs_rewrote(golden_build):
    """An incremental ema_rejects run judges exactly the series the EMA models recorded in
    barsmith_changes since its last run (from their first changed instant on), and takes those
    rows over; a whole table after a full build; a rewritten row replaces its verdict, and the
    verdicts of rows a rebuild deleted go."""
    change = "insert into barsmith_changes (invocation_id, model, full_build, id, tf, period, from_ts) values "

    def verdicts():
        return dict(golden_build.query(
            "select \"timestamp\"::date::text, violation_type from ema_rejects where source_table = 'ema_multi_tf'"
            " and \"timestamp\" >= '2030-01-01'"))

    assert golden_build.query("select count(*) from barsmith_changes where model like 'ema\\_multi%%'") == [(0,)], \
        "the build's ema_rejects took the EMA changes over"
    golden_build.execute("""insert into ema_multi_tf (id, tf, ts, period, ema, tf_days, roll)
                            values (1, '7D', '2030-01-01', 10, -5, 7, true), (1, '7D', '2030-01-02', 10, 'NaN', 7, true)""")
    try:
        golden_build.execute(change + "('t', 'ema_multi_tf', false, 1, '7D', 10, '2030-01-02')")
        golden_build.run("ema_rejects")
        assert verdicts() == {"2030-01-02": "nan"}, "only the changed rows are judged"
        assert golden_build.query("select count(*) from barsmith_changes where model = 'ema_multi_tf'") == [(0,)], \
            "changes taken over"

        golden_build.execute(change + "('t', 'ema_multi_tf', true, null, null, null, null)")
        golden_build.run("ema_rejects")
        assert verdicts() == {"2030-01-01": "negative", "2030-01-02": "nan"}, "a full build is judged whole"

        golden_build.execute("update ema_multi_tf set ema = 5 where id = 1 and ts = '2030-01-02'")
        golden_build.execute(change + "('t', 'ema_multi_tf', false, 1, '7D', 10, '2030-01-02')")
        golden_build.run("ema_rejects")
        assert "2030-01-02" not in verdicts() or verdicts()["2030-01-02"] != "nan", "a rewritten row loses its verdict"
        assert verdicts()["2030-01-01"] == "negative", "rows before the change keep theirs"

        # a rebuild of id 1 deleted the rows from 2029-12-31 on
        golden_build.execute("delete from ema_multi_tf where ts >= '2030-01-01'")
        golden_build.execute(change + "('t', 'ema_multi_tf', false, 1, null, null, '2029-12-31')")
        golden_build.run("ema_rejects")
        assert verdicts() == {}, "a deleted row's verdict goes"
    finally:
        golden_build.execute("delete from ema_multi_tf where ts >= '2030-01-01'")
        golden_build.execute("delete from barsmith_changes where invocation_id = 't'")
        golden_build.run("ema_rejects", full_refresh=True)


def test_ema_rejects_keep_the_verdicts_of_series_a_filtered_run_did_not_rewrite(golden_build):
    """A --tfs filtered EMA run rebuilds the selected series of each id and records the id's range
    (every series of the id from an instant on may have changed); ema_rejects drops the id's
    verdicts from that instant and judges again the series it rewrote and those that held
    verdicts there, so the other series' verdicts survive (a chaos-suite finding)."""
    rejects = ("select source_table, id, tf, period, \"timestamp\", violation_type from ema_rejects "
               "order by 1, 2, 3, 4, 5")
    before = golden_build.query(rejects)
    tfs = {r[2] for r in before if r[0] == "ema_multi_tf"}
    assert "7D" in tfs and len(tfs) > 3, "the golden data has verdicts in several timeframes"
    golden_build.run("ema_multi_tf ema_rejects", vars={"timeframes": ["7D"]})
    assert golden_build.query("select count(*) from barsmith_changes where model = 'ema_multi_tf'") == [(0,)], \
        "ema_rejects took the filtered run's changes over"
    assert golden_build.query(rejects) == before


def _rule5_series() -> dict[int, list[float]]:
    """Series that the float pass of ema_rejects cannot judge (emas.md §7.1 rule 5): a flat
    series (std exactly 0), a large value with a tiny spread (the float sums of squares lose every
    digit of it), and values placed on mean +/- 3 std of their own window to 1e-12."""
    rng = np.random.default_rng(17)
    flat = [12345.678901234] * 120 + [12345.678901234, 12345.67890124, 12345.678901234]
    spread = [98765432.1 + (i % 3) * 1e-6 for i in range(120)] + [98765432.100003, 98765432.100001, 98765432.1]
    walk = list(50 + np.cumsum(rng.normal(0, 0.5, 110)))
    for k in range(12):
        window = [Decimal(format(v, ".15g")) for v in walk[-100:]]
        n = len(window)
        s1, s2 = sum(window), sum(v * v for v in window)
        mean, std = s1 / n, ((n * s2 - s1 * s1) / (n * (n - 1))).sqrt()
        walk.append(float(mean + (1 if k % 2 else -1) * 3 * std * Decimal(1 + (1 if k % 4 < 2 else -1) * 1e-12)))
    return {901: flat, 902: spread, 903: walk}


def _rule5_expected(values: list[float]) -> list[bool]:
    """Rule 5 in exact decimal arithmetic over PostgreSQL's numeric conversion of float8 (15
    significant digits): True where the row is outside mean +/- 3 std of the previous 100."""
    nums = [Decimal(format(v, ".15g")) for v in values]
    out = []
    for j, e in enumerate(nums):
        window = nums[max(0, j - 100):j]
        n = len(window)
        if n < 10:
            out.append(False)
            continue
        s1, s2 = sum(window), sum(v * v for v in window)
        q = n * s2 - s1 * s1
        mean, std = s1 / n, (Decimal(0) if q <= 0 else (q / (n * (n - 1))).sqrt())
        out.append(e < mean - 3 * std or e > mean + 3 * std)
    return out


def test_ema_rejects_rule5_is_exact_where_float_sums_cannot_decide(golden_build):
    """The whole-table pass of ema_rejects sums windows in float8 and re-reads exactly the rows its
    rounding bound cannot clear; an appended row is judged from the kept windows. On series made to
    defeat float arithmetic both give the exact verdict (Python decimal, 60 digits)."""
    getcontext().prec = 60
    series = _rule5_series()
    start = pd.Timestamp("2031-01-01 23:59:59.999", tz="UTC")
    rows = [(1, "7D", start + pd.Timedelta(days=i), period, v, 7, True)
            for period, values in series.items() for i, v in enumerate(values)]
    expected = {(period, start + pd.Timedelta(days=i))
                for period, values in series.items() for i, flag in enumerate(_rule5_expected(values)) if flag}
    assert len(expected) >= 4, "the series reach the bounds"
    verdicts = ("select period, \"timestamp\" from ema_rejects where source_table = 'ema_multi_tf' and id = 1 "
                "and period > 900 and violation_type = 'out_of_statistical_bounds'")
    insert = "insert into ema_multi_tf (id, tf, ts, period, ema, tf_days, roll) values (%s, %s, %s, %s, %s, %s, %s)"
    tail = 4
    try:
        with golden_build.connection.connect() as conn, conn.cursor() as cur:
            cur.executemany(insert, [r for r in rows if r[2] < start + pd.Timedelta(days=len(series[r[3]]) - tail)])
            conn.commit()
        golden_build.run("ema_rejects", full_refresh=True)
        with golden_build.connection.connect() as conn, conn.cursor() as cur:
            late = [r for r in rows if r[2] >= start + pd.Timedelta(days=len(series[r[3]]) - tail)]
            cur.executemany(insert, late)
            cur.executemany("insert into barsmith_changes (invocation_id, model, full_build, id, tf, period, from_ts) "
                            "values ('t', 'ema_multi_tf', false, 1, '7D', %s, %s)",
                            [(p, start + pd.Timedelta(days=len(v) - tail)) for p, v in series.items()])
            conn.commit()
        golden_build.run("ema_rejects")
        assert set(golden_build.query(verdicts)) == expected, "appended rows, judged from the kept windows"
        golden_build.run("ema_rejects", full_refresh=True)
        assert set(golden_build.query(verdicts)) == expected, "the whole-table pass"
    finally:
        golden_build.execute("delete from ema_multi_tf where id = 1 and period > 900")
        golden_build.execute("delete from barsmith_changes where invocation_id = 't'")
        golden_build.run("ema_rejects", full_refresh=True)


STATE_KINDS = {"id": "int", "tf": "str", "period": "int", "daily_min_seen": "ts", "daily_max_seen": "ts",
               "last_time_close": "ts", "last_canonical_ts": "ts", "last_bar_seq": "int"}
STATE_SOURCES = {
    "ema_multi_tf": ("price_bars_multi_tf", "roll"),
    "ema_multi_tf_v2": ("price_bars_1d", "roll"),
    "ema_multi_tf_cal_us": ("price_bars_multi_tf_cal_us", "roll"),
    "ema_multi_tf_cal_iso": ("price_bars_multi_tf_cal_iso", "roll"),
    "ema_multi_tf_cal_anchor_us": ("price_bars_multi_tf_cal_anchor_us", "roll_bar"),
    "ema_multi_tf_cal_anchor_iso": ("price_bars_multi_tf_cal_anchor_iso", "roll_bar"),
}


@pytest.mark.parametrize("table", list(STATE_SOURCES))
def test_state_views(golden_build, golden_dir, table):
    """<table>_state (emas.md §6.1, OP-15: a view over the tables): the §6.1 values recomputed here
    from the EMA and bar tables, and the reference's state rows where it wrote any (its cal
    refresher never did, OP-5)."""
    bars_table, flag = STATE_SOURCES[table]
    ours = golden_build.frame(f"{table}_state", ["id", "tf", "period"])
    assert len(ours) > 0 and ours["updated_at"].notna().all()

    emas = pd.DataFrame(golden_build.query(f"select id, tf, period, ts from {table} where not {flag}"),
                        columns=["id", "tf", "period", "ts"])
    canonical = emas.groupby(["id", "tf", "period"])["ts"].max().rename("last_canonical_ts")
    bars = pd.DataFrame(golden_build.query(f"select id, tf, time_open, time_close, bar_seq, is_partial_end from {bars_table}"),
                        columns=["id", "tf", "time_open", "time_close", "bar_seq", "is_partial_end"])
    per_pair = bars.groupby(["id", "tf"]).agg(daily_min_seen=("time_open", "min"), daily_max_seen=("time_close", "max"))
    per_pair["last_bar_seq"] = bars[~bars["is_partial_end"].astype(bool)].groupby(["id", "tf"])["bar_seq"].max()
    expected = canonical.reset_index().merge(per_pair.reset_index(), on=["id", "tf"], how="inner")
    got = ours.merge(expected, on=["id", "tf", "period"], how="outer", suffixes=("", "_x"), indicator=True)
    assert (got["_merge"] == "both").all(), got[got["_merge"] != "both"].head()
    for column in ("daily_min_seen", "daily_max_seen", "last_canonical_ts"):
        assert (got[column] == got[f"{column}_x"]).all(), column
    assert (got["last_time_close"] == got["last_canonical_ts"]).all()
    assert (got["last_bar_seq"].astype(float).fillna(-1) == got["last_bar_seq_x"].astype(float).fillna(-1)).all()
    if table == "ema_multi_tf":
        assert "1D" not in set(ours["tf"]), "§6.2: the 1D series have no bars in price_bars_multi_tf"
    if table == "ema_multi_tf_v2":
        assert set(ours["tf"]) == {"1D"}, "§6.2: v2 has state only where price_bars_1d has bars"

    golden = read_golden(golden_dir / f"cmc_{table}_state.csv.gz")
    if table in ("ema_multi_tf_cal_us", "ema_multi_tf_cal_iso"):
        assert golden.empty, "OP-5: the reference's cal state statement always failed"
        return
    assert len(golden) > 0
    # OP-11 / OP-19: a series with fewer closes than its period never seeds and has no rows, so no
    # state; the reference wrote rows (NULL emas) for them and so a state row
    unseeded = golden["last_bar_seq"].astype(int) < golden["period"].astype(int)
    if table.startswith("ema_multi_tf_cal_anchor"):
        assert unseeded.any()
    dropped = golden[unseeded]
    golden = golden[~unseeded]
    keys = set(zip(golden["id"].astype(int), golden["tf"], golden["period"].astype(int)))
    ours_keys = set(zip(ours["id"].astype(int), ours["tf"], ours["period"].astype(int)))
    mask = [(int(i), t, int(p)) in keys for i, t, p in zip(ours["id"], ours["tf"], ours["period"])]
    assert compare_frames(ours[mask].drop(columns=["updated_at"]), golden, ["id", "tf", "period"], STATE_KINDS) == {}
    assert sum(mask) == len(golden)
    assert not (set(zip(dropped["id"].astype(int), dropped["tf"], dropped["period"].astype(int))) & ours_keys)


@pytest.mark.parametrize("table", ["ema_multi_tf", "ema_multi_tf_v2", "ema_multi_tf_cal_anchor_iso"])
def test_ema_rejects_are_point_in_time_verdicts(golden_build, table):
    """emas.md §7.1 with OP-14 as amended: rule 4 judges a row against the validated closes of the
    90 days up to its own ts, rule 5 against mean +/- 3 sample std of the previous 100 values of its
    series (at least 10); the first failing check wins. Recomputed here with pandas for every row
    of the table; rows within 1e-9 of a bound are left out (float vs exact arithmetic)."""
    emas = pd.DataFrame(golden_build.query(f"select id, tf, period, ts, ema from {table} order by id, tf, period, ts"),
                        columns=["id", "tf", "period", "ts", "ema"])
    closes = pd.DataFrame(golden_build.query("select id, time_close, close from price_bars_1d order by id, time_close"),
                          columns=["id", "ts", "close"])
    # a window of 90 days up to and including ts: [ts - 90 days, ts]
    exact = []
    for asset, g in closes.groupby("id"):
        t = g["ts"].to_numpy()
        c = g["close"].to_numpy()
        for i in range(len(t)):
            lo = np.searchsorted(t, t[i] - np.timedelta64(90, "D"), side="left")
            exact.append((asset, t[i], c[lo:i + 1].min(), c[lo:i + 1].max()))
    bounds = pd.DataFrame(exact, columns=["id", "ts", "pmin", "pmax"])
    df = emas.merge(bounds, on=["id", "ts"], how="left")
    grouped = df.groupby(["id", "tf", "period"])["ema"]
    shifted = grouped.shift(1)
    df["prev"] = shifted
    roll = df.groupby(["id", "tf", "period"])["prev"].rolling(100, min_periods=1)
    df["n"] = roll.count().reset_index(level=[0, 1, 2], drop=True)
    df["mean"] = roll.mean().reset_index(level=[0, 1, 2], drop=True)
    df["std"] = roll.std(ddof=1).reset_index(level=[0, 1, 2], drop=True)
    lower, upper = df["mean"] - 3 * df["std"], df["mean"] + 3 * df["std"]
    rule4 = (df["ema"] < 0.5 * df["pmin"]) | (df["ema"] > 2.0 * df["pmax"])
    rule5 = (df["n"] >= 10) & ((df["ema"] < lower) | (df["ema"] > upper))
    df["expected"] = np.where(df["ema"] < 0, "negative", np.where(rule4, "out_of_price_bounds",
                              np.where(rule5, "out_of_statistical_bounds", "")))
    near = ((df["ema"] - lower).abs() <= 1e-9 * df["ema"].abs()) | ((df["ema"] - upper).abs() <= 1e-9 * df["ema"].abs())
    got = dict(((i, t, p, ts), v) for i, t, p, ts, v in golden_build.query(
        "select id, tf, period, \"timestamp\", violation_type from ema_rejects where source_table = %s", [table]))
    mismatches = []
    for row in df[~near].itertuples(index=False):
        verdict = got.get((row.id, row.tf, row.period, row.ts), "")
        if verdict != row.expected:
            mismatches.append((row.id, row.tf, row.period, row.ts, row.ema, row.expected, verdict))
    assert not mismatches, mismatches[:5]
    assert (df["expected"] == "out_of_statistical_bounds").sum() > 0, "rule 5 fires on this data"
    assert len(df) > 40000


def test_a_correction_rewrites_the_emas_from_the_corrected_day_only(project, golden_dir):
    """A corrected close (not an inserted or deleted day) leaves every EMA row before it alone: the
    series resume from their stored rows before that day, and the tables still equal a full
    refresh."""
    tables = ["ema_multi_tf", "ema_multi_tf_v2", "ema_multi_tf_cal_us", "ema_multi_tf_cal_anchor_iso"]
    select = " ".join("+" + t for t in tables)
    project.load(golden_dir / "price_histories.csv")
    project.dbt(["seed"])
    project.run(select)
    day = project.query("select max(\"timestamp\") - interval '40 days' from price_histories where id = 52")[0][0]
    project.execute("update price_histories set close = close * 1.01, load_ts = now() where id = 52 and "
                    "\"timestamp\" = (select max(\"timestamp\") from price_histories where id = 52 and \"timestamp\" <= %s)",
                    [day])
    fixed = project.query("select max(\"timestamp\") from price_histories where id = 52 and \"timestamp\" <= %s", [day])[0][0]
    project.run(select)
    for table in tables:
        first = project.query("select min(from_ts), count(distinct id) from barsmith_changes where model = %s "
                              "and not full_build", [table])
        assert first[0][0] is not None and first[0][0] >= fixed - pd.Timedelta(days=1) and first[0][1] == 1, \
            (table, first, fixed)
    assert_equals_full_refresh(project, lambda: project.run(select, full_refresh=True), tables)
