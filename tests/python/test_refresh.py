"""`driver refresh` and friends: flags, stale-id gate, resume, dry-run, logs, alerts, lock."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from driver import alerts, lock, logs
from driver.cli import app

runner = CliRunner()


@pytest.fixture()
def env(golden_loaded):
    """A test database with the golden source loaded, and private log/state/target dirs."""
    return golden_loaded


def sql(database, statement, params=None):
    with database.connect() as conn:
        conn.execute(statement, params)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ids", "1,abc"], "'abc' is not a non-negative integer id"),
        (["--ids", "1,,2"], "empty value"),
        (["--ids", "-5"], "'-5' is not a non-negative integer id"),
        (["--tfs", "7D,8X"], "unknown timeframe '8X'"),
        (["--tfs", "7D;drop table x"], "unknown timeframe"),
        (["--periods", "10,0"], "'0' is not a positive integer period"),
        (["--periods", "ten"], "'ten' is not a positive integer period"),
        (["--tf-period-combos", "7D-10"], "is not TF:PERIOD"),
        (["--tf-period-combos", "9Q:10"], "unknown timeframe '9Q'"),
        (["--alert-level", "LOUD"], "--alert-level must be one of"),
    ],
)
def test_bad_filter_values_are_refused_before_dbt_starts(args, message, monkeypatch, tmp_path):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://nobody:pw@127.0.0.1:1/none")
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path / "logs"))
    res = runner.invoke(app, ["refresh", "--all", *args])
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "logs").exists(), "refused before any run started"


@pytest.mark.parametrize("flags", [[], ["--all", "--bars"], ["--bars", "--emas"]])
def test_exactly_one_stage_flag(flags):
    res = runner.invoke(app, ["refresh", *flags])
    assert res.exit_code == 2
    assert "exactly one of --all, --bars, --emas" in res.output


def test_dry_run_prints_the_plan_and_touches_no_database(monkeypatch, tmp_path):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://admin:hunter2@127.0.0.1:1/prod")
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path / "logs"))
    res = runner.invoke(app, ["refresh", "--all", "--dry-run", "--ids", "1,52", "--tfs", "7D", "--periods", "10"])
    assert res.exit_code == 0, res.output
    assert "hunter2" not in res.output and "postgresql://admin:***@127.0.0.1:1/prod" in res.output
    assert res.output.count("--selector daily_refresh") == 1, "the whole refresh is one dbt build"
    assert "--selector bars" not in res.output and "--selector emas" not in res.output
    assert '"asset_ids": [1, 52]' in res.output and '"timeframes": ["7D"]' in res.output
    assert '"ema_periods": [10]' in res.output
    assert not (tmp_path / "logs").exists()


def test_dry_run_full_refresh_with_ids_rebuilds_only_those_ids(monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://u@127.0.0.1:1/x")
    res = runner.invoke(app, ["refresh", "--bars", "--dry-run", "--full-refresh", "--ids", "825"])
    assert '"rebuild_ids": [825]' in res.output and "--full-refresh" not in res.output
    res = runner.invoke(app, ["refresh", "--bars", "--dry-run", "--full-refresh"])
    assert "--full-refresh" in res.output


def test_refresh_writes_summary_and_daily_log(env, tmp_path, monkeypatch):
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "dbt-logs"))
    res = runner.invoke(app, ["refresh", "--bars"])
    assert res.exit_code == 0, res.output
    assert "barsmith refresh summary" in res.output and "price_bars_1d" in res.output
    assert "data tests:" in res.output and "fail" not in res.output.split("data tests:")[1].split("\n")[0]
    log_files = list((tmp_path / "logs").glob("refresh-*.log"))
    assert len(log_files) == 1
    text = log_files[0].read_text()
    assert "refresh started" in text and "price_bars_1d" in text and "refresh finished: exit 0" in text
    assert "START sql barsmith_incremental model" in text, "dbt's per-node lines are in the log"
    assert "OK created sql barsmith_incremental model" in text
    assert "\x1b" not in text, "no terminal colour codes in the refresh log"
    dbt_log = (tmp_path / "dbt-logs" / "dbt.log").read_text()
    assert "OK created sql barsmith_incremental model" in dbt_log and "\x1b" not in dbt_log, "nor in dbt's own log"
    assert env.password == "" or env.password not in text
    tests_line = res.output.split("data tests:")[1].split("\n")[0]
    if " warn" in tests_line:
        assert "WARN test " in res.output and " row(s)" in res.output, "warnings are named with their rows"
    shown = runner.invoke(app, ["logs", "-n", "5"])
    assert "refresh finished: exit 0" in shown.output


def test_quiet_refresh_prints_only_the_summary(env):
    res = runner.invoke(app, ["refresh", "--bars", "--quiet"])
    assert res.exit_code == 0
    assert "database:" not in res.output and "[1/" not in res.output
    assert "OK in" in res.output


def test_an_unchanged_refresh_writes_and_tests_little(env):
    """The data tests of a refresh check what it wrote: a second refresh of unchanged data does not
    start dbt (driver/uptodate.py); one forced to rewrites only the 1D lookback days (3 per id) and
    tests those; a source change re-runs the tests over the rows it changes."""
    first = runner.invoke(app, ["refresh", "--bars", "--quiet"])
    assert first.exit_code == 0 and " pass" in first.output.split("data tests:")[1].split("\n")[0]
    unchanged = runner.invoke(app, ["refresh", "--bars", "--quiet"])
    assert unchanged.exit_code == 0 and "up to date" in unchanged.output, unchanged.output
    again = runner.invoke(app, ["refresh", "--bars", "--quiet", "--force"])
    assert again.exit_code == 0, again.output
    assert "data tests:" in again.output and "of the rows this run wrote" in again.output
    with env.connect() as conn:
        written = dict(conn.execute("select model, rows_written from barsmith_run_log where invocation_id = "
                                    "(select invocation_id from barsmith_run_log order by recorded_at desc limit 1)")
                       .fetchall())
    assert written["price_bars_1d"] == 9 and written.get("price_bars_multi_tf", 0) == 0, written
    sql(env, 'update price_histories set close = close * 1.001, load_ts = now() where id = 1 and "timestamp" = '
             '(select max("timestamp") from price_histories where id = 1) - interval \'10 days\'')
    changed = runner.invoke(app, ["refresh", "--bars", "--quiet"])
    assert changed.exit_code == 0, changed.output
    assert " pass" in changed.output.split("data tests:")[1].split("\n")[0]


def test_old_logs_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path))
    old = tmp_path / "refresh-2020-01-01.log"
    new = tmp_path / "refresh-2026-11-20.log"
    other = tmp_path / "keep-me.txt"
    for path in (old, new, other):
        path.write_text("x")
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    removed = logs.prune(30)
    assert removed == [old]
    assert new.exists() and other.exists() and not old.exists()


def test_stale_ids_are_skipped_for_emas_only(env):
    """The first refresh builds every table whole (historical data gets its EMAs). Later, an id whose
    newest bar is older than --staleness-hours waits in the EMA models (the freshness gate of
    refresh.md §6, in the models: one dbt build), its bars are refreshed; id 825, fresh, goes on."""
    first = runner.invoke(app, ["refresh", "--all", "--quiet"])
    assert first.exit_code == 0, first.output
    with env.connect() as conn:
        assert conn.execute("select count(distinct id) from ema_multi_tf").fetchone()[0] == 3
    sql(env, """update price_histories set close = close * 1.01, load_ts = now()
                where id in (1, 52) and "timestamp" = (select max("timestamp") from price_histories where id = 1)""")
    sql(env, """update price_histories set "timestamp" = now() - interval '1 hour', timeclose = now() - interval '1 hour',
                timeopen = now() - interval '25 hours', timehigh = null, timelow = null, load_ts = now()
                where id = 825 and "timestamp" = (select max("timestamp") from price_histories where id = 825)""")
    res = runner.invoke(app, ["refresh", "--all"])
    assert res.exit_code == 0, res.output
    assert "skipped for EMAs and features: id 1 (stale" in res.output
    assert "skipped for EMAs and features: id 52 (stale" in res.output
    assert "id 825" not in res.output.split("skipped for EMAs and features")[-1]
    assert "to build them anyway run: driver refresh --all --skip-stale-check" in res.output
    with env.connect() as conn:
        changed = conn.execute("select distinct id from barsmith_changes where model = 'price_bars_multi_tf'"
                               " and invocation_id = (select invocation_id from barsmith_changes where model ="
                               " 'price_bars_multi_tf' order by seq desc limit 1) order by 1").fetchall()
        ema_ids = conn.execute("select count(distinct id) from ema_multi_tf where ts > now() - interval '1 day'"
                               ).fetchone()[0]
    assert changed == [(1,), (52,), (825,)], "the bars of every changed id are refreshed"
    assert ema_ids == 1, "the EMAs of the fresh id only"
    forced = runner.invoke(app, ["refresh", "--all", "--skip-stale-check"])
    assert forced.exit_code == 0 and "skipped for EMAs and features" not in forced.output
    # the progress line counts over the refresh, with an ETA from the previous run's times
    counts = [(int(d), int(t), more) for d, t, more in re.findall(r"^\[\s*(\d+)/(\d+)(\+\?)?\]", forced.output, re.M)]
    assert counts and all(d <= t for d, t, _more in counts), counts
    assert [d for d, _t, _m in counts] == list(range(1, len(counts) + 1))
    assert counts[-1][0] == counts[-1][1] and not counts[-1][2], "the last line is N/N"


def runs_table(database) -> list[tuple]:
    with database.connect() as conn:
        return conn.execute("select run_id, status, failed_stage, remaining_stages, options, resumed_from "
                            "from barsmith_refresh_runs order by run_id").fetchall()


def test_resume_reruns_the_failed_run_of_this_database_with_its_options(env, server, golden_dir, monkeypatch):
    assert runner.invoke(app, ["refresh", "--bars", "--quiet"]).exit_code == 0
    sql(env, "alter table price_histories rename column close to close_broken")
    failed = runner.invoke(app, ["refresh", "--all", "--skip-stale-check", "--tfs", "7D,1W_CAL_ISO",
                                 "--periods", "10"])
    assert failed.exit_code == 1
    assert "FAILED" in failed.output and "close" in failed.output
    assert "run 2 failed in stage all: driver refresh --resume re-runs all" in failed.output
    (_id, status, failed_stage, remaining, options, _from) = runs_table(env)[-1]
    assert (status, failed_stage, remaining) == ("failed", "all", ["all"])
    assert options["skip_stale_check"] is True and options["filters"]["tfs"] == ["7D", "1W_CAL_ISO"]

    # another database, green: its resume has nothing to do, and it does not touch the first one
    from .helpers import drop_database, new_database
    other = new_database(server)
    try:
        monkeypatch.setenv("BARSMITH_DB_URL", other.url)
        assert runner.invoke(app, ["load", str(golden_dir / "price_histories.csv")]).exit_code == 0
        assert runner.invoke(app, ["refresh", "--bars", "--quiet", "--tfs", "7D"]).exit_code == 0
        there = runner.invoke(app, ["refresh", "--resume"])
        assert there.exit_code == 0 and "nothing to resume: the last refresh on this database (run 1" in there.output
        assert [r[1] for r in runs_table(other)] == ["success"], "a resume with nothing to do records no run"
    finally:
        drop_database(server, other)

    monkeypatch.setenv("BARSMITH_DB_URL", env.url)
    sql(env, "alter table price_histories rename column close_broken to close")
    resumed = runner.invoke(app, ["refresh", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming run 2 (failed in stage all): refresh --all --tfs 7D,1W_CAL_ISO --periods 10 " \
           "--skip-stale-check, stages all" in resumed.output
    assert "stg_price_histories" in resumed.output and "ema_multi_tf" in resumed.output
    assert "skipped for EMAs and features" not in resumed.output, "--skip-stale-check was kept"
    (_id, status, failed_stage, remaining, options, resumed_from) = runs_table(env)[-1]
    assert (status, failed_stage, remaining, resumed_from) == ("success", None, [], 2)
    assert options["skip_stale_check"] is True and options["filters"]["periods"] == [10]
    with env.connect() as conn:
        built = conn.execute("select distinct tf, period from ema_multi_tf order by 1, 2").fetchall()
    assert built == [("1W_CAL_ISO", 10), ("7D", 10)] or built == [("7D", 10)], built
    again = runner.invoke(app, ["refresh", "--resume"])
    assert again.exit_code == 0 and "nothing to resume" in again.output


def test_resume_with_other_options_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://u@127.0.0.1:1/x")
    res = runner.invoke(app, ["refresh", "--resume", "--all", "--ids", "1"])
    assert res.exit_code == 2
    assert "options it was started with" in res.output and "--all/--bars/--emas/--features, --ids" in res.output


def test_resume_on_a_database_without_runs_says_so(env):
    res = runner.invoke(app, ["refresh", "--resume"])
    assert res.exit_code == 1
    assert "nothing recorded to resume" in res.output and "nothing to resume:" not in res.output


def test_second_refresh_refuses_while_the_lock_is_held(env):
    with psycopg.connect(env.url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (lock.lock_key(env),))
        from driver import runs
        runs.ensure_table(holder, "public")
        runs.start(holder, "public", ["bars", "emas"], {"stage": "all"}, None)
        runs.stage_started(holder, "public", 1, "emas")
        pid = holder.info.backend_pid
        started = time.monotonic()
        res = runner.invoke(app, ["refresh", "--bars", "--lock-wait", "2"])
        assert time.monotonic() - started >= 2
        assert res.exit_code == lock.EXIT_LOCKED == 3, res.output
        assert "waiting up to 2 s for the refresh lock" in res.output
        assert "held by run 1 (refresh --all, started" in res.output and "in stage emas" in res.output
        assert f"backend pid {pid}" in res.output
        assert "another barsmith refresh is running" in res.output and "REFUSED (exit 3)" in res.output
        no_wait = runner.invoke(app, ["refresh", "--bars"])
        assert no_wait.exit_code == 3 and "waiting" not in no_wait.output
    res = runner.invoke(app, ["refresh", "--bars"])
    assert res.exit_code == 0, res.output
    assert "run 1 (started" in res.output and "did not finish" in res.output, \
        "the holder's row, left running without the lock, is found interrupted"


def test_a_waiting_refresh_runs_once_the_lock_is_free(env):
    holder = psycopg.connect(env.url, autocommit=True)
    holder.execute("select pg_advisory_lock(%s)", (lock.lock_key(env),))
    threading.Timer(2.0, holder.close).start()
    res = runner.invoke(app, ["refresh", "--bars", "--quiet", "--lock-wait", "60"])
    assert res.exit_code == 0, res.output
    log = next(Path(os.environ["BARSMITH_LOG_DIR"]).glob("refresh-*.log")).read_text()
    assert "waiting up to 60 s for the refresh lock" in log and "lock acquired after waiting" in log


def test_unreachable_database_is_critical(monkeypatch, tmp_path):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://u:topsecret@127.0.0.1:1/x")
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path / "logs"))
    hook = Hook()
    with hook.serving(monkeypatch):
        res = runner.invoke(app, ["refresh", "--bars"])
    assert res.exit_code == 1
    assert "topsecret" not in res.output
    assert "topsecret" not in next((tmp_path / "logs").glob("*.log")).read_text()
    assert [m["text"].split(":")[0] for m in hook.messages] == ["\U0001F534 <b>CRITICAL"]


class Hook:
    """A local Telegram-compatible webhook that records what it receives."""

    def __init__(self, status: int = 200):
        self.messages: list[dict] = []
        self.paths: list[str] = []
        self.status = status

    def serving(self, monkeypatch):
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.paths.append(self.path)
                hook.messages.append(json.loads(body))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        monkeypatch.setenv("BARSMITH_ALERT_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:SECRET-TOKEN")
        monkeypatch.setenv("TELEGRAM_CHAT_ID", "42")

        class Ctx:
            def __enter__(self_inner):
                return hook

            def __exit__(self_inner, *exc):
                server.shutdown()

        return Ctx()


def test_alert_threshold_and_delivery(monkeypatch):
    hook = Hook()
    with hook.serving(monkeypatch):
        assert not alerts.send(alerts.Alert("INFO", "fine"), "ERROR").sent
        assert not alerts.send(alerts.Alert("WARNING", "meh"), "ERROR").sent
        assert alerts.send(alerts.Alert("ERROR", "broken", ["model x failed"]), "ERROR").sent
        assert alerts.send(alerts.Alert("CRITICAL", "down"), "CRITICAL").sent
        assert alerts.send(alerts.Alert("INFO", "ok"), "INFO").sent
    assert [m["text"].split("</b>")[0].split("<b>")[1] for m in hook.messages] == [
        "ERROR: broken", "CRITICAL: down", "INFO: ok"]
    assert all(m["chat_id"] == "42" and m["parse_mode"] == "HTML" for m in hook.messages)
    assert hook.paths[0] == "/bot123:SECRET-TOKEN/sendMessage"


def test_alert_failures_never_raise_and_hide_the_token(monkeypatch):
    hook = Hook(status=500)
    with hook.serving(monkeypatch):
        delivery = alerts.send(alerts.Alert("ERROR", "x"))
    assert not delivery.sent and "HTTP 500" in delivery.reason
    monkeypatch.setenv("BARSMITH_ALERT_URL", "http://127.0.0.1:1")
    delivery = alerts.send(alerts.Alert("ERROR", "x"))
    assert not delivery.sent and "SECRET-TOKEN" not in delivery.reason
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    assert "not configured" in alerts.send(alerts.Alert("CRITICAL", "x")).reason


def test_failed_test_run_sends_an_error_alert_and_info_is_below_threshold(env, monkeypatch, tmp_path):
    hook = Hook()
    with hook.serving(monkeypatch):
        ok = runner.invoke(app, ["refresh", "--bars"])
        assert ok.exit_code == 0
        assert hook.messages == [], "INFO success summary is below the default ERROR threshold"
        # a bad source row no longer fails a test (it becomes a 1D reject), and a refresh tests what
        # it wrote: break a built 1D row of id 1 outside any range a run re-reads; a scoped refresh
        # does not see it, one that is also the full audit (test_scope: all) fails on it
        sql(env, """update price_bars_1d set high = low - 1 where id = 1
                    and "timestamp" = (select min("timestamp") from price_bars_1d where id = 1)""")
        scoped = runner.invoke(app, ["refresh", "--bars"])
        assert scoped.exit_code == 0, scoped.output
        bad = runner.invoke(app, ["refresh", "--bars", "--vars", "{test_scope: all}"])
        assert bad.exit_code == 1, bad.output
    titles = [m["text"] for m in hook.messages]
    assert any("data test(s) failed" in t for t in titles), titles
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    assert "SECRET-TOKEN" not in log


def test_freshness_command_reports_per_id_and_fails_on_stale_source(env):
    res = runner.invoke(app, ["refresh", "--bars", "--quiet"])
    res = runner.invoke(app, ["freshness"])
    assert res.exit_code == 1, "the golden source is years old: stale"
    assert "source price_histories: error" in res.output
    for asset in ("1", "52", "825"):
        assert re.search(rf"^\s*{asset}\s+\d", res.output, re.M), f"a row for id {asset}"
    sql(env, "update price_histories set load_ts = now()")
    res = runner.invoke(app, ["freshness", "--ids", "1"])
    assert res.exit_code == 0, res.output
    assert "source price_histories: pass" in res.output


# ------------------------------------------------------------------ --vars, paste-able dry runs (issue 17 part 3)


@pytest.mark.parametrize("vars_, message", [
    ("{nope: 1}", "--vars: unknown var 'nope'; dbt_project.yml declares: bars_daily_source, bars_tz"),
    ("{asset_ids: [1]}", "--vars: asset_ids is set by the driver; use --ids instead"),
    ("{timeframes: [7D]}", "use --tfs instead"),
    ("{staleness_hours: 1}", "use --staleness-hours instead"),
    ("{bars_daily_source: rawx}", "--vars bars_daily_source: 'rawx' is not bars_1d or raw"),
    ("{bars_tz: Mars/Olympus}", "is not an IANA time zone"),
    ("{ema_start_date: 2010-13-01}", "is not YYYY-MM-DD or ''"),
    ("{lookback_days: -1}", "is not an integer >= 0"),
    ("{build_work_mem: \"1GB'; drop table x; --\"}", "is not a memory size"),
    ("[1, 2]", "--vars must be a mapping"),
    ("{a: [}", "--vars is not valid YAML/JSON"),
])
def test_vars_are_checked_against_the_project(vars_, message, monkeypatch, tmp_path):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://u@127.0.0.1:1/x")
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path / "logs"))
    for command in (["refresh", "--all"], ["validate"], ["freshness"]):
        res = runner.invoke(app, [*command, "--vars", vars_])
        assert res.exit_code == 2, (command, res.output)
        assert message in res.output, (command, res.output)
    assert not (tmp_path / "logs").exists()


def test_vars_reach_dbt_yaml_or_json(monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://u@127.0.0.1:1/x")
    for text in ('{ema_start_date: "", bars_daily_source: raw}', '{"ema_start_date": "", "bars_daily_source": "raw"}'):
        res = runner.invoke(app, ["refresh", "--all", "--dry-run", "--ids", "1", "--vars", text])
        assert res.exit_code == 0, res.output
        assert '"bars_daily_source": "raw"' in res.output and '"ema_start_date": ""' in res.output
        assert '"asset_ids": [1]' in res.output


def test_dry_run_commands_run_as_printed(env, tmp_path):
    """Paste the dry run into a shell that has none of the driver's variables: dbt builds."""
    res = runner.invoke(app, ["refresh", "--bars", "--dry-run", "--tfs", "7D", "--vars", "{lookback_days: 2}"])
    assert res.exit_code == 0, res.output
    script = res.output
    assert "export BARSMITH_PGHOST=" in script and "BARSMITH_PGPASSWORD" not in script  # the test server has none
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BARSMITH_", "PG", "DBT_"))}
    clean.update(DBT_TARGET_PATH=str(tmp_path / "pasted-target"), DBT_LOG_PATH=str(tmp_path / "pasted-logs"))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=clean, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with env.connect() as conn:
        tfs = conn.execute("select distinct tf from price_bars_multi_tf").fetchall()
        bars = conn.execute("select count(*) from price_bars_1d").fetchone()[0]
    assert tfs == [("7D",)] and bars > 0


