"""barsmith driver: the Typer app (options, help texts, calls into the modules)."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import db as dbmod
from . import load as loadmod
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


@app.command("refresh")
def refresh_cmd(
    all_: bool = typer.Option(False, "--all", help="Bars, then EMAs."),
    full_refresh: bool = typer.Option(False, "--full-refresh", help="Rebuild every model from scratch."),
    quiet: bool = typer.Option(False, "--quiet", help="Only the summary and errors."),
) -> None:
    """Build the models (dbt build: seeds, models and their data tests) and print a summary."""
    if not all_:
        err.print("error: choose what to refresh: --all")
        raise typer.Exit(2)
    conn = _connection()
    if not quiet:
        console.print(f"database: {conn.display}")
    extra = ["--full-refresh"] if full_refresh else []
    if quiet:
        extra.append("--quiet")
    inv = invoke(conn, ["build"], _source_vars(), extra)
    report.print_summary(console, [inv])
    raise typer.Exit(0 if inv.success else 1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
