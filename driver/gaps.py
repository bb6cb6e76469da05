"""`driver gaps`: completeness of the source per asset calendar (issue 21).

The dbt models source_gaps and source_completeness (models/completeness) hold the logic; this
module writes the exchange sessions they need (driver/calendars.py), builds them with the run's
as-of instant, reads them back and renders the matrix, the gap list, the JSON and the alert.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from psycopg import sql
from rich.table import Table
from rich.text import Text

from . import alerts as alertmod
from . import calendars
from . import load as loadmod
from .db import PROJECT_DIR, Connection
from .dbt import first_error_line, invoke
from .providers.base import Asset

ASSETS_SEED = PROJECT_DIR / "seeds" / "assets.csv"
MODELS = ["int_completeness_input", "source_gaps", "source_completeness", "assert_source_gaps_match_completeness",
          "assert_trading_sessions_cover_assets"]
WARNING_SESSIONS = 1  # a gap of more sessions than this is a WARNING
CRITICAL_DAYS = 7  # a gap of more calendar days than this is CRITICAL


class GapsError(RuntimeError):
    """The completeness models could not be built."""


@dataclass
class GapReport:
    as_of: datetime
    window: tuple[date | None, date | None]
    gaps: list[dict[str, Any]] = field(default_factory=list)
    completeness: list[dict[str, Any]] = field(default_factory=list)
    assets: dict[int, Asset] = field(default_factory=dict)
    dbt_seconds: float = 0.0
    test_failures: list[str] = field(default_factory=list)

    def for_ids(self, ids: list[int] | None) -> "GapReport":
        if ids is None:
            return self
        keep = set(ids)
        return GapReport(self.as_of, self.window, [g for g in self.gaps if g["id"] in keep],
                         [c for c in self.completeness if c["id"] in keep], self.assets, self.dbt_seconds,
                         self.test_failures)

    @property
    def ids(self) -> list[int]:
        return sorted({c["id"] for c in self.completeness} | {g["id"] for g in self.gaps})

    def summary(self) -> dict[str, Any]:
        by = {s: sum(1 for g in self.gaps if g["severity"] == s) for s in ("INFO", "WARNING", "CRITICAL")}
        expected = sum(c["expected_sessions"] for c in self.completeness)
        observed = sum(c["observed_rows"] for c in self.completeness)
        return {
            "ids": len(self.ids), "gaps": len(self.gaps), "by_severity": by,
            "sessions_missing": sum(g["sessions_missing"] for g in self.gaps),
            "max_gap_days": max((g["gap_days"] for g in self.gaps), default=0),
            "expected_sessions": expected, "observed_rows": observed,
            "pct_complete": round(100.0 * observed / expected, 2) if expected else None,
        }

    def to_json(self) -> dict[str, Any]:
        def plain(d: dict[str, Any]) -> dict[str, Any]:
            return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v) for k, v in d.items()}

        return {
            "as_of": self.as_of.isoformat(),
            "window": {"from": self.window[0].isoformat() if self.window[0] else None,
                       "to": self.window[1].isoformat() if self.window[1] else None},
            "thresholds": {"warning_sessions": WARNING_SESSIONS, "critical_days": CRITICAL_DAYS},
            "summary": self.summary(),
            "gaps": [plain({**g, "symbol": self.assets.get(g["id"], Asset(g["id"])).symbol}) for g in self.gaps],
            "completeness": [plain(c) for c in self.completeness],
        }


# ------------------------------------------------------------------ assets


def _seed_assets(path: Path = ASSETS_SEED) -> dict[int, Asset]:
    out = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out[int(row["id"])] = Asset(
                id=int(row["id"]), symbol=row["symbol"] or None, name=row["name"] or None,
                provider=row["provider"] or None, calendar=row["calendar"] or calendars.ALWAYS_OPEN,
                start_date=date.fromisoformat(row["start_date"]) if row["start_date"] else None,
                end_date=date.fromisoformat(row["end_date"]) if row["end_date"] else None)
    return out


def read_assets(connection: Connection) -> dict[int, Asset]:
    """The assets table the models read (the seed, once dbt loaded it); {} when it does not exist."""
    with connection.connect() as conn:
        if conn.execute("select to_regclass(%s)", (f'"{connection.schema}".assets',)).fetchone()[0] is None:
            return {}
        rows = conn.execute(sql.SQL(
            "select id, symbol, name, provider, calendar, start_date, end_date from {} order by id"
        ).format(sql.Identifier(connection.schema, "assets"))).fetchall()
    return {r[0]: Asset(r[0], r[1], r[2], r[3], r[4] or calendars.ALWAYS_OPEN, r[5], r[6]) for r in rows}


def _first_days(connection: Connection, schema: str, table: str, ids: list[int]) -> date | None:
    """The earliest source instant of these ids (its date), None without rows or table."""
    with connection.connect() as conn:
        if conn.execute("select to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()[0] is None:
            return None
        row = conn.execute(sql.SQL('select min("timestamp") from {} where id = any(%s)').format(
            sql.Identifier(schema, table)), (ids,)).fetchone()
    return row[0].date() if row and row[0] else None


def needed_sessions(connection: Connection, assets: dict[int, Asset], as_of: datetime,
                    window: tuple[date | None, date | None], source: tuple[str, str]) -> dict[str, tuple[date, date]]:
    """Per exchange calendar used by an asset: the day range its sessions must cover."""
    by_cal: dict[str, list[Asset]] = {}
    for a in assets.values():
        if a.calendar != calendars.ALWAYS_OPEN:
            calendars.validate(a.calendar)
            by_cal.setdefault(a.calendar, []).append(a)
    needed = {}
    for code, members in by_cal.items():
        starts = [a.start_date for a in members if a.start_date]
        first_row = _first_days(connection, source[0], source[1], [a.id for a in members])
        candidates = starts + ([first_row] if first_row else []) + ([window[0]] if window[0] else [])
        first = min(candidates) if candidates else as_of.date()
        needed[code] = (first, as_of.date())
    return needed


# ------------------------------------------------------------------ build and read


def compute(connection: Connection, source_vars: dict[str, str], as_of: datetime | None = None,
            date_from: date | None = None, date_to: date | None = None, seed: bool = True,
            log: Callable[[str], None] | None = None) -> GapReport:
    """Write the sessions, build the completeness models (with their data tests), read them."""
    # default: today's UTC midnight (every run of a day sees the same complete sessions, so the
    # completeness models recompute only the ids whose rows changed; see gaps_signature)
    as_of = (as_of or datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)).astimezone(
        timezone.utc)
    source = (source_vars.get("source_schema", "public"), source_vars.get("source_table", "price_histories"))
    assets = _seed_assets() if seed else read_assets(connection)
    with connection.connect() as conn:  # the staging view needs the source table, even empty
        loadmod.ensure_table(conn, source[0], source[1])
    covered = calendars.write_sessions(connection, connection.schema,
                                       needed_sessions(connection, assets, as_of, (date_from, date_to), source))
    if log:
        for code, (a, b) in covered.items():
            log(f"sessions of {code}: {a} .. {b}")
    # run-specific values as environment variables (see models/completeness/asset_session_bounds.sql)
    run_env = {"BARSMITH_GAPS_AS_OF": as_of.isoformat(),
               "BARSMITH_GAPS_FROM": date_from.isoformat() if date_from else "",
               "BARSMITH_GAPS_TO": date_to.isoformat() if date_to else ""}
    select = (["assets"] if seed else []) + MODELS
    with connection.connect() as conn:
        if conn.execute("select to_regclass(%s)", (f'"{connection.schema}".stg_price_histories',)).fetchone()[0] is None:
            select.append("stg_price_histories")
    saved = {k: os.environ.get(k) for k in run_env}
    os.environ.update(run_env)
    try:
        inv = invoke(connection, ["build"], dict(source_vars),
                     ["--select", *select, "--indirect-selection", "cautious", "--quiet"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not inv.success:
        lines = [f"{n.name}: {first_error_line(n.message)}" for n in inv.failed] or [inv.error or "dbt build failed"]
        raise GapsError("completeness models failed: " + "; ".join(lines))
    report = GapReport(as_of=as_of, window=(date_from, date_to), dbt_seconds=inv.seconds)
    with connection.connect() as conn:
        cur = conn.execute(sql.SQL(
            "select id, calendar, first_missing_session, last_missing_session, sessions_missing, gap_days, "
            "early_closes_missing, is_trailing, severity from {} order by id, first_missing_session"
        ).format(sql.Identifier(connection.schema, "source_gaps")))
        cols = [d.name for d in cur.description]
        report.gaps = [dict(zip(cols, r)) for r in cur.fetchall()]
        cur = conn.execute(sql.SQL(
            "select id, calendar, month, expected_sessions, observed_rows, extra_rows, pct_complete::float8 "
            "as pct_complete from {} order by id, month").format(sql.Identifier(connection.schema, "source_completeness")))
        cols = [d.name for d in cur.description]
        report.completeness = [dict(zip(cols, r)) for r in cur.fetchall()]
    report.assets = read_assets(connection)
    return report


# ------------------------------------------------------------------ rendering


def _style(pct: float | None) -> str:
    if pct is None:
        return "dim"
    if pct >= 100.0:
        return "green"
    if pct >= 95.0:
        return "yellow"
    return "red"


def matrix(report: GapReport, by: str = "auto") -> Table:
    """ids x months (or years): percent of expected sessions with a row, coloured."""
    months = sorted({c["month"] for c in report.completeness})
    if by == "auto":
        by = "month" if len(months) <= 12 else "year"
    key = (lambda d: d.strftime("%Y-%m")) if by == "month" else (lambda d: str(d.year))
    columns = sorted({key(m) for m in months})
    cells: dict[tuple[int, str], list[int]] = {}
    for c in report.completeness:
        acc = cells.setdefault((c["id"], key(c["month"])), [0, 0])
        acc[0] += c["expected_sessions"]
        acc[1] += c["observed_rows"]
    table = Table(title=f"source completeness by {by} (% of expected sessions with a row), as of "
                        f"{report.as_of:%Y-%m-%d %H:%M} UTC", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("symbol")
    table.add_column("calendar")
    for col in columns:
        table.add_column(col, justify="right")
    table.add_column("total", justify="right")
    calendars_by_id = {c["id"]: c["calendar"] for c in report.completeness}
    for asset_id in report.ids:
        row: list[Any] = [str(asset_id), report.assets.get(asset_id, Asset(asset_id)).symbol or "",
                          calendars_by_id.get(asset_id, "")]
        tot = [0, 0]
        for col in columns:
            exp, obs = cells.get((asset_id, col), [0, 0])
            tot[0] += exp
            tot[1] += obs
            pct = 100.0 * obs / exp if exp else None
            row.append(Text("" if pct is None else f"{pct:.1f}", style=_style(pct)))
        pct = 100.0 * tot[1] / tot[0] if tot[0] else None
        row.append(Text("" if pct is None else f"{pct:.1f}", style=_style(pct)))
        table.add_row(*row)
    return table


def gap_table(report: GapReport, limit: int = 50) -> Table:
    table = Table(title=f"gaps ({len(report.gaps)})", title_justify="left")
    for name, justify in (("id", "right"), ("symbol", "left"), ("calendar", "left"), ("first missing", "left"),
                          ("last missing", "left"), ("sessions", "right"), ("days", "right"), ("severity", "left")):
        table.add_column(name, justify=justify)
    colour = {"INFO": "dim", "WARNING": "yellow", "CRITICAL": "red"}
    ordered = sorted(report.gaps, key=lambda g: (-g["gap_days"], g["id"], g["first_missing_session"]))
    for g in ordered[:limit]:
        trailing = " (newest)" if g["is_trailing"] else ""
        table.add_row(str(g["id"]), report.assets.get(g["id"], Asset(g["id"])).symbol or "", g["calendar"],
                      str(g["first_missing_session"]), str(g["last_missing_session"]) + trailing,
                      str(g["sessions_missing"]), str(g["gap_days"]),
                      Text(g["severity"], style=colour.get(g["severity"], "")))
    if len(ordered) > limit:
        table.caption = f"{len(ordered) - limit} more in the JSON file"
    return table


def write_json(report: GapReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def alert_for(report: GapReport) -> alertmod.Alert | None:
    """One alert for the worst gap: CRITICAL past CRITICAL_DAYS days, WARNING past WARNING_SESSIONS."""
    worst = [g for g in report.gaps if g["severity"] in ("WARNING", "CRITICAL")]
    if not worst:
        return None
    severity = "CRITICAL" if any(g["severity"] == "CRITICAL" for g in worst) else "WARNING"
    worst.sort(key=lambda g: (-g["gap_days"], g["id"]))
    lines = [f"id {g['id']} ({g['calendar']}): {g['first_missing_session']} .. {g['last_missing_session']}, "
             f"{g['sessions_missing']} sessions / {g['gap_days']} days" for g in worst]
    return alertmod.Alert(severity, f"{len(worst)} source gap(s), longest {worst[0]['gap_days']} days", lines)


def over_threshold(report: GapReport, max_gap_days: int | None) -> list[dict[str, Any]]:
    if max_gap_days is None:
        return []
    return [g for g in report.gaps if g["gap_days"] > max_gap_days]


def parse_as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def last_complete_day(report_as_of: datetime) -> date:
    """The newest 24/7 day that is complete at as_of (UTC)."""
    return report_as_of.astimezone(timezone.utc).date() - timedelta(days=1)
