"""Features models (models/features, macros/features/features.sql): every indicator against
TA-Lib (or, where TA-Lib has none, a pandas reference written from the formulas) on the golden
data and on generated histories with gaps, for the 1D model and timeframes of every family;
resuming from stored state, readiness, data tests, annualization and the driver stage."""

from __future__ import annotations

from pathlib import Path

import math
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from driver.cli import app

from .features_reference import bars_per_year, compare_series, series_features
from .helpers import DbtProject, drop_database, new_database, table_rows
from .histories import EPOCH, History, day_row, write_rows
from .test_properties import OLD

# features model -> its input bars
FEATURES = {
    "features_1d": "price_bars_1d",
    "features_multi_tf": "price_bars_multi_tf",
    "features_multi_tf_cal_us": "price_bars_multi_tf_cal_us",
    "features_multi_tf_cal_iso": "price_bars_multi_tf_cal_iso",
    "features_multi_tf_cal_anchor_us": "price_bars_multi_tf_cal_anchor_us",
    "features_multi_tf_cal_anchor_iso": "price_bars_multi_tf_cal_anchor_iso",
}
SELECT = " ".join(f"+{m}" for m in FEATURES)
# per family a short timeframe (its series pass the 34-bar MACD warm-up) and a long one
VARS = {"timeframes": ["1D", "2D", "7D", "1W_CAL_US", "1W_CAL_ISO", "1M_CAL", "1W_CAL_ANCHOR_US",
                       "1W_CAL_ANCHOR_ISO", "1M_CAL_ANCHOR"]}
KEYS = ["id", "tf", "time_close"]


def reference_check(project: DbtProject, model: str) -> tuple[list[str], int, int]:
    """Compares a features table with the reference computed from its input's completed bars:
    (problems, rows compared, series past the MACD warm-up)."""
    bars = project.frame(
        f"(select b.id, b.tf, b.time_close, b.bar_seq, b.open, b.high, b.low, b.close, d.base_unit, d.tf_qty "
        f"from {FEATURES[model]} b join dim_timeframe d on d.tf = b.tf where not b.is_partial_end "
        f"and b.tf in (select distinct tf from {model})) x", KEYS)
    ours = project.frame(model, KEYS)
    problems = []
    if len(ours) != len(bars) or not (ours[KEYS].to_numpy() == bars[KEYS].to_numpy()).all():
        problems.append(f"{model}: rows are not one per completed bar ({len(ours)} rows, {len(bars)} bars)")
        return problems, 0, 0
    seeded = 0
    for (id_, tf), g in bars.groupby(["id", "tf"], sort=False):
        mine = ours.loc[g.index]
        expected = series_features(g, bars_per_year(g["base_unit"].iloc[0], int(g["tf_qty"].iloc[0])))
        problems += compare_series(mine, expected, f"{model} {id_}/{tf}")
        for col in ("bar_seq", "open", "high", "low", "close"):
            if not (mine[col].to_numpy() == g[col].to_numpy()).all():
                problems.append(f"{model} {id_}/{tf}: {col} is not the bar's")
        seeded += int(mine["macd_signal"].notna().any())
    return problems, len(ours), seeded


def built(server, tmp_path_factory, name, load):
    project = DbtProject(new_database(server, name), tmp_path_factory.mktemp(name))
    load(project)
    project.dbt(["seed"])
    project.run(SELECT, vars=VARS)
    return project


@pytest.fixture(scope="module")
def golden_features(server, golden_dir, tmp_path_factory):
    project = built(server, tmp_path_factory, "barsmith_feat",
                    lambda p: p.load(golden_dir / "price_histories.csv"))
    yield project
    drop_database(server, project.connection)


def gap_history() -> History:
    """Three ids over about 14 months with missing days, a 9-day and a 30-day gap."""
    days = {}
    for asset in (1, 2, 3):
        start = EPOCH + timedelta(days=asset * 5)
        for n in range(430):
            if n % (11 + asset) == 7 or 100 <= n < 109 or (asset == 3 and 200 <= n < 230):
                continue
            days[(asset, start + timedelta(days=n))] = 0
    return History(days)


@pytest.fixture(scope="module")
def gap_features(server, tmp_path_factory):
    def load(project):
        with project.connection.connect() as conn:
            write_rows(conn, gap_history().rows(), load_ts=OLD)
    project = built(server, tmp_path_factory, "barsmith_feat_gaps", load)
    yield project
    drop_database(server, project.connection)


@pytest.mark.parametrize("model", FEATURES)
def test_features_equal_talib_and_the_formulas_on_the_golden_data(golden_features, model):
    problems, n_rows, seeded = reference_check(golden_features, model)
    assert problems == [], "\n".join(problems[:20])
    assert n_rows > 0 and seeded > 0, f"{model}: nothing past the warm-up to compare"


