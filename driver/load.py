"""`driver load`: CSV files into the raw source table, all-or-nothing.

The file format is the golden one (`shared/golden/synth_small/price_histories.csv`): a header of
source column names, one row per (id, "timestamp"), instants in ISO-8601, empty field = NULL.
"""

from __future__ import annotations

import csv
import io
import math
import re
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


MAX_REPORTED = 20  # malformed lines reported per file; the rest are counted


class LoadError(ValueError):
    """Files were refused; each problem names file, line and column (up to MAX_REPORTED per file)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class LoadResult:
    files: int
    rows_read: int
    inserted: int
    updated: int
    unchanged: int


# Numbers are strict: an optional minus sign, digits, an optional fraction and exponent. No spaces,
# no '_' separators, no hex, no '+inf'/'infinity'. 'NaN' (any case) is read as NaN: the 1D model
# rejects such rows with a reason instead of refusing the whole file.
_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _parse_int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise ValueError("not an integer: digits with an optional leading '-'; no spaces, '_' or hex")
    value = int(text)
    if not -(2**31) <= value < 2**31:
        raise ValueError("out of integer range")
    return value


def _parse_float(text: str) -> float:
    if text.lower() == "nan":
        return math.nan
    if not _FLOAT.fullmatch(text):
        raise ValueError("not a plain decimal number: no spaces, '_', hex or inf")
    value = float(text)
    if math.isinf(value):
        raise ValueError("out of range")
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


class _Problems:
    """Malformed lines of one file: the first MAX_REPORTED in full, the others counted."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: dict[int, list[str]] = {}

    def add(self, line: int, message: str) -> None:
        self.lines.setdefault(line, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def __contains__(self, line: int) -> bool:
        return line in self.lines

    def messages(self) -> list[str]:
        ordered = sorted(self.lines)
        out = []
        for n in ordered[:MAX_REPORTED]:
            first, *more = self.lines[n]
            out.append(f"{self.path}: line {n}{first}" + "".join("; " + m.lstrip(",: ") for m in more))
        if len(ordered) > MAX_REPORTED:
            out.append(f"{self.path}: and {len(ordered) - MAX_REPORTED} more malformed line(s) "
                       f"({len(ordered)} in all)")
        return out


def _decode(path: Path, data: bytes, problems: _Problems) -> str:
    """The file as text; each line with bytes that are not UTF-8, or with a NUL byte, is a problem."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark
    for n, raw in enumerate(data.split(b"\n"), start=1):
        nul = raw.find(b"\x00")
        if nul >= 0:
            problems.add(n, f", byte {nul + 1}: NUL byte (binary data?)")
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.add(n, f", byte {exc.start + 1}: 0x{raw[exc.start]:02x} is not UTF-8 (save the file as UTF-8)")
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def parse_file(path: Path) -> tuple[list[str], list[tuple], list[int]]:
    """Header, typed rows and their line numbers of one CSV file; LoadError listing every malformed
    line (up to MAX_REPORTED) when any."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError([f"{path}: cannot read: {exc.strerror}"]) from None
    problems = _Problems(path)
    text = _decode(path, data, problems)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise LoadError([f"{path}: line 1: empty file, expected a header"]) from None
    except csv.Error as exc:
        raise LoadError([f"{path}: line 1: {exc}"]) from None
    if 1 in problems:
        raise LoadError(problems.messages())
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise LoadError([f"{path}: line 1: unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})"])
    dupes = {h for h in header if header.count(h) > 1}
    if dupes:
        raise LoadError([f"{path}: line 1: column {sorted(dupes)[0]!r} appears twice"])
    for req in REQUIRED:
        if req not in header:
            raise LoadError([f"{path}: line 1: missing required column {req!r}"])
    parsers = [_PARSERS[COLUMNS[h]] for h in header]
    rows: list[tuple] = []
    lines: list[int] = []
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.add(reader.line_num, f": {exc}")
            continue
        line = reader.line_num
        if not values or line in problems:
            continue
        if len(values) != len(header):
            problems.add(line, f": {len(values)} fields, header has {len(header)}")
            continue
        typed = []
        for col, parser, raw in zip(header, parsers, values):
            if raw == "":
                if col in REQUIRED:
                    problems.add(line, f", column {col!r}: missing value (required)")
                typed.append(None)
                continue
            try:
                typed.append(parser(raw))
            except (ValueError, OverflowError) as exc:
                problems.add(line, f", column {col!r}: cannot parse {raw!r} as {COLUMNS[col]} ({exc})")
                typed.append(None)
        if line not in problems:
            rows.append(tuple(typed))
            lines.append(line)
    if problems:
        raise LoadError(problems.messages())
    return header, rows, lines


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
    """Parse every file first, then upsert all rows in one transaction (nothing half-loaded).
    LoadError lists the malformed lines of every file; nothing touches the database before."""
    parsed = []
    problems: list[str] = []
    seen: dict[tuple, str] = {}
    for path in paths:
        try:
            header, rows, lines = parse_file(path)
        except LoadError as exc:
            problems += exc.problems
            continue
        if "name" not in header:
            problems.append(f"{path}: line 1: missing required column 'name'")
            continue
        file_problems = _Problems(path)
        i_id, i_ts, i_name = header.index("id"), header.index("timestamp"), header.index("name")
        for n, row in zip(lines, rows):
            key = (row[i_id], row[i_ts])
            if row[i_name] is None:
                file_problems.add(n, ", column 'name': missing value (required)")
            if key in seen:
                file_problems.add(n, f": duplicate row for id {key[0]} at {key[1].isoformat()} (first at {seen[key]})")
            else:
                seen[key] = f"{path}: line {n}"
        if file_problems:
            problems += file_problems.messages()
            continue
        parsed.append((path, header, rows))
    if problems:
        raise LoadError(problems)

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
        conn.execute(sql.SQL("create temp table barsmith_load (like {} including defaults) on commit drop")
                     .format(ident))
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
        # now() as a literal (the transaction's start, as now() is): Citus refuses a function that is
        # not immutable in the DO UPDATE SET of an insert into a distributed table (and loses a
        # parameter of an INSERT ... SELECT from a local table)
        (started,) = conn.execute("select now()").fetchone()
        upsert = sql.SQL(
            "insert into {ident} as t ({cols}) "
            "select {select} from barsmith_load "
            'on conflict (id, "timestamp") do update set {sets}, load_ts = {started} '
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
            started=sql.Literal(started),
        )
        flags = [r[0] for r in conn.execute(upsert).fetchall()]
    inserted = sum(1 for f in flags if f)
    return inserted, len(flags) - inserted
