"""The record of refreshes, kept in the database they ran on: `barsmith_refresh_runs` in the target
schema (declared as a dbt source in models/staging/_driver_sources.yml).

One row per `driver refresh` that got the lock: its options (what `--resume` re-runs), its planned
stages, the stage it is in, how it ended, what a resume re-runs, and per stage the seconds of every
dbt node (the next run's ETA). A row is written 'running' before the first stage and committed at
once, so a driver killed with SIGKILL leaves it 'running'; the next refresh, holding the lock that
the dead run held, marks it 'interrupted'. Every statement is composed with psycopg.sql and takes
its values as parameters.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .db import relation_exists

TABLE = "barsmith_refresh_runs"
RUNNING, SUCCESS, FAILED, INTERRUPTED = "running", "success", "failed", "interrupted"

_COLUMNS = sql.SQL("""
    run_id bigint generated always as identity primary key,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    status text not null default 'running'
        check (status in ('running', 'success', 'failed', 'interrupted')),
    stages jsonb not null,
    current_stage text,
    failed_stage text,
    remaining_stages jsonb,
    options jsonb not null,
    resumed_from bigint,
    signature text,
    timings jsonb,
    message text,
    backend_pid integer not null default pg_backend_pid()
""")


def _table(schema: str) -> sql.Composed:
    return sql.Identifier(schema, TABLE)


def ensure_table(conn: psycopg.Connection, schema: str) -> None:
    """Create the schema (if missing) and the runs table (if missing)."""
    exists = conn.execute("select exists (select from pg_catalog.pg_namespace where nspname = %s)",
                          (schema,)).fetchone()[0]
    if not exists:
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    if not relation_exists(conn, schema, TABLE):
        conn.execute(sql.SQL("create table if not exists {} ({})").format(_table(schema), _COLUMNS))


def mark_interrupted(conn: psycopg.Connection, schema: str) -> list[dict[str, Any]]:
    """Rows left 'running' by runs that no longer hold the lock (call it holding the lock, before
    recording a new run): they died without finishing. Marked 'interrupted', to be re-run from the
    stage they were in."""
    with conn.cursor(row_factory=dict_row) as cur:
        dead = cur.execute(
            sql.SQL("select run_id, started_at, stages, current_stage from {} where status = 'running' "
                    "order by run_id").format(_table(schema))
        ).fetchall()
    for row in dead:
        stages = list(row["stages"] or [])
        current = row["current_stage"] if row["current_stage"] in stages else (stages[0] if stages else None)
        row["remaining_stages"] = stages[stages.index(current):] if current else []
        conn.execute(
            sql.SQL("update {} set status = 'interrupted', failed_stage = %s, remaining_stages = %s, "
                    "message = %s where run_id = %s and status = 'running'").format(_table(schema)),
            (current, Jsonb(row["remaining_stages"]),
             "the driver stopped before the run finished (killed, or its connection was lost)", row["run_id"]),
        )
    return dead


def start(conn: psycopg.Connection, schema: str, stages: list[str], options: dict[str, Any],
          resumed_from: int | None) -> int:
    """Record a new run as 'running' (committed at once: the connection is autocommit)."""
    return conn.execute(
        sql.SQL("insert into {} (stages, options, resumed_from) values (%s, %s, %s) returning run_id")
        .format(_table(schema)),
        (Jsonb(stages), Jsonb(options), resumed_from),
    ).fetchone()[0]


def stage_started(conn: psycopg.Connection, schema: str, run_id: int, stage: str) -> None:
    conn.execute(sql.SQL("update {} set current_stage = %s where run_id = %s").format(_table(schema)),
                 (stage, run_id))


def finish(conn: psycopg.Connection, schema: str, run_id: int, status: str, failed_stage: str | None,
           remaining: list[str], signature: str | None, timings: dict[str, Any], message: str | None) -> None:
    conn.execute(
        sql.SQL(
            "update {} set finished_at = now(), status = %s, failed_stage = %s, remaining_stages = %s, "
            "signature = %s, timings = %s, message = %s, current_stage = null where run_id = %s"
        ).format(_table(schema)),
        (status, failed_stage, Jsonb(remaining), signature, Jsonb(timings), message, run_id),
    )


def set_signature(conn: psycopg.Connection, schema: str, run_id: int, signature: str) -> None:
    """Record the inputs of a green run (driver/uptodate.py)."""
    conn.execute(sql.SQL("update {} set signature = %s where run_id = %s and status = 'success'")
                 .format(_table(schema)), (signature, run_id))


def last_run(conn: psycopg.Connection, schema: str, before: int | None = None) -> dict[str, Any] | None:
    """The newest recorded run (older than run `before` when given), or None."""
    if not relation_exists(conn, schema, TABLE):
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL("select * from {} where (%(before)s::bigint is null or run_id < %(before)s::bigint) "
                    "order by run_id desc limit 1").format(_table(schema)),
            {"before": before},
        ).fetchone()


def running_run(conn: psycopg.Connection, schema: str) -> dict[str, Any] | None:
    """The newest run still marked 'running' (the lock holder's, while one holds it)."""
    if not relation_exists(conn, schema, TABLE):
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL("select run_id, started_at, current_stage, options, backend_pid from {} "
                    "where status = 'running' order by run_id desc limit 1").format(_table(schema))
        ).fetchone()


def previous_timings(conn: psycopg.Connection, schema: str, stages: list[str],
                     selectors: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Per stage, the timings of the newest finished run that ran that stage to the end (with the
    same dbt selector, when `selectors` names it; runs before selectors were recorded ran the
    stage's full selector)."""
    from .refresh import SELECTORS  # noqa: PLC0415 (refresh imports this module)

    out: dict[str, dict[str, Any]] = {}
    with conn.cursor() as cur:
        for stage in stages:
            wanted = (selectors or {}).get(stage)
            row = cur.execute(
                sql.SQL("select timings -> %s from {} where finished_at is not null and timings ? %s "
                        "and (%s::text is null or coalesce(timings -> %s ->> 'selector', %s) = %s) "
                        "order by run_id desc limit 1").format(_table(schema)),
                (stage, stage, wanted, stage, SELECTORS.get(stage, stage), wanted),
            ).fetchone()
            if row and row[0]:
                out[stage] = row[0]
    return out