@pytest.mark.parametrize("model", FEATURES)
def test_features_equal_talib_and_the_formulas_on_histories_with_gaps(gap_features, model):
    problems, n_rows, seeded = reference_check(gap_features, model)
    assert problems == [], "\n".join(problems[:20])
    assert n_rows > 0 and seeded > 0, f"{model}: nothing past the warm-up to compare"


def test_every_family_is_covered_with_a_seeded_timeframe(golden_features):
    seeded = {model: {tf for (tf,) in golden_features.query(f"select distinct tf from {model} "
                                                            f"where macd_signal is not null")}
              for model in FEATURES}
    assert seeded["features_1d"] == {"1D"}
    assert {"2D", "7D"} <= seeded["features_multi_tf"]
    assert "1W_CAL_US" in seeded["features_multi_tf_cal_us"]
    assert "1W_CAL_ISO" in seeded["features_multi_tf_cal_iso"]
    assert "1W_CAL_ANCHOR_US" in seeded["features_multi_tf_cal_anchor_us"]
    assert "1W_CAL_ANCHOR_ISO" in seeded["features_multi_tf_cal_anchor_iso"]


def test_data_tests_pass_on_the_golden_data(golden_features):
    inv = golden_features.dbt(["test"], VARS, extra=["--select", "tag:features"])
    names = {n.name for n in inv.nodes}
    assert any(n.startswith("features_warm_up_") for n in names)
    assert any(n.startswith("features_value_ranges_") for n in names)


def test_annualization_convention(golden_features):
    per_year = dict(golden_features.query(
        "select tf, min(bars_per_year) from (select tf, bars_per_year from features_1d union all "
        "select tf, bars_per_year from features_multi_tf union all select tf, bars_per_year "
        "from features_multi_tf_cal_us) x group by tf"))
    assert per_year["1D"] == 365.0 and per_year["7D"] == 365.0 / 7 and per_year["2D"] == 182.5
    assert per_year["1W_CAL_US"] == 365.25 / 7 and per_year["1M_CAL"] == 12.0
    (vol, ann), = golden_features.query(
        "select realized_vol_20, realized_vol_20_ann from features_1d where realized_vol_20 is not null limit 1")
    assert math.isclose(ann, vol * math.sqrt(365), rel_tol=1e-15)


# ---------------------------------------------------------------- incremental behaviour


def short_history(length: int = 200) -> History:
    return History({(asset, EPOCH + timedelta(days=n)): 0 for asset in (1, 2) for n in range(length)})


def append_days(project: DbtProject, history: History, n: int) -> None:
    new = []
    for asset in (1, 2):
        last = max(d for (i, d) in history.days if i == asset)
        for k in range(1, n + 1):
            history.days[(asset, last + timedelta(days=k))] = 0
            new.append(day_row(asset, last + timedelta(days=k)))
    with project.connection.connect() as conn:
        write_rows(conn, new, load_ts=OLD)


def fingerprint_max_ts(project, model):
    return project.query("select max(max_ts) from barsmith_input_fingerprints where model = %s", (model,))[0][0]


def test_a_one_day_run_resumes_the_recursions_from_the_stored_row(project):
    """A one-day run continues ATR, RSI and the MACD EMAs from the last stored row's values (the
    stored state is tampered with here, so a recomputation from the first bar would not match),
    writes only the new row per id, and a full refresh recomputes everything."""
    history = short_history()
    with project.connection.connect() as conn:
        write_rows(conn, history.rows(), load_ts=OLD)
    project.dbt(["seed"])
    project.run("+features_1d")
    (last_ts, atr, gain, slow, signal), = project.query(
        "select time_close, atr_14, rsi_avg_gain_14, macd_ema_slow_26, macd_signal from features_1d "
        "where id = 1 order by time_close desc limit 1")
    project.execute("update features_1d set atr_14 = atr_14 * 2, rsi_avg_gain_14 = rsi_avg_gain_14 * 2, "
                    "macd_ema_slow_26 = macd_ema_slow_26 * 2 where id = 1 and time_close = %s", (last_ts,))
    append_days(project, history, 1)
    project.run("+features_1d")
    (written,), = project.query("select rows_written from barsmith_run_log where model = 'features_1d' "
                                "order by recorded_at desc limit 1")
    assert written == 2  # one new bar per id
    (tr, atr_new, close, prev_close, gain_new, slow_new), = project.query(
        "select f.true_range, f.atr_14, f.close, p.close, f.rsi_avg_gain_14, f.macd_ema_slow_26 "
        "from features_1d f join features_1d p on p.id = f.id and p.time_close = %s "
        "where f.id = 1 and f.time_close > %s", (last_ts, last_ts))
    a14, a26 = 1.0 / 14, 2.0 / 27
    assert atr_new == a14 * tr + (1 - a14) * (2 * atr)
    assert gain_new == a14 * max(close - prev_close, 0.0) + (1 - a14) * (2 * gain)
    assert slow_new == a26 * close + (1 - a26) * (2 * slow)
    project.run("features_1d", full_refresh=True)
    (atr_full,), = project.query("select atr_14 from features_1d where id = 1 and time_close > %s", (last_ts,))
    assert atr_full == a14 * tr + (1 - a14) * atr != atr_new


