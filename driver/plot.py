"""`driver plot`: one id and timeframe as an interactive candlestick chart.

The chart is one self-contained HTML file (plotly.js inline, nothing fetched when it is viewed):
candlesticks of the completed bars, the bar-to-date snapshot of the bar still in progress drawn
apart (shaded up to the end of its window), partial-start bars of the anchored families shaded,
the family's EMAs (bar-space values at the bar closes, the daily preview between them, the
daily-space paths), volume below, missing days and 1D rejects marked. `--png` renders the same
figure to a PNG with kaleido and the system Chromium.

Every value that reaches SQL is validated first (family and timeframe against fixed lists and
the dim_timeframe seed, the id as an integer); table names come from FAMILIES only and are quoted
with psycopg.sql; values are parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from psycopg import sql

from .db import Connection
from .filters import FilterError, known_timeframes, parse_periods


class PlotError(ValueError):
    """A plot request that cannot be drawn; `usage` = the arguments were wrong (exit 2)."""

    def __init__(self, message: str, usage: bool = True):
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Family:
    name: str
    bars: str  # the family's snapshot-bar table
    emas: tuple[str, ...]  # its EMA tables
    pattern: str  # the timeframe labels it holds (bars.md §2.2 naming)

    def has_tf(self, tf: str) -> bool:
        return re.fullmatch(self.pattern, tf) is not None  # multi_tf's [0-9]+D includes 1D

    def bar_table(self, tf: str) -> str:
        return "price_bars_1d" if tf == "1D" else self.bars


# Order = preference when a timeframe belongs to several families (1M_CAL: cal_iso before cal_us).
FAMILIES = {f.name: f for f in (
    Family("multi_tf", "price_bars_multi_tf", ("ema_multi_tf", "ema_multi_tf_v2"), r"[0-9]+D"),
    Family("cal_iso", "price_bars_multi_tf_cal_iso", ("ema_multi_tf_cal_iso",), r"[0-9]+W_CAL_ISO|[0-9]+[MY]_CAL"),
    Family("cal_us", "price_bars_multi_tf_cal_us", ("ema_multi_tf_cal_us",), r"[0-9]+W_CAL_US|[0-9]+[MY]_CAL"),
    Family("cal_anchor_iso", "price_bars_multi_tf_cal_anchor_iso", ("ema_multi_tf_cal_anchor_iso",),
           r"[0-9]+W_CAL_ANCHOR_ISO|[0-9]+[MY]_CAL_ANCHOR"),
    Family("cal_anchor_us", "price_bars_multi_tf_cal_anchor_us", ("ema_multi_tf_cal_anchor_us",),
           r"[0-9]+W_CAL_ANCHOR_US|[0-9]+[MY]_CAL_ANCHOR"),
)}
DUAL_EMAS = {"ema_multi_tf_cal_us", "ema_multi_tf_cal_iso", "ema_multi_tf_cal_anchor_us", "ema_multi_tf_cal_anchor_iso"}
DEFAULT_PERIODS = (20, 50)
DEFAULT_DAYS = 365
PERIOD_COLORS = ("#1f77b4", "#9467bd", "#e377c2", "#17becf", "#bcbd22", "#8c564b", "#7f7f7f", "#d62728")
V2_COLORS = ("#ff7f0e", "#2ca02c", "#8c564b", "#bcbd22", "#17becf", "#e377c2", "#7f7f7f", "#d62728")


def family_by_name(name: str) -> Family:
    """A family by its short name (cal_iso) or its bar table (price_bars_multi_tf_cal_iso)."""
    key = name.strip()
    for prefix in ("price_bars_", "ema_"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    key = {"multi_tf_v2": "multi_tf"}.get(key, key)
    key = key[len("multi_tf_"):] if key.startswith("multi_tf_") else key
    if key not in FAMILIES:
        raise PlotError(f"--family: unknown family {name!r}; one of {', '.join(FAMILIES)}")
    return FAMILIES[key]


def check_tf(tf: str, family: Family | None) -> Family:
    """The family that draws tf (the given one, or the first that holds it)."""
    if tf not in known_timeframes():
        close = [k for k in known_timeframes() if k.lower() == tf.lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise PlotError(f"--tf: unknown timeframe {tf!r}{hint}; see seeds/dim_timeframe.csv")
    if family is not None:
        if not family.has_tf(tf):
            owners = [f.name for f in FAMILIES.values() if f.has_tf(tf)]
            raise PlotError(f"--tf: {tf} is not a timeframe of family {family.name} "
                            f"(it belongs to {', '.join(owners) or 'no bar family'})")
        return family
    for candidate in FAMILIES.values():
        if candidate.has_tf(tf):
            return candidate
    raise PlotError(f"--tf: {tf} belongs to no bar family (intraday or unused timeframe)")


def parse_day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise PlotError(f"{option} must be YYYY-MM-DD, got {text!r}") from None


@dataclass
class ChartSpec:
    id: int
    family: Family
    tf: str
    periods: list[int]
    start: date  # first day shown (bars closing on or after it)
    end: date  # last day shown
    notes: list[str] = field(default_factory=list)

    @property
    def bar_table(self) -> str:
        return self.family.bar_table(self.tf)

    @property
    def window(self) -> tuple[datetime, datetime]:
        """[start 00:00 UTC, end + 1 day 00:00 UTC)."""
        return (datetime.combine(self.start, time(0), timezone.utc),
                datetime.combine(self.end + timedelta(days=1), time(0), timezone.utc))

    @property
    def slug(self) -> str:
        return f"{self.id}_{self.family.name}_{self.tf}"


def _ident(table: str) -> sql.Composable:
    return sql.Identifier(table)


def _connect(connection: Connection):
    """A connection whose search_path is the models' schema (the names below are unqualified)."""
    conn = connection.connect()
    conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(connection.schema)))
    return conn


