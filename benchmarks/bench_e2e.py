"""The daily run the way a user runs it: `driver load` then `driver refresh --all`, end to end.

For a generated history of N ids x D days it times, each in a fresh driver process:
  load        driver load of the whole history (one CSV)
  full        driver refresh --all on the new database (every table built whole)
  day 1, 2    one day appended to every id (driver load of a small CSV), then driver refresh --all
  no-op       driver refresh --all with nothing new (up to date: dbt does not start), then the
              same with --force (dbt starts and its 160 nodes find nothing)
  correction  one close of one id corrected 40 days before its newest day, then driver refresh --all
and prints each refresh's wall seconds split into models, data tests and the rest (dbt start-up,
seeds, hooks, the driver), from the per-node seconds the driver records in barsmith_refresh_runs;
the split adds up with one dbt thread (--threads, default 1). Then:
  fixed cost  driver refresh --all on a second database whose source table is empty, run twice
              (the second run is the fixed cost of a refresh: nothing to read, nothing to write),
              then with --force (the fixed cost of a refresh that starts dbt)
  bar subset  driver refresh --bars --full-refresh --tfs <the reference's timeframe subset> on a
              third database with the same history (issue 20's comparison with the reference)

    python benchmarks/bench_e2e.py                        # 100 ids x 1500 days
    python benchmarks/bench_e2e.py --ids 100 --days 3000
    python benchmarks/bench_e2e.py --ids 3 --days 60      # a smoke run (tests/python/test_bench.py)

Uses BARSMITH_DB_URL's server (databases barsmith_e2e, _empty, _subset, _scratch are dropped and
created on it; --prefix names them otherwise). Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_build import GENERATE  # noqa: E402
from driver import config  # noqa: E402
from driver import db as dbmod  # noqa: E402
from driver.load import ensure_table  # noqa: E402

# bars.md / the golden README: the reference's bar timeframes
REFERENCE_SUBSET = ("2D,3D,5D,7D,10D,14D,21D,30D,90D,360D,"
                    "1W_CAL_US,2W_CAL_US,4W_CAL_US,1W_CAL_ISO,2W_CAL_ISO,4W_CAL_ISO,"
                    "1W_CAL_ANCHOR_US,2W_CAL_ANCHOR_US,4W_CAL_ANCHOR_US,1W_CAL_ANCHOR_ISO,2W_CAL_ANCHOR_ISO,"
                    "4W_CAL_ANCHOR_ISO,1M_CAL,3M_CAL,6M_CAL,12M_CAL,1Y_CAL,2Y_CAL,3Y_CAL,"
                    "1M_CAL_ANCHOR,3M_CAL_ANCHOR,6M_CAL_ANCHOR,12M_CAL_ANCHOR,1Y_CAL_ANCHOR")
# The generated history is dated in the past (from 2020-01-01), so every id is stale for the freshness
# gate: without --skip-stale-check the incremental runs would leave the EMAs and features waiting.
REFRESH = ("refresh", "--all", "--quiet", "--skip-stale-check")
COLUMNS = ("id, name, timeopen, timeclose, timehigh, timelow, \"timestamp\", open, high, low, close, volume, "
           "marketcap, source_file, load_ts")


def check_name(value: str) -> str:
    """A database name prefix: a plain identifier by the driver's rule (config.check_identifier),
    at most 41 characters (room for the _scratch suffix and more)."""
    try:
        config.check_identifier(value, "--prefix")
    except config.ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(value) > 41:
        raise argparse.ArgumentTypeError(f"--prefix: {value!r} is longer than 41 characters")
    return value


def fresh_database(server: dbmod.Connection, name: str) -> dbmod.Connection:
    admin = conninfo.make_conninfo(server.url, dbname=server.dbname)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return dbmod.Connection(server.host, server.port, server.user, server.password, name, "public", False)


def write_csv(scratch: dbmod.Connection, path: Path, ids: int, first_day: int, last_day: int, start: str) -> int:
    """The generator of bench_build.py, days [first_day, last_day] of every id, as a CSV file in the
    source format (generated in a scratch table, written with COPY)."""
    with scratch.connect(autocommit=True) as conn:
        conn.execute("drop table if exists price_histories")
        ensure_table(conn, "public", "price_histories")
        conn.execute(GENERATE.replace("generate_series(0, %(days)s::int - 1)",
                                      f"generate_series({first_day}, {last_day})"),
                     {"ids": ids, "days": last_day + 1, "start": start, "load_ts": "2025-01-01"})
        with path.open("wb") as out, conn.cursor().copy(
                f"copy (select {COLUMNS} from price_histories order by id, \"timestamp\") to stdout "
                "with (format csv, header)") as copy:
            for chunk in copy:
                out.write(chunk)
        return conn.execute("select count(*) from price_histories").fetchone()[0]


def driver(connection: dbmod.Connection, *args: str) -> float:
    """Run the installed driver in its own process (the user's path); wall seconds."""
    env = {**os.environ, "BARSMITH_DB_URL": connection.url}
    started = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).with_name("driver")), *args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"driver {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return seconds