def test_a_correction_recomputes_from_the_affected_bar_on(project):
    history = short_history(120)
    with project.connection.connect() as conn:
        write_rows(conn, history.rows(), load_ts=OLD)
    project.dbt(["seed"])
    vars_ = {"timeframes": ["1D", "1W_CAL_ISO"]}
    project.run("+features_1d +features_multi_tf_cal_iso", vars=vars_)
    before = {t: table_rows(project, t, KEYS) for t in ("features_1d", "features_multi_tf_cal_iso")}
    day = EPOCH + timedelta(days=81)  # a Sunday: the close of an ISO week changes
    assert day.isoweekday() == 7
    with project.connection.connect() as conn:
        write_rows(conn, [day_row(1, day, version=1)])
    project.run("+features_1d +features_multi_tf_cal_iso", vars=vars_)
    after = {t: table_rows(project, t, KEYS) for t in before}
    changed = {t: [a for a, b in zip(after[t], before[t]) if a != b] for t in before}
    # only id 1 and only bars closing on or after the corrected day changed (all of them: the recursions)
    for t, rows in changed.items():
        assert rows, t
        assert all(r[0] == 1 and r[2].date() >= day for r in rows), t
    assert len(changed["features_1d"]) == 120 - 81
    project.run("features_1d features_multi_tf_cal_iso", full_refresh=True, vars=vars_)
    assert {t: table_rows(project, t, KEYS) for t in before} == after


def test_a_family_model_waits_for_its_bars_and_their_daily_preparation(project):
    """After new 1D bars, a features family run alone (its bars, or only the daily preparation,
    not yet run) leaves the id as it is and records nothing; once the bars caught up it computes
    the new bars."""
    history = short_history(120)
    with project.connection.connect() as conn:
        write_rows(conn, history.rows(), load_ts=OLD)
    project.dbt(["seed"])
    vars_ = {"timeframes": ["2D"]}
    project.run("+features_multi_tf", vars=vars_)
    before = table_rows(project, "features_multi_tf", KEYS)
    seen = fingerprint_max_ts(project, "features_multi_tf")
    append_days(project, history, 4)
    project.run("price_bars_1d", vars=vars_)
    project.run("features_multi_tf", vars=vars_)  # int_bars_daily_prep is behind: wait
    assert table_rows(project, "features_multi_tf", KEYS) == before
    assert fingerprint_max_ts(project, "features_multi_tf") == seen
    project.run("int_bars_daily_prep", vars=vars_)
    project.run("features_multi_tf", vars=vars_)  # price_bars_multi_tf is behind: wait
    assert table_rows(project, "features_multi_tf", KEYS) == before
    project.run("price_bars_multi_tf features_multi_tf", vars=vars_)
    incremental = table_rows(project, "features_multi_tf", KEYS)
    assert len(incremental) == len(before) + 2 * 2  # two new 2D bars per id
    assert fingerprint_max_ts(project, "features_multi_tf") > seen
    project.run("features_multi_tf", full_refresh=True, vars=vars_)
    assert table_rows(project, "features_multi_tf", KEYS) == incremental


def test_a_changed_days_per_year_rebuilds_the_annualized_values(project):
    with project.connection.connect() as conn:
        write_rows(conn, short_history(60).rows(), load_ts=OLD)
    project.dbt(["seed"])
    project.run("+features_1d")
    project.run("features_1d", vars={"features_days_per_year": 252})
    rows = project.query("select bars_per_year, realized_vol_20, realized_vol_20_ann from features_1d "
                         "where realized_vol_20 is not null")
    assert rows and all(b == 252.0 and math.isclose(a, v * math.sqrt(252), rel_tol=1e-15) for b, v, a in rows)
    inv = project.dbt(["run"], {"features_days_per_year": 0}, expect_success=False,
                      extra=["--select", "features_1d"])
    assert not inv.success
    messages = " ".join([inv.error or ""] + [n.message or "" for n in inv.failed])
    assert "features_days_per_year must be a positive number" in messages


