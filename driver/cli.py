"""barsmith driver: the Typer app (options, help texts, calls into the modules)."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

import time

from . import alerts as alertmod
from . import db as dbmod
from . import filters as filtersmod
from . import freshness
from . import load as loadmod
from . import logs as logsmod
from . import refresh as refreshmod
from . import report, sample
from .dbt import invoke

app = typer.Typer(help="barsmith: daily OHLCV history -> multi-timeframe bars and EMAs (dbt on PostgreSQL).",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Manage the embedded PostgreSQL under .barsmith/ (used when BARSMITH_DB_URL is unset).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _source_table() -> tuple[str, str]:
    return os.environ.get("BARSMITH_SOURCE_SCHEMA", "public"), os.environ.get("BARSMITH_SOURCE_TABLE", "price_histories")


def _connection() -> dbmod.Connection:
    try:
        return dbmod.resolve(start=True)
    except dbmod.DatabaseError as exc:
        err.print(f"[red]error:[/red] {dbmod.mask_secrets(str(exc))}")
        raise typer.Exit(1) from None


def _source_vars() -> dict[str, str]:
    schema, table = _source_table()
    return {"source_schema": schema, "source_table": table}


@db_app.command("start")
def db_start() -> None:
    """Start the embedded server (idempotent) and print where it listens."""
    if os.environ.get("BARSMITH_DB_URL"):
        console.print("BARSMITH_DB_URL is set: barsmith uses that server, the embedded one is not needed.")
    conn = dbmod.start_embedded()
    console.print(f"running: {conn.display}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded server."""
    console.print("stopped" if dbmod.stop_embedded() else "not running")


@db_app.command("status")
def db_status() -> None:
    """Show whether the embedded server runs and which database barsmith would use."""
    st = dbmod.embedded_status()
    url = os.environ.get("BARSMITH_DB_URL")
    console.print(f"configured server: {dbmod.mask_url(url) if url else '(none: embedded)'}")
    console.print(f"embedded: {'running (pid %s)' % st.get('pid') if st['running'] else 'stopped'}, data {st['data_dir']}")


@app.command("load")
def load_cmd(files: list[Path] = typer.Argument(..., help="CSV files in the price_histories format.")) -> None:
    """Upsert CSV rows into the source table by (id, "timestamp"), all files in one transaction."""
    conn = _connection()
    schema, table = _source_table()
    try:
        res = loadmod.load_files(conn, files, schema, table)
    except loadmod.LoadError as exc:
        err.print(f"[red]refused:[/red] {exc}")
        err.print("nothing was loaded")
        raise typer.Exit(1) from None
    console.print(
        f"{res.files} file(s), {res.rows_read:,} rows: {res.inserted:,} inserted, {res.updated:,} updated, "
        f"{res.unchanged:,} unchanged -> {schema}.{table}"
    )


@app.command("sample")
def sample_cmd(
    out: Path = typer.Option(Path(".barsmith/sample.csv"), help="Where to write the CSV."),
    end: Optional[str] = typer.Option(None, help="Last day (YYYY-MM-DD); default yesterday (UTC)."),
    years: int = typer.Option(4, min=1, max=30, help="Years of history per id."),
    load: bool = typer.Option(False, "--load", help="Also load the file into the source table."),
) -> None:
    """Write a deterministic sample data set (same arguments, same rows)."""
    try:
        last = date.fromisoformat(end) if end else datetime.now(timezone.utc).date() - timedelta(days=1)
    except ValueError:
        err.print(f"[red]error:[/red] --end must be YYYY-MM-DD, got {end!r}")
        raise typer.Exit(2) from None
    rows = sample.generate(last, years=years)
    path = sample.write_csv(rows, out)
    console.print(f"wrote {len(rows):,} rows for {len(sample.ASSETS)} ids to {path}")
    if load:
        load_cmd([path])


