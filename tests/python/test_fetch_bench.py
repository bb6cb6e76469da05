"""benchmarks/bench_fetch.py runs end to end on a tiny data set (its figures are printed, never
asserted: this only keeps the script working)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_fetch_reports_every_figure(server, database, tmp_path):
    env = dict(os.environ, BARSMITH_DB_URL=server.url, DBT_TARGET_PATH=str(tmp_path / "target"))
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_fetch.py", "--ids", "2", "--days", "40", "--chunk-days", "15",
         "--rate-limit", "50/1", "--database", database.dbname + "_f"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    # 2 ids x 40 days in 15-day pieces: 3 requests each, every row inserted, in both timed runs
    assert out.count("6 requests, 6 pieces, 80 rows (80 inserted)") == 2, out
    assert "one-day fetch --gaps: 2 requests, 2 pieces, 2 rows (2 inserted)" in out, out
    for name in ("source_gaps", "source_completeness"):
        assert any(line.split()[0] == name and "full build" in line for line in out.splitlines() if line.strip()), out
    assert "the rate limit cost" in out and "waiting for a rate-limit token" in out
