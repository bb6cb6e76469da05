"""`driver report`: one static HTML page about the database (DIR/index.html, CSS inline, no script).

Sections: the last refresh (rows and seconds per model, data tests, warnings), freshness per id
(asset_freshness), a completeness heatmap of ids x months (the source_completeness model when it
exists, else the days of price_bars_1d), rejects by reason (price_bars_1d_rejects, ema_rejects),
exact row counts and sizes of every table, links to per-id charts (DIR/charts/, written here with
driver/plot.py) and to the dbt docs (DIR/docs/ when `driver docs` or `--docs` wrote them).

Functions here return data or HTML; cli.py prints. Every relation name is quoted with psycopg.sql.
"""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from psycopg import sql

from .db import PROJECT_DIR, Connection, mask_secrets

# ------------------------------------------------------------------ the last refresh


@dataclass
class ModelRun:
    model: str
    status: str | None
    rows: int | None
    seconds: float | None
    full_build: bool | None = None
    recorded_at: datetime | None = None


@dataclass
class RefreshSummary:
    source: str  # where the figures come from
    finished_at: str | None
    models: list[ModelRun] = field(default_factory=list)
    tests: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def target_dir() -> Path:
    return Path(os.environ.get("DBT_TARGET_PATH", PROJECT_DIR / "target"))


def last_refresh_summary(connection: Connection, outcome=None) -> RefreshSummary | None:
    """The last refresh, the one place that knows where it is recorded (adapt here when the
    bookkeeping changes). With `outcome` (a RefreshOutcome, after `driver refresh --report`) it is
    that refresh; otherwise: rows per model from each model's newest barsmith_run_log row, seconds,
    statuses, data tests and warnings from dbt's target/run_results.json (the last invocation)."""
    if outcome is not None:
        from . import report  # noqa: PLC0415

        models = [ModelRun(name, status, written, secs)
                  for _stage, name, status, written, secs in report.model_rows(outcome)]
        warnings = [f"id {s.id} skipped for EMAs and features: {s.reason}" for s in outcome.stale]
        warnings += [f"stage {st.stage} skipped: {st.skipped}" for st in outcome.stages if st.skipped]
        warnings += [f"test {n.name}: warn" for inv in outcome.invocations for n in inv.nodes
                     if n.resource_type == "test" and n.status == "warn"]
        failures = [f"{n.resource_type} {n.name}: {n.status}" for n in outcome.failed_nodes]
        failures += [f"error: {outcome.error}"] if outcome.error else []
        return RefreshSummary("this refresh (driver refresh --report)", datetime.now(timezone.utc).isoformat(
            timespec="seconds"), models, report.test_counts(outcome.invocations), warnings, failures)

    logged: dict[str, tuple] = {}
    with connection.connect() as conn:
        if _exists(conn, connection.schema, "barsmith_run_log"):
            for model, written, full, recorded in conn.execute(sql.SQL(
                    "select distinct on (model) model, rows_written, full_build, recorded_at from {} "
                    "order by model, recorded_at desc").format(sql.Identifier(connection.schema, "barsmith_run_log"))):
                logged[model] = (written, full, recorded)
    results = _run_results(target_dir() / "run_results.json")
    if not logged and results is None:
        return None
    summary = RefreshSummary("barsmith_run_log (rows) and target/run_results.json (seconds, tests)",
                             results["generated_at"] if results else None)
    seen = set()
    for res in (results or {}).get("results", []):
        kind, _project, name = (res["unique_id"].split(".") + ["", ""])[:3]
        if kind in ("model", "seed", "snapshot"):
            written, full, recorded = logged.get(name, (None, None, None))
            summary.models.append(ModelRun(name, res["status"], written, res["execution_time"], full, recorded))
            seen.add(name)
        elif kind == "test":
            summary.tests[res["status"]] = summary.tests.get(res["status"], 0) + 1
            if res["status"] == "warn":
                summary.warnings.append(f"test {name}: {res.get('failures')} row(s)")
            elif res["status"] in ("fail", "error"):
                summary.failures.append(f"test {name}: {res['status']}")
        if kind != "test" and res["status"] in ("error", "runtime error"):
            summary.failures.append(f"{kind} {name}: {res['status']}")
    for name, (written, full, recorded) in sorted(logged.items()):
        if name not in seen:
            summary.models.append(ModelRun(name, None, written, None, full, recorded))
    return summary


