"""Random daily histories and the operations of the incremental property tests.

Rows are generated deterministically from (id, day, version) so a "correction" is a new
version of the same day. Instants follow the CMC convention (ts = D 23:59:59.999Z).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from psycopg import sql

from driver.load import COLUMNS, ensure_table

EPOCH = date(2023, 12, 20)  # spans year ends, a leap day and both 2024 DST changes when long enough


def day_row(asset: int, day: date, version: int = 0) -> dict:
    rng = random.Random(hash((asset, day.toordinal(), version)) & 0xFFFFFFFF)
    base = 100.0 + (day.toordinal() % 37) * 0.5 + asset
    o = base * (1 + rng.uniform(-0.02, 0.02))
    c = base * (1 + rng.uniform(-0.02, 0.02))
    h = max(o, c) * (1 + rng.uniform(0, 0.02))
    lo = min(o, c) * (1 - rng.uniform(0, 0.02))
    if rng.random() < 0.15:
        h = max(o, c)  # ties of the high inside a bar
    start = datetime.combine(day, time(0), tzinfo=timezone.utc)
    return {
        "id": asset, "name": f"asset{asset}",
        "timeopen": start, "timeclose": start + timedelta(milliseconds=86399999),
        "timehigh": None if rng.random() < 0.05 else start + timedelta(seconds=rng.uniform(0, 86399)),
        "timelow": start + timedelta(seconds=rng.uniform(0, 86399)),
        "timestamp": start + timedelta(milliseconds=86399999),
        "open": o, "high": h, "low": lo, "close": c,
        "volume": None if rng.random() < 0.03 else rng.uniform(1, 1000),
        "marketcap": None if rng.random() < 0.1 else c * 1e6,
        "circulatingsupply": None, "date": day, "source_file": f"v{version}", "load_ts": None,
    }


@dataclass
class History:
    """The intended content of the source table: {(id, day): version}."""

    days: dict[tuple[int, date], int]

    def rows(self):
        return [day_row(i, d, v) for (i, d), v in sorted(self.days.items())]


def write_rows(conn, rows: list[dict], load_ts: datetime | None = None) -> None:
    """Upsert rows; a changed row gets load_ts = now() (the loader's rule)."""
    ensure_table(conn, "public", "price_histories")
    cols = list(COLUMNS)
    stmt = sql.SQL(
        'insert into price_histories ({cols}) values ({vals}) on conflict (id, "timestamp") do update set {sets}'
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        vals=sql.SQL(", ").join(sql.Placeholder() for _ in cols),
        sets=sql.SQL(", ").join(sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in cols),
    )
    with conn.cursor() as cur:
        cur.executemany(stmt, [[r[c] if c != "load_ts" else (load_ts or datetime.now(timezone.utc)) for c in cols]
                               for r in rows])


def delete_day(conn, asset: int, day: date) -> None:
    conn.execute('delete from price_histories where id = %s and "timestamp"::date = %s', (asset, day))
