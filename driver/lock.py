"""One refresh at a time per database schema: a PostgreSQL advisory lock held for the run."""

from __future__ import annotations

import time
import zlib
from contextlib import contextmanager

from .db import Connection


class LockBusy(RuntimeError):
    """Another refresh holds the lock."""


def lock_key(connection: Connection) -> int:
    return zlib.crc32(f"barsmith-refresh:{connection.schema}".encode())


@contextmanager
def refresh_lock(connection: Connection, wait_seconds: float = 0.0, poll: float = 0.5):
    """Hold the refresh lock; wait up to wait_seconds for it, else raise LockBusy."""
    conn = connection.connect(autocommit=True)
    key = lock_key(connection)
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    try:
        while True:
            (got,) = conn.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()
            if got:
                break
            if time.monotonic() >= deadline:
                holder = conn.execute(
                    "select pid, now() - backend_start from pg_stat_activity a join pg_locks l using (pid) "
                    "where l.locktype = 'advisory' and l.objid = %s and l.granted limit 1",
                    (key & 0xFFFFFFFF,),
                ).fetchone()
                who = f" (held by backend pid {holder[0]})" if holder else ""
                raise LockBusy(
                    f"another barsmith refresh is running on schema {connection.schema}{who}; "
                    f"waited {wait_seconds:.0f} s. Retry later or pass --lock-wait SECONDS."
                )
            time.sleep(poll)
        yield
    finally:
        try:
            conn.execute("select pg_advisory_unlock_all()")
        finally:
            conn.close()