def _exists(conn, table: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (sql.Identifier(table).as_string(conn),)).fetchone()[0]


def id_timeframes(conn, family: Family, asset_id: int) -> list[str]:
    """The family's timeframes that have bars for the id, in dim_timeframe order."""
    tfs = {row[0] for row in conn.execute(
        sql.SQL("select distinct tf from {} where id = %s").format(_ident(family.bars)), (asset_id,))}
    if family.name == "multi_tf" and conn.execute("select 1 from price_bars_1d where id = %s limit 1",
                                                  (asset_id,)).fetchone():
        tfs.add("1D")
    order = known_timeframes()
    return sorted(tfs, key=lambda t: (int(order[t]["sort_order"]), t) if t in order else (1 << 30, t))


def resolve(connection: Connection, asset_id: int, family: str | None = None, tf: str | None = None,
            periods: str | None = None, date_from: str | None = None, date_to: str | None = None) -> ChartSpec:
    """Validate the request and fill in the defaults (family multi_tf, the id's first timeframe of
    the family, the last 365 days up to the id's newest bar, periods 20 and 50)."""
    if asset_id < 0 or asset_id > 2**31 - 1:
        raise PlotError(f"--id: {asset_id} is out of range")
    fam = family_by_name(family) if family else None
    tf = tf.strip() if tf else None
    if tf:
        fam = check_tf(tf, fam)
    fam = fam or FAMILIES["multi_tf"]
    try:
        period_list = parse_periods(periods) if periods is not None else list(DEFAULT_PERIODS)
    except FilterError as exc:
        raise PlotError(str(exc)) from None
    start, end = parse_day(date_from, "--from"), parse_day(date_to, "--to")
    if start and end and start > end:
        raise PlotError(f"--from {start} is after --to {end}")
    with _connect(connection) as conn:
        for table_name in {fam.bar_table(tf) if tf else fam.bars, "price_bars_1d"}:
            if not _exists(conn, table_name):
                raise PlotError(f"table {table_name} does not exist yet (driver refresh --all builds it)", usage=False)
        if tf is None:
            available = id_timeframes(conn, fam, asset_id)
            if not available:
                raise PlotError(f"id {asset_id} has no bars in {fam.bars}", usage=False)
            tf = available[0]
        table = _ident(fam.bar_table(tf))
        newest = conn.execute(sql.SQL("select max(time_close) from {} where id = %s and tf = %s").format(table),
                              (asset_id, tf)).fetchone()[0]
        if newest is None:
            available = id_timeframes(conn, fam, asset_id)
            listed = ", ".join(available[:12]) + (" ..." if len(available) > 12 else "")
            raise PlotError(f"id {asset_id} has no {tf} bars in {fam.bar_table(tf)}"
                            + (f"; its timeframes there: {listed}" if available else ""), usage=False)
    newest_day = newest.astimezone(timezone.utc).date()
    if end is None:
        end = min(newest_day, start + timedelta(days=DEFAULT_DAYS - 1)) if start else newest_day
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    return ChartSpec(asset_id, fam, tf, period_list, start, end)


