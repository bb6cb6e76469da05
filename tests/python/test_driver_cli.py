"""The driver end to end: sample data, load, refresh --all with every data test, embedded server."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from driver.cli import app

runner = CliRunner()


def test_sample_is_deterministic_and_covers_the_edge_cases(tmp_path):
    from datetime import date

    from driver import sample

    a = sample.generate(date(2026, 11, 21))
    b = sample.generate(date(2026, 11, 21))
    assert a == b
    days = {(r["id"], r["date"]) for r in a}
    assert any(d.month == 2 and d.day == 29 for _i, d in days), "a leap day"
    assert any(r["timehigh"] is None for r in a), "a NULL timehigh"
    assert len({r["id"] for r in a}) >= 3
    for asset in {r["id"] for r in a}:
        ds = sorted(d for i, d in days if i == asset)
        gaps = [(b_ - a_).days for a_, b_ in zip(ds, ds[1:]) if (b_ - a_).days > 1]
        assert 2 in gaps and 10 in gaps, "a missing day and a 9-day gap per id"


def test_sample_load_refresh_all_builds_and_passes_every_data_test(database, tmp_path, monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", database.url)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    out = tmp_path / "sample.csv"
    res = runner.invoke(app, ["sample", "--out", str(out), "--end", "2026-11-21", "--years", "2", "--load"])
    assert res.exit_code == 0, res.output
    assert "inserted" in res.output
    res = runner.invoke(app, ["refresh", "--all", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "barsmith refresh summary" in res.output and "price_bars_1d" in res.output
    assert "fail" not in res.output.split("data tests:")[-1].split("\n")[0]
    assert database.password == "" or database.password not in res.output


def test_refresh_without_a_stage_is_a_usage_error():
    res = runner.invoke(app, ["refresh"])
    assert res.exit_code == 2


def test_load_refuses_bad_file_with_exit_1(database, tmp_path, monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", database.url)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,timestamp,open\n1,x,2024-01-01T00:00:00Z,abc\n")
    res = runner.invoke(app, ["load", str(bad)])
    assert res.exit_code == 1
    assert "line 2, column 'open'" in res.output and "nothing was loaded" in res.output


def test_embedded_server_starts_reports_and_stops(tmp_path):
    """The newcomer path: no BARSMITH_DB_URL, the driver runs PostgreSQL under a local data dir."""
    env = {k: v for k, v in os.environ.items() if k != "BARSMITH_DB_URL"}
    env["BARSMITH_STATE_DIR"] = str(tmp_path / "state")
    driver = [sys.executable, "-m", "driver.cli"]

    def run(*args):
        return subprocess.run(driver + list(args), env=env, capture_output=True, text=True, timeout=120)

    try:
        started = run("db", "start")
        assert started.returncode == 0, started.stderr
        assert "embedded PostgreSQL" in started.stdout
        status = run("db", "status")
        assert "running" in status.stdout
        connect = next(line for line in status.stdout.splitlines() if line.startswith("connect: psql "))
        psql = shlex.split(connect.removeprefix("connect: "))
        answer = subprocess.run(psql + ["-Atc", "select current_database()"], capture_output=True, text=True,
                                timeout=60, env=env)
        assert answer.returncode == 0 and answer.stdout.strip() == "barsmith", answer.stderr
        sample = tmp_path / "s.csv"
        loaded = run("sample", "--out", str(sample), "--end", "2025-01-31", "--years", "1", "--load")
        assert loaded.returncode == 0, loaded.stderr
        assert "inserted" in loaded.stdout
    finally:
        stopped = run("db", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert "stopped" in run("db", "status").stdout
    assert (Path(env["BARSMITH_STATE_DIR"]) / "pgdata" / "PG_VERSION").exists()


def test_db_status_prints_a_psql_command_that_connects(database, monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", database.url)
    res = runner.invoke(app, ["db", "status"])
    assert res.exit_code == 0, res.output
    connect = next(line for line in res.output.splitlines() if line.startswith("connect: psql "))
    answer = subprocess.run(shlex.split(connect.removeprefix("connect: ")) + ["-Atc", "select current_database()"],
                            capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0 and answer.stdout.strip() == database.dbname, answer.stderr
    assert "password" not in connect


def test_mask_url_hides_passwords():
    from driver.db import mask_secrets, mask_url

    assert mask_url("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "s3cret" not in mask_secrets("connect failed for postgresql://u:s3cret@h/db and password=s3cret x")
