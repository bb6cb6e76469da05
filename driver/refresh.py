"""The daily refresh (refresh.md §5, §11): bars -> freshness gate -> EMAs, one dbt call per stage.

Every run that gets the lock is recorded in the database it runs on (driver/runs.py); `--resume`
re-runs the newest unfinished or failed run of THAT database from the stage it failed in, with
the options it was started with (the models are incremental and idempotent: re-running a stage
costs what is left to do). Functions here return data; cli.py prints it.
"""

from __future__ import annotations

import hashlib
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
from . import runs
from .db import Connection, DatabaseError, mask_secrets, relation_exists
from .dbt import PROJECT_DIR, Invocation, NodeResult, command_line, first_error_line, invoke
from .filters import Filters
from .lock import EXIT_LOCKED, LockBusy, refresh_lock

STAGES = ("bars", "emas")
# Options a run is recorded with, and that --resume re-runs it with.
RECORDED = ("stage", "filters", "full_refresh", "continue_on_error", "fail_fast", "skip_stale_check",
            "staleness_hours", "source_vars", "user_vars")


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
    user_vars: dict[str, Any] = field(default_factory=dict)  # --vars, checked by config.check_vars
    # set by run(): nothing changed since the last green refresh, so data tests and seeds are skipped
    unchanged: bool = False

    @property
    def stages(self) -> list[str]:
        return list(STAGES) if self.stage == "all" else [self.stage]

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
            stage=recorded.get("stage") if recorded.get("stage") in ("all", *STAGES) else "all", filters=filters,
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
    rows_written: dict[str, int] = field(default_factory=dict)
    plan: list[list[str]] = field(default_factory=list)
    alerts: list[tuple[alertmod.Alert, alertmod.Delivery]] = field(default_factory=list)
    error: str | None = None
    refused: str | None = None  # the lock was held by another refresh
    notes: list[str] = field(default_factory=list)  # resume and bookkeeping messages for the summary
    run_id: int | None = None
    resumed_from: int | None = None
    options: RefreshOptions | None = None  # the options the run used (a resume: the original ones)
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


def stage_vars(options: RefreshOptions, stage: str, fresh_ids: list[int] | None = None) -> dict[str, object]:
    out: dict[str, object] = dict(options.source_vars)
    out.update(options.user_vars)
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
    lines = []
    for stage in options.stages:
        lines.append(["dbt"] + command_line(["build"], stage_vars(options, stage), stage_extra(options, stage)))
    return lines


# ------------------------------------------------------------------ freshness gate


def read_freshness(connection: Connection, ids: list[int] | None, staleness_hours: float) -> list[tuple]:
    """(id, reason, staleness_hours) per id from the asset_freshness view, requested ids included."""
    with connection.connect() as conn:
        if not relation_exists(conn, connection.schema, "asset_freshness"):
            return [(i, "no_bars", None) for i in ids or []]
        rows = conn.execute(
            sql.SQL("select id, last_bar_ts, extract(epoch from now() - last_bar_ts) / 3600.0 "
                    "from {} order by id").format(sql.Identifier(connection.schema, "asset_freshness"))
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


def all_stale_message(options: RefreshOptions) -> str:
    return (f"all ids stale: no id has a bar newer than {options.staleness_hours:g} h (historical data?); "
            "to build the EMAs anyway run: driver refresh --emas --skip-stale-check "
            "(or raise --staleness-hours)")


# ------------------------------------------------------------------ bookkeeping

PROJECT_INPUTS = ("models", "macros", "seeds", "tests/data", "dbt_project.yml", "selectors.yml")


def run_signature(connection: Connection, options: RefreshOptions) -> str:
    """What a refresh's result depends on: database, options, project files and the source rows
    (count, newest load_ts and the sum of the timestamps catch appends, updates and deletions).
    Equal to the signature of the last green refresh = nothing to rebuild and nothing to re-test."""
    digest = hashlib.sha256()
    digest.update(json.dumps({
        "db": connection.display,
        "schema": connection.schema,
        "options": options.recorded(),
    }, sort_keys=True, default=str).encode())
    for name in PROJECT_INPUTS:
        root = PROJECT_DIR / name
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(PROJECT_DIR)).encode())
                digest.update(path.read_bytes())
    schema, table = options.source()
    with connection.connect() as conn:
        row = conn.execute(
            sql.SQL('select count(*), max(load_ts), sum(extract(epoch from "timestamp")), max("timestamp") '
                    "from {}").format(sql.Identifier(schema, table))
        ).fetchone()
    digest.update(repr(row).encode())
    return digest.hexdigest()