class Progress:
    """dbt event callback: N of M nodes, current node, elapsed, ETA; every dbt line to the log."""

    def __init__(self, log: logsmod.RefreshLog, show: bool, verbose: bool):
        self.log, self.show, self.verbose = log, show, verbose
        self.started = time.monotonic()
        self.total = 0
        self.done = 0

    def __call__(self, event) -> None:
        name = event.info.name
        msg = event.info.msg
        if msg and name not in ("NodeStart", "NodeFinished"):
            self.log.write(msg, str(event.info.level).upper())
        if name == "LogStartLine":
            self.total = max(self.total, int(getattr(event.data, "total", 0) or 0))
        elif name == "NodeFinished":
            self.done += 1
            if self.show:
                node = event.data.node_info
                elapsed = time.monotonic() - self.started
                eta = elapsed / self.done * max(self.total - self.done, 0) if self.done else 0
                console.print(f"[{self.done}/{self.total or '?'}] {node.node_name} {node.node_status} "
                              f"(elapsed {elapsed:.0f} s, ETA {eta:.0f} s)", highlight=False)
        if self.verbose and msg and name not in ("NodeStart", "NodeFinished"):
            console.print(msg, highlight=False, markup=False)


def _parse_filters(ids, tfs, periods, combos) -> filtersmod.Filters:
    try:
        return filtersmod.parse_all(ids, tfs, periods, combos)
    except filtersmod.FilterError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command("refresh")