def test_data_tests_catch_made_up_values_missing_values_and_ranges(project):
    with project.connection.connect() as conn:
        write_rows(conn, short_history(60).rows(), load_ts=OLD)
    project.dbt(["seed"])
    project.build("+features_1d")  # every data test passes on the model as built

    def failing(statement):
        project.execute(statement)
        inv = project.dbt(["test"], None, expect_success=False, extra=["--select", "features_1d"])
        return {n.name.split("_features_1d")[0] for n in inv.failed}

    # a value before the warm-up (bar 3 of id 1) is made up
    third = "(select time_close from features_1d where id = 1 order by time_close offset 3 limit 1)"
    assert failing(f"update features_1d set atr_14 = 1 where id = 1 and time_close = {third}") == {"features_warm_up"}
    # a NULL after it is a missing value
    assert failing(f"update features_1d set atr_14 = null where id = 1 and time_close = {third}; "
                   "update features_1d set rsi_14 = null where id = 2 and rsi_avg_gain_14 is not null "
                   "and time_close = (select max(time_close) from features_1d)") == {"features_warm_up"}
    project.run("features_1d", full_refresh=True)
    assert failing("update features_1d set rsi_14 = 100.5 where id = 1 and rsi_14 is not null") == {
        "features_value_ranges"}
    project.run("features_1d", full_refresh=True)
    assert failing("update features_1d set bb_lower_20 = bb_upper_20 + 1 where id = 2 and bb_lower_20 is not null"
                   ) == {"features_value_ranges"}


# ---------------------------------------------------------------- driver


runner = CliRunner()


def test_driver_features_stage_is_part_of_all_and_gated(monkeypatch, tmp_path):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://u@127.0.0.1:1/x")
    res = runner.invoke(app, ["refresh", "--all", "--dry-run", "--tfs", "7D"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if "dbt" in line and " build " in line]
    assert [line.split("--selector ")[1].split()[0] for line in lines] == ["daily_refresh"]
    with open(Path(__file__).resolve().parents[2] / "selectors.yml") as fh:
        assert "value: features" in fh.read(), "the daily refresh selects the features"
    res = runner.invoke(app, ["refresh", "--features", "--dry-run", "--ids", "1"])
    assert res.exit_code == 0 and "--selector features" in res.output and "--selector bars" not in res.output
    res = runner.invoke(app, ["refresh", "--emas", "--features"])
    assert res.exit_code == 2 and "exactly one of --all, --bars, --emas, --features" in res.output


def test_driver_refresh_features_after_the_bars(database, tmp_path, monkeypatch, golden_dir):
    """The golden data is years old: every id is stale. The first features build is whole; after a
    change of the stale ids the gate leaves them waiting; --skip-stale-check builds them (only the
    --tfs asked for)."""
    monkeypatch.setenv("BARSMITH_DB_URL", database.url)
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("BARSMITH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    assert runner.invoke(app, ["load", str(golden_dir / "price_histories.csv")]).exit_code == 0
    res = runner.invoke(app, ["refresh", "--bars", "--tfs", "1D,7D,1W_CAL_ISO"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["refresh", "--features", "--tfs", "1D,7D,1W_CAL_ISO"])
    assert res.exit_code == 0, res.output
    assert "features_multi_tf_cal_iso" in res.output
    with database.connect() as conn:
        conn.execute('update price_histories set close = close * 1.01, load_ts = now() where "timestamp" = '
                     '(select max("timestamp") - interval \'30 days\' from price_histories where id = 1)')
        conn.commit()
    assert runner.invoke(app, ["refresh", "--bars", "--tfs", "1D,7D,1W_CAL_ISO"]).exit_code == 0
    res = runner.invoke(app, ["refresh", "--features", "--tfs", "1D,7D,1W_CAL_ISO"])
    assert res.exit_code == 0, res.output
    assert "skipped for EMAs and features: id 1 (stale" in res.output and "--skip-stale-check" in res.output
    res = runner.invoke(app, ["refresh", "--features", "--skip-stale-check", "--tfs", "1D,7D,1W_CAL_ISO"])
    assert res.exit_code == 0, res.output
    assert "skipped for EMAs and features" not in res.output
    with database.connect() as conn:
        tfs = {tf for (tf,) in conn.execute(
            "select distinct tf from features_1d union select distinct tf from features_multi_tf "
            "union select distinct tf from features_multi_tf_cal_iso union select distinct tf "
            "from features_multi_tf_cal_us").fetchall()}
    assert tfs == {"1D", "7D", "1W_CAL_ISO"}
