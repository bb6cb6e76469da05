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
        if line.startswith(("stage ", "data tests", "quality", "skipped", "FAILED", "dbt error", "error", "OK")):
            style = "red" if line.startswith(("FAILED", "dbt error", "error")) else None
            console.print(line, style=style, highlight=False, markup=False)