def refresh_cmd(
    all_: bool = typer.Option(False, "--all", help="Bars, then the freshness gate, then EMAs and features."),
    bars: bool = typer.Option(False, "--bars", help="Only the bar stage (1D and the five families)."),
    emas: bool = typer.Option(False, "--emas", help="Only the EMA stage (after the freshness gate)."),
    features: bool = typer.Option(False, "--features", help="Only the features stage (after the freshness gate)."),
    ids: Optional[str] = typer.Option(None, "--ids", help="Comma-separated integer ids, or all (default)."),
    tfs: Optional[str] = typer.Option(None, "--tfs", help="Comma-separated timeframes of dim_timeframe, e.g. 7D,1W_CAL_ISO."),
    periods: Optional[str] = typer.Option(None, "--periods", help="Comma-separated EMA periods, e.g. 10,20,50."),
    combos: Optional[str] = typer.Option(None, "--tf-period-combos", help="TF:PERIOD pairs, e.g. 7D:10,7D:20."),
    full_refresh: bool = typer.Option(False, "--full-refresh", help="Rebuild from scratch (only the --ids when given)."),
    resume: bool = typer.Option(False, "--resume", help="Re-run what failed last time (dbt retry), then the stages left."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the dbt commands; touch no database."),
    continue_on_error: bool = typer.Option(False, "--continue-on-error", help="Run the EMA stage even if bars failed."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop a stage at its first failing node."),
    quiet: bool = typer.Option(False, "--quiet", help="Only the summary and errors (cron friendly)."),
    verbose: bool = typer.Option(False, "--verbose", help="Stream dbt's own output."),
    skip_stale_check: bool = typer.Option(False, "--skip-stale-check", help="EMAs for every requested id, stale or not."),
    staleness_hours: float = typer.Option(48.0, "--staleness-hours", min=0.0, help="Freshness threshold in hours."),
    alert_level: str = typer.Option("ERROR", "--alert-level", help="Send alerts at or above INFO|WARNING|ERROR|CRITICAL."),
    lock_wait: float = typer.Option(0.0, "--lock-wait", min=0.0, help="Seconds to wait for a running refresh."),
    keep_logs_days: int = typer.Option(30, "--keep-logs-days", min=1, help="Delete refresh logs older than this."),
) -> None:
    """Refresh the tables: bars -> freshness gate -> EMAs -> features, with a summary at the end."""
    chosen = [name for name, flag in (("all", all_), ("bars", bars), ("emas", emas), ("features", features)) if flag]
    if len(chosen) != 1 and not (resume and not chosen):
        err.print("error: choose exactly one of --all, --bars, --emas, --features")
        raise typer.Exit(2)
    if alert_level.upper() not in alertmod.SEVERITIES:
        err.print(f"error: --alert-level must be one of {', '.join(alertmod.SEVERITIES)}")
        raise typer.Exit(2)
    options = refreshmod.RefreshOptions(
        stage=chosen[0] if chosen else "all", filters=_parse_filters(ids, tfs, periods, combos),
        full_refresh=full_refresh, resume=resume, dry_run=dry_run, continue_on_error=continue_on_error,
        fail_fast=fail_fast, quiet=quiet, verbose=verbose, skip_stale_check=skip_stale_check,
        staleness_hours=staleness_hours, alert_level=alert_level.upper(), lock_wait=lock_wait,
        source_vars=_source_vars(),
    )
    if dry_run:
        url = os.environ.get("BARSMITH_DB_URL")
        console.print(f"database: {dbmod.mask_url(url) if url else 'embedded PostgreSQL (.barsmith/pgdata)'}")
        for line in refreshmod.plan(options):
            console.print(dbmod.mask_secrets(" ".join(line)), highlight=False, markup=False)
        console.print("dry run: nothing executed, no database touched")
        raise typer.Exit(0)
    logsmod.prune(keep_logs_days)
    with logsmod.RefreshLog() as log:
        log.write(f"refresh started: stage={options.stage} filters={options.filters.dbt_vars()}")
        try:
            conn = dbmod.resolve(start=True)
        except dbmod.DatabaseError as exc:
            message = dbmod.mask_secrets(str(exc))
            log.write(message, "CRITICAL")
            err.print(f"[red]error:[/red] {message}")
            delivery = alertmod.send(alertmod.Alert("CRITICAL", "database unreachable", [message]), options.alert_level)
            log.write(f"alert CRITICAL: {delivery.reason}")
            raise typer.Exit(1) from None
        if not quiet:
            console.print(f"database: {conn.display}")
        progress = Progress(log, show=not quiet, verbose=verbose)
        outcome = refreshmod.run(conn, options, lambda level, msg: log.write(msg, level), [progress])
        lines = report.outcome_lines(outcome)
        for line in lines:
            log.write(line)
        report.print_outcome(console, outcome, quiet=quiet)
        log.write(f"refresh finished: exit {outcome.exit_code} in {outcome.seconds:.1f} s")
        if not quiet:
            console.print(f"log: {log.path}")
    raise typer.Exit(outcome.exit_code)


@app.command("freshness")
def freshness_cmd(
    ids: Optional[str] = typer.Option(None, "--ids", help="Comma-separated ids, or all."),
    staleness_hours: float = typer.Option(48.0, "--staleness-hours", min=0.0),
) -> None:
    """dbt source freshness plus a per-id staleness table; exit 1 when the source is stale."""
    filters = _parse_filters(ids, None, None, None)
    conn = _connection()
    inv = invoke(conn, ["source", "freshness"], _source_vars(), ["--quiet"])
    source_status = {n.name: n.status for n in inv.nodes} or {"price_histories": "error"}
    for name, status in source_status.items():
        console.print(f"source {name}: {status}")
    try:
        rows = freshness.per_id(conn, filters.ids)
    except dbmod.DatabaseError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(freshness.table(rows, staleness_hours))
    stale_source = any(s in ("error", "runtime error", "warn") for s in source_status.values()) or not inv.success
    raise typer.Exit(1 if stale_source else 0)


@app.command("validate")
def validate_cmd(
    selector: str = typer.Option("daily_refresh", "--selector", help="bars, emas, features or daily_refresh."),
    staleness_hours: float = typer.Option(48.0, "--staleness-hours", min=0.0),
) -> None:
    """Run the data tests only (dbt test), then the freshness check; exit 1 on any failure."""
    if selector not in ("bars", "emas", "features", "daily_refresh"):
        err.print("error: --selector must be bars, emas, features or daily_refresh")
        raise typer.Exit(2)
    conn = _connection()
    inv = invoke(conn, ["test"], {**_source_vars(), "staleness_hours": staleness_hours},
                 ["--selector", selector, "--quiet"])
    counts = report.test_counts([inv])
    console.print("data tests: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"))
    for node in inv.failed:
        console.print(f"FAILED {node.name}: {(node.message.splitlines() or [''])[0]}", style="red", markup=False)
    try:
        freshness_cmd(ids=None, staleness_hours=staleness_hours)
    except typer.Exit as exc:
        raise typer.Exit(1 if (exc.exit_code or not inv.success) else 0) from None


@app.command("logs")
def logs_cmd(lines: int = typer.Option(50, "--lines", "-n", min=1, help="How many lines from the end.")) -> None:
    """Show the end of the latest refresh log."""
    path = logsmod.latest()
    if path is None:
        console.print("no refresh log yet (.logs/refresh-YYYY-MM-DD.log)")
        raise typer.Exit(0)
    console.print(f"== {path}", highlight=False)
    for line in path.read_text(encoding="utf-8").splitlines()[-lines:]:
        console.print(line, highlight=False, markup=False)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
