"""Per-id staleness: hours since each id's newest source row and newest built bar per family."""

from __future__ import annotations

import os
from datetime import datetime

from psycopg import sql
from rich.table import Table

from .db import Connection

FAMILIES = ("multi_tf", "cal_iso", "cal_us", "cal_anchor_iso", "cal_anchor_us")


def per_id(connection: Connection, ids: list[int] | None) -> list[dict]:
    schema = os.environ.get("BARSMITH_SOURCE_SCHEMA", "public")
    table = os.environ.get("BARSMITH_SOURCE_TABLE", "price_histories")
    with connection.connect() as conn:
        have_view = conn.execute("select to_regclass(%s)", (f"{connection.schema}.asset_freshness",)).fetchone()[0]
        view_cols = sql.SQL(", ").join(
            [sql.SQL("a.last_bar_ts")] + [sql.SQL("a.{}").format(sql.Identifier(f"last_{f}_ts")) for f in FAMILIES]
        ) if have_view else sql.SQL(", ").join(sql.SQL("null::timestamptz") for _ in range(1 + len(FAMILIES)))
        join = (sql.SQL("left join {}.asset_freshness as a on a.id = s.id").format(sql.Identifier(connection.schema))
                if have_view else sql.SQL(""))
        query = sql.SQL(
            'select s.id, s.last_source_ts, {cols}, now() from (select id, max("timestamp") as last_source_ts '
            "from {src} group by id) as s {join} where (%(ids)s::int[] is null or s.id = any(%(ids)s::int[])) order by s.id"
        ).format(cols=view_cols, src=sql.Identifier(schema, table), join=join)
        rows = conn.execute(query, {"ids": ids}).fetchall()
    out = []
    for row in rows:
        now = row[-1]
        rec = {"id": row[0], "now": now, "source": row[1], "1d": row[2]}
        rec.update({f: row[3 + i] for i, f in enumerate(FAMILIES)})
        out.append(rec)
    return out


def hours(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else (now - since).total_seconds() / 3600.0


def table(rows: list[dict], staleness_hours: float) -> Table:
    t = Table(title=f"hours since the newest row (stale above {staleness_hours:g} h)")
    t.add_column("id", justify="right")
    for col in ("source", "1d") + FAMILIES:
        t.add_column(col, justify="right")
    t.add_column("status")
    for rec in rows:
        vals = []
        for col in ("source", "1d") + FAMILIES:
            h = hours(rec[col], rec["now"])
            vals.append("-" if h is None else f"{h:.1f}")
        h1d = hours(rec["1d"], rec["now"])
        status = "no_bars" if h1d is None else ("fresh" if h1d <= staleness_hours else "stale")
        t.add_row(str(rec["id"]), *vals, status)
    return t
