"""Whether a refresh has anything to do (issue 20: a refresh that costs what changed).

A refresh whose inputs are those of the last green run, with the same options, would write nothing
and its data tests (scoped to what a run writes) would check nothing; the driver then does not
start dbt (about 1 s in all instead of 10-15 s of dbt start-up and 160 nodes that find nothing).
The inputs, recorded with every green run in `barsmith_refresh_runs.signature`:

- the project: every file dbt reads (models, macros, seeds, data tests, dbt_project.yml,
  selectors), the driver (which turns options into dbt's vars) and the versions of dbt-core and
  dbt-postgres, taken before dbt starts;
- the source table, taken BEFORE dbt starts (a row loaded while dbt runs makes the next refresh
  run): its row count, newest "timestamp" and load_ts, and the sum of a 64-bit hash of every row's
  text (any insert, update or delete changes it, short of a hash collision);
- the target schema, taken AFTER the run: the names and kinds of its relations (a table someone
  dropped is rebuilt by dbt), the definitions of its views and the contents of the seed tables
  (made again by hand or by another dbt invocation: dbt makes them again), and the newest entry
  of barsmith_run_log (a model run outside the driver, by `dbt build` or another tool, makes the
  next refresh run).

And what only time changes: a source row later than the time the source was taken was rejected
as future_timestamp and may be valid now. The freshness gate holds back the changed rows of stale
ids; with no change it holds nothing, and a run that left ids waiting (stale, or waiting for an
upstream) recorded no signature. In each of these cases dbt runs. `--force` runs it anyway.
A refresh that has to run reuses part of the same record: when the last run was green with the
same project and options and the schema holds the relations it left, the seeds and views in
place are those the build would re-create, and `--all` builds the selector `daily_refresh_tables`
(the tables and their tests, without the seeds, the views and the tests that read only those,
which `driver validate` checks).

Every statement here is composed with psycopg.sql; identifiers come from validated configuration.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import psycopg
from psycopg import sql

from .db import PROJECT_DIR, relation_exists

# what dbt reads of the project (dbt_project.yml's paths), and the driver (its profile, and the
# code that makes dbt's vars of the options)
PROJECT_PATHS = ("models", "macros", "seeds", "tests/data", "analyses", "dbt_project.yml", "selectors.yml", "driver")
PACKAGES = ("dbt-core", "dbt-postgres")
VERSION = 1  # of the signature's layout

_project: str | None = None


def project_fingerprint() -> str:
    """sha256 over the project files dbt reads (path and bytes) and the dbt versions; computed once
    per process."""
    global _project
    if _project is None:
        digest = hashlib.sha256()
        for package in PACKAGES:
            try:
                digest.update(f"{package}=={metadata.version(package)}\n".encode())
            except metadata.PackageNotFoundError:
                digest.update(f"{package} missing\n".encode())
        for name in PROJECT_PATHS:
            root = PROJECT_DIR / name
            files = [root] if root.is_file() else sorted(
                p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            for path in files:
                digest.update(str(path.relative_to(PROJECT_DIR)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
        _project = digest.hexdigest()
    return _project


def source_state(conn: psycopg.Connection, source_schema: str, source_table: str) -> dict[str, Any]:
    """The source table now (one pass over it), with the instant it was taken."""
    taken = conn.execute("select now()").fetchone()[0]
    row = conn.execute(
        sql.SQL('select count(*), max("timestamp"), max(load_ts), '
                "coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) from {} as t")
        .format(sql.Identifier(source_schema, source_table))
    ).fetchone()
    return {"taken": taken.isoformat(), "rows": int(row[0]),
            "max_ts": row[1].isoformat() if row[1] else None,
            "max_load_ts": row[2].isoformat() if row[2] else None, "hash": str(row[3])}


def schema_state(conn: psycopg.Connection, schema: str) -> dict[str, Any]:
    """The target schema's relations (names, kinds and the definitions of its views), the contents
    of the project's seed tables, and the newest model run it logged: a view or seed made again
    by hand or by another dbt invocation differs."""
    names = conn.execute(
        "select coalesce(string_agg(c.relname || ':' || c.relkind::text || case when c.relkind in ('v', 'm') "
        "then ':' || md5(pg_catalog.pg_get_viewdef(c.oid)) else '' end, ',' order by c.relname), '') "
        "from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n on n.oid = c.relnamespace "
        "where n.nspname = %s and c.relkind in ('r', 'p', 'v', 'm', 'f')",
        (schema,),
    ).fetchone()[0]
    digest = hashlib.sha256(names.encode())
    for seed in sorted((PROJECT_DIR / "seeds").glob("*.csv")):  # (names from the project, not from outside)
        if relation_exists(conn, schema, seed.stem):
            rows = conn.execute(sql.SQL("select count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) "
                                        "from {} as t").format(sql.Identifier(schema, seed.stem))).fetchone()
            digest.update(f"\n{seed.stem}:{rows[0]}:{rows[1]}".encode())
    mark = None
    if relation_exists(conn, schema, "barsmith_run_log"):
        value = conn.execute(sql.SQL("select max(recorded_at) from {}")
                             .format(sql.Identifier(schema, "barsmith_run_log"))).fetchone()[0]
        mark = value.isoformat() if value else None
    return {"relations": digest.hexdigest(), "run_log": mark}


def signature(run_id: int, source: dict[str, Any], schema: dict[str, Any], options: dict[str, Any]) -> str:
    """What a green run records (text, in barsmith_refresh_runs.signature); a refresh that finds
    nothing to do records the same text."""
    return json.dumps({"version": VERSION, "run": run_id, "project": project_fingerprint(), "options": options,
                       "source": source, "schema": schema}, sort_keys=True, default=str)


def _same_definitions(last: dict[str, Any] | None, options: dict[str, Any]) -> dict[str, Any] | None:
    """The signature of the run `last` when it was green and ran the same project with the same
    options, else None."""
    if not last or last.get("status") != "success" or not last.get("signature"):
        return None
    try:
        recorded = json.loads(last["signature"])
    except ValueError:
        return None
    if recorded.get("version") != VERSION or recorded.get("options") != json.loads(json.dumps(options, default=str)):
        return None
    if recorded.get("project") != project_fingerprint():
        return None
    return recorded


def definitions_in_place(conn: psycopg.Connection, schema: str, last: dict[str, Any] | None,
                         options: dict[str, Any]) -> bool:
    """Whether the seeds and views of the schema are those a build with `options` would re-create:
    the last run was green with the same project and options, and the schema holds the relations
    it left (none dropped, no view defined otherwise, no seed table changed). Their data does not
    depend on the source: the seeds are the project's files, a view reads its tables when it is
    queried."""
    recorded = _same_definitions(last, options)
    return bool(recorded) and (recorded.get("schema") or {}).get("relations") == \
        schema_state(conn, schema)["relations"]


def unchanged(conn: psycopg.Connection, schema: str, last: dict[str, Any] | None, options: dict[str, Any],
              source: dict[str, Any]) -> str | None:
    """Why a refresh with `options` has nothing to do after the run `last` (a sentence), or None
    when dbt has to run. `source` is the source table now (source_state)."""
    recorded = _same_definitions(last, options)
    if recorded is None:
        return None
    seen = recorded.get("source") or {}
    if any(seen.get(k) != source.get(k) for k in ("rows", "max_ts", "max_load_ts", "hash")):
        return None
    # a row later than the instant the source was taken was a future_timestamp reject then
    if seen.get("max_ts") and datetime.fromisoformat(seen["max_ts"]) > datetime.fromisoformat(seen["taken"]):
        return None
    if recorded.get("schema") != schema_state(conn, schema):
        return None
    taken = datetime.fromisoformat(seen["taken"]).astimezone(timezone.utc)
    return (f"up to date: the source ({source['rows']:,} rows), the project and the options are those of run "
            f"{recorded.get('run')} (source read {taken:%Y-%m-%d %H:%M:%S} UTC); dbt not started "
            "(--force runs it anyway)")
