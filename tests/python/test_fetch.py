"""`driver fetch` against a loopback fake of CoinMarketCap and Polygon (tests/python/fakeprovider.py):
faults injected per request, the source compared with what the fake holds, the audit file read
back, and the API key looked for everywhere it could leak."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import exchange_calendars
import pytest
from typer.testing import CliRunner

from driver import fetch as fetchmod
from driver import load as loadmod
from driver.cli import app
from driver.providers.base import SOURCE_COLUMNS
from driver.providers.http import RetryPolicy

from .fakeprovider import FakeProviders, Fault

KEY = "sk-barsmith-test-" + uuid.uuid4().hex
FIRST, LAST = date(2024, 1, 1), date(2024, 3, 31)
AS_OF = datetime(2024, 4, 1, 12, 0, tzinfo=timezone.utc)  # 2024-03-31 is the last complete day
STOCK_ID = 900001
XNYS = exchange_calendars.get_calendar("XNYS", start="2023-12-01", end="2024-05-01")
SESSIONS = [d.date() for d in XNYS.sessions if FIRST <= d.date() <= LAST]


SOURCE_VARS = {"source_schema": "public", "source_table": "price_histories"}
# asset id -> (symbol, name, provider, calendar); each test uses its own ids in one shared database
# (one database for the module: dbt parses the project once for it, not once per test)
ASSETS = {
    1: ("BTC", "Bitcoin", "cmc", "24/7"), 52: ("XRP", "XRP", "cmc", "24/7"),
    STOCK_ID: ("AAPL", "Apple Inc.", "polygon", "XNYS"),
    2: ("ETH", "Ethereum", "cmc", "24/7"), 53: ("DOGE", "Dogecoin", "cmc", "24/7"),
    STOCK_ID + 1: ("MSFT", "Microsoft", "polygon", "XNYS"),
    3: ("LTC", "Litecoin", "cmc", "24/7"), 4: ("ADA", "Cardano", "cmc", "24/7"), 54: ("SOL", "Solana", "cmc", "24/7"),
}


@pytest.fixture()
def fake(monkeypatch):
    server = FakeProviders(KEY, page_size=20).start()
    for asset_id, (symbol, name, provider, _cal) in ASSETS.items():
        if provider == "cmc":
            server.add_crypto(asset_id, name, symbol, FIRST, LAST)
        else:
            server.add_stock(asset_id, symbol, SESSIONS)
    monkeypatch.setenv("BARSMITH_CMC_URL", server.url)
    monkeypatch.setenv("BARSMITH_POLYGON_URL", server.url)
    monkeypatch.setenv("CMC_PRO_API_KEY", KEY)
    monkeypatch.setenv("POLYGON_API_KEY", KEY)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_db(server, tmp_path_factory):
    from .helpers import drop_database, new_database

    database = new_database(server)
    with database.connect() as conn:
        conn.execute("create table assets (id integer primary key, symbol text, name text, provider text, "
                     "calendar text, start_date date, end_date date)")
        for asset_id, (symbol, name, provider, cal) in ASSETS.items():
            conn.execute("insert into assets values (%s, %s, %s, %s, %s, %s, null)",
                         (asset_id, symbol, name, provider, cal, FIRST))
    yield database, tmp_path_factory.mktemp("dbt") / "target"
    drop_database(server, database)


@pytest.fixture()
def db(shared_db, tmp_path, monkeypatch):
    database, target = shared_db
    monkeypatch.setenv("BARSMITH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(target))
    monkeypatch.setenv("BARSMITH_DB_URL", database.url)
    return database


def options(**kw) -> fetchmod.FetchOptions:
    base = dict(gaps=True, seed=False, as_of=AS_OF, chunk_days=45, timeout=0.5, max_concurrent=3,
                policy=RetryPolicy(retries=3, backoff=0.01, max_backoff=0.05), quiet=True)
    base.update(kw)
    return fetchmod.FetchOptions(**base)


def insert(db, asset_id: int, rows: dict[datetime, tuple]) -> None:
    cols = ["id", "name", "timestamp", "open", "high", "low", "close", "volume", "marketcap", "timehigh", "timelow",
            "timeopen", "timeclose"]
    with db.connect() as conn:
        loadmod.upsert_rows(conn, "public", "price_histories",
                            [(cols, [(asset_id, v[8], ts, *v[:8], v[9], v[10]) for ts, v in rows.items()])])


def pages(piece: dict) -> int:
    """Requests a piece needs without faults: 1 for cmc, one per 20 sessions of the asked range for polygon."""
    if piece["provider"] == "cmc":
        return 1
    lo = date.fromisoformat(piece["from"]) - timedelta(days=1)
    hi = date.fromisoformat(piece["to"]) + timedelta(days=1)
    return max(-(-sum(lo <= d <= hi for d in SESSIONS) // 20), 1)


def source(db, asset_id: int) -> dict[datetime, tuple]:
    with db.connect() as conn:
        rows = conn.execute('select "timestamp", open, high, low, close, volume, marketcap, timehigh, timelow, name, '
                            'timeopen, timeclose from price_histories where id = %s', (asset_id,)).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def expected_crypto(fake, asset_id: int, first=FIRST, last=LAST) -> dict[datetime, tuple]:
    out = {}
    for ts, v in fake.expected_crypto_rows(asset_id).items():
        if first <= ts.date() <= last:
            opened = datetime(ts.year, ts.month, ts.day, tzinfo=timezone.utc)
            out[ts] = (*v, opened, ts)
    return out


def expected_stock(fake, ticker="AAPL", first=FIRST, last=LAST) -> dict[datetime, tuple]:
    """Computed here from exchange_calendars and the fake's bars, not with the driver's code."""
    out = {}
    bars = fake.stocks[ticker].bars
    name = next(v[1] for v in ASSETS.values() if v[0] == ticker)
    for day in SESSIONS:
        if first <= day <= last:
            opened = XNYS.schedule.loc[day.isoformat(), "open"].to_pydatetime()
            closed = XNYS.schedule.loc[day.isoformat(), "close"].to_pydatetime()
            b = bars[day]
            out[closed] = (b["o"], b["h"], b["l"], b["c"], b["v"], None, None, None, name, opened, closed)
    return out


IDS1 = [1, 52, STOCK_ID]


def test_fetch_gaps_recovers_from_every_transient_fault_and_equals_the_providers(db, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.faults += [
        Fault("429", "cmc", 1, retry_after=1),                       # first request of id 1
        Fault("500", "cmc", 52), Fault("truncate", "cmc", 52),      # then a cut JSON body
        Fault("timeout", "polygon", "AAPL", delay=2.0, when=lambda q: q.get("cursor") == "20"),
        Fault("duplicates", "cmc", 52, times=10**6), Fault("reverse", "cmc", 1, times=10**6),
        Fault("duplicates", "polygon", "AAPL", times=10**6),
    ]
    # one row already there: it splits id 1's history into two gaps and is not touched
    existing = expected_crypto(fake, 1, date(2024, 2, 10), date(2024, 2, 10))
    insert(db, 1, existing)
    with db.connect() as conn:
        kept_load_ts = conn.execute("select load_ts from price_histories where id = 1").fetchall()
    result = fetchmod.run(db, options(ids=IDS1))
    assert result.exit_code == 0, result.audit["failures"]

    # the source holds exactly what the providers hold, with the documented mappings
    assert source(db, 1) == expected_crypto(fake, 1)
    assert source(db, 52) == expected_crypto(fake, 52)
    assert source(db, STOCK_ID) == expected_stock(fake)
    with db.connect() as conn:
        assert conn.execute("select load_ts from price_histories where id = 1 and \"timestamp\" = %s",
                            (next(iter(existing)),)).fetchall() == kept_load_ts

    audit = json.loads(result.audit_path.read_text())
    assert result.audit_path.name.startswith("fetch-") and result.audit_path.parent.name == "audit"
    s = audit["summary"]
    assert s["failed"] == 0 and s["sessions_missing_after"] == 0 and s["gaps_after"] == 0
    assert s["sessions_missing_before"] == 91 + 91 + len(SESSIONS) - 1
    assert s["inserted"] == 91 + 91 + len(SESSIONS) - 1 and s["updated"] == 0

    assert s["retry_causes"] == {"HTTP 429": 1, "HTTP 500": 1, "invalid JSON": 1, "timeout": 1}
    assert audit["assets"]["52"]["duplicates_dropped"] > 0 and audit["assets"]["900001"]["duplicates_dropped"] > 0
    assert audit["requests"]["cmc"]["outcomes"]["HTTP 429"] == 1
    # Retry-After honoured: the retry of the 429 waited at least the second asked for
    waits = [r["wait_s"] for p in audit["pieces"] for r in p["retries"] if r["cause"] == "HTTP 429"]
    assert waits and min(waits) >= 1.0
    assert audit["gaps_before"]["summary"]["sessions_missing"] == s["sessions_missing_before"]
    assert audit["gaps_after"]["gaps"] == []
    assert audit["parameters"]["gaps"] is True and audit["timing"]["wall_s"] > 0

    # requests: one per piece and page, plus one per retry, and no more
    pieces = audit["pieces"]
    assert [(p["id"], p["from"], p["to"]) for p in pieces if p["id"] == 1] == [
        (1, "2024-01-01", "2024-02-09"), (1, "2024-02-11", "2024-03-26"), (1, "2024-03-27", "2024-03-31")]
    for p in pieces:
        assert p["requests"] == pages(p) + len(p["retries"]), p
    assert len(fake.log) == sum(p["requests"] for p in pieces) == s["requests"]

    # the key: only in headers, never in a URL, an output, a log record or the audit
    assert not any(r.key_in_url for r in fake.log)
    assert KEY not in result.audit_path.read_text()
    assert KEY not in caplog.text

    # the rows pass the 1D model's validation (timestamp = time close, NULL extremes repaired)
    from .helpers import DbtProject

    project = DbtProject(db, result.audit_path.parent.parent)
    project.build("price_bars_1d price_bars_1d_rejects", vars=SOURCE_VARS)  # same vars: no re-parse
    assert project.query("select count(*) from price_bars_1d_rejects where id = any(%s)", [IDS1]) == [(0,)]
    assert project.query("select count(*) from price_bars_1d where id = any(%s)", [IDS1]) == [
        (91 + 91 + len(SESSIONS),)]

    # a rerun finds nothing missing: no request at all
    fake.log.clear()
    again = fetchmod.run(db, options(ids=IDS1))
    assert again.exit_code == 0 and again.audit["summary"]["pieces"] == 0 and fake.log == []


IDS2 = [2, 53, STOCK_ID + 1]


def test_failed_pieces_leave_nothing_half_loaded_and_a_rerun_fetches_only_them(db, fake):
    fake.faults += [
        # id 2, second piece: the response format changed (not retried)
        Fault("schema", "cmc", 2, when=lambda q: "2024-02-13" <= q["time_start"] < "2024-03-01"),
        # MSFT, first piece: page 1 arrives, page 2 fails on every attempt (1 + 2 retries)
        Fault("500", "polygon", "MSFT", times=3, when=lambda q: q["start"] <= "2024-01-02" and q.get("cursor") == "20"),
        # id 53: a 429 asking for longer than we accept to wait
        Fault("429", "cmc", 53, retry_after=3600, when=lambda q: q["time_start"] < "2024-01-01"),
    ]
    first = fetchmod.run(db, options(ids=IDS2, policy=RetryPolicy(retries=2, backoff=0.01, max_backoff=0.05)))
    assert first.exit_code == 1
    audit = json.loads(first.audit_path.read_text())
    failed = {(p["id"], p["from"]): p for p in audit["pieces"] if p["status"] == "failed"}
    assert set(failed) == {(2, "2024-02-15"), (STOCK_ID + 1, "2024-01-02"), (53, "2024-01-01")}
    assert failed[(2, "2024-02-15")]["error"].startswith("schema") and failed[(2, "2024-02-15")]["requests"] == 1
    assert failed[(STOCK_ID + 1, "2024-01-02")]["error"].startswith("HTTP 500")
    assert pages(failed[(STOCK_ID + 1, "2024-01-02")]) == 2
    assert failed[(STOCK_ID + 1, "2024-01-02")]["requests"] == 1 + 3  # page 1, then page 2 three times
    assert "Retry-After 3600" in failed[(53, "2024-01-01")]["error"] and failed[(53, "2024-01-01")]["requests"] == 1
    assert {f["id"] for f in audit["failures"]} == set(IDS2)
    assert audit["summary"]["failed"] == 3 and audit["summary"]["sessions_missing_after"] > 0

    # every piece is all or nothing: a failed piece's days have no row (MSFT's page 1 was not loaded)
    for p in audit["pieces"]:
        lo, hi = date.fromisoformat(p["from"]), date.fromisoformat(p["to"])
        have = [ts for ts in source(db, p["id"]) if lo <= ts.astimezone(timezone.utc).date() <= hi]
        assert len(have) == (p["rows_kept"] if p["status"] == "loaded" else 0), p

    # the rerun asks only for the failed pieces
    fake.log.clear()
    second = fetchmod.run(db, options(ids=IDS2))
    assert second.exit_code == 0
    asked = sorted((r.provider, str(r.asset), r.query.get("time_start") or r.query.get("start")) for r in fake.log)
    assert asked == [("cmc", "2", "2024-02-13"), ("cmc", "53", "2023-12-30"),
                     ("polygon", "MSFT", "2024-01-01"), ("polygon", "MSFT", "2024-01-01")]  # its 2 pages
    assert second.audit["summary"]["pieces"] == 3
    assert source(db, 2) == expected_crypto(fake, 2)
    assert source(db, 53) == expected_crypto(fake, 53)
    assert source(db, STOCK_ID + 1) == expected_stock(fake, "MSFT")


def test_refetch_updates_changed_rows_and_keeps_unchanged_ones(db, fake):
    assert fetchmod.run(db, options(gaps=False, date_from=date(2024, 3, 1), date_to=date(2024, 3, 10),
                                    ids=[3])).exit_code == 0
    assert len(source(db, 3)) == 10
    with db.connect() as conn:
        before = dict(conn.execute('select "timestamp", load_ts from price_histories where id = 3').fetchall())
    day = date(2024, 3, 5)
    fake.crypto[3]["days"][day]["quote"]["USD"]["close"] += 1.0  # a provider correction
    result = fetchmod.run(db, options(gaps=False, refetch=True, date_from=date(2024, 3, 1),
                                      date_to=date(2024, 3, 10), ids=[3]))
    s = result.audit["summary"]
    assert (s["inserted"], s["updated"], s["unchanged"]) == (0, 1, 9)
    with db.connect() as conn:
        after = dict(conn.execute('select "timestamp", load_ts from price_histories where id = 3').fetchall())
    changed = [ts for ts in after if after[ts] != before[ts]]
    assert [ts.date() for ts in changed] == [day]
    assert source(db, 3) == expected_crypto(fake, 3, date(2024, 3, 1), date(2024, 3, 10))


def test_rate_limit_is_a_token_bucket_per_provider(db, fake):
    result = fetchmod.run(db, options(ids=[4, 54], chunk_days=7, max_concurrent=8,
                                      rate_limits={"cmc": fetchmod.RateLimit(4, 1.0)}))
    assert result.exit_code == 0
    timing, cmc = result.audit["timing"], result.audit["requests"]["cmc"]
    n = cmc["requests"]
    assert n == 2 * 13  # 91 days in 7-day pieces, two ids
    # 4 tokens at once, then 4 a second: the last request cannot start before (n - 4) / 4 s
    assert timing["fetch_wall_s"] >= (n - 4) / 4 * 0.9
    assert cmc["rate_limit_wait_s"] > 0


def test_fetch_files_providers_use_the_loaders_validation(db, tmp_path, fake):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [dict(zip(SOURCE_COLUMNS, r)) for r in _file_rows(7, date(2024, 1, 1), date(2024, 1, 20))]
    good = tmp_path / "csvdir"
    good.mkdir()
    header = SOURCE_COLUMNS
    (good / "a.csv").write_text(",".join(header) + "\n" + "\n".join(
        ",".join("" if r[c] is None else (r[c].isoformat() if hasattr(r[c], "isoformat") else repr(r[c]) if isinstance(r[c], float) else str(r[c]))
                 for c in header) for r in rows if r["date"].day % 2) + "\n")
    pdir = tmp_path / "parquetdir"
    pdir.mkdir()
    pq.write_table(pa.Table.from_pylist([r for r in rows if not r["date"].day % 2]), pdir / "b.parquet")
    with db.connect() as conn:
        conn.execute("insert into assets values (7, 'F', 'FileCoin', 'csv', '24/7', '2024-01-01', '2024-01-20')")
    res = fetchmod.run(db, options(provider="csv", path=good, ids=[7]))
    assert res.exit_code == 0 and res.audit["summary"]["inserted"] == 10
    res = fetchmod.run(db, options(provider="parquet", path=pdir, ids=[7]))
    assert res.exit_code == 0 and res.audit["summary"]["inserted"] == 10
    with db.connect() as conn:
        assert conn.execute("select count(*) from price_histories where id = 7").fetchone() == (20,)
    # a bad value in a file refuses the directory with the loader's message; nothing loaded
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.csv").write_text("id,name,timestamp,close\n8,B,2024-01-02T23:59:59.999Z,abc\n")
    with db.connect() as conn:
        conn.execute("insert into assets values (8, 'B', 'Bad', 'csv', '24/7', '2024-01-01', '2024-01-05')")
    res = fetchmod.run(db, options(provider="csv", path=bad, ids=[8]))
    assert res.exit_code == 1
    assert "line 2, column 'close'" in res.audit["failures"][0]["error"]
    with db.connect() as conn:
        assert conn.execute("select count(*) from price_histories where id = 8").fetchone() == (0,)


def _file_rows(asset_id: int, first: date, last: date) -> list[tuple]:
    out = []
    day = first
    while day <= last:
        opened = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        closed = opened + timedelta(days=1, milliseconds=-1)
        price = 10.0 + day.day
        out.append((asset_id, "FileCoin", opened, closed, opened + timedelta(hours=3), opened + timedelta(hours=9),
                    closed, price, price + 1, price - 1, price + 0.5, 1000.0, None, None, day, "files"))
        day += timedelta(days=1)
    return out


@pytest.fixture()
def cli_db(database, tmp_path, monkeypatch):
    """A database of its own: the CLI loads seeds/assets.csv into it."""
    monkeypatch.setenv("BARSMITH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("BARSMITH_DB_URL", database.url)
    return database


def test_cli_fetch_never_shows_the_key_and_audit_lists_the_run(cli_db, fake, monkeypatch, caplog):
    db = cli_db
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    # the CLI seeds the real assets file (ids 1, 52, 825, 1027 on cmc, no start_date): give id 1
    # its first and last day so that the days between are a gap
    insert(db, 1, {**expected_crypto(fake, 1, date(2024, 1, 1), date(2024, 1, 1)),
                   **expected_crypto(fake, 1, date(2024, 3, 31), date(2024, 3, 31))})
    fake.faults += [Fault("echo_key", "cmc", 1, times=10**6, when=lambda q: q["time_start"] >= "2024-02-13")]
    res = runner.invoke(app, ["fetch", "--gaps", "--as-of", AS_OF.isoformat(), "--chunk-days", "45",
                              "--backoff", "0.01", "--retries", "1", "--rate-limit", "100/1", "--timeout", "2"])
    assert res.exit_code == 1, res.output
    assert "FAILED id 1 2024-02-16..2024-03-30: HTTP 502" in res.output
    assert KEY not in res.output and "***" in res.output
    text_path = res.output.split("audit: ")[-1].strip()
    text = open(text_path).read()
    assert KEY not in text and "***" in text
    assert KEY not in caplog.text
    listing = runner.invoke(app, ["audit"])
    stamp = Path(text_path).stem.removeprefix("fetch-")
    assert listing.exit_code == 0 and stamp in listing.output and "cmc" in listing.output
    shown = runner.invoke(app, ["audit", "--show", "latest"])
    assert shown.exit_code == 0 and '"sessions_missing_before": 89' in shown.output


def test_cli_fetch_usage_errors(cli_db, fake, monkeypatch):
    runner = CliRunner()
    res = runner.invoke(app, ["fetch", "--ids", "1"])
    assert res.exit_code == 2 and "--gaps" in res.output
    res = runner.invoke(app, ["fetch", "--gaps", "--rate-limit", "lots"])
    assert res.exit_code == 2 and "REQUESTS/SECONDS" in res.output
    res = runner.invoke(app, ["fetch", "--gaps", "--provider", "yahoo"])
    assert res.exit_code == 2
    monkeypatch.delenv("CMC_PRO_API_KEY")
    res = runner.invoke(app, ["fetch", "--provider", "cmc", "--ids", "1", "--from", "2024-01-01"])
    assert res.exit_code == 2 and "CMC_PRO_API_KEY" in res.output and "nothing was fetched" in res.output
    assert fake.log == []


def test_an_id_with_nothing_expected_is_named_not_fetched(db, fake):
    result = fetchmod.run(db, options(ids=[999]))
    assert result.exit_code == 0 and result.audit["summary"]["pieces"] == 0 and fake.log == []
    assert result.audit["skipped_assets"] == [
        {"id": 999, "reason": "no session expected: no row, no start_date in seeds/assets.csv and no --from"}]
