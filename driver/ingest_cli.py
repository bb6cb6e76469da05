"""Typer commands of issue 21: `driver fetch`, `driver gaps`, `driver audit` (registered by cli.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import alerts as alertmod
from . import audit as auditmod
from . import calendars
from . import cli_common as common
from . import db as dbmod
from . import fetch as fetchmod
from . import filters as filtersmod
from . import gaps as gapsmod
from .providers.http import RetryPolicy

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


_source = common.source_table
_connection = common.connection


def _usage(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(2)


def _ids(text: Optional[str]) -> Optional[list[int]]:
    try:
        return filtersmod.parse_ids(text)
    except filtersmod.FilterError as exc:
        raise _usage(str(exc)) from None


def gaps_cmd(
    ids: Optional[str] = typer.Option(None, "--ids", help="Comma-separated ids, or all (default)."),
    date_from: Optional[str] = typer.Option(None, "--from", help="Only sessions from this day (YYYY-MM-DD)."),
    date_to: Optional[str] = typer.Option(None, "--to", help="Only sessions up to this day (YYYY-MM-DD)."),
    by: str = typer.Option("auto", "--by", help="Matrix columns: month, year or auto (months up to 12 of them)."),
    json_path: Path = typer.Option(None, "--json", help="Where to write the JSON (default .barsmith/gaps.json)."),
    max_gap_days: Optional[int] = typer.Option(7, "--max-gap-days", min=0,
                                               help="Exit 1 when a gap spans more calendar days than this."),
    alert_level: str = typer.Option("WARNING", "--alert-level", help="Send the gap alert at or above this level."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Instant the sessions must be complete by (default now)."),
    limit: int = typer.Option(50, "--limit", min=1, help="Gaps listed on screen (all are in the JSON)."),
    quiet: bool = typer.Option(False, "--quiet", help="No matrix; only the summary line and problems."),
) -> None:
    """Completeness per asset calendar: matrix, gap list, JSON, alert; exit 1 past --max-gap-days."""
    if by not in ("auto", "month", "year"):
        raise _usage("--by must be month, year or auto")
    if alert_level.upper() not in alertmod.SEVERITIES:
        raise _usage(f"--alert-level must be one of {', '.join(alertmod.SEVERITIES)}")
    try:
        first = fetchmod.parse_date(date_from, "--from")
        last = fetchmod.parse_date(date_to, "--to")
        moment = gapsmod.parse_as_of(as_of)
    except (fetchmod.FetchError, ValueError) as exc:
        raise _usage(str(exc)) from None
    wanted = _ids(ids)
    conn = _connection()
    schema, table = _source()
    try:
        report = gapsmod.compute(conn, {"source_schema": schema, "source_table": table}, moment, first, last)
    except (gapsmod.GapsError, calendars.CalendarError, dbmod.DatabaseError) as exc:
        err.print(f"[red]error:[/red] {dbmod.mask_secrets(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    report = report.for_ids(wanted)
    if not quiet:
        console.print(gapsmod.matrix(report, by))
        console.print(gapsmod.gap_table(report, limit))
    s = report.summary()
    console.print(f"{s['ids']} ids, {s['gaps']} gaps ({s['by_severity']['CRITICAL']} critical, "
                  f"{s['by_severity']['WARNING']} warning), {s['sessions_missing']:,} sessions missing, "
                  f"longest {s['max_gap_days']} days; {s['pct_complete']}% complete", highlight=False)
    path = gapsmod.write_json(report, json_path or dbmod.state_dir() / "gaps.json")
    console.print(f"json: {path}", highlight=False)
    alert = gapsmod.alert_for(report)
    if alert is not None:
        delivery = alertmod.send(alert, alert_level.upper())
        console.print(f"alert {alert.severity}: {delivery.reason}", highlight=False)
    over = gapsmod.over_threshold(report, max_gap_days)
    if over:
        err.print(f"{len(over)} gap(s) longer than {max_gap_days} days", highlight=False)
        raise typer.Exit(1)


def fetch_cmd(
    provider: Optional[str] = typer.Option(None, "--provider",
                                           help="csv, parquet, cmc or polygon (default: each asset's provider in seeds/assets.csv)."),
    ids: Optional[str] = typer.Option(None, "--ids", help="Comma-separated ids (default: every id with a gap)."),
    symbols: Optional[str] = typer.Option(None, "--symbols", help="Comma-separated symbols of seeds/assets.csv."),
    date_from: Optional[str] = typer.Option(None, "--from", help="First day (YYYY-MM-DD)."),
    date_to: Optional[str] = typer.Option(None, "--to", help="Last day (default: the last complete day)."),
    gaps: bool = typer.Option(False, "--gaps", help="Fetch exactly the missing sessions of source_gaps."),
    refetch: bool = typer.Option(False, "--refetch", help="Fetch every day of --from/--to, present or not."),
    path: Optional[Path] = typer.Option(None, "--path", help="Directory (or file) of the csv / parquet provider."),
    max_concurrent: int = typer.Option(4, "--max-concurrent", min=1, max=64, help="Pieces in flight at once."),
    rate_limit: Optional[str] = typer.Option(None, "--rate-limit",
                                             help="REQUESTS/SECONDS for every provider, or cmc=30/60,polygon=5/60 "
                                                  "(default cmc 30/60, polygon 5/60)."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds per HTTP request."),
    retries: int = typer.Option(5, "--retries", min=0, max=20, help="Retries of a failed request."),
    backoff: float = typer.Option(1.0, "--backoff", min=0.0, help="First backoff in seconds (doubles, plus jitter)."),
    max_retry_after: float = typer.Option(300.0, "--max-retry-after", min=0.0,
                                          help="Fail instead of waiting when Retry-After is longer (seconds)."),
    chunk_days: Optional[int] = typer.Option(None, "--chunk-days", min=1, max=10000,
                                             help="Days per request piece (default 365 for the APIs)."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Instant the sessions must be complete by (default now)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar; the summary and errors only."),
    alert_level: str = typer.Option("ERROR", "--alert-level", help="Alert on failed pieces at or above this level."),
) -> None:
    """Fetch daily rows from a provider into the source table (gaps, or a day range), with an audit file."""
    if alert_level.upper() not in alertmod.SEVERITIES:
        raise _usage(f"--alert-level must be one of {', '.join(alertmod.SEVERITIES)}")
    try:
        options = fetchmod.FetchOptions(
            provider=provider, ids=_ids(ids),
            symbols=[s.strip() for s in symbols.split(",") if s.strip()] if symbols else None,
            date_from=fetchmod.parse_date(date_from, "--from"), date_to=fetchmod.parse_date(date_to, "--to"),
            gaps=gaps, refetch=refetch, path=path, max_concurrent=max_concurrent,
            rate_limits=fetchmod.parse_rate_limits(rate_limit), timeout=timeout,
            policy=RetryPolicy(retries=retries, backoff=backoff, max_retry_after=max_retry_after),
            chunk_days=chunk_days, as_of=gapsmod.parse_as_of(as_of), quiet=quiet, alert_level=alert_level.upper(),
        )
    except (fetchmod.FetchError, ValueError) as exc:
        raise _usage(str(exc)) from None
    options.source_schema, options.source_table = _source()
    conn = _connection()
    secrets = [os.environ.get(k, "") for k in ("CMC_PRO_API_KEY", "POLYGON_API_KEY")]

    def scrub(text: str) -> str:
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return dbmod.mask_secrets(text)

    try:
        result = fetchmod.run(conn, options, console=err if not quiet else None)
    except fetchmod.FetchError as exc:
        err.print(f"[red]error:[/red] {scrub(str(exc))}", highlight=False)
        err.print("nothing was fetched")
        raise typer.Exit(2) from None
    except (gapsmod.GapsError, calendars.CalendarError, dbmod.DatabaseError) as exc:
        err.print(f"[red]error:[/red] {scrub(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except Exception as exc:  # never let a traceback (with its locals) print a key
        err.print(f"[red]error:[/red] unexpected {type(exc).__name__}: {scrub(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    s = result.audit["summary"]
    console.print(
        f"fetch: {s['pieces']} pieces ({s['loaded']} loaded, {s['empty']} empty, {s['failed']} failed), "
        f"{s['rows_loaded']:,} rows: {s['inserted']:,} inserted, {s['updated']:,} updated, {s['unchanged']:,} unchanged; "
        f"{s['requests']} requests, {s['retries']} retries; sessions missing {s['sessions_missing_before']} -> "
        f"{s['sessions_missing_after']}", highlight=False)
    for failure in result.audit["failures"][:20]:
        err.print(f"FAILED id {failure['id']} {failure['from']}..{failure['to']}: {failure['error']}",
                  highlight=False, markup=False)
    for skip in result.audit["skipped_assets"]:
        err.print(f"skipped id {skip['id']}: {skip['reason']}", highlight=False, markup=False)
    console.print(f"audit: {result.audit_path}", highlight=False)
    raise typer.Exit(result.exit_code)


def audit_cmd(
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many runs, newest first."),
    show: Optional[str] = typer.Option(None, "--show", help="Print one audit file: its name, or 'latest'."),
) -> None:
    """List recent fetch runs from .barsmith/audit/ (or print one)."""
    items = auditmod.runs(limit if show is None else 10_000)
    if show is not None:
        chosen = items[:1] if show == "latest" else [(p, r) for p, r in items if p.name == show or str(p) == show]
        if not chosen:
            err.print(f"no audit file {show!r} in {auditmod.audit_dir()}")
            raise typer.Exit(1)
        console.print_json(json.dumps(chosen[0][1], default=str))
        return
    if not items:
        console.print(f"no fetch runs yet ({auditmod.audit_dir()})")
        return
    console.print(auditmod.table(items))


def register(app: typer.Typer) -> None:
    """Add fetch, gaps and audit to the driver's Typer app."""
    app.command("fetch")(fetch_cmd)
    app.command("gaps")(gaps_cmd)
    app.command("audit")(audit_cmd)
