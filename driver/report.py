"""Summaries of a refresh for people (rich tables) and for the log (plain lines)."""

from __future__ import annotations

from collections import defaultdict

from rich import box
from rich.console import Console
from rich.table import Table

from .dbt import Invocation, first_error_line

MODEL_TYPES = ("model", "seed", "snapshot")
QUALITY_LABELS = {
    "missing_days": "rows with is_missing_days",
    "partial_end": "partial (in-progress) snapshot rows",
    "partial_start": "partial-start snapshot rows",
    "repaired_timehigh": "1D rows with repaired time_high",
    "repaired_timelow": "1D rows with repaired time_low",
    "null_volume_or_market_cap": "1D rows kept with NULL volume/market cap (OP-11)",
    "rejects": "1D rejects",
    "repaired_ohlc": "1D rows with high/low repaired by bars.md §5.3 rule 4 (repaired_ohlc)",
    "ema_rejects": "EMA rejects",
    "warm_up": "features rows still in the indicator warm-up (MACD signal NULL)",
}


def stage_of(tags: list[str]) -> str:
    if "emas" in tags:
        return "emas"
    if "features" in tags:
        return "features"
    if "bars" in tags or "quality" in tags:
        return "bars"
    return "seeds"


def model_rows(outcome) -> list[tuple[str, str, str, int | None, float]]:
    rows = []
    for inv in outcome.invocations:
        for node in inv.nodes:
            if node.resource_type not in MODEL_TYPES:
                continue
            written = outcome.rows_written.get(node.name, node.rows)
            rows.append((stage_of(node.tags), node.name, node.status, written, node.seconds))
    return rows


def summary_table(outcome) -> Table:
    """Per stage, per model rows and seconds. Fits 80 columns with the project's longest model name
    and ten-digit row counts; on a narrower terminal a name folds onto the next line, never cut
    short (no ellipsis)."""
    rows = model_rows(outcome)
    grouped: dict[str, list[tuple]] = {}
    for stage, name, status, written, secs in rows:
        grouped.setdefault(stage, []).append((name, status, written, secs))
    cells: list[tuple[str, str, str, str]] = []
    for stage, items in grouped.items():
        cells.append((f"[b]{stage}[/b]", "", "", ""))
        for name, status, written, secs in items:
            cells.append(("  " + name, status, "" if written is None else f"{written:,}", f"{secs:.1f}"))
        total_rows = sum(w or 0 for _n, _s, w, _t in items)
        cells.append((f"  [i]{stage} total[/i]", "", f"{int(total_rows):,}", f"{sum(t for *_x, t in items):.1f}"))
    for st in outcome.stages:
        if st.skipped:
            cells.append((f"[b]{st.stage}[/b]", "skipped", "", ""))
    table = Table(title="barsmith refresh summary", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    widths = [max([len(c[i]) for c in cells] + [len(h)]) for i, h in ((2, "rows written"), (3, "seconds"))]
    table.add_column("model", overflow="fold", min_width=12)
    table.add_column("status", no_wrap=True, min_width=7)
    table.add_column("rows written", justify="right", no_wrap=True, min_width=widths[0])
    table.add_column("seconds", justify="right", no_wrap=True, min_width=widths[1])
    for cell in cells:
        table.add_row(*cell)
    return table


def test_counts(invocations: list[Invocation]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for inv in invocations:
        for node in inv.nodes:
            if node.resource_type == "test":
                counts[node.status] += 1
    return dict(counts)


def quality_lines(outcome) -> list[str]:
    totals: dict[str, int] = defaultdict(int)
    for counts in outcome.quality.values():
        for key, value in counts.items():
            totals[key] += value
    return [f"{QUALITY_LABELS.get(k, k)}: {v:,}" for k, v in sorted(totals.items())]


def warning_line(node) -> str:
    """A data test that warned: which test, on which model, how many rows."""
    on = f" on {node.attached}" if getattr(node, "attached", None) else ""
    rows = f"{node.failures:,} row(s)" if isinstance(node.failures, int) else first_error_line(node.message)
    return f"WARN test {node.name}{on}: {rows}"


REJECTS_1D_SHOWN = 10


def fetch_rejects_1d(connection, since, tz: str = "America/New_York") -> list[tuple[str, int, list]]:
    """(reason, rows, [[id, local day], ...]) of the rejects price_bars_1d_rejects wrote in its runs
    since `since`: the rows of the ranges it recorded in barsmith_changes (all after a full build);
    [] before its first run."""
    from psycopg import sql

    from .db import relation_exists

    with connection.connect() as conn:
        if not (relation_exists(conn, connection.schema, "barsmith_changes")
                and relation_exists(conn, connection.schema, "price_bars_1d_rejects")):
            return []
        query = sql.SQL("""
            with changes as (
                select id, from_ts, full_build from {changes}
                where model = 'price_bars_1d_rejects' and recorded_at >= %(since)s
            ),
            written as (
                select r.id, r."timestamp", r.reason,
                       row_number() over (partition by r.reason order by r.id, r."timestamp") as n
                from {rejects} as r
                where exists (select 1 from changes as c where c.full_build)
                   or exists (select 1 from changes as c
                              where not c.full_build and c.id = r.id and r."timestamp" >= c.from_ts)
            )
            select reason, count(*),
                   coalesce(jsonb_agg(jsonb_build_array(id, (("timestamp" at time zone %(tz)s)::date)::text)
                                      order by id, "timestamp") filter (where n <= 20), '[]'::jsonb)
            from written group by reason order by reason""").format(
            changes=sql.Identifier(connection.schema, "barsmith_changes"),
            rejects=sql.Identifier(connection.schema, "price_bars_1d_rejects"))
        return conn.execute(query, {"since": since, "tz": tz}).fetchall()


def rejects_1d_lines(logged: list[tuple[str, int, list]], shown: int = REJECTS_1D_SHOWN) -> list[str]:
    """Summary lines naming the 1D rejects of the run: rows per reason, then the first ids and
    local days (at most `shown`, "x2" when a day holds two rejected rows) with their reasons."""
    counts: dict[str, int] = defaultdict(int)
    days: dict[tuple[int, str, str], int] = {}
    for reason, n_rows, rows in logged:
        counts[reason] += int(n_rows)
        here: dict[tuple[int, str, str], int] = defaultdict(int)
        for asset, day in rows:
            here[(int(asset), str(day), reason)] += 1
        for key, n in here.items():  # the same rows logged by two invocations count once
            days[key] = max(days.get(key, 0), n)
    if not counts:
        return []
    total = sum(counts.values())
    listed = sorted(days.items())[:shown]
    more = total - sum(n for _key, n in listed)
    return [
        f"1D rejects this run: {total:,} rows ("
        + ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items())) + ")",
        "1D rejects this run: "
        + ", ".join(f"id {i} {day} {reason}" + (f" x{n}" if n > 1 else "") for (i, day, reason), n in listed)
        + (f", ... (+{more:,} more rows)" if more > 0 else ""),
    ]


