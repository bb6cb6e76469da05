"""Per-id staleness: hours since each id's newest source row and newest built bar per family."""

from __future__ import annotations

from datetime import datetime

from psycopg import sql
from rich import box
from rich.table import Table

from .db import Connection, relation_exists

FAMILIES = ("multi_tf", "cal_iso", "cal_us", "cal_anchor_iso", "cal_anchor_us")


def per_id(connection: Connection, ids: list[int] | None, schema: str, table: str) -> list[dict]:
    """Per id of the source table schema.table (validated identifiers, quoted here too): newest
    source row, newest valid bar and newest row per bar family."""
    with connection.connect() as conn:
        have_view = relation_exists(conn, connection.schema, "asset_freshness")
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


# Column headers of the per-family columns: short enough for 80 columns, still unambiguous.
HEADERS = {"multi_tf": "multi", "cal_iso": "iso", "cal_us": "us", "cal_anchor_iso": "anc_iso",
           "cal_anchor_us": "anc_us"}


def _hours_text(h: float | None) -> str:
    if h is None:
        return "-"
    return f"{h:.1f}" if abs(h) < 1000 else f"{h:.0f}"


def table(rows: list[dict], staleness_hours: float) -> Table:
    """Hours since the newest row per id: source, 1D and each family. Fits 80 columns; a header
    folds rather than being cut on a narrower terminal."""
    t = Table(title=f"hours since the newest row (stale above {staleness_hours:g} h)", box=box.SIMPLE_HEAD,
              show_edge=False, pad_edge=False, collapse_padding=True,
              caption="multi = price_bars_multi_tf, iso / us = ..._cal_iso / _cal_us,\n"
                      "anc_iso / anc_us = ..._cal_anchor_iso / _cal_anchor_us")
    t.add_column("id", justify="right", no_wrap=True)
    for col in ("source", "1d") + FAMILIES:
        t.add_column(HEADERS.get(col, col), justify="right", no_wrap=True, overflow="fold")
    t.add_column("status", no_wrap=True)
    for rec in rows:
        vals = [_hours_text(hours(rec[col], rec["now"])) for col in ("source", "1d") + FAMILIES]
        h1d = hours(rec["1d"], rec["now"])
        status = "no_bars" if h1d is None else ("fresh" if h1d <= staleness_hours else "stale")
        t.add_row(str(rec["id"]), *vals, status)
    return t
