"""barsmith driver: the Typer app (options, help texts, calls into the modules)."""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import psycopg
import typer
from rich.console import Console

from . import alerts as alertmod
from . import cli_common as common
from . import config
from . import db as dbmod
from . import filters as filtersmod
from . import freshness
from . import load as loadmod
from . import logs as logsmod
from . import refresh as refreshmod
from . import progress as progressmod
from . import report, sample
from . import viz_commands
from .dbt import PROFILES_DIR, invoke
from .lock import EXIT_LOCKED

EXIT_OK, EXIT_FAILED, EXIT_USAGE = common.EXIT_OK, common.EXIT_FAILED, common.EXIT_USAGE

# No pretty tracebacks: they print local variables, which can hold a password.
app = typer.Typer(help="barsmith: daily OHLCV history -> multi-timeframe bars and EMAs (dbt on PostgreSQL).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Manage the embedded PostgreSQL under .barsmith/ (used when BARSMITH_DB_URL is unset).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console(soft_wrap=True)
err = common.err


_usage_errors = common.usage_errors
_source_table = common.source_table
_check_environment = common.check_environment
_connection = common.connection


def _source_vars(user_vars: dict | None = None) -> dict[str, str]:
    schema, table = _source_table(user_vars)
    return {"source_schema": schema, "source_table": table}


def _parse_vars(text: str | None) -> dict:
    with _usage_errors():
        return config.parse_vars(text)


VARS_HELP = ("dbt vars as YAML or JSON, like dbt's --vars, e.g. '{ema_start_date: \"\", bars_daily_source: raw}'; "
             "only vars dbt_project.yml declares (the filters have their own options).")


@db_app.command("start")
def db_start() -> None:
    """Start the embedded server (idempotent) and print where it listens."""
    if os.environ.get("BARSMITH_DB_URL"):
        console.print("BARSMITH_DB_URL is set: barsmith uses that server, the embedded one is not needed.")
    with _usage_errors():
        config.target_schema()
    try:
        conn = dbmod.start_embedded()
    except dbmod.DatabaseError as exc:
        err.print(f"error: {dbmod.mask_secrets(str(exc))}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    console.print(f"running: {conn.display}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded server."""
    console.print("stopped" if dbmod.stop_embedded() else "not running")


@db_app.command("status")
def db_status() -> None:
    """Show whether the embedded server runs, which database barsmith uses and how to connect to it."""
    _check_environment()
    st = dbmod.embedded_status()
    url = os.environ.get("BARSMITH_DB_URL", "").strip()
    if url:
        conn = dbmod.from_url(url)
        console.print(f"configured server (BARSMITH_DB_URL): {conn.display}", highlight=False)
        console.print(f"connect: {dbmod.psql_command(conn)}", highlight=False, markup=False)
        if conn.password:
            console.print("  (psql asks for the password, or reads PGPASSWORD / ~/.pgpass; it is not shown here)",
                          highlight=False)
    else:
        console.print("configured server: (none: embedded)")
    running = f"running (pid {st.get('pid')})" if st["running"] else "stopped"
    console.print(f"embedded: {running}, data {st['data_dir']}", highlight=False)
    embedded = dbmod.embedded_connection(st)
    if embedded is not None and not url:
        console.print(f"connect: {dbmod.psql_command(embedded)}", highlight=False, markup=False)


@app.command("load")
def load_cmd(files: list[Path] = typer.Argument(..., help="CSV files in the price_histories format.")) -> None:
    """Upsert CSV rows into the source table by (id, "timestamp"), all files in one transaction."""
    schema, table = _source_table()
    conn = _connection()
    try:
        res = loadmod.load_files(conn, files, schema, table)
    except loadmod.LoadError as exc:
        for problem in exc.problems:
            err.print(f"refused: {problem}", markup=False, highlight=False)
        err.print("nothing was loaded")
        raise typer.Exit(EXIT_FAILED) from None
    except dbmod.DatabaseError as exc:
        err.print(f"error: {dbmod.mask_secrets(str(exc))}; nothing was loaded", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except psycopg.Error as exc:
        first = (dbmod.mask_secrets(str(exc)).strip().splitlines() or [type(exc).__name__])[0]
        err.print(f"error: the database refused the load into {schema}.{table}: {first}; nothing was loaded",
                  markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
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


class DbtLog:
    """dbt event callback: every dbt line to the refresh log (and to the console with --verbose)."""

    def __init__(self, log: logsmod.RefreshLog, verbose: bool):
        self.log, self.verbose = log, verbose

    def __call__(self, event) -> None:
        name = event.info.name
        msg = event.info.msg
        if msg and name not in ("NodeStart", "NodeFinished"):
            self.log.write(msg, str(event.info.level).upper())
            if self.verbose:
                console.print(msg, highlight=False, markup=False)


def _parse_filters(ids, tfs, periods, combos) -> filtersmod.Filters:
    with _usage_errors():
        return filtersmod.parse_all(ids, tfs, periods, combos)


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
    vars_: Optional[str] = typer.Option(None, "--vars", help=VARS_HELP),
    full_refresh: bool = typer.Option(False, "--full-refresh", help="Rebuild from scratch (only the --ids when given)."),
    resume: bool = typer.Option(False, "--resume", help="Re-run the last failed or unfinished refresh of this database "
                                "from the stage it stopped in, with the options it was started with."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the dbt commands (paste-able); touch no database."),
    force: bool = typer.Option(False, "--force", help="Run dbt even when the source, the project and the options "
                               "are those of the last green run (which otherwise ends the refresh at once)."),
    continue_on_error: bool = typer.Option(
        False, "--continue-on-error",
        help="Kept for old scripts: a refresh is one dbt build, which always runs every model whose upstream "
             "succeeded and skips the others (--fail-fast stops at the first failure)."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop a stage at its first failing node."),
    quiet: bool = typer.Option(False, "--quiet", help="Only the summary and errors (cron friendly)."),
    verbose: bool = typer.Option(False, "--verbose", help="Stream dbt's own output."),
    skip_stale_check: bool = typer.Option(False, "--skip-stale-check", help="EMAs for every requested id, stale or not."),
    staleness_hours: float = typer.Option(48.0, "--staleness-hours", min=0.0, help="Freshness threshold in hours."),
    alert_level: str = typer.Option("ERROR", "--alert-level", help="Send alerts at or above INFO|WARNING|ERROR|CRITICAL."),
    lock_wait: float = typer.Option(0.0, "--lock-wait", min=0.0, help="Seconds to wait for a running refresh "
                                    f"(refused with exit {EXIT_LOCKED} after that)."),
    keep_logs_days: int = typer.Option(30, "--keep-logs-days", min=1, help="Delete refresh logs older than this."),
    write_report: bool = typer.Option(False, "--report", help="Write the HTML report (driver report) afterwards."),
    report_dir: Path = typer.Option(viz_commands.DEFAULT_REPORT_DIR, "--report-dir", help="Where --report writes."),
) -> None:
    """Refresh the tables: bars -> EMAs and features (stale ids wait), with a summary at the end.

    Exit codes: 0 success, 1 failure, 2 usage or configuration error, 3 another refresh holds the lock."""
    chosen = [name for name, flag in (("all", all_), ("bars", bars), ("emas", emas), ("features", features)) if flag]
    if resume:
        given = [flag for flag, on in (
            ("--all/--bars/--emas/--features", bool(chosen)), ("--ids", ids is not None), ("--tfs", tfs is not None),
            ("--periods", periods is not None), ("--tf-period-combos", combos is not None),
            ("--vars", vars_ is not None), ("--full-refresh", full_refresh), ("--dry-run", dry_run),
            ("--continue-on-error", continue_on_error), ("--fail-fast", fail_fast),
            ("--skip-stale-check", skip_stale_check), ("--staleness-hours", staleness_hours != 48.0)) if on]
        if given:
            err.print(f"error: --resume re-runs the last unfinished run with the options it was started with "
                      f"(recorded in the database); drop {', '.join(given)}")
            raise typer.Exit(EXIT_USAGE)
    elif len(chosen) != 1:
        err.print("error: choose exactly one of --all, --bars, --emas, --features")
        raise typer.Exit(EXIT_USAGE)
    if alert_level.upper() not in alertmod.SEVERITIES:
        err.print(f"error: --alert-level must be one of {', '.join(alertmod.SEVERITIES)}")
        raise typer.Exit(EXIT_USAGE)
    _check_environment()
    user_vars = _parse_vars(vars_)
    options = refreshmod.RefreshOptions(
        stage=chosen[0] if chosen else "all", filters=_parse_filters(ids, tfs, periods, combos),
        full_refresh=full_refresh, resume=resume, dry_run=dry_run, continue_on_error=continue_on_error,
        fail_fast=fail_fast, quiet=quiet, verbose=verbose, skip_stale_check=skip_stale_check,
        staleness_hours=staleness_hours, alert_level=alert_level.upper(), lock_wait=lock_wait,
        source_vars=_source_vars(), user_vars=user_vars, force=force,
    )
    if dry_run:
        _print_dry_run(options)
        raise typer.Exit(EXIT_OK)
    logsmod.prune(keep_logs_days)
    with logsmod.RefreshLog() as log:
        log.write("refresh started: " + ("--resume" if resume else
                                         f"stage={options.stage} filters={options.filters.dbt_vars()} "
                                         f"vars={options.user_vars}"))
        try:
            with _usage_errors():
                conn = dbmod.resolve(start=True)
        except dbmod.DatabaseError as exc:
            message = dbmod.mask_secrets(str(exc))
            log.write(message, "CRITICAL")
            err.print(f"error: {message}", markup=False, highlight=False)
            delivery = alertmod.send(alertmod.Alert("CRITICAL", "database unreachable", [message]), options.alert_level)
            log.write(f"alert CRITICAL: {delivery.reason}")
            raise typer.Exit(EXIT_FAILED) from None
        if not quiet:
            console.print(f"database: {conn.display}", highlight=False)
        show = None if quiet else (lambda line: console.print(line, highlight=False, markup=False))
        progress = progressmod.Progress(printer=show)
        notify = None if quiet else (lambda message: err.print(message, highlight=False, markup=False))
        outcome = refreshmod.run(conn, options, lambda level, msg: log.write(msg, level),
                                 [DbtLog(log, verbose), progress], progress=progress, notify=notify)
        lines = report.outcome_lines(outcome)
        for line in lines:
            log.write(line)
        report.print_outcome(console, outcome, quiet=quiet)
        if write_report:
            viz_commands.after_refresh(conn, outcome, report_dir, log)
        log.write(f"refresh finished: exit {outcome.exit_code} in {outcome.seconds:.1f} s")
        if not quiet:
            console.print(f"log: {log.path}", highlight=False)
    raise typer.Exit(outcome.exit_code)


def _print_dry_run(options: refreshmod.RefreshOptions) -> None:
    """The commands a refresh runs, as a user can paste them into a shell: the environment the
    driver's profile (driver/profiles/profiles.yml) reads, then the dbt command lines."""
    url = os.environ.get("BARSMITH_DB_URL", "").strip()
    conn = None
    if url:
        with _usage_errors():
            conn = dbmod.from_url(url)
        console.print(f"# database: {dbmod.mask_secrets(url)}", highlight=False, markup=False)
    else:
        conn = dbmod.embedded_connection(dbmod.embedded_status())
        console.print("# database: embedded PostgreSQL (.barsmith/pgdata)"
                      + ("" if conn else ", not running: start it with driver db start, then driver refresh "
                                         "--dry-run prints its socket and port"), highlight=False, markup=False)
    console.print(f"# dbt reads the connection from these variables ({PROFILES_DIR / 'profiles.yml'}):",
                  highlight=False, markup=False)
    if conn is not None:
        env = conn.dbt_env()
        password = env.pop("BARSMITH_PGPASSWORD", "")
        console.print("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()),
                      highlight=False, markup=False, soft_wrap=True)
        if password:
            console.print("export BARSMITH_PGPASSWORD=...   # the password of BARSMITH_DB_URL (not shown)",
                          highlight=False, markup=False)
    dbt_exe = Path(sys.executable).with_name("dbt")
    dbt = str(dbt_exe) if dbt_exe.exists() else "dbt"
    for stage, line in zip(options.stages, refreshmod.plan(options)):
        text = shlex.join([dbt] + line[1:])
        console.print(text, highlight=False, markup=False, soft_wrap=True)
    console.print("# dry run: nothing executed, no database touched", highlight=False, markup=False)


@app.command("freshness")
def freshness_cmd(
    ids: Optional[str] = typer.Option(None, "--ids", help="Comma-separated ids, or all."),
    staleness_hours: float = typer.Option(48.0, "--staleness-hours", min=0.0),
    vars_: Optional[str] = typer.Option(None, "--vars", help=VARS_HELP),
) -> None:
    """dbt source freshness plus a per-id staleness table; exit 1 when the source is stale."""
    filters = _parse_filters(ids, None, None, None)
    _check_environment()
    user_vars = _parse_vars(vars_)
    schema, table = _source_table(user_vars)
    conn = _connection()
    inv = invoke(conn, ["source", "freshness"], {**_source_vars(), **user_vars}, ["--quiet"])
    source_status = ({n.name: n.status for n in inv.nodes if n.resource_type == "source"}
                     or {"price_histories": "error"})
    for name, status in source_status.items():
        console.print(f"source {name}: {status}")
    try:
        rows = freshness.per_id(conn, filters.ids, schema, table)
    except (dbmod.DatabaseError, psycopg.Error) as exc:
        err.print(f"error: {dbmod.mask_secrets(str(exc)).strip()}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    console.print(freshness.table(rows, staleness_hours))
    stale_source = any(s in ("error", "runtime error", "warn") for s in source_status.values()) or not inv.success
    raise typer.Exit(EXIT_FAILED if stale_source else EXIT_OK)


@app.command("validate")
def validate_cmd(
    selector: str = typer.Option("daily_refresh", "--selector", help="bars, emas, features or daily_refresh."),
    staleness_hours: float = typer.Option(48.0, "--staleness-hours", min=0.0),
    vars_: Optional[str] = typer.Option(None, "--vars", help=VARS_HELP),
) -> None:
    """Run the data tests only (dbt test), then the freshness check; exit 1 on any failure."""
    if selector not in ("bars", "emas", "features", "daily_refresh"):
        err.print("error: --selector must be bars, emas, features or daily_refresh")
        raise typer.Exit(EXIT_USAGE)
    _check_environment()
    user_vars = _parse_vars(vars_)
    conn = _connection()
    inv = invoke(conn, ["test"], {**_source_vars(), **user_vars, "staleness_hours": staleness_hours},
                 ["--selector", selector, "--quiet"])
    counts = report.test_counts([inv])
    console.print("data tests: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"))
    for node in inv.nodes:
        if node.status == "warn":
            console.print(report.warning_line(node), style="yellow", markup=False, highlight=False)
    for node in inv.failed:
        console.print(f"FAILED {node.name}: {(node.message.splitlines() or [''])[0]}", style="red", markup=False)
    if inv.error:
        console.print(f"dbt error: {inv.error.splitlines()[0]}", style="red", markup=False)
    try:
        freshness_cmd(ids=None, staleness_hours=staleness_hours, vars_=vars_)
    except typer.Exit as exc:
        raise typer.Exit(EXIT_FAILED if (exc.exit_code or not inv.success) else EXIT_OK) from None


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


# issue 21: fetch, gaps, audit (their commands live in driver/ingest_cli.py)
from .ingest_cli import register as _register_ingest  # noqa: E402

_register_ingest(app)
# issue 23: plot, report, docs (driver/viz_commands.py)
app.command("plot")(viz_commands.plot_cmd)
app.command("report")(viz_commands.report_cmd)
app.command("docs")(viz_commands.docs_cmd)


def main() -> None:  # pragma: no cover (exercised through subprocess tests)
    """The `driver` command: the Typer app, with any unexpected error printed without a secret."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception:  # a bug: show where, masked (a traceback can quote a connection string)
        err.print(dbmod.mask_secrets(traceback.format_exc()), markup=False, highlight=False)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    main()