# ------------------------------------------------------------------ data


@dataclass
class Bar:
    time_open: datetime
    time_close: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    bar_seq: int
    is_partial_start: bool
    is_partial_end: bool
    is_missing_days: bool
    count_missing_days: int
    first_missing_day: date | None
    last_missing_day: date | None
    count_days: int
    count_days_remaining: int


@dataclass
class EmaSeries:
    table: str
    period: int
    kind: str  # bar | preview | daily | v2
    ts: list[datetime]
    values: list[float]


@dataclass
class ChartData:
    spec: ChartSpec
    bars: list[Bar]  # completed bars in the window, oldest first
    in_progress: Bar | None  # the bar-to-date snapshot as of the window's last day
    gaps: list[tuple[datetime, datetime, int]]  # 1D: (previous close, next close, missing days)
    rejects: list[tuple[datetime, str, float | None]]  # 1D rejects: (timestamp, reason, y)
    emas: list[EmaSeries]

    @property
    def candles(self) -> int:
        return len(self.bars) + (1 if self.in_progress else 0)


BAR_COLUMNS = ("time_open, time_close, open, high, low, close, volume, bar_seq, is_partial_start, is_partial_end, "
               "is_missing_days, count_missing_days, first_missing_day, last_missing_day, count_days, "
               "count_days_remaining")
DAILY_COLUMNS = ("time_open, time_close, open, high, low, close, volume, bar_seq, false, false, false, 0, "
                 "null::date, null::date, 1, 0")


