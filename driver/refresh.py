"""The daily refresh (refresh.md §5, §11): one `dbt build` for the whole refresh (bars, EMAs, features
and their scoped data tests; the freshness gate is part of the EMA and features models: stale ids
wait, see macros/incremental/ranges.sql), or one stage with --bars / --emas / --features.

Every run that gets the lock is recorded in the database it runs on (driver/runs.py); `--resume`
re-runs the newest unfinished or failed run of THAT database from the stage it failed in, with
the options it was started with (the models are incremental and idempotent: re-running a stage
costs what is left to do). Functions here return data; cli.py prints it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import psycopg
from psycopg import sql

from . import alerts as alertmod
from . import config
from . import filters as filtersmod
from . import report, runs, uptodate
from .db import Connection, DatabaseError, mask_secrets, relation_exists
from .dbt import PROJECT_DIR, Invocation, NodeResult, command_line, first_error_line, invoke
from .filters import Filters
from .lock import EXIT_LOCKED, LockBusy, refresh_lock

STAGES = ("bars", "emas", "features")
# the dbt selector of each stage a run can be ("all" is the whole refresh in one invocation)
SELECTORS = {"all": "daily_refresh", "bars": "bars", "emas": "emas", "features": "features"}
# --all when the seeds and views in place are those the build would re-create (driver/uptodate.py)
TABLES_ONLY = "daily_refresh_tables"
# Options a run is recorded with, and that --resume re-runs it with.
RECORDED = ("stage", "filters", "full_refresh", "continue_on_error", "fail_fast", "skip_stale_check",
            "staleness_hours", "source_vars", "user_vars")


@dataclass
class RefreshOptions:
    stage: str  # all | bars | emas | features
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
    user_vars: dict[str, Any] = field(default_factory=dict)  # --vars, checked by config.check_vars
    force: bool = False  # run dbt even when nothing changed since the last green run (driver/uptodate.py)

    @property
    def stages(self) -> list[str]:
        return [self.stage]

    def recorded(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: data[k] for k in RECORDED}

    def resumed(self, recorded: dict[str, Any]) -> "RefreshOptions":
        """The options a recorded run was started with (checked again: they come from a table), with
        this invocation's presentation options (quiet, verbose, alert level, lock wait)."""
        source = recorded.get("source_vars") or {}
        checked_source = {k: config.check_identifier(v, f"recorded {k}", schema=k == "source_schema")
                          for k, v in source.items()}
        filters = filtersmod.from_recorded(recorded.get("filters") or {})
        return RefreshOptions(
            stage=recorded.get("stage") if recorded.get("stage") in SELECTORS else "all", filters=filters,
            full_refresh=bool(recorded.get("full_refresh")), resume=True,
            continue_on_error=bool(recorded.get("continue_on_error")), fail_fast=bool(recorded.get("fail_fast")),
            quiet=self.quiet, verbose=self.verbose, skip_stale_check=bool(recorded.get("skip_stale_check")),
            staleness_hours=float(recorded.get("staleness_hours", 48.0)), alert_level=self.alert_level,
            lock_wait=self.lock_wait, source_vars=checked_source,
            user_vars=config.check_vars(recorded.get("user_vars") or {}),
        )

    def source(self) -> tuple[str, str]:
        """The source table this run reads: --vars wins over BARSMITH_SOURCE_*."""
        merged = {"source_schema": "public", "source_table": "price_histories", **self.source_vars}
        merged.update({k: v for k, v in self.user_vars.items() if k in merged})
        return merged["source_schema"], merged["source_table"]

    def describe(self) -> str:
        """The command line this run stands for (for messages)."""
        parts = [f"--{self.stage}"]
        f = self.filters
        if f.ids is not None:
            parts.append("--ids " + ",".join(map(str, f.ids)))
        if f.tfs is not None:
            parts.append("--tfs " + ",".join(f.tfs))
        if f.periods is not None:
            parts.append("--periods " + ",".join(map(str, f.periods)))
        if f.combos is not None:
            parts.append("--tf-period-combos " + ",".join(f"{c['tf']}:{c['period']}" for c in f.combos))
        for flag, on in (("--full-refresh", self.full_refresh), ("--continue-on-error", self.continue_on_error),
                         ("--fail-fast", self.fail_fast), ("--skip-stale-check", self.skip_stale_check)):
            if on:
                parts.append(flag)
        if self.staleness_hours != 48.0:
            parts.append(f"--staleness-hours {self.staleness_hours:g}")
        if self.user_vars:
            parts.append("--vars " + json.dumps(self.user_vars, sort_keys=True))
        return "refresh " + " ".join(parts)


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
    refused: str | None = None  # the lock was held by another refresh
    notes: list[str] = field(default_factory=list)  # resume and bookkeeping messages for the summary
    run_id: int | None = None
    resumed_from: int | None = None
    options: RefreshOptions | None = None  # the options the run used (a resume: the original ones)
    waiting: dict[str, list[int]] = field(default_factory=dict)  # model -> ids waiting for an upstream
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def invocations(self) -> list[Invocation]:
        return [s.invocation for s in self.stages if s.invocation is not None]

    @property
    def failed_nodes(self) -> list[NodeResult]:
        return [n for inv in self.invocations for n in inv.failed]

    @property
    def warned_nodes(self) -> list[NodeResult]:
        return [n for inv in self.invocations for n in inv.nodes if n.status == "warn"]

    @property
    def exit_code(self) -> int:
        if self.refused:
            return EXIT_LOCKED
        if self.error:
            return 1
        if any(not inv.success for inv in self.invocations):
            return 1
        return 0


