"""The same small workload on plain PostgreSQL and on a Citus cluster, per model (README: Scaling out).

Workload W1: a generated history of --ids ids x --days days (benchmarks/bench_build.py's generator,
a few days missing per id), the seeds, then the bar and EMA models in one `dbt run` (full build), then
one more day for every id and one incremental `dbt run`. Both databases get the same rows; the
models run one at a time (threads 1) so that each model's seconds are its own. For each model it
prints the rows it wrote, the seconds on PostgreSQL and on Citus and their ratio (Citus /
PostgreSQL), for the full build and for the one-day incremental, and at the end the size of every
table (PostgreSQL: pg_total_relation_size; Citus: citus_total_relation_size, all shards and
replicas of reference tables).

On one machine the cluster (a coordinator and two workers sharing the same cores) shows the cost
of distribution per statement (planning on the coordinator, one task per shard, the 2PC commit of
every multi-shard write), not a speed-up.

    python benchmarks/bench_citus.py                 # 10 ids x 730 days, 4 shards
    python benchmarks/bench_citus.py --ids 20 --days 1500 --shards 8

PostgreSQL: the server of BARSMITH_DB_URL (required). Citus: the local cluster of
../shared/citus/build.sh (CITUS_PORTS, default 57101 57102 57103; the first is the coordinator;
start it with `build.sh start`). A database --database is created on both (dropped first).
Never a timed assertion: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_build import GENERATE, fresh_database  # noqa: E402

from driver import db as dbmod  # noqa: E402
from driver.dbt import invoke  # noqa: E402
from driver.load import ensure_table  # noqa: E402

# the models of W1: the bar and EMA stages, as benchmarks/bench_build.py (the completeness models of
# `driver gaps` are not part of W1)
SELECT = "tag:bars tag:emas"


def citus_database(ports: list[int], name: str, shards: int) -> dbmod.Connection:
    """A new database `name` on every node of the cluster, with the citus extension, the workers
    added to the coordinator and `shards` shards per distributed table."""
    coordinator, *workers = ports
    for port in ports:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute("set client_min_messages = warning")
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=name, autocommit=True) as conn:
            conn.execute("create extension citus")
    with psycopg.connect(host="127.0.0.1", port=coordinator, user="postgres", dbname=name, autocommit=True) as conn:
        conn.execute("select citus_set_coordinator_host('127.0.0.1', %s)", (coordinator,))
        for port in workers:
            conn.execute("select citus_add_node('127.0.0.1', %s)", (port,))
        conn.execute(sql.SQL("alter database {} set citus.shard_count = {}").format(
            sql.Identifier(name), sql.Literal(shards)))
    return dbmod.Connection("127.0.0.1", coordinator, "postgres", "", name, "public", False)


def run_all(connection: dbmod.Connection, command: str = "run") -> tuple[dict[str, float], float]:
    """One `dbt run` of every model: seconds per model and the wall-clock seconds of the invocation."""
    started = time.monotonic()
    extra = ["--quiet"] + (["--select", SELECT] if command == "run" else [])
    # the generated history is old: the freshness gate would defer every id of the incremental run
    inv = invoke(connection, [command], {"skip_stale_check": True}, extra)
    wall = time.monotonic() - started
    if not inv.success:
        failed = "\n".join(f"{n.name}: {n.message[:300]}" for n in inv.failed)
        raise SystemExit(f"dbt run on {connection.dbname} (port {connection.port}) failed: {inv.error or ''}\n{failed}")
    return {n.name: n.seconds for n in inv.nodes if n.resource_type in ("model", "seed")}, wall


def rows_written(connection: dbmod.Connection, since) -> dict[str, int]:
    with connection.connect() as conn:
        return dict(conn.execute("select model, sum(rows_written)::bigint from barsmith_run_log "
                                 "where recorded_at >= %s group by model", (since,)).fetchall())


def table_sizes(connection: dbmod.Connection, citus: bool) -> dict[str, int]:
    size = "citus_total_relation_size" if citus else "pg_total_relation_size"
    with connection.connect() as conn:
        names = [t for (t,) in conn.execute("select table_name from information_schema.tables where "
                                            "table_schema = 'public' and table_type = 'BASE TABLE'").fetchall()]
        placed = set()
        if citus:
            placed = {t for (t,) in conn.execute("select logicalrelid::regclass::text from pg_dist_partition")}
        out = {}
        for name in names:
            fn = size if name in placed else "pg_total_relation_size"
            out[name] = conn.execute(sql.SQL("select {}({})").format(sql.Identifier(fn), sql.Literal(name))).fetchone()[0]
        return out


def workload(connection: dbmod.Connection, ids: int, days: int, start: str) -> dict:
    """W1 on one database: load, full build, one more day, incremental."""
    with connection.connect(autocommit=True) as conn:
        ensure_table(conn, "public", "price_histories")
        conn.execute(GENERATE, {"ids": ids, "days": days, "start": start, "load_ts": "2025-01-01"})
        conn.execute("analyze price_histories")
        n_source = conn.execute("select count(*) from price_histories").fetchone()[0]
        since = conn.execute("select clock_timestamp()").fetchone()[0]
    run_all(connection, "seed")
    full, full_wall = run_all(connection)
    full_rows = rows_written(connection, since)
    with connection.connect(autocommit=True) as conn:
        conn.execute(GENERATE.replace("generate_series(0, %(days)s::int - 1)",
                                      "generate_series(%(days)s::int, %(days)s::int)"),
                     {"ids": ids, "days": days, "start": start, "load_ts": "2025-01-02"})
        since = conn.execute("select clock_timestamp()").fetchone()[0]
    inc, inc_wall = run_all(connection)
    return {"source": n_source, "full": full, "full_wall": full_wall, "full_rows": full_rows,
            "inc": inc, "inc_wall": inc_wall, "inc_rows": rows_written(connection, since)}


def ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:6.2f}" if a and b is not None else "     -"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=10)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--shards", type=int, default=4, help="citus.shard_count of the Citus database")
    parser.add_argument("--database", default="barsmith_bench_citus")
    args = parser.parse_args()
    url = os.environ.get("BARSMITH_DB_URL", "").strip()
    if not url:
        raise SystemExit("BARSMITH_DB_URL (the plain PostgreSQL server) is not set")
    ports = [int(p) for p in os.environ.get("CITUS_PORTS", "57101 57102 57103").split()]
    os.environ["BARSMITH_THREADS"] = "1"
    start = "2020-01-01"

    with tempfile.TemporaryDirectory(prefix="barsmith-bench-citus-") as tmp:
        os.environ.setdefault("DBT_TARGET_PATH", str(Path(tmp) / "target"))
        plain = fresh_database(dbmod.from_url(url), args.database)
        citus = citus_database(ports, args.database, args.shards)
        results = {}
        for engine, connection in (("postgres", plain), ("citus", citus)):
            started = time.monotonic()
            results[engine] = workload(connection, args.ids, args.days, start)
            print(f"{engine}: W1 in {time.monotonic() - started:.1f} s", flush=True)
        sizes = {"postgres": table_sizes(plain, False), "citus": table_sizes(citus, True)}

    p, c = results["postgres"], results["citus"]
    print(f"\nW1: {args.ids} ids x {args.days} days = {p['source']:,} source rows; Citus: coordinator + "
          f"{len(ports) - 1} workers on one machine, {args.shards} shards; one model at a time")
    print(f"\n{'model':36} {'rows':>9} {'full PG s':>9} {'Citus s':>8} {'ratio':>6}   "
          f"{'1-day rows':>10} {'PG s':>6} {'Citus s':>8} {'ratio':>6}")
    for name in p["full"]:
        if name not in c["full"]:
            continue
        print(f"{name:36} {p['full_rows'].get(name, 0):>9,} {p['full'][name]:>9.2f} {c['full'][name]:>8.2f} "
              f"{ratio(p['full'][name], c['full'][name])}   {p['inc_rows'].get(name, 0):>10,} "
              f"{p['inc'].get(name, 0):>6.2f} {c['inc'].get(name, 0):>8.2f} "
              f"{ratio(p['inc'].get(name), c['inc'].get(name))}")
    for key, label in (("full", "full build"), ("inc", "one-day incremental")):
        ps, cs = sum(p[key].values()), sum(c[key].values())
        print(f"{label}: models {ps:.1f} s on PostgreSQL, {cs:.1f} s on Citus (x{cs / ps if ps else 0:.2f}); "
              f"dbt run wall clock {p[key + '_wall']:.1f} s / {c[key + '_wall']:.1f} s")
    mismatched = [n for n in p["full_rows"] if p["full_rows"][n] != c["full_rows"].get(n)]
    print(f"rows written: {'the same per model' if not mismatched else 'DIFFERENT for ' + ', '.join(mismatched)}")
    total = {e: sum(s.values()) for e, s in sizes.items()}
    print(f"\nstorage after the incremental: PostgreSQL {total['postgres'] / 2**20:.1f} MB, "
          f"Citus {total['citus'] / 2**20:.1f} MB (all shards, reference tables on every node)")
    for name in sorted(sizes["postgres"], key=lambda n: -sizes["postgres"][n])[:8]:
        print(f"  {name:36} {sizes['postgres'][name] / 2**20:8.1f} MB {sizes['citus'].get(name, 0) / 2**20:8.1f} MB")


if __name__ == "__main__":
    main()
