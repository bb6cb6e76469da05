"""The union views (models/views): ema_multi_tf_u and price_bars_multi_tf_u hold exactly the rows of
their parts, their key includes alignment_source (emas.md OP-17), and their dbt tests can fail."""

from __future__ import annotations

import pytest

from .helpers import DbtProject, drop_database, new_database

EMA_PARTS = {
    "multi_tf": "ema_multi_tf",
    "multi_tf_v2": "ema_multi_tf_v2",
    "multi_tf_cal_us": "ema_multi_tf_cal_us",
    "multi_tf_cal_iso": "ema_multi_tf_cal_iso",
    "multi_tf_cal_anchor_us": "ema_multi_tf_cal_anchor_us",
    "multi_tf_cal_anchor_iso": "ema_multi_tf_cal_anchor_iso",
}
BAR_PARTS = {
    "multi_tf": "price_bars_multi_tf",
    "multi_tf_cal_us": "price_bars_multi_tf_cal_us",
    "multi_tf_cal_iso": "price_bars_multi_tf_cal_iso",
    "multi_tf_cal_anchor_us": "price_bars_multi_tf_cal_anchor_us",
    "multi_tf_cal_anchor_iso": "price_bars_multi_tf_cal_anchor_iso",
}


@pytest.fixture(scope="module")
def built(server, golden_dir, tmp_path_factory):
    """The golden input with both views and everything they read (their dbt tests run in the build)."""
    conn_info = new_database(server, "barsmith_views")
    project = DbtProject(conn_info, tmp_path_factory.mktemp("views"))
    project.load(golden_dir / "price_histories.csv")
    project.build(select="+ema_multi_tf_u +price_bars_multi_tf_u")
    yield project
    drop_database(server, conn_info)


@pytest.mark.parametrize("view, parts", [("ema_multi_tf_u", EMA_PARTS), ("price_bars_multi_tf_u", BAR_PARTS)])
def test_union_row_count_is_the_sum_of_the_parts(built, view, parts):
    per_source = dict(built.query(f"select alignment_source, count(*) from {view} group by 1"))
    expected = {source: built.query(f"select count(*) from {part}")[0][0] for source, part in parts.items()}
    assert per_source == expected
    assert all(n > 0 for n in expected.values()), "every family has rows on the golden data"
    assert built.query(f"select count(*) from {view}")[0][0] == sum(expected.values())


@pytest.mark.parametrize("view, key", [("ema_multi_tf_u", "id, tf, period, ts"),
                                       ("price_bars_multi_tf_u", "id, tf, time_close")])
def test_union_key_with_alignment_source_is_unique(built, view, key):
    dupes = built.query(f"select alignment_source, {key}, count(*) from {view} "
                        f"group by alignment_source, {key} having count(*) > 1")
    assert dupes == []


def test_multi_tf_and_v2_share_keys_that_alignment_source_keeps_apart(built):
    """OP-17: without alignment_source the reference's key (id, ts, tf, period) collided."""
    shared = built.query("select count(*) from (select id, tf, period, ts from ema_multi_tf_u "
                         "where alignment_source in ('multi_tf', 'multi_tf_v2') "
                         "group by id, tf, period, ts having count(*) > 1) as d")[0][0]
    assert shared > 0
    months = built.query("select count(*) from (select id, tf, time_close from price_bars_multi_tf_u "
                         "where tf = '1M_CAL' group by 1, 2, 3 having count(*) > 1) as d")[0][0]
    assert months > 0, "1M_CAL bars of cal_us and cal_iso share (id, tf, time_close)"


def test_union_rows_equal_their_part_rows(built):
    """Each branch returns its part's values unchanged (dual columns NULL for single-EMA families)."""
    diff = built.query(
        "(select id, tf, period, ts, ema, ema_bar, roll_bar from ema_multi_tf_u where alignment_source = "
        "'multi_tf_cal_iso' except all select id, tf, period, ts, ema, ema_bar, roll_bar from ema_multi_tf_cal_iso) "
        "union all (select id, tf, period, ts, ema, ema_bar, roll_bar from ema_multi_tf_cal_iso except all "
        "select id, tf, period, ts, ema, ema_bar, roll_bar from ema_multi_tf_u where alignment_source = "
        "'multi_tf_cal_iso')")
    assert diff == []
    assert built.query("select count(*) from ema_multi_tf_u where alignment_source in ('multi_tf', 'multi_tf_v2') "
                       "and (ema_bar is not null or roll_bar is not null)")[0][0] == 0
    diff = built.query(
        "select id, tf, time_close, open, high, low, close, volume, bar_anchor_offset from price_bars_multi_tf_u "
        "where alignment_source = 'multi_tf_cal_anchor_us' except all select id, tf, time_close, open, high, low, "
        "close, volume, bar_anchor_offset from price_bars_multi_tf_cal_anchor_us")
    assert diff == []


def test_view_tests_fail_on_a_wrong_union_and_on_duplicate_keys(built):
    """The dbt tests of the views are not vacuous: a view that loses a family fails the row-count
    test; a part that loses its unique index and gains a duplicate fails the key test. (Runs last:
    it breaks the module's database.)"""
    inv = built.dbt(["test"], extra=["--select", "ema_multi_tf_u"])
    tests = [n for n in inv.nodes if n.resource_type == "test"]
    assert {n.status for n in tests} == {"pass"} and len(tests) == 2
    built.execute("alter view price_bars_multi_tf_u rename to price_bars_multi_tf_u_built")
    built.execute("create view price_bars_multi_tf_u as select * from price_bars_multi_tf_u_built "
                  "where alignment_source <> 'multi_tf_cal_us'")
    # scoped to a run's writes (what `dbt build` does) a view's tests read nothing: they are audit-only
    inv = built.dbt(["test"], extra=["--select", "price_bars_multi_tf_u"], vars={"test_scope": "latest"})
    assert {n.status for n in inv.nodes if n.resource_type == "test"} == {"pass"}
    inv = built.dbt(["test"], expect_success=False, extra=["--select", "price_bars_multi_tf_u"])
    status = {n.name: n.status for n in inv.nodes}
    assert status["price_bars_multi_tf_u_rows_equal_the_parts"] == "fail"
    index = built.query("select indexname from pg_indexes where tablename = 'ema_multi_tf_cal_us' "
                        "and indexdef like 'CREATE UNIQUE INDEX%(id, tf, period, ts)'")[0][0]
    built.execute(f'drop index "{index}"')
    built.execute("drop index ema_multi_tf_cal_us_canonical")
    built.execute("insert into ema_multi_tf_cal_us select * from ema_multi_tf_cal_us "
                  "where (id, tf, period) = (select id, tf, period from ema_multi_tf_cal_us limit 1) limit 1")
    inv = built.dbt(["test"], expect_success=False, extra=["--select", "ema_multi_tf_u"])
    status = {n.name: n.status for n in inv.nodes}
    assert status["ema_multi_tf_u_key_unique"] == "fail"
