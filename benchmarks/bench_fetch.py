"""Speed of `driver fetch` and of the completeness models, against the loopback fake providers.

1. `fetch --gaps` of N ids x D days (CoinMarketCap's format, tests/python/fakeprovider.py on
   127.0.0.1) into an empty source: requests, wall seconds, the seconds requests waited for a
   rate-limit token, spent in HTTP and in the database (summed over the concurrent pieces), rows/s
   into the source. Run twice: with the token bucket (--rate-limit) and without one, so the wall
   time the limit costs is the difference.
2. The one-day fetch: the fake gains a day, as_of moves a day, `fetch --gaps` again.
3. source_gaps + source_completeness on the N x D source: `dbt run` of the two models (dbt's node
   seconds), then again after the one-day fetch (they are tables for now: every run is a full build).

    python benchmarks/bench_fetch.py                        # 100 ids x 1500 days
    python benchmarks/bench_fetch.py --ids 10 --days 100    # a quick look

Uses BARSMITH_DB_URL (a database `barsmith_bench_fetch` is created on that server), else an
embedded server under a temporary directory. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_build import fresh_database, server_connection  # noqa: E402

from driver import fetch as fetchmod  # noqa: E402
from driver import gaps as gapsmod  # noqa: E402
from driver.dbt import invoke  # noqa: E402
from driver.providers.base import RateLimit  # noqa: E402
from driver.providers.http import RetryPolicy  # noqa: E402
from tests.python.helpers import drop_database  # noqa: E402

SOURCE_VARS = {"source_schema": "public", "source_table": "price_histories"}
KEY = "bench-key-not-secret"


def fetch(connection, as_of: datetime, rate: RateLimit | None, args) -> dict:
    options = fetchmod.FetchOptions(
        gaps=True, seed=False, as_of=as_of, chunk_days=args.chunk_days, max_concurrent=args.max_concurrent,
        rate_limits={"cmc": rate} if rate else {"cmc": RateLimit(10**9, 1.0)}, timeout=30.0,
        policy=RetryPolicy(retries=3, backoff=0.1), quiet=True)
    result = fetchmod.run(connection, options)
    if result.exit_code:
        raise SystemExit(f"fetch failed: {result.audit['failures'][:3]}")
    return result.audit


def report(label: str, audit: dict) -> None:
    s, t = audit["summary"], audit["timing"]
    rows = s["rows_loaded"]
    print(f"{label}: {s['requests']:,} requests, {s['pieces']:,} pieces, {rows:,} rows "
          f"({s['inserted']:,} inserted) in {t['fetch_wall_s']:.2f} s wall = {rows / t['fetch_wall_s']:,.0f} rows/s")
    print(f"    summed over requests: waiting for a rate-limit token {t['rate_limit_wait_s']:.2f} s, "
          f"in HTTP {t['http_s']:.2f} s; in the database {t['db_s']:.2f} s; "
          f"gap models before/after {t['gaps_before_dbt_s']:.1f} / {t['gaps_after_dbt_s']:.1f} s (dbt)")


def models(connection, as_of: datetime) -> dict[str, float]:
    os.environ["BARSMITH_GAPS_AS_OF"] = as_of.isoformat()
    inv = invoke(connection, ["run"], SOURCE_VARS, ["--select", "source_gaps", "source_completeness", "--quiet"])
    if not inv.success:
        raise SystemExit(f"dbt run failed: {inv.error} {[n.message[:300] for n in inv.failed]}")
    return {n.name: n.seconds for n in inv.nodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--days", type=int, default=1500)
    parser.add_argument("--rate-limit", default="10/1", help="token bucket of the timed run, REQUESTS/SECONDS")
    parser.add_argument("--max-concurrent", type=int, default=8)
    parser.add_argument("--chunk-days", type=int, default=365)
    parser.add_argument("--database", default="barsmith_bench_fetch")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    rate = fetchmod.parse_rate_limits(args.rate_limit)["*"]

    tmp = Path(tempfile.mkdtemp(prefix="bench_fetch_"))
    os.environ.setdefault("DBT_TARGET_PATH", str(tmp / "target"))
    os.environ["BARSMITH_STATE_DIR"] = str(tmp / "state")
    server, embedded = server_connection(tmp)
    connection = fresh_database(server, args.database)
    first = date(2020, 1, 1)
    last = first + timedelta(days=args.days - 1)
    as_of = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=1)

    # the fake runs in a process of its own: its JSON encoding must not compete for this one's GIL
    started = time.monotonic()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.python.fakeprovider", "--key", KEY, "--ids", str(args.ids),
         "--first", first.isoformat(), "--last", (last + timedelta(days=1)).isoformat()],
        cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        url = fake.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the fake provider did not start: {url!r}")
        print(f"fake CoinMarketCap on {url} (a separate process): {args.ids} ids x {args.days} days "
              f"(+1 for the one-day run), ready in {time.monotonic() - started:.1f} s")
        os.environ.update(BARSMITH_CMC_URL=url, CMC_PRO_API_KEY=KEY)
        with connection.connect() as conn:
            conn.execute("create table assets (id integer primary key, symbol text, name text, provider text, "
                         "calendar text, start_date date, end_date date)")
            for i in range(1, args.ids + 1):
                conn.execute("insert into assets values (%s, %s, %s, 'cmc', '24/7', %s, null)",
                             (i, f"B{i}", f"Bench{i}", first))
        gapsmod.compute(connection, SOURCE_VARS, as_of, seed=False)  # dbt parse, calendar tables, empty source

        print(f"\nfetch --gaps, {args.max_concurrent} pieces at once, {args.chunk_days}-day pieces:")
        unlimited = fetch(connection, as_of, None, args)
        report("  no rate limit   ", unlimited)
        with connection.connect() as conn:
            conn.execute("truncate price_histories")
        limited = fetch(connection, as_of, rate, args)
        report(f"  token bucket {rate}", limited)
        cost = limited["timing"]["fetch_wall_s"] - unlimited["timing"]["fetch_wall_s"]
        print(f"    the rate limit cost {cost:.2f} s of wall time "
              f"({limited['summary']['requests']} requests at {rate.requests / rate.seconds:g}/s need at least "
              f"{max(limited['summary']['requests'] - rate.requests, 0) / (rate.requests / rate.seconds):.1f} s)")

        full = models(connection, as_of)
        again = models(connection, as_of)
        one_day = fetch(connection, as_of + timedelta(days=1), rate, args)
        print()
        report("one-day fetch --gaps", one_day)
        after = models(connection, as_of + timedelta(days=1))
        print(f"\nsource_gaps + source_completeness on {args.ids} x {args.days} (dbt node seconds):")
        for name in ("source_gaps", "source_completeness"):
            print(f"  {name:20s} full build {full[name]:.2f} s, again {again[name]:.2f} s, "
                  f"after the one-day fetch {after[name]:.2f} s")
        print(f"  total                full build {sum(full.values()):.2f} s, "
              f"after the one-day fetch {sum(after.values()):.2f} s")
    finally:
        fake.terminate()
        fake.wait(timeout=30)
        if not args.keep:
            drop_database(server, connection)
        if embedded is not None:
            embedded.cleanup()


if __name__ == "__main__":
    main()