def test_dry_run_quotes_for_the_shell(monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://u@127.0.0.1:1/x")
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=0")
    res = runner.invoke(app, ["refresh", "--emas", "--dry-run", "--vars", "{bars_tz: America/New_York}"])
    lines = [line for line in res.output.splitlines() if line and not line.startswith("#")]
    env_line, dbt_line = lines
    assert "PGOPTIONS='-c statement_timeout=0 -c jit=off'" in env_line
    words = shlex.split(dbt_line, comments=True)
    assert words[1] == "build" and words[words.index("--selector") + 1] == "emas"
    assert json.loads(words[words.index("--vars") + 1])["bars_tz"] == "America/New_York"


def test_source_table_from_vars_is_read_by_the_driver_and_dbt(env, golden_dir, monkeypatch):
    monkeypatch.setenv("BARSMITH_SOURCE_TABLE", "my_prices")
    assert runner.invoke(app, ["load", str(golden_dir / "price_histories.csv")]).exit_code == 0
    monkeypatch.delenv("BARSMITH_SOURCE_TABLE")
    sql(env, "drop table price_histories")
    res = runner.invoke(app, ["refresh", "--bars", "--quiet", "--tfs", "7D", "--vars", "{source_table: my_prices}"])
    assert res.exit_code == 0, res.output
    with env.connect() as conn:
        accounted = conn.execute("select (select count(*) from price_bars_1d) + "
                                 "(select count(*) from price_bars_1d_rejects)").fetchone()[0]
    assert accounted == 2401
    sql(env, 'update my_prices set close = close * 1.001, load_ts = now() where id = 1 and "timestamp" = '
             '(select max("timestamp") from my_prices where id = 1) - interval \'20 days\'')
    again = runner.invoke(app, ["refresh", "--bars", "--quiet", "--tfs", "7D", "--vars", "{source_table: my_prices}"])
    assert again.exit_code == 0, again.output
    with env.connect() as conn:
        assert conn.execute("select min(from_ts) < now() - interval '10 days' from barsmith_changes "
                            "where model = 'price_bars_1d'").fetchone()[0], "the change in my_prices was read"
    fresh = runner.invoke(app, ["freshness", "--vars", "{source_table: my_prices}"])
    assert re.search(r"^\s*825\s+\d", fresh.output, re.M), fresh.output
    assert "does not exist" not in fresh.output