def stage_vars(options: RefreshOptions, stage: str) -> dict[str, object]:
    out: dict[str, object] = dict(options.source_vars)
    out.update(options.user_vars)
    out.update(options.filters.dbt_vars())
    out["staleness_hours"] = options.staleness_hours
    if options.skip_stale_check:
        out["skip_stale_check"] = True
    if options.full_refresh and options.filters.ids:
        out["rebuild_ids"] = options.filters.ids
    return out


def stage_extra(options: RefreshOptions, stage: str, selector: str | None = None) -> list[str]:
    extra = ["--selector", selector or SELECTORS[stage]]
    if options.full_refresh and not options.filters.ids:
        extra.append("--full-refresh")
    if options.fail_fast:
        extra.append("--fail-fast")
    if not options.verbose:
        extra.append("--quiet")
    return extra


def plan(options: RefreshOptions) -> list[list[str]]:
    """The dbt command lines a refresh runs (what --dry-run prints); touches no database."""
    return [["dbt"] + command_line(["build"], stage_vars(options, stage), stage_extra(options, stage))
            for stage in options.stages]


# ------------------------------------------------------------------ freshness gate


def stale_details(connection: Connection, ids: list[int]) -> list[StaleId]:
    """The ids the EMA models left waiting as stale, with their age (asset_freshness)."""
    if not ids:
        return []
    with connection.connect() as conn:
        rows = {}
        if relation_exists(conn, connection.schema, "asset_freshness"):
            rows = {i: h for i, h in conn.execute(
                sql.SQL("select id, extract(epoch from now() - last_bar_ts) / 3600.0 from {} where id = any(%s)")
                .format(sql.Identifier(connection.schema, "asset_freshness")), (ids,)).fetchall()}
    return [StaleId(i, "stale", round(float(rows[i]), 1) if rows.get(i) is not None else None) for i in sorted(ids)]


def stale_message(options: RefreshOptions, stale: list[StaleId]) -> str:
    return (f"{len(stale)} id(s) have no bar newer than {options.staleness_hours:g} h (historical data?): "
            "their EMAs and features wait; to build them anyway run: driver refresh --all --skip-stale-check "
            "(or raise --staleness-hours)")


# ------------------------------------------------------------------ bookkeeping

def _collect_run_log(connection: Connection, since: datetime, outcome: RefreshOutcome) -> None:
    with connection.connect() as conn:
        if not relation_exists(conn, connection.schema, "barsmith_run_log"):
            return
        rows = conn.execute(
            sql.SQL("select model, rows_written, counts from {} where recorded_at >= %s")
            .format(sql.Identifier(connection.schema, "barsmith_run_log")),
            (since,),
        ).fetchall()
    stale: set[int] = set()
    for model, written, counts in rows:
        outcome.rows_written[model] = outcome.rows_written.get(model, 0) + int(written or 0)
        bucket = outcome.quality.setdefault(model, {})
        for key, value in (counts or {}).items():
            if key == "stale_ids":
                stale.update(int(i) for i in value or [])
            elif key == "upstream_ids":
                if value:
                    outcome.waiting[model] = sorted(int(i) for i in value)
            elif isinstance(value, (int, float)):
                bucket[key] = bucket.get(key, 0) + int(value)
    outcome.stale = stale_details(connection, sorted(stale))


