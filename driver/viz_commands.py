"""The commands that show the data: `driver plot`, `driver report`, `driver docs` (Typer command
functions, registered in cli.py), and the `driver refresh --report` hook."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import cli_common as common
from . import db as dbmod

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DEFAULT_REPORT_DIR = Path("report")


_connection = common.connection


def _source_vars() -> dict[str, str]:
    schema, table = common.source_table()
    return {"source_schema": schema, "source_table": table}


def plot_cmd(
    asset_id: int = typer.Option(..., "--id", help="The asset id."),
    tf: Optional[str] = typer.Option(None, "--tf", help="Timeframe of dim_timeframe, e.g. 1D, 7D, 1W_CAL_ISO; "
                                     "default the id's first timeframe of the family."),
    family: Optional[str] = typer.Option(None, "--family", help="multi_tf (with 1D), cal_iso, cal_us, cal_anchor_iso "
                                         "or cal_anchor_us; default the first family holding --tf, else multi_tf."),
    periods: Optional[str] = typer.Option(None, "--periods", help="EMA periods to overlay, e.g. 20,50 (default)."),
    date_from: Optional[str] = typer.Option(None, "--from", help="First day (YYYY-MM-DD); default 365 days before --to."),
    date_to: Optional[str] = typer.Option(None, "--to", help="Last day (YYYY-MM-DD); default the id's newest bar."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file to write; default charts/ID_FAMILY_TF.html."),
    png: bool = typer.Option(False, "--png", help="Also write a PNG beside the HTML (kaleido + system Chromium)."),
) -> None:
    """Candlestick chart of one id and timeframe with its EMAs, as self-contained HTML."""
    from . import plot  # noqa: PLC0415

    conn = _connection()
    try:
        spec = plot.resolve(conn, asset_id, family, tf, periods, date_from, date_to)
    except plot.PlotError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2 if exc.usage else 1) from None
    started = time.monotonic()
    try:
        data, paths = plot.plot(conn, spec, out, png=png)
    except Exception as exc:  # e.g. no Chromium for --png
        err.print(f"[red]error:[/red] {escape(dbmod.mask_secrets(str(exc)))}", highlight=False)
        raise typer.Exit(1) from None
    for note in spec.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    console.print(f"id {spec.id} {spec.tf} ({spec.bar_table}) {spec.start} .. {spec.end}: {len(data.bars)} completed "
                  f"bar(s){', 1 in progress' if data.in_progress else ''}, {len(data.emas)} EMA trace(s), "
                  f"{len(data.rejects)} reject(s) in {time.monotonic() - started:.1f} s", highlight=False)
    for path in paths:
        console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", highlight=False, markup=False)


def report_cmd(
    out: Path = typer.Option(DEFAULT_REPORT_DIR, "--out", help="Directory for index.html (and charts/, docs/)."),
    charts: bool = typer.Option(True, "--charts/--no-charts", help="Write one 1D chart per id under charts/."),
    docs: bool = typer.Option(False, "--docs", help="Also generate the dbt docs into docs/ (dbt docs generate)."),
) -> None:
    """Static HTML report: last refresh, freshness, completeness, rejects, table sizes, links."""
    from . import html_report  # noqa: PLC0415

    started = time.monotonic()
    conn = _connection()
    try:
        path, data = html_report.write(conn, out, charts=charts, docs=docs)
    except Exception as exc:
        err.print(f"[red]error:[/red] {escape(dbmod.mask_secrets(str(exc)))}", highlight=False)
        raise typer.Exit(1) from None
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in data.seconds.items())
    console.print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, {len(data.charts)} chart(s)) in "
                  f"{time.monotonic() - started:.1f} s ({parts})", highlight=False, markup=False)


def docs_cmd(
    out: Optional[Path] = typer.Option(None, "--out", help="Write the static site (one index.html) to this directory."),
    serve: bool = typer.Option(False, "--serve", help="Serve the docs on localhost (dbt docs serve) until Ctrl-C."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port for --serve."),
) -> None:
    """dbt docs generate (models, columns, tests, exposures, lineage); --out writes it, --serve serves it."""
    from . import docs as docsmod  # noqa: PLC0415

    if not out and not serve:
        out = DEFAULT_REPORT_DIR / "docs"
    conn = _connection()
    try:
        if out:
            path = docsmod.write_static(conn, out, _source_vars())
            console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, opens from disk)", highlight=False)
        if serve:
            console.print(f"serving the dbt docs on http://127.0.0.1:{port} (Ctrl-C stops)", highlight=False)
            docsmod.serve(conn, port, _source_vars())
    except docsmod.DocsError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


def after_refresh(connection: dbmod.Connection, outcome, out: Path, log=None) -> None:
    """`driver refresh --report`: write the report of this refresh; a failure is reported, never
    changes the refresh's exit code."""
    from . import html_report  # noqa: PLC0415

    try:
        path, _data = html_report.write(connection, out, outcome=outcome)
        message = f"report: {path}"
        console.print(message, highlight=False, markup=False)
    except Exception as exc:
        message = f"report not written: {dbmod.mask_secrets(str(exc))}"
        err.print(message, highlight=False, markup=False)
    if log is not None:
        log.write(message)