def _run_results(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("args", {}).get("which") not in ("build", "run", "test", "seed", "retry"):
        return None  # e.g. a docs generate or compile: not a refresh
    return {"generated_at": data.get("metadata", {}).get("generated_at"), "results": [
        {"unique_id": r.get("unique_id", ""), "status": str(r.get("status")), "execution_time": r.get("execution_time"),
         "failures": r.get("failures")} for r in data.get("results", [])]}


# ------------------------------------------------------------------ database figures


@dataclass
class ReportData:
    generated_at: datetime
    database: str
    refresh: RefreshSummary | None
    freshness: list[dict]
    completeness_source: str
    completeness: list[tuple[int, date, int, int]]  # id, month, observed, expected
    rejects_1d: list[tuple[str, int, int]]  # reason, rows, ids
    rejects_ema: list[tuple[str, str, int, int]]  # source table, violation, rows, ids
    tables: list[tuple[str, int, int, int, int]]  # name, rows, total bytes, table bytes, index bytes
    charts: dict[int, str] = field(default_factory=dict)  # id -> relative link
    docs_link: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _regclass(conn, schema: str, name: str) -> str:
    return sql.Identifier(schema, name).as_string(conn)


def _exists(conn, schema: str, name: str) -> bool:
    return conn.execute("select to_regclass(%s)", (_regclass(conn, schema, name),)).fetchone()[0] is not None


def _columns(conn, schema: str, name: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
        (schema, name))}


def freshness(conn, schema: str) -> list[dict]:
    if not _exists(conn, schema, "asset_freshness"):
        return []
    cur = conn.execute(sql.SQL("select * from {} order by id").format(sql.Identifier(schema, "asset_freshness")))
    names = [d.name for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


COMPLETENESS_FROM_1D = """
with days as (
    select id, (time_close at time zone 'UTC')::date as day from {bars}
),
span as (
    select id, min(day) as first_day, max(day) as last_day from days group by id
),
months as (
    select s.id, m::date as month,
           least(s.last_day, (m + interval '1 month - 1 day')::date) - greatest(s.first_day, m::date) + 1 as expected
    from span as s
    cross join lateral generate_series(date_trunc('month', s.first_day), s.last_day, interval '1 month') as m
),
observed as (
    select id, date_trunc('month', day)::date as month, count(*) as observed from days group by 1, 2
)
select m.id, m.month, coalesce(o.observed, 0)::integer, m.expected::integer
from months as m
left join observed as o on o.id = m.id and o.month = m.month
order by m.id, m.month
"""


def completeness(conn, schema: str) -> tuple[str, list[tuple[int, date, int, int]]]:
    """(label, rows of id, month, observed, expected). source_completeness (expected sessions of
    the id's calendar) when that model exists with the columns read here; else the 1D bars against
    every calendar day between the id's first and last bar."""
    needed = {"id", "month", "observed_rows", "expected_sessions"}
    if _exists(conn, schema, "source_completeness") and needed <= _columns(conn, schema, "source_completeness"):
        rows = conn.execute(sql.SQL(
            "select id, month::date, sum(observed_rows)::integer, sum(expected_sessions)::integer from {} "
            "group by id, month order by id, month").format(sql.Identifier(schema, "source_completeness"))).fetchall()
        return "source_completeness: source rows / expected sessions of the id's calendar", rows
    if not _exists(conn, schema, "price_bars_1d"):
        return "no price_bars_1d yet", []
    rows = conn.execute(sql.SQL(COMPLETENESS_FROM_1D).format(bars=sql.Identifier(schema, "price_bars_1d"))).fetchall()
    return "price_bars_1d: days with a valid 1D bar / calendar days between the id's first and last bar (UTC)", rows


def rejects(conn, schema: str) -> tuple[list, list]:
    one_d, ema = [], []
    if _exists(conn, schema, "price_bars_1d_rejects"):
        one_d = conn.execute(sql.SQL("select reason, count(*), count(distinct id) from {} group by reason "
                                     "order by 2 desc, 1").format(
            sql.Identifier(schema, "price_bars_1d_rejects"))).fetchall()
    if _exists(conn, schema, "ema_rejects"):
        ema = conn.execute(sql.SQL("select source_table, violation_type, count(*), count(distinct id) from {} "
                                   "group by 1, 2 order by 3 desc, 1, 2").format(
            sql.Identifier(schema, "ema_rejects"))).fetchall()
    return one_d, ema


def tables(conn, schema: str, extra: list[tuple[str, str]] = ()) -> list[tuple[str, int, int, int, int]]:
    """Every table of the schema (and the source table when it lives elsewhere): exact row count,
    total, heap and index bytes."""
    rels = [(schema, r[0]) for r in conn.execute(
        "select c.relname from pg_class as c join pg_namespace as n on n.oid = c.relnamespace "
        "where n.nspname = %s and c.relkind in ('r', 'p', 'm') and not c.relispartition order by c.relname", (schema,))]
    rels += [(s, t) for s, t in extra if (s, t) not in rels and _exists(conn, s, t)]
    out = []
    for rel_schema, name in rels:
        ident = sql.Identifier(rel_schema, name)
        count = conn.execute(sql.SQL("select count(*) from {}").format(ident)).fetchone()[0]
        total, heap, index = conn.execute(
            "select pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass), "
            "pg_indexes_size(%s::regclass)", (_regclass(conn, rel_schema, name),) * 3).fetchone()
        label = name if rel_schema == schema else f"{rel_schema}.{name}"
        out.append((label, int(count), int(total), int(heap), int(index)))
    return out


def collect(connection: Connection, outcome=None) -> ReportData:
    schema = connection.schema
    source = (os.environ.get("BARSMITH_SOURCE_SCHEMA", "public"), os.environ.get("BARSMITH_SOURCE_TABLE", "price_histories"))
    seconds: dict[str, float] = {}
    started = time.monotonic()
    refresh = last_refresh_summary(connection, outcome)
    seconds["last refresh"] = time.monotonic() - started
    with connection.connect() as conn:
        conn.execute("set jit = off")
        step = time.monotonic()
        fresh = freshness(conn, schema)
        seconds["freshness"] = time.monotonic() - step
        step = time.monotonic()
        label, cells = completeness(conn, schema)
        seconds["completeness"] = time.monotonic() - step
        step = time.monotonic()
        one_d, ema = rejects(conn, schema)
        seconds["rejects"] = time.monotonic() - step
        step = time.monotonic()
        sizes = tables(conn, schema, [source])
        seconds["tables"] = time.monotonic() - step
    return ReportData(datetime.now(timezone.utc), mask_secrets(connection.display), refresh, fresh, label, cells,
                      one_d, ema, sizes, seconds=seconds)


def write_charts(connection: Connection, ids: list[int], out_dir: Path) -> dict[int, str]:
    """One default chart per id (1D, the last year, EMAs 20 and 50) in out_dir/charts/, sharing
    one plotly.min.js written beside them; returns id -> link relative to out_dir."""
    from . import plot  # noqa: PLC0415

    links = {}
    for asset_id in ids:
        try:
            spec = plot.resolve(connection, asset_id)
        except plot.PlotError:
            continue  # an id without bars gets no chart
        data = plot.fetch(connection, spec)
        path = out_dir / "charts" / f"{asset_id}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot.figure(data).write_html(str(path), include_plotlyjs="directory", full_html=True,
                                     config={"displaylogo": False, "responsive": True})
        links[asset_id] = f"charts/{asset_id}.html"
    return links