def _alerts_for(outcome: RefreshOutcome) -> list[alertmod.Alert]:
    out = []
    errored = [n for n in outcome.failed_nodes if n.resource_type != "test"]
    failed_tests = [n for n in outcome.failed_nodes if n.resource_type == "test"]
    dbt_errors = [inv.error for inv in outcome.invocations if inv.error]
    if outcome.refused:
        out.append(alertmod.Alert("WARNING", "barsmith refresh refused: another refresh holds the lock",
                                  [outcome.refused]))
    if outcome.error or dbt_errors or errored:
        lines = [outcome.error or ""] + dbt_errors + [f"{n.name}: {first_error_line(n.message) or n.status}"
                                                      for n in errored[:5]]
        out.append(alertmod.Alert("CRITICAL" if outcome.error or dbt_errors else "ERROR",
                                  "barsmith refresh failed", [line for line in lines if line]))
    if failed_tests:
        out.append(alertmod.Alert("ERROR", f"{len(failed_tests)} data test(s) failed",
                                  [n.name for n in failed_tests[:5]]))
    if outcome.stale:
        out.append(alertmod.Alert("WARNING", f"{len(outcome.stale)} id(s) skipped for EMAs and features (stale)",
                                  [f"id {s.id}: {s.reason}" for s in outcome.stale[:5]]))
    if outcome.waiting:
        out.append(alertmod.Alert("WARNING", "ids wait for their bars (an earlier run built only some of them)",
                                  [f"{model}: ids {', '.join(map(str, ids[:10]))}"
                                   for model, ids in list(outcome.waiting.items())[:5]]))
    if not out:
        total = sum(outcome.rows_written.values())
        skipped = [s.skipped for s in outcome.stages if s.skipped]
        out.append(alertmod.Alert("INFO", "barsmith refresh OK", [f"{total:,} rows written"] if outcome.invocations
                                  else skipped[:1]))
    return out


def _timings(inv: Invocation, selector: str) -> dict[str, Any]:
    return {"wall": round(inv.seconds, 3), "count": len(inv.nodes), "selector": selector,
            "nodes": {n.unique_id: round(n.seconds, 3) for n in inv.nodes}}


# ------------------------------------------------------------------ the run


def run(
    connection: Connection,
    options: RefreshOptions,
    log: Callable[[str, str], None],
    callbacks: list[Callable] | None = None,
    progress=None,
    notify: Callable[[str], None] | None = None,
) -> RefreshOutcome:
    """One refresh under the lock. `progress` (driver/progress.Progress) is told the plan and the
    stage boundaries; `notify` gets messages worth showing at once (waiting for the lock)."""
    outcome = RefreshOutcome(options=options)
    since = datetime.now(timezone.utc)

    def waiting(message: str) -> None:
        log("INFO", message)
        if notify:
            notify(message)

    collected = False
    try:
        with refresh_lock(connection, options.lock_wait, on_wait=waiting) as lock_conn:
            log("INFO", f"lock acquired on {connection.display}")
            source = _run_locked(connection, lock_conn, options, outcome, log, callbacks, progress, notify)
            if outcome.invocations:
                collected = _collect(connection, since, outcome, options)
            if source is not None and collected:
                _record_signature(connection, lock_conn, outcome, source, log)
    except LockBusy as exc:
        outcome.refused = str(exc)
        log("ERROR", outcome.refused)
    except (DatabaseError, psycopg.Error) as exc:
        outcome.error = mask_secrets(str(exc).strip())
        log("ERROR", outcome.error)
    except config.ConfigError as exc:
        outcome.error = str(exc)
        log("ERROR", outcome.error)
    except Exception as exc:  # anything unexpected: reported, never swallowed
        outcome.error = mask_secrets(f"{type(exc).__name__}: {exc}")
        log("ERROR", outcome.error)
    if outcome.invocations and not collected:
        _collect(connection, since, outcome, options)
    for alert in _alerts_for(outcome):
        delivery = alertmod.send(alert, options.alert_level)
        outcome.alerts.append((alert, delivery))
        log("INFO", f"alert {alert.severity} {alert.title!r}: {delivery.reason}")
    outcome.seconds = time.monotonic() - outcome.started
    return outcome


