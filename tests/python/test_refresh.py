"""`driver refresh` and friends: flags, stale-id gate, resume, dry-run, logs, alerts, lock."""

from __future__ import annotations

import json
import os
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
def env(database, tmp_path, monkeypatch, golden_dir):
    """A test database with the golden source loaded, and private log/state/target dirs."""
    monkeypatch.setenv("BARSMITH_DB_URL", database.url)
    monkeypatch.setenv("BARSMITH_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("BARSMITH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    for var in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "BARSMITH_ALERT_URL"):
        monkeypatch.delenv(var, raising=False)
    res = runner.invoke(app, ["load", str(golden_dir / "price_histories.csv")])
    assert res.exit_code == 0, res.output
    return database


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
    assert "--selector bars" in res.output and "--selector emas" in res.output
    assert '"asset_ids": [1, 52]' in res.output and '"timeframes": ["7D"]' in res.output
    assert '"ema_periods": [10]' in res.output
    assert not (tmp_path / "logs").exists()


def test_dry_run_full_refresh_with_ids_rebuilds_only_those_ids(monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", "postgresql://u@127.0.0.1:1/x")
    res = runner.invoke(app, ["refresh", "--bars", "--dry-run", "--full-refresh", "--ids", "825"])
    assert '"rebuild_ids": [825]' in res.output and "--full-refresh" not in res.output
    res = runner.invoke(app, ["refresh", "--bars", "--dry-run", "--full-refresh"])
    assert "--full-refresh" in res.output


def test_refresh_writes_summary_and_daily_log(env, tmp_path):
    res = runner.invoke(app, ["refresh", "--bars"])
    assert res.exit_code == 0, res.output
    assert "barsmith refresh summary" in res.output and "price_bars_1d" in res.output
    assert "data tests:" in res.output and "fail" not in res.output.split("data tests:")[1].split("\n")[0]
    log_files = list((tmp_path / "logs").glob("refresh-*.log"))
    assert len(log_files) == 1
    text = log_files[0].read_text()
    assert "refresh started" in text and "price_bars_1d" in text and "refresh finished: exit 0" in text
    assert "START sql incremental model" in text, "dbt's per-node lines are in the log"
    assert env.password == "" or env.password not in text
    shown = runner.invoke(app, ["logs", "-n", "5"])
    assert "refresh finished: exit 0" in shown.output


def test_quiet_refresh_prints_only_the_summary(env):
    res = runner.invoke(app, ["refresh", "--bars", "--quiet"])
    assert res.exit_code == 0
    assert "database:" not in res.output and "[1/" not in res.output
    assert "OK in" in res.output


def test_unchanged_refresh_skips_data_tests_until_the_source_changes(env):
    first = runner.invoke(app, ["refresh", "--bars", "--quiet"])
    assert first.exit_code == 0 and " pass" in first.output.split("data tests:")[1].split("\n")[0]
    again = runner.invoke(app, ["refresh", "--bars", "--quiet"])
    assert again.exit_code == 0, again.output
    assert "data tests: skipped, nothing changed since the last green refresh" in again.output
    sql(env, 'update price_histories set close = close * 1.001, load_ts = now() where id = 1 and "timestamp" = '
             '(select max("timestamp") from price_histories where id = 1)')
    changed = runner.invoke(app, ["refresh", "--bars", "--quiet"])
    assert changed.exit_code == 0, changed.output
    assert " pass" in changed.output.split("data tests:")[1].split("\n")[0], "a source change re-runs the tests"
    other_flags = runner.invoke(app, ["refresh", "--bars", "--quiet", "--tfs", "7D"])
    assert "skipped, nothing changed" not in other_flags.output, "other options are another run"


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
    """Id 825 is fresh (its newest day moved to now), the others are stale: only 825 goes on."""
    sql(env, """update price_histories set "timestamp" = now() - interval '1 hour', timeclose = now() - interval '1 hour',
                timeopen = now() - interval '25 hours', timehigh = null, timelow = null, load_ts = now()
                where id = 825 and "timestamp" = (select max("timestamp") from price_histories where id = 825)""")
    res = runner.invoke(app, ["refresh", "--all"])
    assert res.exit_code == 0, res.output
    assert "skipped for EMAs: id 1 (stale" in res.output and "skipped for EMAs: id 52 (stale" in res.output
    assert "id 825" not in res.output.split("skipped for EMAs")[-1]
    log = next(Path(os.environ["BARSMITH_LOG_DIR"]).glob("refresh-*.log")).read_text()
    assert '"asset_ids": [825]' in log, "the EMA stage runs for the fresh id only"


def test_all_stale_skips_the_ema_stage_with_a_warning(env):
    res = runner.invoke(app, ["refresh", "--all"])
    assert res.exit_code == 0, res.output
    assert "stage emas skipped: all ids stale" in res.output
    res = runner.invoke(app, ["refresh", "--all", "--skip-stale-check"])
    assert "skipped" not in res.output


def test_resume_reruns_what_failed(env, tmp_path):
    runner.invoke(app, ["refresh", "--bars"])
    sql(env, 'alter table price_histories rename column close to close_broken')
    failed = runner.invoke(app, ["refresh", "--bars"])
    assert failed.exit_code == 1
    assert "FAILED" in failed.output and "close" in failed.output
    state = json.loads((tmp_path / "state" / "last_refresh.json").read_text())
    assert state["failed_stage"] == "bars"
    sql(env, 'alter table price_histories rename column close_broken to close')
    resumed = runner.invoke(app, ["refresh", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "stg_price_histories" in resumed.output
    assert json.loads((tmp_path / "state" / "last_refresh.json").read_text())["failed_stage"] is None
    again = runner.invoke(app, ["refresh", "--resume"])
    assert again.exit_code == 0 and "nothing to resume" in again.output


def test_second_refresh_refuses_while_the_lock_is_held(env):
    with psycopg.connect(env.url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (lock.lock_key(env),))
        res = runner.invoke(app, ["refresh", "--bars", "--lock-wait", "1"])
        assert res.exit_code == 1
        assert "another barsmith refresh is running" in res.output
    res = runner.invoke(app, ["refresh", "--bars"])
    assert res.exit_code == 0, res.output


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
        # a bad source row no longer fails a test (it becomes a 1D reject): break a built 1D row of
        # id 1 outside any range the next run re-reads, and touch id 52 so the tests run again
        sql(env, """update price_bars_1d set high = low - 1 where id = 1
                    and "timestamp" = (select min("timestamp") from price_bars_1d where id = 1)""")
        sql(env, """update price_histories set load_ts = now() where id = 52
                    and "timestamp" = (select max("timestamp") from price_histories where id = 52)""")
        bad = runner.invoke(app, ["refresh", "--bars"])
        assert bad.exit_code == 1
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
        assert f"│ {asset:>3}" in res.output or f" {asset} " in res.output
    sql(env, "update price_histories set load_ts = now()")
    res = runner.invoke(app, ["freshness", "--ids", "1"])
    assert res.exit_code == 0, res.output
    assert "source price_histories: pass" in res.output