def split(connection: dbmod.Connection) -> tuple[float, float, int, int]:
    """(model seconds, test seconds, models, tests) of the newest run in barsmith_refresh_runs."""
    with connection.connect() as conn:
        timings = conn.execute("select timings from barsmith_refresh_runs order by run_id desc limit 1").fetchone()[0]
    models = tests = 0.0
    n_models = n_tests = 0
    for stage in (timings or {}).values():
        for unique_id, seconds in stage.get("nodes", {}).items():
            if unique_id.startswith("model."):
                models, n_models = models + seconds, n_models + 1
            elif unique_id.startswith("test."):
                tests, n_tests = tests + seconds, n_tests + 1
    return models, tests, n_models, n_tests


def nodes(connection: dbmod.Connection) -> dict[str, float]:
    """Seconds per dbt node (model.barsmith.x / test.barsmith.y) of the newest refresh."""
    with connection.connect() as conn:
        timings = conn.execute("select timings from barsmith_refresh_runs order by run_id desc limit 1").fetchone()[0]
    return {uid: secs for stage in (timings or {}).values() for uid, secs in stage.get("nodes", {}).items()}


def report(label: str, connection: dbmod.Connection, wall: float, slowest: int = 0) -> None:
    models, tests, n_models, n_tests = split(connection)
    rest = wall - models - tests
    print(f"{label:22} {wall:>9.1f} {models:>9.1f} {tests:>9.1f} {rest:>9.1f} {n_models:>7} {n_tests:>6}", flush=True)
    if slowest:
        per_node = nodes(connection)
        top = sorted(per_node.items(), key=lambda kv: -kv[1])[:slowest]
        print("    slowest: " + ", ".join(f"{uid.split('.', 2)[-1]} {secs:.2f}" for uid, secs in top))
        print(f"    ema_rejects: {per_node.get('model.barsmith.ema_rejects', float('nan')):.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--days", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=1, help="dbt threads (default 1: the split adds up)")
    parser.add_argument("--skip-subset", action="store_true", help="leave out the bar stage on the reference subset")
    parser.add_argument("--prefix", default="barsmith_e2e", type=check_name,
                        help="names of the databases it (re)creates: PREFIX, PREFIX_empty, PREFIX_subset, PREFIX_scratch")
    args = parser.parse_args()
    url = os.environ.get("BARSMITH_DB_URL", "").strip()
    if not url:
        raise SystemExit("set BARSMITH_DB_URL to the server to measure (databases are created on it)")
    os.environ["BARSMITH_THREADS"] = str(args.threads)
    server = dbmod.from_url(url)
    # The history ends in the past (a day later than today is rejected as future_timestamp): from
    # 2020-01-01 when that is early enough (the 100 x 1,500 figures), else as many days before today.
    start = min(date(2020, 1, 1), date.today() - timedelta(days=args.days + 30)).isoformat()
    with tempfile.TemporaryDirectory(prefix="barsmith-e2e-") as tmp:
        tmp_path = Path(tmp)
        os.environ["BARSMITH_LOG_DIR"] = str(tmp_path / "logs")
        scratch = fresh_database(server, f"{args.prefix}_scratch")
        history = tmp_path / "history.csv"
        rows = write_csv(scratch, history, args.ids, 0, args.days - 1, start)
        days = [tmp_path / f"day{n}.csv" for n in (1, 2)]
        for n, path in enumerate(days):
            write_csv(scratch, path, args.ids, args.days + n, args.days + n, start)
        print(f"source: {args.ids} ids x {args.days} days = {rows:,} rows; dbt threads {args.threads}")
        print(f"\n{'run':22} {'wall s':>9} {'models s':>9} {'tests s':>9} {'rest s':>9} {'models':>7} {'tests':>6}")

        db = fresh_database(server, args.prefix)
        print(f"{'load':22} {driver(db, 'load', str(history)):>9.1f}")
        full = driver(db, *REFRESH)
        report("full build", db, full)
        for n, path in enumerate(days, start=1):
            driver(db, "load", str(path))
            report(f"one-day append {n}", db, driver(db, *REFRESH), slowest=6)
        report("no-op", db, driver(db, *REFRESH))
        report("no-op, --force", db, driver(db, *REFRESH, "--force"))
        with db.connect() as conn:
            conn.execute('update price_histories set close = close * 1.01, load_ts = now() where id = 1 and '
                         '"timestamp" = (select max("timestamp") - interval \'40 days\' from price_histories '
                         'where id = 1)')
            conn.commit()
        report("one-row correction", db, driver(db, *REFRESH), slowest=6)

        empty = fresh_database(server, f"{args.prefix}_empty")
        header = tmp_path / "empty.csv"
        header.write_text(history.open().readline())
        driver(empty, "load", str(header))
        report("empty db, first", empty, driver(empty, *REFRESH))
        report("empty db (fixed cost)", empty, driver(empty, *REFRESH))
        report("empty db, --force", empty, driver(empty, *REFRESH, "--force"))

        if not args.skip_subset:
            subset = fresh_database(server, f"{args.prefix}_subset")
            driver(subset, "load", str(history))
            report("bars, reference subset", subset,
                   driver(subset, "refresh", "--bars", "--full-refresh", "--quiet", "--tfs", REFERENCE_SUBSET))

        admin = conninfo.make_conninfo(server.url, dbname=server.dbname)
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in (f"{args.prefix}_scratch",):
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