def _collect_run_log(connection: Connection, since: datetime, outcome: RefreshOutcome) -> None:
    with connection.connect() as conn:
        if not relation_exists(conn, connection.schema, "barsmith_run_log"):
            return
        rows = conn.execute(
            sql.SQL("select model, rows_written, counts from {} where recorded_at >= %s")
            .format(sql.Identifier(connection.schema, "barsmith_run_log")),
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
        out.append(alertmod.Alert("WARNING", f"{len(outcome.stale)} id(s) skipped for EMAs (stale)",
                                  [f"id {s.id}: {s.reason}" for s in outcome.stale[:5]]))
    if not out:
        total = sum(outcome.rows_written.values())
        out.append(alertmod.Alert("INFO", "barsmith refresh OK", [f"{total:,} rows written"]))
    return out


def _timings(inv: Invocation) -> dict[str, Any]:
    return {"wall": round(inv.seconds, 3), "count": len(inv.nodes),
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

    try:
        with refresh_lock(connection, options.lock_wait, on_wait=waiting) as lock_conn:
            log("INFO", f"lock acquired on {connection.display}")
            _run_locked(connection, lock_conn, options, outcome, log, callbacks, progress, notify)
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
    if outcome.invocations:
        try:
            _collect_run_log(connection, since, outcome)
        except (DatabaseError, psycopg.Error):
            pass
    for alert in _alerts_for(outcome):
        delivery = alertmod.send(alert, options.alert_level)
        outcome.alerts.append((alert, delivery))
        log("INFO", f"alert {alert.severity} {alert.title!r}: {delivery.reason}")
    outcome.seconds = time.monotonic() - outcome.started
    return outcome


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
                progress, notify=None) -> None:
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
            return
        if last["status"] == runs.SUCCESS:
            finished = last["finished_at"]
            note = (f"nothing to resume: the last refresh on this database (run {last['run_id']}, finished "
                    f"{finished:%Y-%m-%d %H:%M:%S} UTC) was green")
            outcome.notes.append(note)
            outcome.stages.append(StageResult("resume", skipped="nothing to resume"))
            log("INFO", note)
            return
        options = options.resumed(last["options"] or {})
        outcome.options = options
        outcome.resumed_from = last["run_id"]
        stages = [s for s in (last["remaining_stages"] or last["stages"] or []) if s in STAGES] or options.stages
        note = (f"resuming run {last['run_id']} ({last['status']}"
                + (f" in stage {last['failed_stage']}" if last["failed_stage"] else "")
                + f"): {options.describe()}, stages {', '.join(stages)}")
        say("INFO", note)

    signature = None
    if not options.resume and not options.full_refresh:
        try:
            signature = run_signature(connection, options)
        except (DatabaseError, psycopg.Error) as exc:  # e.g. no source table yet: dbt reports it properly
            log("DEBUG", f"no run signature: {mask_secrets(str(exc).strip())}")
        if signature is not None and last and last["status"] == runs.SUCCESS and last["signature"] == signature:
            options.unchanged = True
            outcome.tests_skipped = (f"nothing changed since the last green refresh "
                                     f"({last['finished_at']:%Y-%m-%d %H:%M:%S} UTC)")
            log("INFO", outcome.tests_skipped + ": models run, data tests and seeds skipped")

    run_id = record(runs.start, stages, options.recorded(), outcome.resumed_from)
    outcome.run_id = run_id
    log("INFO", f"run {run_id} recorded in {schema}.{runs.TABLE}: {options.describe()}")
    if progress is not None:
        try:
            progress.plan(stages, record(runs.previous_timings, stages))
        except psycopg.Error as exc:
            log("DEBUG", f"no previous timings: {exc}")

    timings: dict[str, Any] = {}
    failed_stage: str | None = None
    current: str | None = None
    try:
        for stage in stages:
            current = stage
            record(runs.stage_started, run_id, stage)
            fresh = None
            if stage == "emas" and not options.skip_stale_check:
                fresh, stale = freshness_gate(connection, options)
                outcome.stale = stale
                for s in stale:
                    log("WARNING", f"id {s.id} skipped for EMAs: {s.reason}"
                        + (f" ({s.staleness_hours} h old)" if s.staleness_hours is not None else ""))
                if fresh is not None and not fresh:
                    outcome.stages.append(StageResult("emas", skipped=all_stale_message(options)))
                    log("WARNING", "EMA stage skipped: " + all_stale_message(options))
                    if progress is not None:
                        progress.skip_stage("emas")
                    continue
            if progress is not None:
                progress.begin_stage(stage)
            dbt_vars = stage_vars(options, stage, fresh)
            log("INFO", "dbt " + " ".join(command_line(["build"], dbt_vars, stage_extra(options, stage))))
            inv = invoke(connection, ["build"], dbt_vars, stage_extra(options, stage), callbacks)
            if progress is not None:
                progress.end_stage()
            outcome.stages.append(StageResult(stage, inv))
            if inv.success:
                timings[stage] = _timings(inv)
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
    complete = ok and len(outcome.invocations) == len(stages) and not outcome.stale
    remaining = [] if ok else stages[stages.index(failed_stage):]
    message = None
    if not ok:
        first = next((n for n in outcome.failed_nodes), None)
        dbt_error = next((inv.error for inv in outcome.invocations if inv.error), None)
        message = (f"{first.name}: {first_error_line(first.message) or first.status}" if first
                   else (dbt_error or "dbt failed"))[:2000]
    record(runs.finish, run_id, runs.SUCCESS if ok else runs.FAILED, failed_stage, remaining,
           signature if complete else None, timings, message)
    if not ok:
        note = f"run {run_id} failed in stage {failed_stage}: driver refresh --resume re-runs {', '.join(remaining)}"
        outcome.notes.append(note)
        log("WARNING", note)
