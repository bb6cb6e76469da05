"""The provider interface of `driver fetch` and what every provider shares.

A provider turns a piece (one asset, a range of local days) into records keyed by the source
columns (bars.md §1.1). The engine (driver/fetch.py) types and validates those records with the
loader's parsers and rules (driver/load.py), keeps the rows of the piece's days and upserts them
in one transaction per piece.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from .. import load as loadmod

SOURCE_COLUMNS = [c for c in loadmod.COLUMNS if c != "load_ts"]


@dataclass(frozen=True)
class Asset:
    """One row of the assets seed (or an id of the source that the seed does not list)."""

    id: int
    symbol: str | None = None
    name: str | None = None
    provider: str | None = None
    calendar: str = "24/7"
    start_date: date | None = None
    end_date: date | None = None

    @property
    def label(self) -> str:
        return f"{self.id} ({self.symbol})" if self.symbol else str(self.id)


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` requests per `seconds` (a token bucket of that many tokens)."""

    requests: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.requests}/{self.seconds:g}s"


@dataclass
class Piece:
    """One unit of work: an asset and the local days [first, last] to load; loaded whole or not at all."""

    asset: Asset
    provider: str
    first: date
    last: date
    sessions: int = 0  # expected sessions it covers (0 when unknown)
    # filled while it runs
    status: str = "pending"  # loaded | empty | failed | skipped
    requests: int = 0
    retries: list[dict[str, Any]] = field(default_factory=list)
    rows_fetched: int = 0
    rows_kept: int = 0
    duplicates_dropped: int = 0
    outside_dropped: int = 0
    inserted: int = 0
    updated: int = 0
    error: str | None = None
    seconds: float = 0.0

    def audit(self) -> dict[str, Any]:
        return {
            "id": self.asset.id, "symbol": self.asset.symbol, "provider": self.provider,
            "from": self.first.isoformat(), "to": self.last.isoformat(), "sessions": self.sessions,
            "status": self.status, "requests": self.requests, "retries": self.retries,
            "rows_fetched": self.rows_fetched, "rows_kept": self.rows_kept,
            "duplicates_dropped": self.duplicates_dropped, "outside_range_dropped": self.outside_dropped,
            "inserted": self.inserted, "updated": self.updated,
            "unchanged": max(self.rows_kept - self.inserted - self.updated, 0),
            "error": self.error, "seconds": round(self.seconds, 3),
        }


class ProviderError(Exception):
    """A request or response problem. `cause` is a short category for the audit ("HTTP 429",
    "timeout", "invalid JSON", "schema", ...); retryable ones are retried with backoff; `fatal`
    stops every further request to that provider (e.g. the key was refused)."""

    def __init__(self, cause: str, detail: str = "", retryable: bool = False, retry_after: float | None = None,
                 fatal: bool = False):
        self.cause = cause
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after
        self.fatal = fatal
        super().__init__(f"{cause}: {detail}" if detail else cause)


class Provider(ABC):
    """A source of daily rows. HTTP providers get an HttpSession from the engine."""

    name: str = ""
    http: bool = False
    default_rate: RateLimit | None = None
    default_chunk_days: int = 365
    # environment variable holding the API key (HTTP providers)
    key_env: str | None = None

    def check_asset(self, asset: Asset) -> str | None:
        """Why this provider cannot fetch the asset, or None."""
        return None

    @abstractmethod
    async def fetch(self, piece: Piece, session: Any) -> list[dict[str, Any]]:
        """Records (source column -> value) covering at least the piece's local days; raise ProviderError."""


# ------------------------------------------------------------------ typing with the loader's rules


def _check(kind: str, value: Any) -> Any:
    """A value that is not text: checked against the column type (text goes through the loader's parser)."""
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type(value).__name__}")
        return loadmod._parse_int(str(value))
    if kind == "double precision":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {type(value).__name__}")
        value = float(value)
        if math.isinf(value):
            raise ValueError("infinite")
        return value
    if kind == "timestamptz":
        if not isinstance(value, datetime):
            raise ValueError(f"expected an instant, got {type(value).__name__}")
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if kind == "date":
        if isinstance(value, datetime) or not isinstance(value, date):
            raise ValueError(f"expected a date, got {type(value).__name__}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return value


_KINDS = [(c, loadmod.COLUMNS[c], loadmod._PARSERS[loadmod.COLUMNS[c]]) for c in SOURCE_COLUMNS]


def _typed(column: str, kind: str, parser, value: Any, origin: str) -> Any:
    if value is None or value == "":
        return None
    if type(value) is float and kind == "double precision" and not math.isinf(value):
        return value  # the common case of JSON numbers, without the checks below
    try:
        return parser(value) if isinstance(value, str) else _check(kind, value)
    except (ValueError, OverflowError, TypeError) as exc:
        raise loadmod.LoadError(f"{origin}, column {column!r}: cannot use {value!r} as {kind} ({exc})") from None


def typed_row(record: dict[str, Any], origin: str) -> tuple:
    """The record as a tuple in SOURCE_COLUMNS order, typed and checked like `driver load` does
    (unknown column, unparsable value, missing id / timestamp / name: LoadError naming origin)."""
    unknown = [c for c in record if c not in loadmod.COLUMNS]
    if unknown:
        raise loadmod.LoadError(f"{origin}: unknown column {unknown[0]!r}")
    get = record.get
    row = tuple(_typed(c, kind, parser, get(c), origin) for c, kind, parser in _KINDS)
    for req in (*loadmod.REQUIRED, "name"):
        if row[SOURCE_COLUMNS.index(req)] is None:
            raise loadmod.LoadError(f"{origin}, column {req!r}: missing value (required)")
    return row