def fetch(connection: Connection, spec: ChartSpec) -> ChartData:
    lo, hi = spec.window
    table = _ident(spec.bar_table)
    cols = sql.SQL(DAILY_COLUMNS if spec.tf == "1D" else BAR_COLUMNS)
    params = {"id": spec.id, "tf": spec.tf, "lo": lo, "hi": hi, "periods": spec.periods}
    with _connect(connection) as conn:
        rows = conn.execute(sql.SQL(
            "select {cols} from {t} where id = %(id)s and tf = %(tf)s and time_close >= %(lo)s "
            "and time_close < %(hi)s and not is_partial_end order by time_close").format(cols=cols, t=table),
            params).fetchall()
        bars = [Bar(*r) for r in rows]
        last = conn.execute(sql.SQL(
            "select {cols} from {t} where id = %(id)s and tf = %(tf)s and time_close >= %(lo)s "
            "and time_close < %(hi)s order by time_close desc limit 1").format(cols=cols, t=table), params).fetchone()
        in_progress = Bar(*last) if last is not None and last[9] else None
        gaps = []
        if spec.tf == "1D":
            gaps = [(a, b, int(n)) for a, b, n in conn.execute(
                "select prev_close, time_close, (time_close at time zone 'UTC')::date "
                "- (prev_close at time zone 'UTC')::date - 1 "
                "from (select time_close, lag(time_close) over (order by time_close) as prev_close "
                "      from price_bars_1d where id = %(id)s) as b "
                "where prev_close is not null and time_close - prev_close > interval '36 hours' "
                "and time_close >= %(lo)s and prev_close < %(hi)s order by time_close", params)]
        rejects = [] if not _exists(conn, "price_bars_1d_rejects") else conn.execute(
            'select r."timestamp", r.reason, coalesce((select b.close from price_bars_1d as b where b.id = r.id '
            'and b."timestamp" <= r."timestamp" order by b."timestamp" desc limit 1), (select b.close from '
            'price_bars_1d as b where b.id = r.id and b."timestamp" > r."timestamp" order by b."timestamp" limit 1), '
            'r.close) from price_bars_1d_rejects as r where r.id = %(id)s and r."timestamp" >= %(lo)s '
            'and r."timestamp" < %(hi)s order by r."timestamp"', params).fetchall()
        emas: list[EmaSeries] = []
        missing: list[str] = []
        for ema_table in spec.family.emas:
            if not _exists(conn, ema_table):
                missing.append(f"{ema_table} does not exist yet: no EMAs from it")
                continue
            dual = ema_table in DUAL_EMAS
            extra = sql.SQL(", ema_bar, roll_bar" if dual else ", null::double precision, null::boolean")
            data = conn.execute(sql.SQL(
                "select period, ts, ema, roll{extra} from {t} where id = %(id)s and tf = %(tf)s "
                "and period = any(%(periods)s) and ts >= %(lo)s and ts < %(hi)s order by period, ts").format(
                    extra=extra, t=_ident(ema_table)), params).fetchall()
            found = sorted({r[0] for r in data})
            absent = [p for p in spec.periods if p not in found]
            if absent:
                missing.append(f"{ema_table}: no {spec.tf} rows for period(s) {', '.join(map(str, absent))} "
                               f"in the window")
            emas += _series(ema_table, dual, data)
    spec.notes += missing
    return ChartData(spec, bars, in_progress, gaps, [(t, r, y) for t, r, y in rejects], emas)


def _series(table: str, dual: bool, rows: list[tuple]) -> list[EmaSeries]:
    """Per period: the bar-space values at the closes (roll = false), the daily preview between
    them (only when there are days between closes) and, for v2 and the dual families, the
    daily-space path."""
    out: list[EmaSeries] = []
    by_period: dict[int, list[tuple]] = {}
    for row in rows:
        by_period.setdefault(row[0], []).append(row)
    for period, items in by_period.items():
        if table == "ema_multi_tf_v2":
            out.append(EmaSeries(table, period, "v2", [r[1] for r in items], [r[2] for r in items]))
            continue
        value = 4 if dual else 2  # ema_bar for the dual families, ema otherwise
        roll = 5 if dual else 3
        closes = [(r[1], r[value]) for r in items if not r[roll] and r[value] is not None]
        if closes:
            out.append(EmaSeries(table, period, "bar", [t for t, _ in closes], [v for _, v in closes]))
        if any(r[roll] for r in items):
            preview = [(r[1], r[value]) for r in items if r[value] is not None]
            out.append(EmaSeries(table, period, "preview", [t for t, _ in preview], [v for _, v in preview]))
        if dual:
            daily = [(r[1], r[2]) for r in items if r[2] is not None]
            if daily:
                out.append(EmaSeries(table, period, "daily", [t for t, _ in daily], [v for _, v in daily]))
    return out


# ------------------------------------------------------------------ figure

