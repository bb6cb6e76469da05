"""A loopback fake of both providers for the fetch tests and benchmarks/bench_fetch.py.

It holds a canonical daily history per asset and answers CoinMarketCap's
/v2/cryptocurrency/ohlcv/historical and Polygon's /v2/aggs/ticker/{t}/range/1/day/{from}/{to}
in their documented formats (Polygon paginated through next_url). Faults are injected per
request by rules: 429 with Retry-After, 500, a slow answer (client timeout), truncated JSON, a
changed schema, an error body echoing the API key, duplicate and out-of-order rows. Every
request is logged. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response
from werkzeug.serving import WSGIRequestHandler, make_server

CMC_PATH = "/v2/cryptocurrency/ohlcv/historical"
POLY_PATH = re.compile(r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/1/day/(?P<start>[^/]+)/(?P<end>[^/]+)$")
NY = ZoneInfo("America/New_York")


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _KeepHeaders(WSGIRequestHandler):
    """werkzeug drops header names with an underscore from the WSGI environ; CoinMarketCap's key
    header (X-CMC_PRO_API_KEY) has them, so keep the raw headers too."""

    def make_environ(self):
        environ = super().make_environ()
        environ["fake.headers"] = {k.lower(): v for k, v in self.headers.items()}
        return environ

    def log_request(self, *args, **kwargs) -> None:  # quiet
        pass


class _Server(HTTPServer):
    def start(self) -> None:
        self.server = make_server(self.host, self.port, Request.application(self.application),
                                  threaded=self.threaded, request_handler=_KeepHeaders)
        self.port = self.server.port
        self.server_thread = threading.Thread(target=self.thread_target, daemon=True)
        self.server_thread.start()


@dataclass
class Fault:
    """Apply `kind` to the next `times` requests matching provider/asset (and `when`, if given)."""

    kind: str  # 429 | 500 | timeout | truncate | schema | echo_key | 401 | duplicates | reverse
    provider: str  # cmc | polygon
    asset: Any = None  # CMC id or Polygon ticker; None = any
    times: int = 1
    retry_after: int = 1
    delay: float = 1.0
    when: Callable[[dict[str, Any]], bool] | None = None


@dataclass
class Logged:
    provider: str
    asset: Any
    path: str
    query: dict[str, str]
    status: int
    fault: str | None
    key_in_url: bool


@dataclass
class Stock:
    id: int
    ticker: str
    bars: dict[date, dict[str, Any]] = field(default_factory=dict)  # session date -> polygon result


class FakeProviders:
    def __init__(self, key: str, page_size: int = 5000):
        self.key = key
        self.page_size = page_size
        self.crypto: dict[int, dict[str, Any]] = {}  # id -> {"name", "symbol", "days": {date: quote}}
        self.stocks: dict[str, Stock] = {}
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        self.server = _Server(host="127.0.0.1", port=0, threaded=True)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "FakeProviders":
        self.server.expect_request(re.compile(".*")).respond_with_handler(self.handle)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server.is_running():
            self.server.clear()
            self.server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    # ---------------------------------------------------------------- data

    def add_crypto(self, asset_id: int, name: str, symbol: str, first: date, last: date, seed: int = 1) -> None:
        rng = random.Random(seed * 7919 + asset_id)
        price = 100.0 + asset_id
        days = {}
        day = first
        while day <= last:
            opened = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            closed = opened + timedelta(days=1, milliseconds=-1)
            o = price
            c = max(o * math.exp(rng.gauss(0, 0.03)), 1e-6)
            h = max(o, c) * (1 + abs(rng.gauss(0, 0.01)))
            low = min(o, c) * (1 - abs(rng.gauss(0, 0.01)))
            days[day] = {
                "time_open": _iso(opened), "time_close": _iso(closed),
                "time_high": _iso(opened + timedelta(seconds=rng.randrange(86400))),
                "time_low": _iso(opened + timedelta(seconds=rng.randrange(86400))),
                "quote": {"USD": {"open": o, "high": h, "low": low, "close": c, "volume": c * 1e6 * rng.uniform(1, 2),
                                  "market_cap": c * 1e7, "timestamp": _iso(closed)}},
            }
            price = c
            day += timedelta(days=1)
        self.crypto[asset_id] = {"name": name, "symbol": symbol, "days": days}

    def add_stock(self, asset_id: int, ticker: str, sessions: list[date], seed: int = 1) -> None:
        rng = random.Random(seed * 104729 + asset_id)
        price = 50.0 + asset_id % 100
        stock = Stock(asset_id, ticker)
        for day in sessions:
            midnight = datetime(day.year, day.month, day.day, tzinfo=NY)
            o = price
            c = max(o * math.exp(rng.gauss(0, 0.02)), 1e-6)
            stock.bars[day] = {"v": float(rng.randrange(10**5, 10**7)), "vw": (o + c) / 2, "o": o, "c": c,
                               "h": max(o, c) * 1.01, "l": min(o, c) * 0.99,
                               "t": int(midnight.timestamp() * 1000), "n": rng.randrange(1000, 9000)}
            price = c
        self.stocks[ticker] = stock

    # ---------------------------------------------------------------- requests

    def requests_for(self, provider: str, asset: Any = None) -> list[Logged]:
        return [r for r in self.log if r.provider == provider and (asset is None or r.asset == asset)]

    def _fault(self, provider: str, asset: Any, query: dict[str, str]) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and f.provider == provider and f.asset in (None, asset) and (f.when is None or f.when(query)):
                    if f.kind not in ("duplicates", "reverse"):
                        f.times -= 1
                    return f
        return None

    def handle(self, request: Request) -> Response:
        query = dict(request.args)
        key_in_url = self.key in request.full_path
        if request.path == CMC_PATH:
            asset = int(query.get("id", "0"))
            ok = request.environ.get("fake.headers", {}).get("x-cmc_pro_api_key") == self.key
            return self._answer("cmc", asset, request, query, ok, key_in_url, self._cmc)
        m = POLY_PATH.match(request.path)
        if m:
            query.update(m.groupdict())
            ok = request.headers.get("Authorization") == f"Bearer {self.key}"
            return self._answer("polygon", m["ticker"], request, query, ok, key_in_url, self._polygon)
        return Response("not found", status=404)

    def _answer(self, provider, asset, request, query, authorised, key_in_url, build) -> Response:
        fault = None if not authorised else self._fault(provider, asset, query)
        kind = fault.kind if fault else None
        if not authorised:
            response = Response(json.dumps({"status": {"error_code": 1001, "error_message": "invalid key"}}),
                                status=401, content_type="application/json")
        elif kind == "429":
            response = Response(json.dumps({"status": {"error_code": 1008, "error_message": "rate limit"}}),
                                status=429, headers={"Retry-After": str(fault.retry_after)},
                                content_type="application/json")
        elif kind == "500":
            response = Response("internal error", status=500)
        elif kind == "401":
            response = Response("{}", status=401, content_type="application/json")
        elif kind == "echo_key":
            response = Response(f"bad gateway: upstream refused key {self.key}", status=502)
        else:
            if kind == "timeout":
                # logged before the slow answer: the client gives up first, and a test that reads the
                # log as soon as the fetch returns must already see this request
                with self._lock:
                    self.log.append(Logged(provider, asset, request.path, query, 200, kind, key_in_url))
                time.sleep(fault.delay)
                return Response(json.dumps(build(asset, query, kind)), status=200, content_type="application/json")
            body = build(asset, query, kind)
            text = json.dumps(body)
            if kind == "truncate":
                text = text[: len(text) // 2]
            response = Response(text, status=200, content_type="application/json")
        with self._lock:
            self.log.append(Logged(provider, asset, request.path, query, response.status_code, kind, key_in_url))
        return response

    def _cmc(self, asset: int, query: dict[str, str], kind: str | None) -> dict[str, Any]:
        info = self.crypto.get(asset)
        start = date.fromisoformat(query["time_start"][:10])
        end = date.fromisoformat(query["time_end"][:10])
        quotes = []
        if info:
            # time_start exclusive, time_end inclusive (daily periods)
            quotes = [json.loads(json.dumps(q)) for d, q in sorted(info["days"].items()) if start < d <= end]
        if kind == "duplicates" and quotes:
            quotes = quotes + quotes[: max(len(quotes) // 3, 1)]
        if kind == "reverse":
            quotes.reverse()
        if kind == "schema":
            for q in quotes:
                q["timeClose"] = q.pop("time_close")
        return {"status": {"timestamp": _iso(datetime.now(timezone.utc)), "error_code": 0, "error_message": None,
                           "elapsed": 1, "credit_count": 1},
                "data": {str(asset): {"id": asset, "name": info["name"] if info else "?",
                                      "symbol": info["symbol"] if info else "?", "quotes": quotes}}}

    def _polygon(self, ticker: str, query: dict[str, str], kind: str | None) -> dict[str, Any]:
        stock = self.stocks.get(ticker)
        start, end = date.fromisoformat(query["start"]), date.fromisoformat(query["end"])
        results = [dict(b) for d, b in sorted(stock.bars.items()) if start <= d <= end] if stock else []
        offset = int(query.get("cursor", "0"))
        page = results[offset: offset + self.page_size]
        if kind == "duplicates" and page:
            page = page + page[:2]
        if kind == "reverse":
            page.reverse()
        if kind == "schema":
            for r in page:
                r["close"] = r.pop("c")
        body: dict[str, Any] = {"ticker": ticker, "queryCount": len(page), "resultsCount": len(page),
                                "adjusted": True, "status": "OK", "request_id": f"req-{offset}", "count": len(page)}
        if page:
            body["results"] = page
        if offset + self.page_size < len(results):
            rest = {k: v for k, v in query.items() if k not in ("ticker", "start", "end", "cursor")}
            body["next_url"] = (f"{self.url}/v2/aggs/ticker/{ticker}/range/1/day/{query['start']}/{query['end']}?"
                                + urlencode({**rest, "cursor": str(offset + self.page_size)}))
        return body

    # ---------------------------------------------------------------- expected source rows

    def expected_crypto_rows(self, asset_id: int) -> dict[datetime, tuple]:
        """(timestamp -> (open, high, low, close, volume, marketcap, timehigh, timelow, name)) as the source should hold."""
        info = self.crypto[asset_id]
        out = {}
        for q in info["days"].values():
            usd = q["quote"]["USD"]
            ts = datetime.fromisoformat(q["time_close"].replace("Z", "+00:00"))
            out[ts] = (usd["open"], usd["high"], usd["low"], usd["close"], usd["volume"], usd["market_cap"],
                       datetime.fromisoformat(q["time_high"].replace("Z", "+00:00")),
                       datetime.fromisoformat(q["time_low"].replace("Z", "+00:00")), info["name"])
        return out


def main() -> None:
    """Serve in a process of its own (benchmarks/bench_fetch.py): prints its URL, stops on SIGTERM."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--key", required=True)
    parser.add_argument("--ids", type=int, required=True)
    parser.add_argument("--first", type=date.fromisoformat, required=True)
    parser.add_argument("--last", type=date.fromisoformat, required=True)
    args = parser.parse_args()
    fake = FakeProviders(args.key)
    for i in range(1, args.ids + 1):
        fake.add_crypto(i, f"Bench{i}", f"B{i}", args.first, args.last)
    fake.start()
    print(fake.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and not sys.stdin.closed:
            pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
