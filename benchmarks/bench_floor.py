"""How close can a bar snapshot get to the copy floor? Lower bounds for the anchored bars.

The anchored families carry the same per-row work as the calendar ones but fewer rows per bar
and cheap copies, so their ratio to the copy floor is the worst of the five families. This script
builds `price_bars_multi_tf_cal_anchor_iso` on generated data and then times, against a copy of
each one's own output (median of three copies, each after a CHECKPOINT):

  model     the family's full build (dbt: select, write, unique index, partial index, audit, analyze)
  minimal   the least a bar-to-date snapshot computes: the bar's rows read once, in order, with FOUR
            running aggregates (volume sum, high max, low min, first missing day), 8 columns written,
            no index; the model computes seven, plus time_open / time_high / time_low and 23 more
            columns. Same shape as the model: one index range scan and one window per bar.
  sorted    the same four aggregates as ONE window over all rows (partition by id, tf, bar): a
            sort of the snapshot rows instead of a scan per bar.
and reports whether PostgreSQL gives the minimal query a parallel plan (a Gather above the window:
the windows would run in workers). It prints figures; it asserts nothing.

    python benchmarks/bench_floor.py                  # 100 ids x 1500 days
    python benchmarks/bench_floor.py --days 3000

Uses BARSMITH_DB_URL when set (a database `barsmith_floor` is created on that server), else an
embedded server under a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_build as bench  # noqa: E402

MODEL = "price_bars_multi_tf_cal_anchor_iso"

# one row per bar of the model: its id, tf and first / last local day (from the daily preparation)
BARS = f"""
create table bench_floor_bars as
select m.id, m.tf, m.bar_seq, min(p.ld) as lo, max(p.ld) as hi
from {MODEL} as m
inner join int_bars_daily_prep as p on m.id = p.id and m.time_close = p.ts
group by m.id, m.tf, m.bar_seq
order by m.id, m.tf, m.bar_seq
"""

AGGREGATES = """
    sum(r.vol) over w as volume,
    max(r.high) over w as high,
    min(r.low) over w as low,
    min(r.gap_start) over w as first_gap"""

MINIMAL = f"""
select b.id, b.tf, w.*
from bench_floor_bars as b
cross join lateral (
    select r.ts as time_close, r.close, {AGGREGATES}
    from int_bars_daily_prep as r
    where r.id = b.id and r.ld between b.lo and b.hi
    window w as (order by r.ld rows between unbounded preceding and current row)
) as w
"""

SORTED = f"""
select b.id, b.tf, r.ts as time_close, r.close, {AGGREGATES}
from bench_floor_bars as b
inner join int_bars_daily_prep as r on r.id = b.id and r.ld between b.lo and b.hi
window w as (partition by b.id, b.tf, b.bar_seq order by r.ld rows between unbounded preceding and current row)
"""


def timed_create(conn, name: str, query: str) -> float:
    conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))
    bench.checkpoint(conn)
    started = time.monotonic()
    conn.execute(sql.SQL("create table {} as ").format(sql.Identifier(name)) + sql.SQL(query))
    return time.monotonic() - started


def parallel_windows(conn) -> bool:
    """Whether the minimal query's plan runs its windows under a Gather, with parallelism made free."""
    conn.execute("begin")
    try:
        for setting in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0",
                        "max_parallel_workers_per_gather = 2"):
            conn.execute(f"set local {setting}")
        plan = [r[0] for r in conn.execute("explain (costs off) " + MINIMAL).fetchall()]
    finally:
        conn.execute("rollback")
    gather = next((i for i, line in enumerate(plan) if "Gather" in line), None)
    window = next((i for i, line in enumerate(plan) if "WindowAgg" in line), None)
    if gather is None or window is None:
        return False
    depth = len(plan[gather]) - len(plan[gather].lstrip())
    # the WindowAgg is inside the Gather's subtree when it comes after it, indented deeper
    return window > gather and all(len(line) - len(line.lstrip()) > depth for line in plan[gather + 1:window + 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--days", type=int, default=1500)
    parser.add_argument("--database", default="barsmith_floor")
    args = parser.parse_args()
    os.environ["BARSMITH_THREADS"] = "1"

    with tempfile.TemporaryDirectory(prefix="barsmith-floor-") as tmp:
        os.environ.setdefault("DBT_TARGET_PATH", str(Path(tmp) / "target"))
        server, handle = bench.server_connection(Path(tmp))
        connection = bench.fresh_database(server, args.database)
        with connection.connect(autocommit=True) as conn:
            bench.load_source(conn, args.ids, args.days, "2020-01-01")
            print(bench.server_settings(conn))
            bench.dbt(connection, ["seed"], "dim_timeframe")
            nodes = bench.dbt(connection, ["run"], f"+{MODEL}")
            conn.execute(BARS)
            conn.execute("analyze bench_floor_bars")
            n_bars = conn.execute("select count(*) from bench_floor_bars").fetchone()[0]
            print(f"{MODEL}: {n_bars:,} bars\n")

            print(f"{'query':10} {'rows':>12} {'columns':>8} {'seconds':>9} {'copy s':>8} {'ratio':>6}")
            results = [("model", MODEL, nodes[MODEL].seconds)]
            for label, query in (("minimal", MINIMAL), ("sorted", SORTED)):
                results.append((label, f"bench_floor_{label}", timed_create(conn, f"bench_floor_{label}", query)))
            for label, table, seconds in results:
                rows = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table))).fetchone()[0]
                columns = conn.execute("select count(*) from information_schema.columns where table_name = %s",
                                       (table,)).fetchone()[0]
                floor, _, _ = bench.copy_floor(conn, table, indexes=False)
                print(f"{label:10} {rows:>12,} {columns:>8} {seconds:>9.2f} {floor:>8.2f} "
                      f"{seconds / floor if floor else 0:>6.2f}", flush=True)
            print(f"\nparallel plan for the minimal query's windows: {'yes' if parallel_windows(conn) else 'no'}")
        if handle is not None:
            handle.cleanup()


if __name__ == "__main__":
    main()