# ------------------------------------------------------------------ HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:13px} table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.stale td{background:#fff3e0} tr.no_bars td{background:#ffebee} .bad{color:#c62828} .warn{color:#ef6c00}
table.heat td{padding:0;width:14px;height:14px;border:1px solid #fff} table.heat th{font-weight:normal;font-size:11px;padding:0 4px}
table.heat th.m{writing-mode:vertical-rl;transform:rotate(180deg);height:52px;padding:2px 0}
.legend span{display:inline-block;width:14px;height:12px;margin:0 2px 0 10px;vertical-align:middle}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _n(value) -> str:
    return "" if value is None else f"{value:,}"


def _bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(value)


def _heat_color(observed: int, expected: int) -> str:
    if expected <= 0:
        return "#e0e0e0"
    share = max(0.0, min(1.0, observed / expected))
    if share >= 1.0:
        return "#2e7d32"
    if share >= 0.9:
        return "#9ccc65"
    if share >= 0.5:
        return "#ffca28"
    return "#e53935"


def _refresh_html(summary: RefreshSummary | None) -> str:
    if summary is None:
        return "<p>No refresh recorded yet (no barsmith_run_log rows, no target/run_results.json).</p>"
    parts = [f'<p class="meta">source: {_e(summary.source)}; finished {_e(summary.finished_at)}</p>']
    tests = ", ".join(f'<span data-tests="{_e(k)}">{v} {_e(k)}</span>' for k, v in sorted(summary.tests.items()))
    parts.append(f"<p>data tests: {tests or 'none in the last invocation'}</p>")
    for w in summary.warnings:
        parts.append(f'<p class="warn" data-warning>warning: {_e(w)}</p>')
    for f in summary.failures:
        parts.append(f'<p class="bad" data-failure>failed: {_e(f)}</p>')
    rows = "".join(
        f'<tr data-model="{_e(m.model)}" data-rows="{"" if m.rows is None else m.rows}">'
        f"<td>{_e(m.model)}</td><td>{_e(m.status)}</td><td class=n>{_n(m.rows)}</td>"
        f"<td class=n>{'' if m.seconds is None else f'{m.seconds:.2f}'}</td>"
        f"<td>{'' if m.full_build is None else ('full' if m.full_build else 'incremental')}</td>"
        f"<td>{'' if m.recorded_at is None else f'{m.recorded_at:%Y-%m-%d %H:%M:%S}'}</td></tr>"
        for m in summary.models)
    parts.append('<table id="refresh"><tr><th>model</th><th>status</th><th class=n>rows written</th>'
                 f"<th class=n>seconds</th><th>build</th><th>written at (UTC)</th></tr>{rows}</table>")
    if any(m.status is None for m in summary.models):
        parts.append('<p class="meta">status and seconds: the last dbt invocation (a refresh runs one per stage); '
                     "rows written: each model's newest barsmith_run_log row</p>")
    return "".join(parts)


def _freshness_html(rows: list[dict], charts: dict[int, str]) -> str:
    if not rows:
        return "<p>asset_freshness does not exist yet (run a refresh).</p>"
    fams = [k for k in rows[0] if k.startswith("last_") and k.endswith("_ts") and k != "last_bar_ts"]
    head = "".join(f"<th>{_e(k[5:-3])}</th>" for k in fams)
    body = []
    for r in rows:
        link = f'<a href="{_e(charts[r["id"]])}">chart</a>' if r["id"] in charts else ""
        fam_cells = "".join(f"<td>{_e(r[k] and r[k].strftime('%Y-%m-%d'))}</td>" for k in fams)
        body.append(
            f'<tr class="{_e(r.get("reason"))}" data-id="{r["id"]}" data-reason="{_e(r.get("reason"))}" '
            f'data-last-bar="{_e(r.get("last_bar_ts") and r["last_bar_ts"].isoformat())}">'
            f'<td class=n>{r["id"]}</td><td>{_e(r.get("reason"))}</td>'
            f'<td>{_e(r.get("last_bar_ts") and r["last_bar_ts"].strftime("%Y-%m-%d %H:%M"))}</td>'
            f'<td class=n>{_e(r.get("staleness_hours"))}</td>{fam_cells}<td>{link}</td></tr>')
    return ('<table id="freshness"><tr><th class=n>id</th><th>status</th><th>newest 1D bar (UTC)</th>'
            f"<th class=n>hours old</th>{head}<th></th></tr>{''.join(body)}</table>")


def _completeness_html(label: str, cells: list[tuple[int, date, int, int]]) -> str:
    if not cells:
        return f"<p>No data ({_e(label)}).</p>"
    months = sorted({c[1] for c in cells})
    ids = sorted({c[0] for c in cells})
    by_key = {(c[0], c[1]): c for c in cells}
    head = "".join(f'<th class="m">{m:%Y-%m}</th>' for m in months)
    body = []
    for asset_id in ids:
        tds = []
        for m in months:
            cell = by_key.get((asset_id, m))
            if cell is None:
                tds.append('<td style="background:#fafafa"></td>')
                continue
            _i, _m, observed, expected = cell
            pct = f"{100 * observed / expected:.1f}%" if expected else "-"
            tds.append(f'<td style="background:{_heat_color(observed, expected)}" data-id="{asset_id}" '
                       f'data-month="{m:%Y-%m}" data-observed="{observed}" data-expected="{expected}" '
                       f'title="id {asset_id} {m:%Y-%m}: {observed}/{expected} ({pct})"></td>')
        body.append(f"<tr><th>{asset_id}</th>{''.join(tds)}</tr>")
    legend = ('<p class="legend">'
              + "".join(f'<span style="background:{c}"></span>{t}' for c, t in (
                  ("#2e7d32", "complete"), ("#9ccc65", "90-99%"), ("#ffca28", "50-89%"), ("#e53935", "under 50%"),
                  ("#fafafa", "outside the id's history")))
              + "</p>")
    return (f'<p class="meta">{_e(label)}; hover a cell for its numbers</p>{legend}'
            f'<table class="heat" id="completeness"><tr><th>id</th>{head}</tr>{"".join(body)}</table>')


def _rejects_html(one_d: list, ema: list) -> str:
    rows_1d = "".join(f'<tr data-kind="1d" data-reason="{_e(r)}" data-rows="{n}"><td>{_e(r)}</td>'
                      f"<td class=n>{n:,}</td><td class=n>{i:,}</td></tr>" for r, n, i in one_d)
    rows_ema = "".join(f'<tr data-kind="ema" data-source="{_e(s)}" data-reason="{_e(v)}" data-rows="{n}">'
                       f"<td>{_e(s)}</td><td>{_e(v)}</td><td class=n>{n:,}</td><td class=n>{i:,}</td></tr>"
                       for s, v, n, i in ema)
    return ('<h3>price_bars_1d_rejects</h3>'
            + (f'<table id="rejects-1d"><tr><th>reason</th><th class=n>rows</th><th class=n>ids</th></tr>{rows_1d}</table>'
               if one_d else "<p>none</p>")
            + '<h3>ema_rejects</h3>'
            + (f'<table id="rejects-ema"><tr><th>table</th><th>violation</th><th class=n>rows</th><th class=n>ids</th>'
               f"</tr>{rows_ema}</table>" if ema else "<p>none</p>"))


def _tables_html(rows: list) -> str:
    body = "".join(f'<tr data-table="{_e(name)}" data-rows="{n}" data-bytes="{total}"><td>{_e(name)}</td>'
                   f"<td class=n>{n:,}</td><td class=n>{_bytes(total)}</td><td class=n>{_bytes(heap)}</td>"
                   f"<td class=n>{_bytes(index)}</td></tr>" for name, n, total, heap, index in rows)
    total = sum(r[2] for r in rows)
    return ('<table id="tables"><tr><th>table</th><th class=n>rows</th><th class=n>total size</th>'
            f'<th class=n>table</th><th class=n>indexes</th></tr>{body}'
            f"<tr><th>all</th><th></th><th class=n>{_bytes(total)}</th><th></th><th></th></tr></table>")


def render(data: ReportData) -> str:
    docs = (f'<a href="{_e(data.docs_link)}">dbt docs</a>' if data.docs_link
            else "dbt docs: not written here (<code>driver report --docs</code> or <code>driver docs --out DIR</code>)")
    charts = " ".join(f'<a href="{_e(link)}">{asset_id}</a>' for asset_id, link in sorted(data.charts.items()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>barsmith report</title><style>{CSS}</style></head><body>
<h1>barsmith report</h1>
<p class="meta">{_e(data.database)} · generated {data.generated_at:%Y-%m-%d %H:%M:%S} UTC · {docs}</p>
<h2>Last refresh</h2>{_refresh_html(data.refresh)}
<h2>Freshness per id</h2>{_freshness_html(data.freshness, data.charts)}
<h2>Completeness (ids x months)</h2>{_completeness_html(data.completeness_source, data.completeness)}
<h2>Rejects by reason</h2>{_rejects_html(data.rejects_1d, data.rejects_ema)}
<h2>Tables</h2>{_tables_html(data.tables)}
<h2>Charts</h2><p id="charts">{charts or "none (driver report --no-charts)"}</p>
<p class="meta">charts: 1D bars of the last year with EMAs 20 and 50; any other view: driver plot --id ID --tf TF</p>
</body></html>
"""


def write(connection: Connection, out_dir: Path, outcome=None, charts: bool = True, docs: bool = False) -> tuple[Path, ReportData]:
    """Collect, write DIR/index.html (and DIR/charts/*.html, DIR/docs/ with docs=True)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = collect(connection, outcome)
    if charts:
        step = time.monotonic()
        ids = [r["id"] for r in data.freshness] or sorted({c[0] for c in data.completeness})
        data.charts = write_charts(connection, ids, out_dir)
        data.seconds["charts"] = time.monotonic() - step
    if docs:
        from . import docs as docsmod  # noqa: PLC0415

        step = time.monotonic()
        docsmod.write_static(connection, out_dir / "docs")
        data.seconds["docs"] = time.monotonic() - step
    if (out_dir / "docs" / "index.html").exists():
        data.docs_link = "docs/index.html"
    path = out_dir / "index.html"
    path.write_text(render(data), encoding="utf-8")
    return path, data