EMA_LABELS = {
    "bar": "EMA {p} bar-space (at closes)",
    "preview": "EMA {p} daily preview",
    "daily": "EMA {p} daily-space",
    "v2": "v2 EMA {p} daily-space",
}
EMA_STYLES = {
    "bar": {"mode": "lines+markers", "line": {"width": 2}, "marker": {"size": 5}},
    "preview": {"mode": "lines", "line": {"width": 1, "dash": "dot"}},
    "daily": {"mode": "lines", "line": {"width": 1, "dash": "dash"}},
    "v2": {"mode": "lines", "line": {"width": 1.5, "dash": "dashdot"}},
}


def _hover(bar: Bar) -> str:
    text = (f"bar {bar.bar_seq}, {bar.count_days} day(s)"
            + (f", {bar.count_days_remaining} to go" if bar.is_partial_end else ""))
    if bar.is_missing_days:
        text += f"<br>{bar.count_missing_days} missing day(s) {bar.first_missing_day} .. {bar.last_missing_day}"
    if bar.is_partial_start:
        text += "<br>partial start"
    return text


def _candles(go, bars: list[Bar], name: str, **style):
    return go.Candlestick(
        x=[b.time_close for b in bars], open=[b.open for b in bars], high=[b.high for b in bars],
        low=[b.low for b in bars], close=[b.close for b in bars], text=[_hover(b) for b in bars],
        name=name, **style)


def figure(data: ChartData):
    """The plotly figure: row 1 prices (candles, EMAs, markers), row 2 volume."""
    import plotly.graph_objects as go  # noqa: PLC0415 (slow import)
    from plotly.subplots import make_subplots  # noqa: PLC0415

    spec = data.spec
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.03)
    full = [b for b in data.bars if not b.is_partial_start]
    partial_start = [b for b in data.bars if b.is_partial_start]
    if full:
        fig.add_trace(_candles(go, full, "completed bars"), row=1, col=1)
    if partial_start:
        fig.add_trace(_candles(go, partial_start, "partial-start bars (shaded)", opacity=0.55,
                               increasing={"line": {"color": "#7cb342"}, "fillcolor": "rgba(124,179,66,0.35)"},
                               decreasing={"line": {"color": "#e57373"}, "fillcolor": "rgba(229,115,115,0.35)"}),
                      row=1, col=1)
        for b in partial_start:
            fig.add_vrect(x0=b.time_open, x1=b.time_close, fillcolor="#9e9e9e", opacity=0.15, line_width=0,
                          row=1, col=1)
    if data.in_progress:
        b = data.in_progress
        fig.add_trace(_candles(go, [b], f"in progress: bar to date as of {b.time_close:%Y-%m-%d}",
                               increasing={"line": {"color": "#ef6c00"}, "fillcolor": "rgba(255,167,38,0.25)"},
                               decreasing={"line": {"color": "#6a1b9a"}, "fillcolor": "rgba(171,71,188,0.25)"}),
                      row=1, col=1)
        fig.add_vrect(x0=b.time_open, x1=b.time_close + timedelta(days=b.count_days_remaining),
                      fillcolor="#ffb74d", opacity=0.15, line_width=0, row=1, col=1,
                      annotation_text="in progress", annotation_position="top left")
    for s in data.emas:
        palette = V2_COLORS if s.kind == "v2" else PERIOD_COLORS
        color = palette[spec.periods.index(s.period) % len(palette)] if s.period in spec.periods else "#555"
        style = {k: (dict(v) if isinstance(v, dict) else v) for k, v in EMA_STYLES[s.kind].items()}
        style["line"]["color"] = color
        if "marker" in style:
            style["marker"]["color"] = color
            if len(s.ts) > 150:  # dots only where they can be told apart
                style["mode"] = "lines"
        fig.add_trace(go.Scatter(x=s.ts, y=s.values, name=EMA_LABELS[s.kind].format(p=s.period),
                                 legendgroup=f"{s.table}:{s.period}", hovertemplate="%{y:.6g}", **style),
                      row=1, col=1)
    flagged = [b for b in data.bars + ([data.in_progress] if data.in_progress else []) if b.is_missing_days]
    if flagged or data.gaps:
        xs = [b.time_close for b in flagged] + [g[1] for g in data.gaps]
        ys = [b.high for b in flagged] + [_close_before(data, g[0]) for g in data.gaps]
        texts = ([f"{b.count_missing_days} missing day(s) {b.first_missing_day} .. {b.last_missing_day}"
                  for b in flagged] + [f"{g[2]} missing day(s) before {g[1]:%Y-%m-%d}" for g in data.gaps])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="missing days", text=texts,
                                 hovertemplate="%{text}<extra></extra>",
                                 marker={"symbol": "triangle-down", "size": 11, "color": "#d32f2f"}), row=1, col=1)
        for prev, nxt, _n in data.gaps:
            fig.add_vrect(x0=prev, x1=nxt, fillcolor="#e53935", opacity=0.12, line_width=0, row=1, col=1)
    if data.rejects:
        fig.add_trace(go.Scatter(x=[r[0] for r in data.rejects], y=[r[2] for r in data.rejects], mode="markers",
                                 name="1D rejects", text=[r[1] for r in data.rejects],
                                 hovertemplate="rejected: %{text}<extra></extra>",
                                 marker={"symbol": "x", "size": 12, "color": "#000000"}), row=1, col=1)
    shown = data.bars + ([data.in_progress] if data.in_progress else [])
    if shown:
        fig.add_trace(go.Bar(x=[b.time_close for b in shown], y=[b.volume for b in shown], name="volume",
                             marker={"color": ["#ffa726" if b.is_partial_end else "#90a4ae" for b in shown]},
                             showlegend=False), row=2, col=1)
    title = (f"id {spec.id} · {spec.tf} · {spec.bar_table} · {spec.start} to {spec.end}"
             f"<br><sup>{len(data.bars)} completed bar(s)"
             + (", 1 in progress" if data.in_progress else "")
             + f"; EMAs from {', '.join(spec.family.emas)}; x = bar close (UTC)</sup>")
    fig.update_layout(title={"text": title}, template="plotly_white", height=760, hovermode="x unified",
                      legend={"orientation": "h", "y": -0.08}, margin={"l": 60, "r": 30, "t": 80, "b": 40})
    half = timedelta(days=max(int(known_timeframes().get(spec.tf, {}).get("tf_days_nominal") or 1), 1) / 2 + 1)
    right = spec.window[1]
    if data.in_progress:
        right = max(right, data.in_progress.time_close + timedelta(days=data.in_progress.count_days_remaining))
    fig.update_xaxes(rangeslider_visible=False, range=[spec.window[0] - half, right + half])
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    return fig


