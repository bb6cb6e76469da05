"""Summaries of dbt invocations for people (rich tables) and for logs (plain text)."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.table import Table

from .dbt import Invocation

MODEL_TYPES = ("model", "seed", "snapshot")


def stage_of(tags: list[str], name: str) -> str:
    if "emas" in tags:
        return "emas"
    if "bars" in tags:
        return "bars"
    return "other"


def summary_table(invocations: list[Invocation]) -> Table:
    table = Table(title="barsmith refresh summary", show_lines=False)
    for col, just in (("stage", "left"), ("node", "left"), ("status", "left"), ("rows", "right"), ("seconds", "right")):
        table.add_column(col, justify=just)
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for inv in invocations:
        for node in inv.nodes:
            if node.resource_type not in MODEL_TYPES:
                continue
            stage = stage_of(node.tags, node.name)
            totals[stage][0] += node.rows or 0
            totals[stage][1] += node.seconds
            table.add_row(stage, node.name, node.status, "" if node.rows is None else f"{node.rows:,}", f"{node.seconds:.1f}")
    for stage, (rows, secs) in sorted(totals.items()):
        table.add_row(stage, "[b]total[/b]", "", f"{int(rows):,}", f"{secs:.1f}")
    return table


def test_counts(invocations: list[Invocation]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for inv in invocations:
        for node in inv.nodes:
            if node.resource_type == "test":
                counts[node.status] += 1
    return dict(counts)


def print_summary(console: Console, invocations: list[Invocation], extra_lines: list[str] | None = None) -> None:
    console.print(summary_table(invocations))
    counts = test_counts(invocations)
    if counts:
        console.print("data tests: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for line in extra_lines or []:
        console.print(line)
    failures = [n for inv in invocations for n in inv.failed]
    for node in failures:
        first = (node.message.splitlines() or [""])[0]
        console.print(f"[red]FAILED[/red] {node.resource_type} {node.name}: {first}")
    for inv in invocations:
        if inv.error:
            console.print(f"[red]dbt error[/red]: {inv.error.splitlines()[0] if inv.error else ''}")
    ok = all(inv.success for inv in invocations)
    total = sum(inv.seconds for inv in invocations)
    console.print(f"{'OK' if ok else 'FAILED'} in {total:.1f} s")
