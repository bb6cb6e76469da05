"""The progress line of a refresh: `[N/M] stage node status (elapsed, ETA)` counted over the whole
refresh (every stage), with an ETA from the previous run's per-node seconds (driver/runs.py).

The dbt callback only counts and times; `line()` builds the text, `printer` shows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class StagePlan:
    name: str
    previous: dict[str, Any] | None = None  # {"wall": s, "count": n, "nodes": {unique_id: s}}
    total: int | None = None  # this run's node count, once dbt announced it
    done: int = 0
    done_ids: set[str] = field(default_factory=set)
    started: float | None = None  # when dbt started its first node (after parsing)
    finished: bool = False

    @property
    def expected(self) -> int | None:
        if self.finished:
            return self.done
        if self.total is not None:
            return max(self.total, self.done)
        if self.previous and self.previous.get("count"):
            return int(self.previous["count"])
        return None

    def remaining_seconds(self, now: float) -> float | None:
        """Seconds left in this stage: the previous run's wall time scaled by the share of its node
        time not yet done, else the average pace of this stage so far; None when unknown."""
        if self.finished:
            return 0.0
        prev = self.previous or {}
        nodes: dict[str, float] = prev.get("nodes") or {}
        all_time = sum(nodes.values())
        if nodes and all_time > 0 and prev.get("wall"):
            left = sum(s for uid, s in nodes.items() if uid not in self.done_ids)
            return float(prev["wall"]) * left / all_time
        if self.started is not None and self.done and self.total:
            return (now - self.started) / self.done * max(self.total - self.done, 0)
        return None


class Progress:
    """dbt event callback for one refresh; `plan()` and `begin_stage()` are called by the refresh."""

    def __init__(self, printer: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.printer = printer
        self.clock = clock
        self.started = clock()
        self.stages: list[StagePlan] = []
        self.current: StagePlan | None = None

    # -- called by the refresh
    def plan(self, stages: list[str], previous: dict[str, dict[str, Any]]) -> None:
        self.stages = [StagePlan(s, previous.get(s)) for s in stages]

    def begin_stage(self, stage: str) -> None:
        if self.current is not None:
            self.current.finished = True
        match = next((s for s in self.stages if s.name == stage and not s.finished), None)
        if match is None:
            match = StagePlan(stage)
            self.stages.append(match)
        self.current = match

    def end_stage(self) -> None:
        if self.current is not None:
            self.current.finished = True
            self.current = None

    def skip_stage(self, stage: str) -> None:
        for s in self.stages:
            if s.name == stage and not s.finished and s is not self.current:
                s.finished = True
                break

    # -- dbt callback
    def __call__(self, event) -> None:
        name = event.info.name
        if self.current is None:
            self.begin_stage("dbt")
        if name == "LogStartLine":
            total = int(getattr(event.data, "total", 0) or 0)
            if total:
                self.current.total = total
            if self.current.started is None:
                self.current.started = self.clock()
        elif name == "NodeFinished":
            node = event.data.node_info
            self.node_finished(node.unique_id, node.node_name, node.node_status)

    def node_finished(self, unique_id: str, name: str, status: str) -> None:
        stage = self.current
        stage.done += 1
        stage.done_ids.add(unique_id)
        if self.printer:
            self.printer(self.line(name, status))

    # -- text
    def counts(self) -> tuple[int, int, bool]:
        """(done, expected total, whether some stage's size is still unknown) over the refresh."""
        done = sum(s.done for s in self.stages)
        known = [s.expected for s in self.stages if s.expected is not None]
        unknown = any(s.expected is None for s in self.stages)
        return done, max(sum(known), done), unknown

    def eta(self) -> tuple[float, list[str]]:
        """Seconds left over the refresh, and the stages whose time is unknown."""
        now = self.clock()
        seconds, unknown = 0.0, []
        for s in self.stages:
            left = s.remaining_seconds(now)
            if left is None:
                unknown.append(s.name)
            else:
                seconds += left
        return seconds, unknown

    def line(self, name: str, status: str) -> str:
        done, total, open_ended = self.counts()
        eta, unknown = self.eta()
        elapsed = self.clock() - self.started
        stage = self.current.name if self.current else ""
        eta_text = f"ETA {eta:.0f} s" if not unknown else (
            f"ETA {eta:.0f} s + {', '.join(unknown)} ?" if eta else "ETA ?")
        width = len(str(total))
        return (f"[{done:>{width}}/{total}{'+?' if open_ended else ''}] {stage} {name} {status} "
                f"(elapsed {elapsed:.0f} s, {eta_text})")