def _collect(connection: Connection, since: datetime, outcome: RefreshOutcome, options: RefreshOptions) -> bool:
    """What the run's models logged (rows, quality counts, stale and waiting ids) and the 1D rejects
    it wrote, into the outcome; False when the database could not tell."""
    try:
        _collect_run_log(connection, since, outcome)
        tz = options.user_vars.get("bars_tz", "America/New_York")
        outcome.rejects_1d = report.fetch_rejects_1d(connection, since, tz)
    except (DatabaseError, psycopg.Error):
        return False
    return True


def _record_signature(connection: Connection, lock_conn, outcome: RefreshOutcome, source: dict[str, Any],
                      log) -> None:
    """A green run that left no id waiting records its inputs: the next refresh with the same options
    and inputs has nothing to do (driver/uptodate.py)."""
    if outcome.exit_code != 0 or outcome.stale or outcome.waiting or outcome.run_id is None:
        return
    try:
        schema_state = uptodate.schema_state(lock_conn, connection.schema)
        runs.set_signature(lock_conn, connection.schema, outcome.run_id,
                           uptodate.signature(outcome.run_id, source, schema_state, outcome.options.recorded()))
    except psycopg.Error as exc:  # the run stands; the next refresh runs dbt
        log("WARNING", f"run {outcome.run_id}: its inputs were not recorded ({str(exc).strip()})")


class _Recorder:
    """Writes the run's row through the lock's connection; if that session is gone (the backend was
    terminated), through a new one, so the row never says 'running' for a run that ended."""

    def __init__(self, connection: Connection, lock_conn: psycopg.Connection, log):
        self.connection, self.conn, self.log = connection, lock_conn, log

    def __call__(self, fn, *args):
        try:
            return fn(self.conn, self.connection.schema, *args)
        except psycopg.OperationalError as exc:
            self.log("WARNING", f"the refresh lock's session was lost ({str(exc).strip()}); "
                                "recording through a new connection")
            self.conn = self.connection.connect(autocommit=True)
            return fn(self.conn, self.connection.schema, *args)