def _close_before(data: ChartData, instant: datetime) -> float | None:
    before = [b.close for b in data.bars if b.time_close <= instant]
    return before[-1] if before else (data.bars[0].close if data.bars else None)


def write_html(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True,
                   config={"displaylogo": False, "responsive": True})
    return path


def write_png(fig, path: Path, width: int = 1400, height: int = 760) -> Path:
    """PNG through kaleido with the system Chromium (no MathJax, plotly.js from the local package)."""
    import kaleido  # noqa: PLC0415
    import plotly  # noqa: PLC0415

    from . import browser  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    with browser.temp_dir() as tmp:
        kaleido.write_fig_sync(fig, path=str(path), opts={"format": "png", "width": width, "height": height},
                               kopts={"mathjax": False, "plotlyjs": str(plotly_js),
                                      "path": str(browser.launcher(Path(tmp)))})
    return path


def default_out(spec: ChartSpec) -> Path:
    return Path("charts") / f"{spec.slug}.html"


def plot(connection: Connection, spec: ChartSpec, out: Path | None = None, png: bool = False) -> tuple[ChartData, list[Path]]:
    data = fetch(connection, spec)
    fig = figure(data)
    html = write_html(fig, out or default_out(spec))
    paths = [html]
    if png:
        paths.append(write_png(fig, html.with_suffix(".png")))
    return data, paths
