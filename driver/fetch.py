"""`driver fetch`: daily rows from a provider into the source table (issue 21).

What to fetch comes from the completeness models: the missing sessions of source_gaps (all of
them with --gaps, those inside --from/--to otherwise), one piece per gap and at most
--chunk-days days each; --refetch takes the whole --from/--to range instead. Pieces run
concurrently (--max-concurrent) through the provider's rate limit and retries
(driver/providers/http.py); each piece's rows are typed and validated with the loader's rules
and upserted in one transaction (driver/load.py upsert_rows), so a piece is loaded whole or
not at all and a rerun fetches only what is still missing. Every run writes an audit file
(driver/audit.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from . import alerts as alertmod
from . import audit as auditmod
from . import calendars
from . import gaps as gapsmod
from . import load as loadmod
from .db import PROJECT_DIR, Connection, mask_secrets
from .providers.base import SOURCE_COLUMNS, Asset, Piece, Provider, ProviderError, RateLimit, typed_row
from .providers.cmc import CoinMarketCap
from .providers.files import FileDirectory
from .providers.http import HttpSession, RetryPolicy
from .providers.polygon import Polygon

PROVIDERS = ("csv", "parquet", "cmc", "polygon")
TS = SOURCE_COLUMNS.index("timestamp")
DB_CONNECTIONS = 3  # pieces upserted side by side (each in its own transaction)


class FetchError(ValueError):
    """The run cannot start (bad options, missing API key, unknown symbol); nothing was fetched."""


@dataclass
class FetchOptions:
    provider: str | None = None  # None: each asset's provider in the assets seed
    ids: list[int] | None = None
    symbols: list[str] | None = None
    date_from: date | None = None
    date_to: date | None = None
    gaps: bool = False
    refetch: bool = False
    path: Path | None = None  # csv / parquet directory or file
    max_concurrent: int = 4
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)  # provider (or "*") -> limit
    timeout: float = 30.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    chunk_days: int | None = None
    as_of: datetime | None = None
    quiet: bool = False
    alert_level: str = "ERROR"
    seed: bool = True  # load seeds/assets.csv with dbt before reading it
    source_schema: str = "public"
    source_table: str = "price_histories"

    def audit(self) -> dict[str, Any]:
        return {
            "provider": self.provider or "per asset (seeds/assets.csv)", "ids": self.ids, "symbols": self.symbols,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "gaps": self.gaps, "refetch": self.refetch, "path": str(self.path) if self.path else None,
            "max_concurrent": self.max_concurrent,
            "rate_limits": {k: str(v) for k, v in self.rate_limits.items()},
            "timeout_s": self.timeout, "retries": self.policy.retries, "backoff_s": self.policy.backoff,
            "max_backoff_s": self.policy.max_backoff, "max_retry_after_s": self.policy.max_retry_after,
            "chunk_days": self.chunk_days,
            "source": f"{self.source_schema}.{self.source_table}",
        }


@dataclass
class FetchResult:
    exit_code: int
    audit: dict[str, Any]
    audit_path: Path
    pieces: list[Piece]


# ------------------------------------------------------------------ option parsing


def parse_rate_limits(text: str | None) -> dict[str, RateLimit]:
    """`30/60` (every provider) or `cmc=30/60,polygon=5/60`: requests per seconds."""
    if not text:
        return {}
    out: dict[str, RateLimit] = {}
    for item in text.split(","):
        name, _, spec = item.strip().rpartition("=")
        name = name.strip() or "*"
        if name != "*" and name not in PROVIDERS:
            raise FetchError(f"--rate-limit: unknown provider {name!r} (one of {', '.join(PROVIDERS)})")
        n, _, s = spec.partition("/")
        try:
            limit = RateLimit(int(n), float(s or "1"))
        except ValueError:
            raise FetchError(f"--rate-limit: {item.strip()!r} is not REQUESTS/SECONDS (e.g. 30/60)") from None
        if limit.requests < 1 or limit.seconds <= 0:
            raise FetchError(f"--rate-limit: {item.strip()!r} must allow at least 1 request in a positive time")
        out[name] = limit
    return out


def parse_date(text: str | None, what: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FetchError(f"{what} must be YYYY-MM-DD, got {text!r}") from None


@lru_cache(maxsize=1)
def bars_tz() -> ZoneInfo:
    """The boundary time zone of local days (dbt var bars_tz in dbt_project.yml)."""
    import yaml  # noqa: PLC0415 (PyYAML comes with dbt)

    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    return ZoneInfo(str(project.get("vars", {}).get("bars_tz", "America/New_York")))


def make_provider(name: str, path: Path | None, book: calendars.SessionBook | None = None) -> Provider:
    if name == "cmc":
        return CoinMarketCap()
    if name == "polygon":
        return Polygon(book)
    if name in ("csv", "parquet"):
        return FileDirectory(name, path)
    raise FetchError(f"unknown provider {name!r} (one of {', '.join(PROVIDERS)})")


# ------------------------------------------------------------------ planning


def chunks(first: date, last: date, days: int) -> list[tuple[date, date]]:
    out = []
    start = first
    while start <= last:
        end = min(start + timedelta(days=days - 1), last)
        out.append((start, end))
        start = end + timedelta(days=1)
    return out


def select_assets(options: FetchOptions, assets: dict[int, Asset], report: gapsmod.GapReport) -> list[Asset]:
    chosen: list[int] = list(options.ids or [])
    if options.symbols:
        by_symbol = {a.symbol.upper(): a.id for a in assets.values() if a.symbol}
        for sym in options.symbols:
            if sym.upper() not in by_symbol:
                raise FetchError(f"--symbols: {sym!r} is not in seeds/assets.csv")
            if by_symbol[sym.upper()] not in chosen:
                chosen.append(by_symbol[sym.upper()])
    if not chosen:  # every id with something to fetch: a gap, or (refetch) any known id
        chosen = sorted(set(report.ids) | set(assets)) if options.refetch else sorted({g["id"] for g in report.gaps})
    calendar_of = {c["id"]: c["calendar"] for c in report.completeness}
    return [assets.get(i) or Asset(i, calendar=calendar_of.get(i, calendars.ALWAYS_OPEN)) for i in chosen]


def plan(options: FetchOptions, chosen: list[Asset], report: gapsmod.GapReport, providers: dict[str, Provider],
         book: calendars.SessionBook) -> tuple[list[Piece], list[dict[str, Any]]]:
    """Pieces to fetch, and the assets skipped (with the reason)."""
    pieces: list[Piece] = []
    skipped: list[dict[str, Any]] = []
    last_day = gapsmod.last_complete_day(report.as_of)
    explicit = bool(options.ids or options.symbols)
    with_bounds = set(report.ids)
    for asset in chosen:
        if explicit and not options.refetch and asset.id not in with_bounds:
            skipped.append({"id": asset.id, "reason": "no session expected: no row, no start_date in "
                                                      "seeds/assets.csv and no --from"})
            continue
        name = options.provider or asset.provider
        if not name:
            skipped.append({"id": asset.id, "reason": "no provider in seeds/assets.csv (pass --provider)"})
            continue
        if name not in providers:
            providers[name] = make_provider(name, options.path, book)
        provider = providers[name]
        reason = provider.check_asset(asset)
        if reason:
            skipped.append({"id": asset.id, "reason": f"{name}: {reason}"})
            continue
        size = options.chunk_days or provider.default_chunk_days
        if options.refetch:
            first = options.date_from
            last = min(options.date_to or last_day, last_day)
            runs = [(first, last)] if first <= last else []
        else:
            runs = [(g["first_missing_session"], g["last_missing_session"]) for g in report.gaps if g["id"] == asset.id]
        for first, last in runs:
            # every session the run may need, computed now rather than inside the event loop
            book.ensure(asset.calendar, first - timedelta(days=7), last + timedelta(days=7))
            for a, b in chunks(first, last, size):
                pieces.append(Piece(asset=asset, provider=name, first=a, last=b,
                                    sessions=book.count(asset.calendar, a, b)))
    return pieces, skipped


# ------------------------------------------------------------------ rows of a piece


def prepare(records: list[dict[str, Any]], piece: Piece, tz: ZoneInfo) -> list[tuple]:
    """Typed rows of the piece's local days, sorted, exact duplicates dropped; LoadError on a bad
    value, a conflicting duplicate, a row of another id or two rows on one local day."""
    by_key: dict[Any, tuple] = {}
    by_day: dict[date, Any] = {}
    origin_base = f"{piece.provider} id {piece.asset.id}"
    for n, rec in enumerate(records):
        row = typed_row(rec, f"{origin_base} row {n}")
        if row[0] != piece.asset.id:
            raise loadmod.LoadError(f"{origin_base} row {n}: id {row[0]} in a response for id {piece.asset.id}")
        day = row[TS].astimezone(tz).date()
        if not piece.first <= day <= piece.last:
            piece.outside_dropped += 1
            continue
        key = row[TS]
        if key in by_key:
            if by_key[key] != row:
                raise loadmod.LoadError(f"{origin_base}: two different rows at {key.isoformat()}")
            piece.duplicates_dropped += 1
            continue
        if day in by_day:
            raise loadmod.LoadError(f"{origin_base}: two rows on local day {day} ({by_day[day].isoformat()}, "
                                    f"{key.isoformat()})")
        by_key[key] = row
        by_day[day] = key
    return [by_key[k] for k in sorted(by_key)]


# ------------------------------------------------------------------ execution


class Runner:
    def __init__(self, connection: Connection, options: FetchOptions, providers: dict[str, Provider],
                 console: Console | None):
        self.connection = connection
        self.options = options
        self.providers = providers
        self.console = console
        self.sessions: dict[str, HttpSession] = {}
        self.secrets: list[str] = []
        self.db_seconds = 0.0
        self.tz = bars_tz()

    def open_sessions(self, names: set[str]) -> None:
        for name in sorted(names):
            provider = self.providers[name]
            if not provider.http:
                continue
            key = os.environ.get(provider.key_env or "", "")
            if not key:
                raise FetchError(f"{name}: set the API key in the environment variable {provider.key_env}")
            self.secrets.append(key)
            rate = self.options.rate_limits.get(name) or self.options.rate_limits.get("*") or provider.default_rate
            self.sessions[name] = HttpSession(name, provider.base_url(), provider.headers(key), key, rate,
                                              self.options.timeout, self.options.policy, self.options.max_concurrent)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return mask_secrets(text)

    async def _piece(self, piece: Piece, pool: asyncio.Queue) -> None:
        started = time.monotonic()
        session = self.sessions.get(piece.provider)
        try:
            if session is not None and session.fatal:
                piece.status = "skipped"
                piece.error = f"not requested: an earlier request failed fatally ({session.fatal})"
                return
            records = await self.providers[piece.provider].fetch(piece, session)
            piece.rows_fetched = len(records)
            rows = prepare(records, piece, self.tz)
            piece.rows_kept = len(rows)
            if rows:
                conn = await pool.get()  # one of a few connections, each used by one piece at a time
                try:
                    t0 = time.monotonic()
                    piece.inserted, piece.updated = await asyncio.to_thread(
                        loadmod.upsert_rows, conn, self.options.source_schema, self.options.source_table,
                        [(SOURCE_COLUMNS, rows)], False)
                    self.db_seconds += time.monotonic() - t0
                finally:
                    pool.put_nowait(conn)
            piece.status = "loaded" if rows else "empty"
        except ProviderError as exc:
            piece.status = "failed"
            piece.error = self.scrub(str(exc))
        except loadmod.LoadError as exc:
            piece.status = "failed"
            piece.error = self.scrub(f"invalid data: {exc}")
        except Exception as exc:  # a database error: the piece's transaction was rolled back
            piece.status = "failed"
            piece.error = self.scrub(f"{type(exc).__name__}: {exc}".strip())
        finally:
            piece.seconds = time.monotonic() - started

    async def execute(self, pieces: list[Piece], connections: list) -> None:
        semaphore = asyncio.Semaphore(max(self.options.max_concurrent, 1))
        pool: asyncio.Queue = asyncio.Queue()
        for conn in connections:
            pool.put_nowait(conn)
        progress = Progress(
            TextColumn("[bold]fetch[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("pieces, {task.fields[rows]:,} rows, {task.fields[failed]} failed"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=self.options.quiet or self.console is None, transient=False,
        )
        rows = 0
        failed = 0

        async def one(piece: Piece, task) -> None:
            nonlocal rows, failed
            async with semaphore:
                await self._piece(piece, pool)
            rows += piece.rows_kept if piece.status == "loaded" else 0
            failed += piece.status == "failed"
            progress.update(task, advance=1, rows=rows, failed=failed)

        try:
            with progress:
                task = progress.add_task(", ".join(sorted({p.provider for p in pieces})), total=len(pieces),
                                         rows=0, failed=0)
                await asyncio.gather(*(one(p, task) for p in pieces))
        finally:
            for session in self.sessions.values():
                await session.aclose()


# ------------------------------------------------------------------ the run


def _gaps_summary(report: gapsmod.GapReport | None, ids: list[int]) -> dict[str, Any] | None:
    if report is None:
        return None
    part = report.for_ids(ids)
    data = part.to_json()
    return {"summary": data["summary"], "gaps": data["gaps"]}


def run(connection: Connection, options: FetchOptions, console: Console | None = None,
        log: Callable[[str], None] | None = None) -> FetchResult:
    """Plan, fetch, load, measure the gaps again and write the audit file; FetchError before any request."""
    started_at = datetime.now(timezone.utc)
    t0 = time.monotonic()
    as_of = (options.as_of or started_at).astimezone(timezone.utc)
    if options.provider is not None and options.provider not in PROVIDERS:
        raise FetchError(f"--provider must be one of {', '.join(PROVIDERS)}")
    if not options.gaps and options.date_from is None:
        raise FetchError("say what to fetch: --gaps (every missing session) or --from DATE [--to DATE]")
    if options.refetch and options.date_from is None:
        raise FetchError("--refetch needs --from (and optionally --to)")
    if options.date_from and options.date_to and options.date_from > options.date_to:
        raise FetchError("--from is after --to")
    if options.provider in ("csv", "parquet") and options.path is None:
        raise FetchError(f"--provider {options.provider} needs --path DIR")
    if options.provider is not None:  # a missing key fails before any work
        provider = make_provider(options.provider, options.path)
        if provider.http and not os.environ.get(provider.key_env or ""):
            raise FetchError(f"{provider.name}: set the API key in the environment variable {provider.key_env}")
    source_vars = {"source_schema": options.source_schema, "source_table": options.source_table}

    before = gapsmod.compute(connection, source_vars, as_of, options.date_from, options.date_to, seed=options.seed,
                             log=log)
    assets = before.assets
    chosen = select_assets(options, assets, before)
    ids = [a.id for a in chosen]
    providers: dict[str, Provider] = {}
    pieces, skipped = plan(options, chosen, before, providers, calendars.SessionBook())
    runner = Runner(connection, options, providers, console)
    runner.open_sessions({p.provider for p in pieces})
    exec_started = time.monotonic()
    if pieces:
        # the table exists (gapsmod.compute created it): the pieces' transactions only insert
        connections = [connection.connect(autocommit=True)
                       for _ in range(min(DB_CONNECTIONS, options.max_concurrent, len(pieces)))]
        try:
            asyncio.run(runner.execute(pieces, connections))
        finally:
            for conn in connections:
                conn.close()
    fetch_wall = time.monotonic() - exec_started
    after: gapsmod.GapReport | None = None
    after_error = None
    if not any(p.inserted or p.updated for p in pieces):
        after = before  # the source did not change: neither did its gaps
    else:
        try:
            after = gapsmod.compute(connection, source_vars, as_of, options.date_from, options.date_to, seed=False)
        except gapsmod.GapsError as exc:
            after_error = str(exc)

    failed = [p for p in pieces if p.status in ("failed", "skipped")]
    exit_code = 1 if failed else 0
    per_asset: dict[str, dict[str, Any]] = {}
    for p in pieces:
        a = per_asset.setdefault(str(p.asset.id), {
            "symbol": p.asset.symbol, "provider": p.provider, "calendar": p.asset.calendar, "pieces": 0,
            "loaded": 0, "failed": 0, "rows_fetched": 0, "rows_kept": 0, "inserted": 0, "updated": 0,
            "unchanged": 0, "duplicates_dropped": 0, "requests": 0, "retries": 0, "failures": []})
        a["pieces"] += 1
        a["loaded"] += p.status in ("loaded", "empty")
        a["failed"] += p.status in ("failed", "skipped")
        for k in ("rows_fetched", "rows_kept", "inserted", "updated", "duplicates_dropped", "requests"):
            a[k] += getattr(p, k)
        a["unchanged"] += max(p.rows_kept - p.inserted - p.updated, 0)
        a["retries"] += len(p.retries)
        if p.error:
            a["failures"].append({"from": p.first.isoformat(), "to": p.last.isoformat(), "error": p.error})
    http = {name: s.stats.audit() for name, s in runner.sessions.items()}
    retry_causes: dict[str, int] = {}
    for s in runner.sessions.values():
        for cause, n in s.stats.retry_causes.items():
            retry_causes[cause] = retry_causes.get(cause, 0) + n
    rows_kept = sum(p.rows_kept for p in pieces if p.status == "loaded")
    summary = {
        "exit_code": exit_code,
        "providers": sorted({p.provider for p in pieces}),
        "pieces": len(pieces), "loaded": sum(p.status == "loaded" for p in pieces),
        "empty": sum(p.status == "empty" for p in pieces), "failed": len(failed),
        "assets": len(per_asset), "assets_skipped": len(skipped),
        "rows_fetched": sum(p.rows_fetched for p in pieces), "rows_loaded": rows_kept,
        "inserted": sum(p.inserted for p in pieces), "updated": sum(p.updated for p in pieces),
        "unchanged": sum(max(p.rows_kept - p.inserted - p.updated, 0) for p in pieces if p.status == "loaded"),
        "requests": sum(s.stats.requests for s in runner.sessions.values()),
        "retries": sum(retry_causes.values()), "retry_causes": retry_causes,
        "sessions_missing_before": before.for_ids(ids).summary()["sessions_missing"],
        "sessions_missing_after": after.for_ids(ids).summary()["sessions_missing"] if after else None,
        "gaps_before": len(before.for_ids(ids).gaps), "gaps_after": len(after.for_ids(ids).gaps) if after else None,
    }
    timing = {
        "wall_s": round(time.monotonic() - t0, 3),
        "gaps_before_dbt_s": round(before.dbt_seconds, 3),
        "gaps_after_dbt_s": round(after.dbt_seconds, 3) if after is not None and after is not before else 0.0,
        "fetch_wall_s": round(fetch_wall, 3),
        "rate_limit_wait_s": round(sum(s.stats.rate_limit_wait + s.stats.pause_wait for s in runner.sessions.values()), 3),
        "retry_wait_s": round(sum(s.stats.retry_wait for s in runner.sessions.values()), 3),
        "http_s": round(sum(s.stats.http_seconds for s in runner.sessions.values()), 3),
        "db_s": round(runner.db_seconds, 3),
        "rows_per_s": round(rows_kept / fetch_wall, 1) if fetch_wall > 0 and rows_kept else None,
        "note": "wait, http and db seconds are summed over concurrent requests; wall_s is the elapsed time",
    }
    record = {
        "kind": "fetch",
        "started_at": started_at.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
        "as_of": as_of.isoformat(),
        "parameters": options.audit(),
        "api_keys": {p.name: f"from environment variable {p.key_env} (value never recorded)"
                     for p in providers.values() if p.http and p.name in runner.sessions},
        "summary": summary, "timing": timing,
        "assets": per_asset, "skipped_assets": skipped,
        "pieces": [p.audit() for p in pieces],
        "requests": http,
        "failures": [{"id": p.asset.id, "from": p.first.isoformat(), "to": p.last.isoformat(), "error": p.error}
                     for p in failed],
        "gaps_before": _gaps_summary(before, ids), "gaps_after": _gaps_summary(after, ids),
        "gaps_after_error": after_error,
    }
    path = auditmod.write(record, runner.scrub)
    if failed:
        lines = [f"id {p.asset.id} {p.first}..{p.last}: {p.error}" for p in failed]
        alertmod.send(alertmod.Alert("ERROR", f"driver fetch: {len(failed)} of {len(pieces)} pieces failed",
                                     [runner.scrub(x) for x in lines]), options.alert_level)
    return FetchResult(exit_code, record, path, pieces)
