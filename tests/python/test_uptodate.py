"""A refresh with nothing to do does not start dbt (driver/uptodate.py), and every kind of change,
and every time-dependent case, makes it run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from driver import uptodate
from driver.cli import app

runner = CliRunner()
REFRESH = ["refresh", "--all", "--quiet", "--skip-stale-check"]  # (the golden data is historical)


@pytest.fixture()
def env(golden_loaded):
    """The golden source loaded and built by a first refresh."""
    res = runner.invoke(app, REFRESH)
    assert res.exit_code == 0, res.output
    return golden_loaded


def refresh(*extra: str) -> tuple[bool, str]:
    """(whether dbt ran, output) of one refresh; dbt ran when the run recorded node timings."""
    res = runner.invoke(app, [*REFRESH, *extra])
    assert res.exit_code == 0, res.output
    return "up to date" not in res.output, res.output


def selector(database) -> str | None:
    """The dbt selector the newest run that started dbt built."""
    with database.connect() as conn:
        return conn.execute("select timings -> 'all' ->> 'selector' from barsmith_refresh_runs "
                            "where timings ? 'all' order by run_id desc limit 1").fetchone()[0]


def last_run(database) -> tuple:
    with database.connect() as conn:
        return conn.execute("select run_id, status, timings, message, signature is not null "
                            "from barsmith_refresh_runs order by run_id desc limit 1").fetchone()


def model_runs(database) -> int:
    with database.connect() as conn:
        return conn.execute("select count(*) from barsmith_run_log").fetchone()[0]


def test_nothing_new_means_no_dbt_and_the_run_is_recorded(env):
    first_run = last_run(env)[0]
    logged = model_runs(env)
    ran, output = refresh()
    assert not ran and f"are those of run {first_run}" in output and "dbt not started" in output
    run_id, status, timings, message, signed = last_run(env)
    assert status == "success" and timings == {} and message.startswith("up to date") and signed
    assert model_runs(env) == logged, "no model ran"
    ran, output = refresh()
    assert not ran and f"are those of run {first_run}" in output, "names the run that ran dbt"
    ran, _ = refresh("--force")
    assert ran and model_runs(env) > logged
    resumed = runner.invoke(app, ["refresh", "--resume"])
    assert resumed.exit_code == 0 and "nothing to resume" in resumed.output


@pytest.mark.parametrize("change", [
    # a value corrected in place without a new load_ts (the hash of the row text changes)
    "update price_histories set close = close + 1 where id = 1 and \"timestamp\" = "
    "(select min(\"timestamp\") from price_histories where id = 1)",
    "delete from price_histories where id = 52 and \"timestamp\" = "
    "(select max(\"timestamp\") from price_histories where id = 52)",
    "insert into price_histories (id, name, timeopen, timeclose, timehigh, timelow, \"timestamp\", open, high, low, close, volume, marketcap, source_file, load_ts) "
    "select id, name, timeopen + interval '1 day', timeclose + interval '1 day', "
    "timehigh + interval '1 day', timelow + interval '1 day', \"timestamp\" + interval '1 day', open, high, low, "
    "close, volume, marketcap, source_file, load_ts from price_histories where id = 825 and \"timestamp\" = "
    "(select max(\"timestamp\") from price_histories where id = 825)",
    # a table someone dropped: dbt builds it again
    "drop table price_bars_multi_tf_cal_us cascade",
    # a model run outside the driver (dbt build by hand) logs itself
    "insert into barsmith_run_log (invocation_id, model, full_build, rows_written) values ('by-hand', 'x', false, 0)",
    # the last run failed
    "update barsmith_refresh_runs set status = 'failed' where run_id = (select max(run_id) from barsmith_refresh_runs)",
    # a view defined otherwise, a seed table changed (by hand, or by a dbt run of another project)
    "do $$ begin execute 'create or replace view asset_freshness as select * from ('"
    " || rtrim(pg_get_viewdef('asset_freshness'), ';') || ') as f where false'; end $$",
    "delete from ema_periods where period = (select max(period) from ema_periods)",
], ids=["update-in-place", "delete", "insert", "dropped-table", "outside-run", "failed-run", "view-redefined",
        "seed-edited"])
def test_every_change_makes_dbt_run(env, change, request):
    with env.connect() as conn:
        conn.execute(change)
    ran, _ = refresh()
    assert ran
    # the seeds and views in place are re-created only when the schema or the last run says so
    full = request.node.callspec.id in ("dropped-table", "failed-run", "view-redefined", "seed-edited")
    assert selector(env) == ("daily_refresh" if full else "daily_refresh_tables")
    with env.connect() as conn:
        assert conn.execute("select count(*) from asset_freshness").fetchone()[0] == 3, "the view is dbt's again"
        assert conn.execute("select count(*) from ema_periods").fetchone()[0] == 17, "the seed is loaded again"
    with env.connect() as conn:
        assert conn.execute("select to_regclass('price_bars_multi_tf_cal_us') is not null").fetchone()[0]
    ran, _ = refresh()
    assert not ran, "and the refresh after it has nothing to do"


def test_other_options_or_another_project_make_dbt_run(env, monkeypatch):
    assert refresh("--ids", "1,52")[0], "other options"
    assert selector(env) == "daily_refresh", "other options: the views are made again"
    assert not refresh("--ids", "1,52")[0]
    assert refresh()[0], "the options of the run before"
    monkeypatch.setattr(uptodate, "_project", "another version of the project")
    assert refresh()[0], "another project (a model, macro, seed or driver file changed)"
    assert selector(env) == "daily_refresh", "another project: the seeds and views are made again"
    assert not refresh()[0]
    assert refresh("--force")[0] and selector(env) == "daily_refresh_tables"
    with env.connect() as conn:
        run_nodes = conn.execute("select timings -> 'all' -> 'nodes' from barsmith_refresh_runs "
                                 "order by run_id desc limit 1").fetchone()[0]
    assert "model.barsmith.price_bars_1d" in run_nodes and "seed.barsmith.dim_timeframe" not in run_nodes
    assert not any(".price_bars_1d_state" in uid for uid in run_nodes), "nor the views"
    assert any(uid.startswith("test.barsmith.assert_every_source_row_is_bar_or_reject") for uid in run_nodes)


def test_what_time_changes_makes_dbt_run(env):
    """A row later than the instant the source was read (a future_timestamp reject then) may be valid
    now; changed rows of stale ids wait, and every refresh runs until they are built."""
    with env.connect() as conn:
        conn.execute("""insert into price_histories (id, name, timeopen, timeclose, timehigh, timelow,
                        "timestamp", open, high, low, close, volume, marketcap, source_file, load_ts)
                        select id, name, now() - interval '1 day' + interval '2 hours',
                        now() + interval '2 hours', null, null, now() + interval '2 hours', open, high, low,
                        close, volume, marketcap, source_file, now() from price_histories where id = 825
                        and "timestamp" = (select max("timestamp") from price_histories where id = 825)""")
    assert refresh()[0]
    with env.connect() as conn:
        assert conn.execute("select count(*) from price_bars_1d_rejects where reason = 'future_timestamp'"
                            ).fetchone()[0] == 1
    assert refresh()[0], "the future row may be valid by now"
    with env.connect() as conn:
        conn.execute("""delete from price_histories where "timestamp" > now()""")
    assert refresh()[0]
    assert not refresh()[0]
    # the freshness gate holds back the changed rows of stale ids (the golden ids are historical)
    stale = ["refresh", "--all", "--quiet"]
    assert "up to date" not in runner.invoke(app, stale).output, "other options"
    assert "up to date" in runner.invoke(app, stale).output, "nothing changed: nothing waits"
    with env.connect() as conn:
        conn.execute("""update price_histories set close = close * 1.01, load_ts = now() where id = 1
                        and "timestamp" = (select max("timestamp") from price_histories where id = 1)""")
    for _ in range(2):
        res = runner.invoke(app, stale)
        assert res.exit_code == 0 and "skipped for EMAs and features: id 1 (stale" in res.output, res.output
        assert not last_run(env)[4], "a run that left ids waiting records no inputs: the next one runs"
