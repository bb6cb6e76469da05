"""Data tests scoped to what a run wrote (issue 20): under `dbt build` (or var test_scope: latest)
the invariant tests of a model check the rows its latest run recorded in barsmith_changes, with
the context an invariant needs; `dbt test` (the full audit) checks whole tables."""

from __future__ import annotations

import pytest

from .helpers import DbtProject

SELECT = "price_bars_1d price_bars_multi_tf ema_multi_tf_v2"
VARS = {"timeframes": ["1D", "7D", "10D"], "ema_periods": [5]}


def failing_tests(inv) -> dict[str, int]:
    return {n.name: n.failures for n in inv.nodes if n.resource_type == "test" and n.status == "fail"}


@pytest.fixture()
def appended(project: DbtProject, golden_dir, tmp_path):
    """A full build of part 1, then an incremental run of the appended part 2 (models only)."""
    project.load(golden_dir / "incremental_part1.csv")
    project.dbt(["seed"])
    project.run("+" + SELECT.replace(" ", " +"), vars=VARS)
    project.load(golden_dir / "incremental_part2.csv")
    project.run("+" + SELECT.replace(" ", " +"), vars=VARS)
    return project


def test_a_corrupted_row_the_run_wrote_is_caught_by_the_runs_tests(appended):
    project = appended
    # the newest 7D snapshot of id 1 (written by the incremental run) and an old one (not written)
    new_row = project.query("select max(time_close) from price_bars_multi_tf where id = 1 and tf = '7D'")[0][0]
    old_row = project.query("select min(time_close) from price_bars_multi_tf where id = 52 and tf = '7D'")[0][0]
    written = project.query("select id, tf, from_ts from barsmith_changes where model = 'price_bars_multi_tf'"
                            " and id = 1 and tf = '7D'")
    assert written and written[0][2] <= new_row and old_row < written[0][2], "the run wrote the new row only"
    project.execute("update price_bars_multi_tf set high = low - 1 where id = 1 and tf = '7D' and time_close = %s",
                    [new_row])
    project.execute("update price_bars_multi_tf set high = low - 1 where id = 52 and tf = '7D' and time_close = %s",
                    [old_row])

    scoped = project.dbt(["test"], vars={**VARS, "test_scope": "latest"}, expect_success=False,
                         extra=["--select", "price_bars_multi_tf"])
    fails = failing_tests(scoped)
    bundle = next((v for k, v in fails.items() if k.startswith("snapshot_invariants_price_bars_multi_tf_")), None)
    # one row breaks price_relations; the old row is outside the run's scope
    assert bundle == 1, fails

    audit = project.dbt(["test"], vars=VARS, expect_success=False, extra=["--select", "price_bars_multi_tf"])
    fails = failing_tests(audit)
    bundle = next(v for k, v in fails.items() if k.startswith("snapshot_invariants_price_bars_multi_tf_"))
    assert bundle == 2, "the full audit finds the old corrupted row too"


def test_a_build_tests_only_the_rows_it_wrote(appended):
    """The same corruption of an old row: a build that writes nothing near it passes, the full
    audit fails; after the run's own rows change, the build's tests see those."""
    project = appended
    old_row = project.query("select min(time_close) from price_bars_multi_tf where id = 52 and tf = '7D'")[0][0]
    project.execute("update price_bars_multi_tf set open = open + 1 where id = 52 and tf = '7D' and time_close = %s",
                    [old_row])
    build = project.build("price_bars_multi_tf", vars=VARS)
    assert build.success and not failing_tests(build)
    audit = project.dbt(["test"], vars=VARS, expect_success=False, extra=["--select", "price_bars_multi_tf"])
    assert any(k.startswith("snapshot_invariants_price_bars_multi_tf_") for k in failing_tests(audit))


def test_ema_and_1d_bundles_catch_their_rows(appended):
    project = appended
    newest = project.query("select max(ts) from ema_multi_tf_v2 where id = 1 and tf = '7D' and period = 5")[0][0]
    project.execute("update ema_multi_tf_v2 set d1_roll = d1_roll + 1 where id = 1 and tf = '7D' and period = 5"
                    " and ts = %s", [newest])
    project.execute("update price_bars_1d set high = low - 1 where id = 825 and \"timestamp\" = "
                    "(select max(\"timestamp\") from price_bars_1d where id = 825)")
    scoped = project.dbt(["test"], vars={**VARS, "test_scope": "latest"}, expect_success=False,
                         extra=["--select", "ema_multi_tf_v2 price_bars_1d"])
    fails = failing_tests(scoped)
    assert any(k.startswith("ema_invariants_ema_multi_tf_v2") for k in fails), fails
    assert any(k.startswith("bars_1d_invariants_price_bars_1d") for k in fails), fails


def test_features_tests_see_the_written_rows_with_the_warm_up_window(project: DbtProject, golden_dir):
    """features_warm_up reads the rows a run wrote and the 34 rows before them: a NULL in a written
    row after its warm-up is caught, and so is a value in a written row before it; rows outside the
    run's scope are left to the full audit."""
    project.load(golden_dir / "incremental_part1.csv")
    project.dbt(["seed"])
    project.run("+features_1d")
    project.load(golden_dir / "incremental_part2.csv")
    project.run("+features_1d")
    newest = project.query("select max(time_close) from features_1d where id = 1")[0][0]
    (first_written,) = project.query("select min(from_ts) from barsmith_changes where model = 'features_1d' "
                                     "and id = 1")[0]
    positions = project.query("select count(*) filter (where time_close < %s) from features_1d where id = 1",
                              [first_written])[0][0]
    assert positions > 34, "the run wrote rows well past the warm-up"
    project.execute("update features_1d set atr_14 = null, rsi_14 = 101 where id = 1 and time_close = %s",
                    [newest])
    project.execute("update features_1d set atr_14 = 1 where id = 52 and time_close = "
                    "(select time_close from features_1d where id = 52 order by time_close offset 2 limit 1)")
    scoped = project.dbt(["test"], vars={"test_scope": "latest"}, expect_success=False,
                         extra=["--select", "features_1d"])
    fails = failing_tests(scoped)
    assert fails.get("features_warm_up_features_1d_") == 1, fails
    assert fails.get("features_value_ranges_features_1d_") == 1, fails
    audit = project.dbt(["test"], expect_success=False, extra=["--select", "features_1d"])
    assert failing_tests(audit).get("features_warm_up_features_1d_") == 2, "the old row too"
