"""In-process dbt invocations (dbtRunner), one at a time, with the driver's connection."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg

from .db import PROJECT_DIR, Connection, DatabaseError, engine, mask_secrets

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
TARGET_DIR = PROJECT_DIR / "target"


@dataclass
class NodeResult:
    unique_id: str
    name: str
    resource_type: str
    status: str
    seconds: float
    rows: int | None
    message: str
    failures: int | None
    tags: list[str] = field(default_factory=list)
    attached: str | None = None  # a data test: the model (or source) it tests


def first_error_line(message: str) -> str:
    """The informative line of a dbt error: skip the 'Database Error in model ...' header."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if not line.lower().startswith(("database error in", "compilation error in", "runtime error in")):
            return line
    return lines[0] if lines else ""


@dataclass
class Invocation:
    args: list[str]
    success: bool
    seconds: float
    nodes: list[NodeResult]
    error: str | None = None

    @property
    def failed(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in ("error", "fail", "runtime error")]


def command_line(command: list[str], dbt_vars: dict[str, Any] | None = None, extra: list[str] | None = None) -> list[str]:
    """The dbt arguments the driver passes (also what --dry-run prints)."""
    args = list(command) + ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROFILES_DIR)]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars, sort_keys=True)]
    return args + list(extra or [])


def _node_result(res) -> NodeResult:
    node = res.node
    adapter = getattr(res, "adapter_response", None) or {}
    rows = adapter.get("rows_affected") if isinstance(adapter, dict) else None
    status = str(getattr(res.status, "value", res.status))
    attached = getattr(node, "attached_node", None)
    return NodeResult(
        unique_id=node.unique_id,
        name=node.name,
        resource_type=str(getattr(node.resource_type, "value", node.resource_type)),
        status=status,
        seconds=float(res.execution_time or 0.0),
        rows=rows if isinstance(rows, int) and rows >= 0 else None,
        message=mask_secrets(str(res.message or "")),
        failures=getattr(res, "failures", None),
        tags=list(getattr(node, "tags", []) or []),
        attached=str(attached).split(".")[-1] if attached else None,
    )


def _quick_behavior_flags() -> None:
    """dbt-common names the module that declared each adapter behavior flag by walking
    inspect.stack() (source context of every frame) for every flag of every adapter instance: about
    0.6 s of each dbt invocation in this process (parse of the project 1.1 s -> 0.45 s, measured),
    for a name dbt only prints in a behavior-change warning. The name becomes 'dbt'; nothing else
    changes. Skipped if dbt-common moves it."""
    try:
        from dbt_common import behavior_flags  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return
    rendered = getattr(behavior_flags, "BehaviorFlagRendered", None)
    if rendered is not None and hasattr(rendered, "_default_source"):
        rendered._default_source = staticmethod(lambda: "dbt")


def with_engine(connection: Connection, dbt_vars: dict[str, Any] | None) -> dict[str, Any] | None:
    """The vars with barsmith_engine: citus when the database is a Citus coordinator (unless the vars
    name an engine). A server that cannot be reached is left to dbt, which reports it."""
    if dbt_vars and "barsmith_engine" in dbt_vars:
        return dbt_vars
    try:
        kind = engine(connection)
    except (DatabaseError, psycopg.Error):
        return dbt_vars
    return {**(dbt_vars or {}), "barsmith_engine": kind} if kind != "postgres" else dbt_vars


def invoke(
    connection: Connection,
    command: list[str],
    dbt_vars: dict[str, Any] | None = None,
    extra: list[str] | None = None,
    callbacks: list[Callable] | None = None,
) -> Invocation:
    """Run one dbt command in-process and collect per-node results."""
    from dbt.cli.main import dbtRunner  # noqa: PLC0415 (slow import)

    _quick_behavior_flags()
    os.environ.update(connection.dbt_env())
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("DBT_LOG_PATH", str(PROJECT_DIR / ".logs" / "dbt"))
    # No terminal colour codes in any log: dbt colours the text of its result lines (which go to
    # .logs/dbt/dbt.log and, through the callbacks, to the refresh log) unless told not to.
    os.environ["DBT_USE_COLORS"] = "false"
    os.environ["DBT_USE_COLORS_FILE"] = "false"
    dbt_vars = with_engine(connection, dbt_vars)
    args = command_line(command, dbt_vars, extra)
    started = time.monotonic()
    try:
        result = dbtRunner(callbacks=callbacks or []).invoke(args)
    except Exception as exc:  # dbt raised instead of returning a result
        return Invocation(args, False, time.monotonic() - started, [], mask_secrets(str(exc)))
    seconds = time.monotonic() - started
    nodes: list[NodeResult] = []
    payload = result.result
    for res in getattr(payload, "results", None) or []:
        if hasattr(res, "node"):
            nodes.append(_node_result(res))
    error = mask_secrets(str(result.exception)) if result.exception else None
    return Invocation(args, bool(result.success), seconds, nodes, error)
