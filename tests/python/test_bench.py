"""benchmarks/bench_build.py runs end to end on a tiny data set and reports every step.

Its figures are not asserted (speed is measured by the script, never by a timed test): this only
keeps the script working as the models change: the dependency order of the one-model-at-a-time
full build (each model built twice here: the median of --repeat builds, with their spread), the
copy floors, the vacuum and both one-day runs.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from .helpers import drop_database

ROOT = Path(__file__).resolve().parents[2]


def test_bench_build_runs_every_step_in_dependency_order(server, database, tmp_path):
    env = dict(os.environ, BARSMITH_DB_URL=server.url, DBT_TARGET_PATH=str(tmp_path / "target"))
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_build.py", "--ids", "3", "--days", "60",
         "--select", "+price_bars_multi_tf_cal_iso", "--database", database.dbname, "--repeat", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    split = next(i for i, line in enumerate(lines) if line.startswith("one-day"))
    models = ["price_bars_1d", "int_bars_daily_prep", "price_bars_multi_tf_cal_iso"]
    full = [f for f in (line.split() for line in lines[:split]) if f and f[0] in models]
    # each model once, built (and printed) after what it reads
    assert [f[0] for f in full] == models, done.stdout
    for fields in full:
        rows, seconds, wal, copy_s, copy_wal, ratio, index_s, ratio_indexed = (
            float(fields[k].replace(",", "")) for k in (1, 2, 5, 6, 7, 8, 9, 10))
        assert len(fields) == 11 and rows > 0 and seconds > 0 and ratio > 0, fields
        # copy + the model's own indexes is the higher floor (printed rounded: tiny builds show 0.00 s)
        assert index_s >= 0 and 0 < ratio_indexed <= ratio, fields
        # the median of two builds is the faster one: the spread starts at it
        fastest, slowest = (float(v) for v in fields[3].split("-"))
        assert fastest == seconds <= slowest, fields
        assert min(wal, copy_wal, copy_s) >= 0, fields  # printed rounded: tiny copies show 0.00 s
    # 3 ids x 60 days, a few missing days: the 1D model holds every generated row
    assert 0 < float(full[0][1].replace(",", "")) <= 180
    assert any(line.startswith("vacuum (analyze) of the 3 tables") for line in lines[:split]), done.stdout
    one_day = [f for f in (line.split() for line in lines[split:]) if f and f[0] in models]
    assert [f[0] for f in one_day] == models, done.stdout
    assert any(line.startswith("total: full") for line in lines[split:]), done.stdout


def test_bench_floor_reports_the_model_and_both_lower_bounds(server, database, tmp_path):
    env = dict(os.environ, BARSMITH_DB_URL=server.url, DBT_TARGET_PATH=str(tmp_path / "target"))
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_floor.py", "--ids", "3", "--days", "60", "--database", database.dbname],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = {f[0]: f for f in (line.split() for line in done.stdout.splitlines()) if f and f[0] in
            ("model", "minimal", "sorted")}
    assert sorted(rows) == ["minimal", "model", "sorted"], done.stdout
    counts = {k: int(v[1].replace(",", "")) for k, v in rows.items()}
    # both lower bounds emit one row per snapshot row of the model, with 8 columns
    assert counts["model"] > 0 and counts["minimal"] == counts["sorted"] == counts["model"], done.stdout
    assert rows["minimal"][2] == rows["sorted"][2] == "8", done.stdout
    # printed rounded to 0.01 s: the two small queries show 0.00 s on 3 ids x 60 days
    assert float(rows["model"][3]) > 0 and all(float(v[3]) >= 0 for v in rows.values()), done.stdout
    assert any(line.startswith("parallel plan for the minimal query's windows: ")
               for line in done.stdout.splitlines()), done.stdout


def test_bench_e2e_times_every_run_of_the_users_path(server, database, tmp_path):
    """benchmarks/bench_e2e.py on 3 ids x 60 days: every run of the user's path is timed and split
    into models, tests and the rest (figures not asserted, only that they are there and add up)."""
    env = dict(os.environ, BARSMITH_DB_URL=server.url, DBT_TARGET_PATH=str(tmp_path / "target"))
    done = subprocess.run([sys.executable, "benchmarks/bench_e2e.py", "--ids", "3", "--days", "60",
                           "--prefix", database.dbname],  # (not the benchmark's own databases)
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    for suffix in ("_empty", "_subset"):
        drop_database(server, dataclasses.replace(database, dbname=database.dbname + suffix))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    rows = {line[:22].strip(): line[22:].split() for line in done.stdout.splitlines()
            if line[:22].strip() in ("full build", "one-day append 1", "one-day append 2", "no-op",
                                     "no-op, --force", "one-row correction", "empty db (fixed cost)",
                                     "empty db, --force", "bars, reference subset")}
    assert len(rows) == 9, done.stdout
    up_to_date = ("no-op", "empty db (fixed cost)")  # dbt does not start (driver/uptodate.py)
    for label, (wall, models, tests, rest, n_models, n_tests) in rows.items():
        assert float(wall) > 0, (label, done.stdout)
        if label in up_to_date:
            assert int(n_models) == 0 and int(n_tests) == 0 and float(models) == 0, (label, done.stdout)
        else:
            assert float(models) > 0 and int(n_models) > 0, (label, done.stdout)
        assert abs(float(models) + float(tests) + float(rest) - float(wall)) < 0.2, label
    assert int(rows["full build"][5]) > 0, "the full build runs the data tests"
    rejects = [line for line in done.stdout.splitlines() if line.strip().startswith("ema_rejects: ")]
    assert len(rejects) == 3 and all("nan" not in line for line in rejects), done.stdout
