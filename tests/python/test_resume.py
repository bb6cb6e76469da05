"""Issue 18 item 8: a refresh killed with SIGKILL is found unfinished, and `--resume` re-runs it with
its original options until the tables equal a full refresh."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from driver import load as loadmod

from .helpers import table_rows

OPTIONS = ["--skip-stale-check", "--tfs", "7D,1W_CAL_US", "--periods", "10,20"]


def driver(*args: str, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "driver.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def runs(database) -> list[tuple]:
    with database.connect() as conn:
        return conn.execute("select run_id, status, failed_stage, remaining_stages, options, resumed_from "
                            "from barsmith_refresh_runs order by run_id").fetchall()


def test_sigkill_while_an_ema_model_builds_then_resume_keeps_the_options(database, golden_dir, tmp_path):
    loadmod.load_files(database, [golden_dir / "price_histories.csv"], "public", "price_histories")
    env = dict(os.environ, BARSMITH_DB_URL=database.url, BARSMITH_LOG_DIR=str(tmp_path / "logs"),
               BARSMITH_STATE_DIR=str(tmp_path / "state"), DBT_TARGET_PATH=str(tmp_path / "target"))
    proc = subprocess.Popen([sys.executable, "-m", "driver.cli", "refresh", "--all", *OPTIONS], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        stage = None
        while time.monotonic() < deadline and proc.poll() is None:
            with database.connect() as conn:
                if conn.execute("select to_regclass('barsmith_refresh_runs')").fetchone()[0]:
                    stage = conn.execute("select max(current_stage) from barsmith_refresh_runs").fetchone()[0]
                    models = conn.execute("select count(*) from pg_stat_activity where datname = current_database() "
                                          "and query ilike '%ema_multi_tf%' and state = 'active' "
                                          "and pid <> pg_backend_pid()").fetchone()[0]
                    if stage == "all" and models:
                        break
            time.sleep(0.05)
        assert proc.poll() is None, "the refresh ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert stage == "all", "killed while the build ran an EMA model"
    assert [r[1] for r in runs(database)] == ["running"], "a killed run leaves its row running"

    resumed = driver("refresh", "--resume", env=env)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-4000:]
    assert re.search(r"run 1 \(started .*\) did not finish \(driver killed or connection lost\); marked "
                     r"interrupted: driver refresh --resume re-runs all", out), out[-4000:]
    assert "resuming run 1 (interrupted in stage all): refresh --all --tfs 7D,1W_CAL_US --periods 10,20 " \
           "--skip-stale-check, stages all" in out
    assert "nothing to resume" not in out
    (first, second) = runs(database)
    assert first[1:4] == ("interrupted", "all", ["all"])
    assert second[1] == "success" and second[5] == 1 and second[4] == first[4], "the original options, kept"
    again = driver("refresh", "--resume", env=env)
    assert again.returncode == 0 and "nothing to resume" in again.stdout

    # the tables equal a full refresh with the same options
    tables = {"ema_multi_tf": ["id", "tf", "period", "ts"], "ema_multi_tf_cal_us": ["id", "tf", "period", "ts"],
              "ema_multi_tf_v2": ["id", "tf", "period", "ts"]}
    skip = ("updated_at", "ingested_at", "computed_at")
    after_resume = {t: table_rows(_Project(database), t, keys, skip) for t, keys in tables.items()}
    assert all(after_resume.values()), "the resumed EMA stage wrote rows for the stale golden ids"
    full = driver("refresh", "--all", "--full-refresh", *OPTIONS, env=env)
    assert full.returncode == 0, (full.stdout + full.stderr)[-4000:]
    for table, keys in tables.items():
        assert table_rows(_Project(database), table, keys, skip) == after_resume[table], table


class _Project:
    """The little of helpers.DbtProject that table_rows needs."""

    def __init__(self, connection):
        self.connection = connection

    def frame(self, table, order_by, exclude):
        import pandas as pd

        with self.connection.connect() as conn:
            cur = conn.execute(f'select * from {table} order by {", ".join(order_by)}')  # test-owned names
            df = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
        return df.drop(columns=[c for c in exclude if c in df.columns])