def outcome_lines(outcome) -> list[str]:
    """Plain-text summary (also written to the log file)."""
    lines = []
    for stage, name, status, written, secs in model_rows(outcome):
        lines.append(f"{stage:5} {name:45} {status:8} rows={'' if written is None else written} {secs:.1f}s")
    counts = test_counts(outcome.invocations)
    if counts:
        lines.append("data tests: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                     + " (of the rows this run wrote; driver validate checks whole tables)")
    lines += ["quality (rows written this run): " + q for q in quality_lines(outcome)]
    lines += rejects_1d_lines(getattr(outcome, "rejects_1d", []))
    for s in outcome.stale:
        lines.append(f"skipped for EMAs and features: id {s.id} ({s.reason}"
                     + (f", {s.staleness_hours} h" if s.staleness_hours is not None else "") + ")")
    if outcome.stale and outcome.options is not None:
        from .refresh import stale_message  # noqa: PLC0415 (refresh imports this module)

        lines.append("note: " + stale_message(outcome.options, outcome.stale))
    for model, ids in getattr(outcome, "waiting", {}).items():
        lines.append(f"waiting: {model}: ids {', '.join(map(str, ids[:20]))}"
                     + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
                     + " wait for their bars (a filtered run built only some timeframes); the next full refresh"
                       " run builds them")
    for st in outcome.stages:
        if st.skipped:
            lines.append(f"stage {st.stage} skipped: {st.skipped}")
    for node in getattr(outcome, "warned_nodes", []):
        lines.append(warning_line(node))
    for node in outcome.failed_nodes:
        first = first_error_line(node.message) or node.status
        lines.append(f"FAILED {node.resource_type} {node.name}: {first}")
    for inv in outcome.invocations:
        if inv.error:
            lines.append(f"dbt error: {inv.error.splitlines()[0]}")
    for note in getattr(outcome, "notes", []):
        lines.append(f"note: {note}")
    if outcome.error:
        lines.append(f"error: {outcome.error}")
    if getattr(outcome, "refused", None):
        lines.append(f"refused: {outcome.refused}")
        lines.append(f"REFUSED (exit {outcome.exit_code}) in {outcome.seconds:.1f} s")
        return lines
    lines.append(f"{'OK' if outcome.exit_code == 0 else 'FAILED'} in {outcome.seconds:.1f} s")
    return lines


def print_outcome(console: Console, outcome, quiet: bool = False) -> None:
    if not quiet or outcome.invocations:
        console.print(summary_table(outcome))
    for line in outcome_lines(outcome):
        if line.startswith(("stage ", "data tests", "quality", "1D rejects", "skipped", "waiting", "WARN", "FAILED",
                            "dbt error", "error", "note", "refused", "REFUSED", "OK")):
            style = ("red" if line.startswith(("FAILED", "dbt error", "error", "refused", "REFUSED"))
                     else "yellow" if line.startswith("WARN") else None)
            console.print(line, style=style, highlight=False, markup=False)
