"""Issue 20 part 3: the progress line counts over the whole refresh with an ETA from the previous
run; warnings are named in the summary; names are never cut at 80 columns."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from driver import report
from driver.dbt import Invocation, NodeResult
from driver.progress import Progress
from driver.refresh import RefreshOutcome, StageResult

MODELS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "models").rglob("*.sql"))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def event(name: str, uid: str = "", total: int = 0, status: str = "success"):
    node = SimpleNamespace(unique_id=uid, node_name=uid.split(".")[-1], node_status=status)
    return SimpleNamespace(info=SimpleNamespace(name=name, msg="", level="info"),
                           data=SimpleNamespace(node_info=node, total=total))


def run_stage(progress: Progress, clock: Clock, stage: str, nodes: list[str], step: float) -> list[str]:
    progress.begin_stage(stage)
    for uid in nodes:
        progress(event("LogStartLine", uid, total=len(nodes)))
        clock.now += step
        progress(event("NodeFinished", uid))
    progress.end_stage()
    return nodes


def test_progress_counts_over_every_stage_with_an_eta_from_the_previous_run():
    bars = [f"model.b.bar{i}" for i in range(4)]
    emas = [f"model.e.ema{i}" for i in range(6)]
    previous = {"bars": {"wall": 4.0, "count": 4, "nodes": {u: 1.0 for u in bars}},
                "emas": {"wall": 60.0, "count": 6, "nodes": {u: 10.0 for u in emas}}}
    clock, lines = Clock(), []
    progress = Progress(printer=lines.append, clock=clock)
    progress.plan(["bars", "emas"], previous)
    run_stage(progress, clock, "bars", bars, 1.0)
    run_stage(progress, clock, "emas", emas, 10.0)
    counts = [re.match(r"\[\s*(\d+)/(\d+)\]", line).groups() for line in lines]
    assert [int(d) for d, _t in counts] == list(range(1, 11))
    assert {t for _d, t in counts} == {"10"}, "the total is the whole refresh from the first line"
    # after the first bar: 3 bars (3 s) + the EMA stage (60 s) left
    assert "ETA 63 s" in lines[0], lines[0]
    # through the EMA stage the ETA counts down, never 0 before the last node
    etas = [int(re.search(r"ETA (\d+) s", line).group(1)) for line in lines[4:]]
    assert etas == sorted(etas, reverse=True) and etas[0] == 50 and etas[-2] > 0 and etas[-1] == 0
    assert "emas ema_multi" not in lines[5] and " emas ema1 " in lines[5]


def test_without_a_previous_run_the_unknown_stage_is_said_so():
    clock, lines = Clock(), []
    progress = Progress(printer=lines.append, clock=clock)
    progress.plan(["bars", "emas"], {})
    run_stage(progress, clock, "bars", ["model.b.a", "model.b.b"], 2.0)
    assert lines[0].startswith("[1/2+?] bars a success")
    assert "ETA 2 s + emas ?" in lines[0]


def test_a_skipped_stage_leaves_the_total():
    clock, lines = Clock(), []
    progress = Progress(printer=lines.append, clock=clock)
    progress.plan(["bars", "emas"], {"emas": {"wall": 5.0, "count": 3, "nodes": {"x": 5.0}}})
    progress.begin_stage("bars")
    progress(event("LogStartLine", "model.b.a", total=1))
    progress.skip_stage("emas")
    progress(event("NodeFinished", "model.b.a"))
    assert lines[-1].startswith("[1/1] bars a")


def node(name: str, resource_type: str = "model", status: str = "success", rows: int | None = 5,
         failures: int | None = None, attached: str | None = None, tags=("bars",)) -> NodeResult:
    return NodeResult(unique_id=f"{resource_type}.barsmith.{name}", name=name, resource_type=resource_type,
                      status=status, seconds=1.5, rows=rows, message="Got 13 results, configured to warn if != 0",
                      failures=failures, tags=list(tags), attached=attached)


def test_summary_fits_80_columns_and_never_cuts_a_model_name():
    nodes = [node(m, rows=123_456_789) for m in MODELS]
    outcome = RefreshOutcome(stages=[StageResult("bars", Invocation([], True, 10.0, nodes))])
    outcome.rows_written = {m: 1_234_567_890 for m in MODELS}
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    report.print_outcome(console, outcome)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    shown = set(re.findall(r"\b[a-z_0-9]+\b", text))
    assert set(MODELS) <= shown, sorted(set(MODELS) - shown)
    assert "…" not in text


def test_summary_on_a_narrow_terminal_folds_names_without_an_ellipsis():
    nodes = [node("price_bars_multi_tf_cal_anchor_iso_state")]
    outcome = RefreshOutcome(stages=[StageResult("bars", Invocation([], True, 1.0, nodes))])
    console = Console(width=50, record=True, file=open("/dev/null", "w"))
    console.print(report.summary_table(outcome))
    text = console.export_text()
    assert "…" not in text
    lines = text.splitlines()
    header = next(line for line in lines if "status" in line)
    width = header.index("status")
    model_column = "".join(line[:width].strip() for line in lines[lines.index(header) + 2:])
    assert "price_bars_multi_tf_cal_anchor_iso_state" in model_column


def test_warnings_are_named_with_their_model_and_rows():
    warned = node("snapshot_closed_bars_without_canonical_price_bars_multi_tf_cal_us_", "test", "warn",
                  failures=21, attached="price_bars_multi_tf_cal_us")
    outcome = RefreshOutcome(stages=[StageResult("bars", Invocation([], True, 1.0, [node("price_bars_1d"), warned]))])
    lines = report.outcome_lines(outcome)
    assert ("WARN test snapshot_closed_bars_without_canonical_price_bars_multi_tf_cal_us_ on "
            "price_bars_multi_tf_cal_us: 21 row(s)") in lines
    assert "data tests: 1 warn (of the rows this run wrote; driver validate checks whole tables)" in lines


def test_a_refused_run_says_so_with_exit_3():
    outcome = RefreshOutcome(refused="another barsmith refresh is running on x")
    assert outcome.exit_code == 3
    lines = report.outcome_lines(outcome)
    assert lines[-2] == "refused: another barsmith refresh is running on x"
    assert lines[-1].startswith("REFUSED (exit 3)")