def _run_locked(connection, lock_conn, options: RefreshOptions, outcome: RefreshOutcome, log, callbacks,
                progress, notify=None) -> dict[str, Any] | None:
    """Runs the refresh; returns the source table's state taken before dbt started (None when it
    could not be taken, or dbt did not run)."""
    schema = connection.schema
    record = _Recorder(connection, lock_conn, log)

    def say(level: str, note: str) -> None:
        """A note for the log, the summary and (at once) the user."""
        outcome.notes.append(note)
        log(level, note)
        if notify:
            notify(note)

    record(runs.ensure_table)
    for dead in record(runs.mark_interrupted):
        note = (f"run {dead['run_id']} (started {dead['started_at']:%Y-%m-%d %H:%M:%S} UTC) did not finish "
                f"(driver killed or connection lost); marked interrupted: driver refresh --resume re-runs "
                f"{', '.join(dead['remaining_stages']) or 'it'}")
        say("WARNING", note)
    last = record(runs.last_run)

    stages = options.stages
    if options.resume:
        if last is None:
            outcome.error = (f"nothing recorded to resume on {connection.display}: no refresh has run on this "
                             "database yet (run driver refresh --all)")
            log("ERROR", outcome.error)
            return None
        if last["status"] == runs.SUCCESS:
            finished = last["finished_at"]
            note = (f"nothing to resume: the last refresh on this database (run {last['run_id']}, finished "
                    f"{finished:%Y-%m-%d %H:%M:%S} UTC) was green")
            outcome.notes.append(note)
            outcome.stages.append(StageResult("resume", skipped="nothing to resume"))
            log("INFO", note)
            return None
        options = options.resumed(last["options"] or {})
        outcome.options = options
        outcome.resumed_from = last["run_id"]
        stages = [s for s in (last["remaining_stages"] or last["stages"] or []) if s in STAGES] or options.stages
        note = (f"resuming run {last['run_id']} ({last['status']}"
                + (f" in stage {last['failed_stage']}" if last["failed_stage"] else "")
                + f"): {options.describe()}, stages {', '.join(stages)}")
        say("INFO", note)

    source = _source_state(record.conn, options, log)
    if source is not None and not (options.resume or options.full_refresh or options.force):
        reason = uptodate.unchanged(record.conn, schema, last, options.recorded(), source)
        if reason:
            run_id = record(runs.start, stages, options.recorded(), None)
            record(runs.finish, run_id, runs.SUCCESS, None, [], last["signature"], {}, reason)
            outcome.run_id = run_id
            outcome.stages.extend(StageResult(stage, skipped=reason) for stage in stages)
            log("INFO", f"run {run_id}: {reason}")
            return None

    run_id = record(runs.start, stages, options.recorded(), outcome.resumed_from)
    outcome.run_id = run_id
    log("INFO", f"run {run_id} recorded in {schema}.{runs.TABLE}: {options.describe()}")
    # the seeds and views in place are those this build would re-create: the daily build leaves
    # them (and the tests that read only them, the full audit's) alone
    selectors = {stage: SELECTORS[stage] for stage in stages}
    if "all" in selectors and source is not None and not options.full_refresh and uptodate.definitions_in_place(
            record.conn, schema, last, options.recorded()):
        selectors["all"] = TABLES_ONLY
    if progress is not None:
        try:
            progress.plan(stages, record(runs.previous_timings, stages, selectors))
        except psycopg.Error as exc:
            log("DEBUG", f"no previous timings: {exc}")

    timings: dict[str, Any] = {}
    failed_stage: str | None = None
    current: str | None = None
    try:
        for stage in stages:
            current = stage
            record(runs.stage_started, run_id, stage)
            if progress is not None:
                progress.begin_stage(stage)
            dbt_vars = stage_vars(options, stage)
            extra = stage_extra(options, stage, selectors[stage])
            log("INFO", "dbt " + " ".join(command_line(["build"], dbt_vars, extra)))
            inv = invoke(connection, ["build"], dbt_vars, extra, callbacks)
            if progress is not None:
                progress.end_stage()
            outcome.stages.append(StageResult(stage, inv))
            if inv.success:
                timings[stage] = _timings(inv, selectors[stage])
            elif failed_stage is None:
                failed_stage = stage
                if stage == "bars" and not options.continue_on_error:
                    for rest in stages[stages.index(stage) + 1:]:
                        outcome.stages.append(StageResult(rest, skipped="bar stage failed (use --continue-on-error)"))
                    break
    except BaseException as exc:
        failed_stage = failed_stage or current or stages[0]
        status = runs.FAILED if isinstance(exc, Exception) else runs.INTERRUPTED
        remaining = stages[stages.index(failed_stage):]
        record(runs.finish, run_id, status, failed_stage, remaining, None, timings,
               mask_secrets(f"{type(exc).__name__}: {exc}")[:2000])
        raise
    ok = failed_stage is None and all(inv.success for inv in outcome.invocations)
    remaining = [] if ok else stages[stages.index(failed_stage):]
    message = None
    if not ok:
        first = next((n for n in outcome.failed_nodes), None)
        dbt_error = next((inv.error for inv in outcome.invocations if inv.error), None)
        message = (f"{first.name}: {first_error_line(first.message) or first.status}" if first
                   else (dbt_error or "dbt failed"))[:2000]
    record(runs.finish, run_id, runs.SUCCESS if ok else runs.FAILED, failed_stage, remaining, None, timings,
           message)
    if not ok:
        note = f"run {run_id} failed in stage {failed_stage}: driver refresh --resume re-runs {', '.join(remaining)}"
        outcome.notes.append(note)
        log("WARNING", note)
    return source if ok else None


def _source_state(conn: psycopg.Connection, options: RefreshOptions, log) -> dict[str, Any] | None:
    """The source table before dbt starts (driver/uptodate.py); None when it cannot be read (dbt
    then runs and reports why)."""
    uptodate.project_fingerprint()  # (taken once per process: now, as dbt parses the project)
    try:
        return uptodate.source_state(conn, *options.source())
    except psycopg.Error as exc:
        log("DEBUG", f"source table not read before the run: {str(exc).strip()}")
        return None
