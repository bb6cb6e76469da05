"""Trading calendars of the assets (issue 21): `24/7` or an exchange_calendars code.

Exchange sessions come from the exchange_calendars library (holidays and early closes right by
construction) and are written into `trading_sessions` of the target schema, with the covered day
range in `trading_calendar_coverage`, before the completeness models run. 24/7 sessions (every
UTC day) are generated in SQL and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from importlib import metadata
from zoneinfo import ZoneInfo

from psycopg import sql

ALWAYS_OPEN = "24/7"
SESSIONS_TABLE = "trading_sessions"
COVERAGE_TABLE = "trading_calendar_coverage"
# Written around the range asked for, so that a run a few days later still finds its sessions.
MARGIN = timedelta(days=7)


class CalendarError(ValueError):
    """An unknown calendar code."""


@dataclass(frozen=True)
class Session:
    session_date: date
    open_utc: datetime
    close_utc: datetime
    is_early_close: bool


@lru_cache(maxsize=1)
def exchange_codes() -> frozenset[str]:
    import exchange_calendars  # noqa: PLC0415 (pandas import, only when needed)

    return frozenset(exchange_calendars.get_calendar_names(include_aliases=True))


def validate(code: str) -> str:
    """The calendar code itself when it is 24/7 or an exchange_calendars name; else CalendarError."""
    if code == ALWAYS_OPEN or code in exchange_codes():
        return code
    raise CalendarError(f"unknown trading calendar {code!r}: use 24/7 or an exchange_calendars code (XNYS, XNAS, ...)")


@lru_cache(maxsize=32)
def _exchange(code: str, start: date, end: date):
    import exchange_calendars  # noqa: PLC0415

    return exchange_calendars.get_calendar(code, start=start.isoformat(), end=end.isoformat())


@lru_cache(maxsize=32)
def timezone_of(code: str) -> ZoneInfo:
    """The zone a calendar's session dates are in (UTC for 24/7)."""
    if code == ALWAYS_OPEN:
        return ZoneInfo("UTC")
    validate(code)
    today = date.today()
    return ZoneInfo(str(_exchange(code, today - timedelta(days=30), today).tz))


def sessions(code: str, start: date, end: date) -> list[Session]:
    """Sessions of a calendar with dates in [start, end] (24/7: every day, 00:00 to 23:59:59.999 UTC)."""
    validate(code)
    if end < start:
        return []
    if code == ALWAYS_OPEN:
        out = []
        day = start
        while day <= end:
            opened = datetime.combine(day, time(0), tzinfo=timezone.utc)
            out.append(Session(day, opened, opened + timedelta(days=1, milliseconds=-1), False))
            day += timedelta(days=1)
        return out
    cal = _exchange(code, start, end)
    schedule = cal.schedule.loc[start.isoformat():end.isoformat()]
    early = {ts.date() for ts in cal.early_closes}
    return [
        Session(idx.date(), row.open.to_pydatetime(), row.close.to_pydatetime(), idx.date() in early)
        for idx, row in schedule.iterrows()
    ]


def ensure_tables(conn, schema: str) -> None:
    """The two calendar tables (same DDL as macros/completeness.sql)."""
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL(
        "create table if not exists {} (calendar text not null, session_date date not null, "
        "open_utc timestamptz not null, close_utc timestamptz not null, is_early_close boolean not null, "
        "primary key (calendar, session_date))").format(sql.Identifier(schema, SESSIONS_TABLE)))
    conn.execute(sql.SQL(
        "create table if not exists {} (calendar text primary key, valid_from date not null, "
        "valid_to date not null, library_version text, written_at timestamptz not null default now())"
    ).format(sql.Identifier(schema, COVERAGE_TABLE)))


def write_sessions(connection, schema: str, needed: dict[str, tuple[date, date]]) -> dict[str, tuple[date, date]]:
    """Write the sessions of each exchange calendar over (at least) the range needed, widened by
    MARGIN and by what was covered before, replacing that calendar's rows in one transaction.

    Returns the range now covered per calendar. 24/7 entries are ignored.
    """
    version = metadata.version("exchange_calendars")
    covered: dict[str, tuple[date, date]] = {}
    with connection.connect() as conn:
        with conn.transaction():
            # the models' pre-hook takes the same lock while it creates these tables
            conn.execute("select pg_advisory_xact_lock(hashtext('barsmith_calendar_tables'))")
            ensure_tables(conn, schema)
            for code, (first, last) in sorted(needed.items()):
                if code == ALWAYS_OPEN:
                    continue
                validate(code)
                first, last = first - MARGIN, last + MARGIN
                old = conn.execute(
                    sql.SQL("select valid_from, valid_to, library_version from {} where calendar = %s").format(
                        sql.Identifier(schema, COVERAGE_TABLE)), (code,)).fetchone()
                if old and old[2] == version and old[0] <= first and old[1] >= last:
                    covered[code] = (old[0], old[1])
                    continue
                if old and old[2] == version:
                    first, last = min(first, old[0]), max(last, old[1])
                rows = sessions(code, first, last)
                conn.execute(sql.SQL("delete from {} where calendar = %s").format(
                    sql.Identifier(schema, SESSIONS_TABLE)), (code,))
                with conn.cursor().copy(sql.SQL(
                        "copy {} (calendar, session_date, open_utc, close_utc, is_early_close) from stdin").format(
                        sql.Identifier(schema, SESSIONS_TABLE))) as copy:
                    for s in rows:
                        copy.write_row((code, s.session_date, s.open_utc, s.close_utc, s.is_early_close))
                conn.execute(sql.SQL(
                    "insert into {} (calendar, valid_from, valid_to, library_version) values (%s, %s, %s, %s) "
                    "on conflict (calendar) do update set valid_from = excluded.valid_from, "
                    "valid_to = excluded.valid_to, library_version = excluded.library_version, written_at = now()"
                ).format(sql.Identifier(schema, COVERAGE_TABLE)), (code, first, last, version))
                covered[code] = (first, last)
    return covered


class SessionBook:
    """Sessions of exchange calendars held in memory for a run (building a calendar costs a few
    hundred milliseconds of pandas work: done once per calendar, before any request)."""

    def __init__(self) -> None:
        self._range: dict[str, tuple[date, date]] = {}
        self._sessions: dict[str, dict[date, Session]] = {}

    def ensure(self, code: str, start: date, end: date) -> None:
        if code == ALWAYS_OPEN:
            return
        have = self._range.get(code)
        if have and have[0] <= start and have[1] >= end:
            return
        if have:
            start, end = min(start, have[0]), max(end, have[1])
        self._sessions[code] = {s.session_date: s for s in sessions(code, start, end)}
        self._range[code] = (start, end)
        timezone_of(code)

    def session(self, code: str, day: date) -> Session | None:
        if code == ALWAYS_OPEN:
            return sessions(ALWAYS_OPEN, day, day)[0]
        self.ensure(code, day, day)
        return self._sessions[code].get(day)

    def count(self, code: str, start: date, end: date) -> int:
        if code == ALWAYS_OPEN:
            return max((end - start).days + 1, 0)
        self.ensure(code, start, end)
        return sum(1 for d in self._sessions[code] if start <= d <= end)
