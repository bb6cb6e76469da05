"""Polygon: GET /v2/aggs/ticker/{ticker}/range/1/day/{from}/{to} (daily aggregates).

Request: the ticker (`AAPL`, `X:BTCUSD`) and ISO dates in the path, `adjusted=true`,
`sort=asc`, `limit=50000`; the key as `Authorization: Bearer` (env POLYGON_API_KEY). Response:
`status` (OK / DELAYED), `resultsCount`, `results` (absent when empty): `t` (Unix ms, start of
the window), `o`, `h`, `l`, `c`, `v` (and `vw`, `n`, unused), and `next_url` while more pages
follow (fetched with the same header, only on the same host).

Mapping: no extreme instants and no market cap in this endpoint, so timehigh, timelow,
marketcap and circulatingsupply are NULL (bars.md §1.2 allows it; the 1D model repairs the
extremes). The row's day is the day of `t` in the calendar's zone. On an exchange calendar the
row spans the session (timeopen = session open, timeclose = session close, early closes
included, from exchange_calendars); on 24/7 it spans the UTC day. "timestamp" = timeclose.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime, time, timedelta, timezone  # noqa: F401
from typing import Any
from urllib.parse import quote

from .. import calendars
from .base import Asset, Piece, Provider, ProviderError, RateLimit

SOURCE_FILE = "polygon:/v2/aggs/ticker/range/1/day"
RESULT_KEYS = ("t", "o", "h", "l", "c", "v")
TICKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,40}")
MAX_PAGES = 1000


class Polygon(Provider):
    name = "polygon"
    http = True
    # Polygon's free plan allows 5 calls a minute; override with --rate-limit.
    default_rate = RateLimit(5, 60.0)
    default_chunk_days = 365
    key_env = "POLYGON_API_KEY"
    url_env = "BARSMITH_POLYGON_URL"
    default_url = "https://api.polygon.io"

    def __init__(self, book: calendars.SessionBook | None = None):
        self.book = book or calendars.SessionBook()

    def base_url(self) -> str:
        return os.environ.get(self.url_env, self.default_url)

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}", "Accept": "application/json"}

    def check_asset(self, asset: Asset) -> str | None:
        if not asset.symbol:
            return "no symbol (ticker) in seeds/assets.csv"
        if not TICKER.fullmatch(asset.symbol):
            return f"symbol {asset.symbol!r} is not a ticker"
        return None

    async def fetch(self, piece: Piece, session: Any) -> list[dict[str, Any]]:
        start = piece.first - timedelta(days=1)
        end = piece.last + timedelta(days=1)
        path = (f"/v2/aggs/ticker/{quote(piece.asset.symbol, safe=':.-_')}/range/1/day/"
                f"{start.isoformat()}/{end.isoformat()}")
        body = await session.get_json(path, {"adjusted": "true", "sort": "asc", "limit": "50000"}, piece)
        results = page_results(body)
        pages = 1
        while isinstance(body, dict) and body.get("next_url"):
            pages += 1
            if pages > MAX_PAGES:
                raise ProviderError("schema", f"more than {MAX_PAGES} pages (a next_url loop?)")
            body = await session.get_json(str(body["next_url"]), None, piece)
            results += page_results(body)
        return to_records(results, piece.asset, self.book)


def page_results(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise ProviderError("schema", f"expected a JSON object, got {type(body).__name__}")
    status = body.get("status")
    if status not in ("OK", "DELAYED"):
        raise ProviderError("API error", f"status {status!r}: {body.get('error') or body.get('message') or ''}".strip())
    results = body.get("results")
    if results is None:
        if body.get("resultsCount", 0) in (0, None) and "results" not in body:
            return []
        raise ProviderError("schema", "no 'results' list (response format changed?)")
    if not isinstance(results, list):
        raise ProviderError("schema", "'results' is not a list")
    for n, r in enumerate(results):
        missing = [k for k in RESULT_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            raise ProviderError("schema", f"results[{n}] has no {missing[0]!r} (response format changed?)")
        if not isinstance(r["t"], int) or isinstance(r["t"], bool):
            raise ProviderError("schema", f"results[{n}].t is not Unix milliseconds")
    return results


def _day_span(day: date, tz) -> tuple[datetime, datetime]:
    opened = datetime.combine(day, time(0), tzinfo=tz)
    closed = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return opened.astimezone(timezone.utc), closed.astimezone(timezone.utc) - timedelta(milliseconds=1)


def to_records(results: list[dict[str, Any]], asset: Asset, book: calendars.SessionBook) -> list[dict[str, Any]]:
    tz = calendars.timezone_of(asset.calendar)
    name = asset.name or asset.symbol
    out = []
    for r in results:
        instant = datetime.fromtimestamp(r["t"] / 1000, tz=timezone.utc)
        day = instant.astimezone(tz).date()
        session = book.session(asset.calendar, day) if asset.calendar != calendars.ALWAYS_OPEN else None
        if session is not None:
            opened, closed = session.open_utc, session.close_utc
        else:
            opened, closed = _day_span(day, tz)
        out.append({
            "id": asset.id, "name": name,
            "timeopen": opened, "timeclose": closed, "timehigh": None, "timelow": None,
            "timestamp": closed,
            "open": r["o"], "high": r["h"], "low": r["l"], "close": r["c"], "volume": r["v"],
            "marketcap": None, "circulatingsupply": None, "date": day, "source_file": SOURCE_FILE,
        })
    return out
