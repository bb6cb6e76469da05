"""benchmarks/bench_build.py runs end to end on a tiny data set and reports every step.

Its figures are not asserted (speed is measured by the script, never by a timed test): this only
keeps the script working as the models change: the dependency order of the one-model-at-a-time
full build, the copy floors, the vacuum and both one-day runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_build_runs_every_step_in_dependency_order(server, database, tmp_path):
    env = dict(os.environ, BARSMITH_DB_URL=server.url, DBT_TARGET_PATH=str(tmp_path / "target"))
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_build.py", "--ids", "3", "--days", "60",
         "--select", "+price_bars_multi_tf_cal_iso", "--database", database.dbname],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    models = ["price_bars_1d", "int_bars_daily_prep", "price_bars_multi_tf_cal_iso"]
    full_rows = {}
    for line in lines:
        fields = line.split()
        if fields and fields[0] in models and fields[0] not in full_rows:
            full_rows[fields[0]] = (lines.index(line), fields)
    assert set(full_rows) == set(models), done.stdout
    # built (and printed) after what they read
    assert [m for m, _ in sorted(full_rows.items(), key=lambda kv: kv[1][0])] == models
    for _, fields in full_rows.values():
        rows, seconds, wal, copy_s, copy_wal, ratio = (float(fields[k].replace(",", "")) for k in (1, 2, 4, 5, 6, 7))
        assert rows > 0 and seconds > 0 and ratio > 0, fields
        assert min(wal, copy_wal, copy_s) >= 0, fields  # printed rounded: tiny copies show 0.00 s
    # 3 ids x 60 days, a few missing days: the 1D model holds every generated row
    assert 0 < float(full_rows["price_bars_1d"][1][1].replace(",", "")) <= 180
    assert any(line.startswith("vacuum (analyze) of the 3 tables") for line in lines), done.stdout
    one_day = [line.split() for line in lines[lines.index(next(x for x in lines if x.startswith("one-day"))):]]
    assert sum(1 for f in one_day if f and f[0] in models) == 3, done.stdout
    assert any(line.startswith("total: full") for line in lines), done.stdout
