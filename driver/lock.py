"""One refresh at a time per database schema: a PostgreSQL advisory lock held for the run.

The lock is a session lock of one autocommit connection that the run keeps open to the end; the
run's bookkeeping (driver/runs.py) is written through the same connection, so a row left
'running' while nobody holds the lock belongs to a run that died (SIGKILL, lost connection).
"""

from __future__ import annotations

import time
import zlib
from contextlib import contextmanager
from typing import Callable, Iterator

import psycopg

from . import runs
from .db import Connection, mask_secrets

# Exit code of a refresh refused because another one holds the lock (documented in the README).
EXIT_LOCKED = 3


class LockBusy(RuntimeError):
    """Another refresh holds the lock."""


def lock_key(connection: Connection) -> int:
    return zlib.crc32(f"barsmith-refresh:{connection.schema}".encode())


def describe_holder(conn: psycopg.Connection, connection: Connection) -> str:
    """Who holds the refresh lock, as far as the server and the runs table tell: '' if unknown."""
    key = lock_key(connection)
    try:
        holder = conn.execute(
            "select l.pid, coalesce(a.client_addr::text, 'local'), a.backend_start "
            "from pg_catalog.pg_locks as l left join pg_catalog.pg_stat_activity as a on a.pid = l.pid "
            "where l.locktype = 'advisory' and l.classid = 0 and l.objid = %s and l.objsubid = 1 "
            "and l.granted and l.database = (select oid from pg_catalog.pg_database "
            "where datname = current_database()) limit 1",
            (key & 0xFFFFFFFF,),
        ).fetchone()
        run = runs.running_run(conn, connection.schema)
    except psycopg.Error as exc:
        return mask_secrets(f"(holder unknown: {str(exc).strip()})")
    parts = []
    if run:
        opts = run.get("options") or {}
        parts.append(f"run {run['run_id']} (refresh --{opts.get('stage', '?')}, started "
                     f"{run['started_at']:%Y-%m-%d %H:%M:%S} UTC"
                     + (f", in stage {run['current_stage']}" if run.get("current_stage") else "") + ")")
    if holder:
        parts.append(f"backend pid {holder[0]} from {holder[1]}")
    return ", ".join(parts)


@contextmanager
def refresh_lock(
    connection: Connection,
    wait_seconds: float = 0.0,
    poll: float = 0.5,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[psycopg.Connection]:
    """Hold the refresh lock and yield its (autocommit) connection; wait up to wait_seconds for it,
    telling on_wait who holds it, else raise LockBusy."""
    conn = connection.connect(autocommit=True)
    key = lock_key(connection)
    started = time.monotonic()
    deadline = started + max(wait_seconds, 0.0)
    next_notice = started
    try:
        while True:
            (got,) = conn.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()
            if got:
                if on_wait and next_notice > started:
                    on_wait(f"lock acquired after waiting {time.monotonic() - started:.0f} s")
                break
            now = time.monotonic()
            if now >= deadline:
                who = describe_holder(conn, connection)
                raise LockBusy(
                    f"another barsmith refresh is running on {connection.dbname}, schema {connection.schema}"
                    + (f": {who}" if who else "")
                    + (f"; waited {wait_seconds:.0f} s" if wait_seconds else "")
                    + ". Retry later or pass --lock-wait SECONDS."
                )
            if on_wait and now >= next_notice:
                who = describe_holder(conn, connection)
                left = deadline - now
                on_wait(f"waiting up to {left:.0f} s for the refresh lock on {connection.dbname}, schema "
                        f"{connection.schema}" + (f", held by {who}" if who else ""))
                next_notice = now + 30.0
            time.sleep(min(poll, max(deadline - now, 0.01)))
        yield conn
    finally:
        try:
            if not conn.closed:
                conn.execute("select pg_advisory_unlock_all()")
        except psycopg.Error:
            pass  # the session is gone, and its locks with it
        finally:
            conn.close()
