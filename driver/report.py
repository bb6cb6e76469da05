"""Summaries of a refresh for people (rich tables) and for the log (plain lines)."""

from __future__ import annotations

from collections import defaultdict

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
}


def stage_of(tags: list[str]) -> str:
    if "emas" in tags:
        return "emas"
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
    table = Table(title="barsmith refresh summary")
    for col, just in (("stage", "left"), ("model", "left"), ("status", "left"), ("rows written", "right"),
                      ("seconds", "right")):
        table.add_column(col, justify=just)
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for stage, name, status, written, secs in model_rows(outcome):
        totals[stage][0] += written or 0
        totals[stage][1] += secs
        table.add_row(stage, name, status, "" if written is None else f"{written:,}", f"{secs:.1f}")
    for stage, (rows, secs) in sorted(totals.items()):
        table.add_row(stage, "[b]stage total[/b]", "", f"{int(rows):,}", f"{secs:.1f}")
    for st in outcome.stages:
        if st.skipped:
            table.add_row(st.stage, "(stage)", f"skipped: {st.skipped}", "", "")
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


REJECTS_1D_SHOWN = 10


def fetch_rejects_1d(connection, since) -> list[tuple[str, int, list]]:
    """(reason, rows, [[id, local day], ...]) that price_bars_1d_rejects wrote since `since`
    (barsmith_1d_reject_log, one row per dbt invocation and reason); [] before its first run."""
    from psycopg import sql

    with connection.connect() as conn:
        found = conn.execute("select to_regclass(%s)", (sql.Identifier(connection.schema, "barsmith_1d_reject_log")
                                                        .as_string(conn),)).fetchone()[0]
        if found is None:
            return []
        query = sql.SQL("select reason, n_rows, examples from {} where recorded_at >= %s order by recorded_at, reason")
        return conn.execute(query.format(sql.Identifier(connection.schema, "barsmith_1d_reject_log")),
                            (since,)).fetchall()


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
        lines.append("data tests: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    elif getattr(outcome, "tests_skipped", None):
        lines.append(f"data tests: skipped, {outcome.tests_skipped}")
    lines += ["quality (rows written this run): " + q for q in quality_lines(outcome)]
    lines += rejects_1d_lines(getattr(outcome, "rejects_1d", []))
    for s in outcome.stale:
        lines.append(f"skipped for EMAs: id {s.id} ({s.reason}"
                     + (f", {s.staleness_hours} h" if s.staleness_hours is not None else "") + ")")
    for st in outcome.stages:
        if st.skipped:
            lines.append(f"stage {st.stage} skipped: {st.skipped}")
    for node in outcome.failed_nodes:
        first = first_error_line(node.message) or node.status
        lines.append(f"FAILED {node.resource_type} {node.name}: {first}")
    for inv in outcome.invocations:
        if inv.error:
            lines.append(f"dbt error: {inv.error.splitlines()[0]}")
    if outcome.error:
        lines.append(f"error: {outcome.error}")
    lines.append(f"{'OK' if outcome.exit_code == 0 else 'FAILED'} in {outcome.seconds:.1f} s")
    return lines


def print_outcome(console: Console, outcome, quiet: bool = False) -> None:
    if not quiet or outcome.invocations:
        console.print(summary_table(outcome))
    for line in outcome_lines(outcome):
        if line.startswith(("stage ", "data tests", "quality", "1D rejects", "skipped", "FAILED", "dbt error", "error",
                            "OK")):
            style = "red" if line.startswith(("FAILED", "dbt error", "error")) else None
            console.print(line, style=style, highlight=False, markup=False)
