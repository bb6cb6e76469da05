"""`driver load`: CSV files into the raw source table, all-or-nothing.

The file format is the golden one (`shared/golden/synth_small/price_histories.csv`): a header of
source column names, one row per (id, "timestamp"), instants in ISO-8601, empty field = NULL.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from psycopg import sql

from .db import Connection

# Source columns of bars.md §1.1 with their SQL types and Python parsers.
COLUMNS: dict[str, str] = {
    "id": "integer",
    "name": "text",
    "timeopen": "timestamptz",
    "timeclose": "timestamptz",
    "timehigh": "timestamptz",
    "timelow": "timestamptz",
    "timestamp": "timestamptz",
    "open": "double precision",
    "high": "double precision",
    "low": "double precision",
    "close": "double precision",
    "volume": "double precision",
    "marketcap": "double precision",
    "circulatingsupply": "double precision",
    "date": "date",
    "source_file": "text",
    "load_ts": "timestamptz",
}
REQUIRED = ("id", "timestamp")
# Columns compared to decide whether a re-loaded row changed (everything but load_ts).
COMPARED = [c for c in COLUMNS if c not in ("id", "timestamp", "load_ts")]


class LoadError(ValueError):
    """A file was refused; the message names file, line and column."""


@dataclass
class LoadResult:
    files: int
    rows_read: int
    inserted: int
    updated: int
    unchanged: int


def _parse_int(text: str) -> int:
    value = int(text)
    if not -(2**31) <= value < 2**31:
        raise ValueError("out of integer range")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("infinite")
    return value


def _parse_ts(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


_PARSERS = {
    "integer": _parse_int,
    "text": str,
    "timestamptz": _parse_ts,
    "double precision": _parse_float,
    "date": date.fromisoformat,
}


def parse_file(path: Path) -> tuple[list[str], list[tuple]]:
    """Header and typed rows of one CSV file; LoadError on the first defect."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise LoadError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise LoadError(f"{path}: line 1: empty file, expected a header") from None
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            raise LoadError(f"{path}: line 1: unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
        dupes = {h for h in header if header.count(h) > 1}
        if dupes:
            raise LoadError(f"{path}: line 1: column {sorted(dupes)[0]!r} appears twice")
        for req in REQUIRED:
            if req not in header:
                raise LoadError(f"{path}: line 1: missing required column {req!r}")
        parsers = [_PARSERS[COLUMNS[h]] for h in header]
        rows: list[tuple] = []
        for values in reader:
            line = reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                raise LoadError(f"{path}: line {line}: {len(values)} fields, header has {len(header)}")
            typed = []
            for col, parser, raw in zip(header, parsers, values):
                if raw == "":
                    if col in REQUIRED:
                        raise LoadError(f"{path}: line {line}, column {col!r}: missing value (required)")
                    typed.append(None)
                    continue
                try:
                    typed.append(parser(raw))
                except (ValueError, OverflowError) as exc:
                    raise LoadError(
                        f"{path}: line {line}, column {col!r}: cannot parse {raw!r} as {COLUMNS[col]} ({exc})"
                    ) from None
            rows.append(tuple(typed))
    return header, rows


def ensure_table(conn, schema: str, table: str) -> None:
    """Create the source table (bars.md §1.1) if it does not exist."""
    ident = sql.Identifier(schema, table)
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(c),
            sql.SQL(t),
            sql.SQL(" not null" if c in ("id", "timestamp", "name") else ""),
        )
        for c, t in COLUMNS.items()
        if c != "load_ts"
    )
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL(
            "create table if not exists {} ({}, load_ts timestamptz not null default now(), "
            'primary key (id, "timestamp"))'
        ).format(ident, cols)
    )
    conn.execute(
        sql.SQL("create index if not exists {} on {} (load_ts)").format(sql.Identifier(f"{table}_load_ts_idx"), ident)
    )


def load_files(connection: Connection, paths: list[Path], schema: str, table: str) -> LoadResult:
    """Parse every file first, then upsert all rows in one transaction (nothing half-loaded)."""
    parsed = []
    seen: dict[tuple, str] = {}
    for path in paths:
        header, rows = parse_file(path)
        i_id, i_ts = header.index("id"), header.index("timestamp")
        for n, row in enumerate(rows, start=2):
            key = (row[i_id], row[i_ts])
            where = f"{path}: line {n}"
            if key in seen:
                raise LoadError(f"{where}: duplicate row for id {key[0]} at {key[1].isoformat()} (first at {seen[key]})")
            seen[key] = where
        name_idx = header.index("name") if "name" in header else None
        if name_idx is None:
            raise LoadError(f"{path}: line 1: missing required column 'name'")
        for n, row in enumerate(rows, start=2):
            if row[name_idx] is None:
                raise LoadError(f"{path}: line {n}, column 'name': missing value (required)")
        parsed.append((path, header, rows))

    with connection.connect() as conn:
        inserted, updated = upsert_rows(conn, schema, table, [(header, rows) for _p, header, rows in parsed])
    total = sum(len(rows) for _p, _h, rows in parsed)
    return LoadResult(files=len(parsed), rows_read=total, inserted=inserted, updated=updated,
                      unchanged=total - inserted - updated)


def upsert_rows(conn, schema: str, table: str, batches: list[tuple[list[str], list[tuple]]],
                create: bool = True) -> tuple[int, int]:
    """Upsert already-typed rows (header = source column names) in one transaction on an open
    connection, with the load_ts rules of `driver load`; returns (inserted, updated).

    Used by load_files and by `driver fetch` (one call per fetched chunk: nothing half-loaded;
    fetch creates the table once and passes create=False: CREATE INDEX IF NOT EXISTS takes a
    share lock, and two such transactions that then insert would deadlock).
    """
    ident = sql.Identifier(schema, table)
    with conn.transaction():
        if create:
            ensure_table(conn, schema, table)
        conn.execute("create temp table barsmith_load (like {} including defaults) on commit drop".format(
            ident.as_string(conn)))
        conn.execute("alter table barsmith_load alter column load_ts drop not null")
        conn.execute("alter table barsmith_load alter column name drop not null")
        for header, rows in batches:
            copy_sql = sql.SQL("copy barsmith_load ({}) from stdin").format(
                sql.SQL(", ").join(map(sql.Identifier, header))
            )
            with conn.cursor().copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        cols = list(COLUMNS)
        col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
        changed = sql.SQL(" or ").join(
            sql.SQL("t.{c} is distinct from excluded.{c}").format(c=sql.Identifier(c)) for c in COMPARED
        )
        upsert = sql.SQL(
            "insert into {ident} as t ({cols}) "
            "select {select} from barsmith_load "
            'on conflict (id, "timestamp") do update set {sets}, load_ts = now() '
            "where {changed} "
            "returning (xmax = 0) as inserted"
        ).format(
            ident=ident,
            cols=col_list,
            select=sql.SQL(", ").join(
                sql.SQL("coalesce(load_ts, now())") if c == "load_ts" else sql.Identifier(c) for c in cols
            ),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in COMPARED
            ),
            changed=changed,
        )
        flags = [r[0] for r in conn.execute(upsert).fetchall()]
    inserted = sum(1 for f in flags if f)
    return inserted, len(flags) - inserted
