"""The daily refresh (refresh.md §5, §11): bars -> freshness gate -> EMAs, one dbt call per stage.

Functions here return data; cli.py prints it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

from . import alerts as alertmod
from . import report
from .db import Connection, DatabaseError, state_dir
from .dbt import PROJECT_DIR, Invocation, NodeResult, command_line, first_error_line, invoke
from .filters import Filters
from .lock import refresh_lock

STAGES = ("bars", "emas")


@dataclass
class RefreshOptions:
    stage: str  # all | bars | emas
    filters: Filters = field(default_factory=Filters)
    full_refresh: bool = False
    resume: bool = False
    dry_run: bool = False
    continue_on_error: bool = False
    fail_fast: bool = False
    quiet: bool = False
    verbose: bool = False
    skip_stale_check: bool = False
    staleness_hours: float = 48.0
    alert_level: str = "ERROR"
    lock_wait: float = 0.0
    source_vars: dict[str, str] = field(default_factory=dict)
    # set by run(): nothing changed since the last green refresh, so data tests and seeds are skipped
    unchanged: bool = False

    @property
    def stages(self) -> list[str]:
        return list(STAGES) if self.stage == "all" else [self.stage]


@dataclass
class StaleId:
    id: int
    reason: str
    staleness_hours: float | None


@dataclass
class StageResult:
    stage: str
    invocation: Invocation | None = None
    skipped: str | None = None  # reason when the stage did not run


@dataclass
class RefreshOutcome:
    stages: list[StageResult] = field(default_factory=list)
    stale: list[StaleId] = field(default_factory=list)
    quality: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects_1d: list = field(default_factory=list)  # report.fetch_rejects_1d(): 1D rejects written
    rows_written: dict[str, int] = field(default_factory=dict)
    plan: list[list[str]] = field(default_factory=list)
    alerts: list[tuple[alertmod.Alert, alertmod.Delivery]] = field(default_factory=list)
    error: str | None = None
    tests_skipped: str | None = None  # why the data tests did not run
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def invocations(self) -> list[Invocation]:
        return [s.invocation for s in self.stages if s.invocation is not None]

    @property
    def failed_nodes(self) -> list[NodeResult]:
        return [n for inv in self.invocations for n in inv.failed]

    @property
    def exit_code(self) -> int:
        if self.error:
            return 1
        if any(not inv.success for inv in self.invocations):
            return 1
        return 0


def stage_vars(options: RefreshOptions, stage: str, fresh_ids: list[int] | None = None) -> dict[str, object]:
    out: dict[str, object] = dict(options.source_vars)
    out.update(options.filters.dbt_vars())
    out["staleness_hours"] = options.staleness_hours
    if options.full_refresh and options.filters.ids:
        out["rebuild_ids"] = options.filters.ids
    if stage == "emas" and fresh_ids is not None:
        out["asset_ids"] = fresh_ids
    return out


def stage_extra(options: RefreshOptions, stage: str) -> list[str]:
    extra = ["--selector", stage]
    if options.unchanged:
        extra += ["--exclude-resource-type", "test", "--exclude-resource-type", "seed"]
    if options.full_refresh and not options.filters.ids:
        extra.append("--full-refresh")
    if options.fail_fast:
        extra.append("--fail-fast")
    if not options.verbose:
        extra.append("--quiet")
    return extra


def plan(options: RefreshOptions) -> list[list[str]]:
    """The dbt command lines a refresh runs (what --dry-run prints); touches no database."""
    if options.resume:
        return [["dbt"] + command_line(["retry"])]
    lines = []
    for stage in options.stages:
        note = [] if stage == "bars" or options.skip_stale_check else ["  # asset_ids narrowed to fresh ids"]
        lines.append(["dbt"] + command_line(["build"], stage_vars(options, stage), stage_extra(options, stage)) + note)
    return lines


# ------------------------------------------------------------------ freshness gate


def read_freshness(connection: Connection, ids: list[int] | None, staleness_hours: float) -> list[tuple]:
    """(id, reason, staleness_hours) per id from the asset_freshness view, requested ids included."""
    with connection.connect() as conn:
        exists = conn.execute("select to_regclass(%s)", (f"{connection.schema}.asset_freshness",)).fetchone()[0]
        if exists is None:
            return [(i, "no_bars", None) for i in ids or []]
        rows = conn.execute(
            f"select id, last_bar_ts, extract(epoch from now() - last_bar_ts) / 3600.0 "
            f"from {connection.schema}.asset_freshness order by id"
        ).fetchall()
    out = []
    seen = set()
    for id_, last, hours in rows:
        if ids is not None and id_ not in ids:
            continue
        seen.add(id_)
        if last is None:
            out.append((id_, "no_bars", None))
        else:
            out.append((id_, "fresh" if float(hours) <= staleness_hours else "stale", round(float(hours), 1)))
    for id_ in ids or []:
        if id_ not in seen:
            out.append((id_, "no_bars", None))
    return out


def freshness_gate(connection: Connection, options: RefreshOptions) -> tuple[list[int] | None, list[StaleId]]:
    """Fresh ids for the EMA stage (None = no narrowing) and the ids skipped."""
    states = read_freshness(connection, options.filters.ids, options.staleness_hours)
    stale = [StaleId(i, r, h) for i, r, h in states if r != "fresh"]
    fresh = [i for i, r, _h in states if r == "fresh"]
    if not stale and options.filters.ids is None:
        return None, []
    return fresh, stale


# ------------------------------------------------------------------ bookkeeping


def _save_last(options: RefreshOptions, failed_stage: str | None, remaining: list[str],
               green_signature: str | None = None) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "last_refresh.json").write_text(json.dumps({
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "failed_stage": failed_stage,
        "remaining": remaining,
        "green_signature": green_signature,
        "options": {k: v for k, v in asdict(options).items() if k not in ("resume", "dry_run", "unchanged")},
    }, indent=2, default=str))


PROJECT_INPUTS = ("models", "macros", "seeds", "tests/data", "dbt_project.yml", "selectors.yml")


def run_signature(connection: Connection, options: RefreshOptions) -> str:
    """What a refresh's result depends on: database, options, project files and the source rows
    (count, newest load_ts and the sum of the timestamps catch appends, updates and deletions).
    Equal to the signature of the last green refresh = nothing to rebuild and nothing to re-test."""
    digest = hashlib.sha256()
    digest.update(json.dumps({
        "db": connection.display,
        "schema": connection.schema,
        "options": {k: v for k, v in asdict(options).items()
                    if k not in ("resume", "dry_run", "unchanged", "quiet", "verbose", "lock_wait", "alert_level")},
    }, sort_keys=True, default=str).encode())
    for name in PROJECT_INPUTS:
        root = PROJECT_DIR / name
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(PROJECT_DIR)).encode())
                digest.update(path.read_bytes())
    schema = options.source_vars.get("source_schema", "public")
    table = options.source_vars.get("source_table", "price_histories")
    with connection.connect() as conn:
        row = conn.execute(
            f'select count(*), max(load_ts), sum(extract(epoch from "timestamp")), max("timestamp") '
            f'from "{schema}"."{table}"'
        ).fetchone()
    digest.update(repr(row).encode())
    return digest.hexdigest()


def load_last() -> dict | None:
    try:
        return json.loads((state_dir() / "last_refresh.json").read_text())
    except (OSError, ValueError):
        return None


def _collect_run_log(connection: Connection, since: datetime, outcome: RefreshOutcome) -> None:
    with connection.connect() as conn:
        if conn.execute("select to_regclass(%s)", (f"{connection.schema}.barsmith_run_log",)).fetchone()[0] is None:
            return
        rows = conn.execute(
            f"select model, rows_written, counts from {connection.schema}.barsmith_run_log where recorded_at >= %s",
            (since,),
        ).fetchall()
    for model, written, counts in rows:
        outcome.rows_written[model] = outcome.rows_written.get(model, 0) + int(written or 0)
        bucket = outcome.quality.setdefault(model, {})
        for key, value in (counts or {}).items():
            bucket[key] = bucket.get(key, 0) + int(value)


def _alerts_for(outcome: RefreshOutcome) -> list[alertmod.Alert]:
    out = []
    errored = [n for n in outcome.failed_nodes if n.resource_type != "test"]
    failed_tests = [n for n in outcome.failed_nodes if n.resource_type == "test"]
    dbt_errors = [inv.error for inv in outcome.invocations if inv.error]
    if outcome.error or dbt_errors or errored:
        lines = [outcome.error or ""] + dbt_errors + [f"{n.name}: {first_error_line(n.message) or n.status}"
                                                      for n in errored[:5]]
        out.append(alertmod.Alert("CRITICAL" if outcome.error or dbt_errors else "ERROR",
                                  "barsmith refresh failed", [line for line in lines if line]))
    if failed_tests:
        out.append(alertmod.Alert("ERROR", f"{len(failed_tests)} data test(s) failed",
                                  [n.name for n in failed_tests[:5]]))
    if outcome.stale:
        out.append(alertmod.Alert("WARNING", f"{len(outcome.stale)} id(s) skipped for EMAs (stale)",
                                  [f"id {s.id}: {s.reason}" for s in outcome.stale[:5]]))
    if not out:
        total = sum(outcome.rows_written.values())
        out.append(alertmod.Alert("INFO", "barsmith refresh OK", [f"{total:,} rows written"]))
    return out


# ------------------------------------------------------------------ the run


def run(
    connection: Connection,
    options: RefreshOptions,
    log: Callable[[str, str], None],
    callbacks: list[Callable] | None = None,
) -> RefreshOutcome:
    outcome = RefreshOutcome()
    since = datetime.now(timezone.utc)
    try:
        with refresh_lock(connection, options.lock_wait):
            log("INFO", f"lock acquired on {connection.display}")
            _run_locked(connection, options, outcome, log, callbacks)
    except DatabaseError as exc:
        outcome.error = str(exc)
        log("ERROR", outcome.error)
    except Exception as exc:  # LockBusy and anything unexpected: reported, never swallowed
        outcome.error = str(exc)
        log("ERROR", outcome.error)
    if outcome.error is None or outcome.invocations:
        try:
            _collect_run_log(connection, since, outcome)
            outcome.rejects_1d = report.fetch_rejects_1d(connection, since)
        except DatabaseError:
            pass
    for alert in _alerts_for(outcome):
        delivery = alertmod.send(alert, options.alert_level)
        outcome.alerts.append((alert, delivery))
        log("INFO", f"alert {alert.severity} {alert.title!r}: {delivery.reason}")
    outcome.seconds = time.monotonic() - outcome.started
    return outcome


def _run_locked(connection, options, outcome, log, callbacks) -> None:
    stages = options.stages
    signature = None
    if not options.resume and not options.full_refresh:
        try:
            signature = run_signature(connection, options)
        except Exception as exc:  # e.g. no source table yet: dbt reports it properly
            log("DEBUG", f"no run signature: {exc}")
        last = load_last() or {}
        if signature is not None and signature == last.get("green_signature"):
            options.unchanged = True
            outcome.tests_skipped = f"nothing changed since the last green refresh ({last.get('finished_at', '?')})"
            log("INFO", outcome.tests_skipped + ": models run, data tests and seeds skipped")
    if options.resume:
        last = load_last()
        if not last or not last.get("failed_stage"):
            log("INFO", "nothing to resume: the last refresh did not fail")
            outcome.stages.append(StageResult("retry", skipped="nothing to resume"))
            return
        log("INFO", f"resuming: dbt retry of stage {last['failed_stage']}, then {last['remaining'] or 'nothing'}")
        inv = invoke(connection, ["retry"], None, ["--quiet"] if not options.verbose else [], callbacks)
        outcome.stages.append(StageResult(last["failed_stage"], inv))
        if not inv.success:
            _save_last(options, last["failed_stage"], last["remaining"])
            return
        stages = list(last["remaining"])
    for n, stage in enumerate(stages):
        fresh = None
        if stage == "emas" and not options.skip_stale_check:
            fresh, stale = freshness_gate(connection, options)
            outcome.stale = stale
            for s in stale:
                log("WARNING", f"id {s.id} skipped for EMAs: {s.reason}"
                    + (f" ({s.staleness_hours} h old)" if s.staleness_hours is not None else ""))
            if fresh is not None and not fresh:
                outcome.stages.append(StageResult("emas", skipped="all ids stale"))
                log("WARNING", "EMA stage skipped: every id is stale")
                continue
        dbt_vars = stage_vars(options, stage, fresh)
        log("INFO", "dbt " + " ".join(command_line(["build"], dbt_vars, stage_extra(options, stage))))
        inv = invoke(connection, ["build"], dbt_vars, stage_extra(options, stage), callbacks)
        outcome.stages.append(StageResult(stage, inv))
        if not inv.success:
            remaining = stages[n + 1:]
            _save_last(options, stage, remaining)
            if stage == "bars" and not options.continue_on_error:
                for rest in remaining:
                    outcome.stages.append(StageResult(rest, skipped="bar stage failed (use --continue-on-error)"))
                return
    if all(inv.success for inv in outcome.invocations):
        complete = len(outcome.invocations) == len(stages) and not outcome.stale
        _save_last(options, None, [], signature if complete else None)
