"""CoinMarketCap: GET /v2/cryptocurrency/ohlcv/historical (daily OHLCV of one id).

Request: `id`, `time_period=daily`, `interval=daily`, `time_start` / `time_end` (ISO dates),
`count`, `convert=USD`; the key in the `X-CMC_PRO_API_KEY` header (env CMC_PRO_API_KEY).
Response: `data` (the asset, or a mapping id -> asset) with `id`, `name`, `symbol` and `quotes`:
each quote has `time_open`, `time_close`, `time_high`, `time_low` and `quote.USD` with `open`,
`high`, `low`, `close`, `volume`, `market_cap`, `timestamp`; `status.error_code` 0 on success.

Mapping onto the source columns (bars.md §1.1): timeopen/timeclose/timehigh/timelow from the
quote's instants, "timestamp" = time_close (the 1D model expects the daily row's timestamp to be
its close), OHLC, volume, marketcap = market_cap, circulatingsupply NULL (not in this endpoint),
date = the UTC day of time_open, name = the response's name, source_file = the endpoint.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from .base import Asset, Piece, Provider, ProviderError, RateLimit

PATH = "/v2/cryptocurrency/ohlcv/historical"
SOURCE_FILE = "cmc:" + PATH
QUOTE_KEYS = ("time_open", "time_close", "time_high", "time_low", "quote")
USD_KEYS = ("open", "high", "low", "close", "volume", "market_cap")


class CoinMarketCap(Provider):
    name = "cmc"
    http = True
    # CoinMarketCap's Basic plan allows 30 calls a minute; override with --rate-limit.
    default_rate = RateLimit(30, 60.0)
    default_chunk_days = 365
    key_env = "CMC_PRO_API_KEY"
    url_env = "BARSMITH_CMC_URL"
    default_url = "https://pro-api.coinmarketcap.com"

    def base_url(self) -> str:
        return os.environ.get(self.url_env, self.default_url)

    def headers(self, key: str) -> dict[str, str]:
        return {"X-CMC_PRO_API_KEY": key, "Accept": "application/json"}

    def check_asset(self, asset: Asset) -> str | None:
        return None  # barsmith ids are CoinMarketCap ids

    async def fetch(self, piece: Piece, session: Any) -> list[dict[str, Any]]:
        # One day of margin on each side: CoinMarketCap's time_start is exclusive for daily
        # periods, and the engine keeps only the rows whose local day is in the piece.
        start = piece.first - timedelta(days=2)
        end = piece.last + timedelta(days=1)
        params = {
            "id": str(piece.asset.id), "time_period": "daily", "interval": "daily",
            "time_start": start.isoformat(), "time_end": end.isoformat(),
            "count": str((end - start).days + 1), "convert": "USD",
        }
        body = await session.get_json(PATH, params, piece)
        return parse(body, piece.asset)


def _asset_object(body: Any, asset: Asset) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProviderError("schema", f"expected a JSON object, got {type(body).__name__}")
    status = body.get("status")
    if isinstance(status, dict) and status.get("error_code") not in (None, 0, "0"):
        raise ProviderError("API error", f"error_code {status.get('error_code')}: {status.get('error_message')}")
    data = body.get("data")
    if isinstance(data, dict) and "quotes" in data:
        obj = data
    elif isinstance(data, dict) and str(asset.id) in data:
        obj = data[str(asset.id)]
    else:
        raise ProviderError("schema", f"no data for id {asset.id} (data keys: {sorted(data)[:5] if isinstance(data, dict) else type(data).__name__})")
    if isinstance(obj, list):  # keyed by symbol: a list of matches
        obj = next((o for o in obj if isinstance(o, dict) and o.get("id") == asset.id), None)
    if not isinstance(obj, dict) or not isinstance(obj.get("quotes"), list):
        raise ProviderError("schema", f"data for id {asset.id} has no 'quotes' list")
    if "id" in obj and obj["id"] != asset.id:
        raise ProviderError("schema", f"asked for id {asset.id}, got id {obj['id']!r}")
    return obj


def parse(body: Any, asset: Asset) -> list[dict[str, Any]]:
    """Source records of one response; ProviderError('schema') when its shape is not the documented one."""
    obj = _asset_object(body, asset)
    name = obj.get("name") or asset.name or asset.symbol
    out = []
    for n, q in enumerate(obj["quotes"]):
        if not isinstance(q, dict):
            raise ProviderError("schema", f"quotes[{n}] is not an object")
        missing = [k for k in QUOTE_KEYS if k not in q]
        usd = q.get("quote", {}).get("USD") if isinstance(q.get("quote"), dict) else None
        if not missing and not isinstance(usd, dict):
            missing = ["quote.USD"]
        if not missing:
            missing = [f"quote.USD.{k}" for k in USD_KEYS if k not in usd]
        if missing:
            raise ProviderError("schema", f"quotes[{n}] has no {missing[0]!r} (response format changed?)")
        time_open = q["time_open"]
        out.append({
            "id": asset.id, "name": name,
            "timeopen": time_open, "timeclose": q["time_close"],
            "timehigh": q["time_high"], "timelow": q["time_low"],
            "timestamp": q["time_close"],
            "open": usd["open"], "high": usd["high"], "low": usd["low"], "close": usd["close"],
            "volume": usd["volume"], "marketcap": usd["market_cap"], "circulatingsupply": None,
            "date": time_open[:10] if isinstance(time_open, str) else None,
            "source_file": SOURCE_FILE,
        })
    return out
