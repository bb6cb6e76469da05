"""`driver report`, `driver refresh --report` and `driver docs`: the report opens in headless
Chromium without errors or requests, and every number it shows equals a SQL count on the same
database; `dbt docs generate` succeeds and documents the views and the exposures."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driver.cli import app

from .helpers import drop_database, new_database
from .viz_helpers import add_defects, chromium_page, pixel_stddev

runner = CliRunner()

REPORT_JS = """() => {
  const rows = (sel) => [...document.querySelectorAll(sel)].map(e => Object.assign({}, e.dataset));
  return {tables: rows('#tables tr[data-table]'), rejects: rows('tr[data-kind]'), fresh: rows('#freshness tr[data-id]'),
          cells: rows('#completeness td[data-id]'), models: rows('#refresh tr[data-model]'),
          tests: rows('[data-tests]'), links: [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))};
}"""


class Db:
    def __init__(self, connection):
        self.connection = connection

    def query(self, statement, params=None):
        with self.connection.connect() as conn:
            return conn.execute(statement, params).fetchall()

    def execute(self, statement, params=None):
        with self.connection.connect() as conn:
            conn.execute(statement, params)


@pytest.fixture(scope="module")
def refreshed(server, golden_dir, tmp_path_factory):
    """The golden input with a gap and a reject, through `driver refresh --all --report`; then one
    synthetic ema_rejects row (a negative EMA: the golden data's rejects are statistical/price bounds) and `driver report --docs`."""
    tmp = tmp_path_factory.mktemp("report")
    conn_info = new_database(server, "barsmith_report")
    db = Db(conn_info)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BARSMITH_DB_URL", conn_info.url)
        mp.setenv("BARSMITH_LOG_DIR", str(tmp / "logs"))
        mp.setenv("BARSMITH_STATE_DIR", str(tmp / "state"))
        mp.setenv("DBT_TARGET_PATH", str(tmp / "target"))
        res = runner.invoke(app, ["load", str(golden_dir / "price_histories.csv")])
        assert res.exit_code == 0, res.output
        add_defects(db)
        hook = runner.invoke(app, ["refresh", "--all", "--skip-stale-check", "--quiet", "--report",
                                   "--report-dir", str(tmp / "hook")])
        assert hook.exit_code == 0, hook.output
        db.execute("insert into ema_rejects (source_table, id, tf, period, \"timestamp\", ema_value, violation_type) "
                   "values ('ema_multi_tf', 1, '7D', 10, '2024-01-07 23:59:59.999+00', -1, 'negative')")
        res = runner.invoke(app, ["report", "--out", str(tmp / "report"), "--docs"])
        assert res.exit_code == 0, res.output
        yield db, tmp, hook.output, res.output, mp
    drop_database(server, conn_info)


def read_report(path: Path):
    with chromium_page(path, height=1200) as (page, visit):
        data = page.evaluate(REPORT_JS)
        png = page.screenshot(full_page=True)
    return data, visit, png


def test_refresh_report_hook_writes_the_report_of_that_refresh(refreshed):
    db, tmp, hook_output, _out, _mp = refreshed
    assert f"report: {tmp / 'hook' / 'index.html'}" in hook_output
    data, visit, _png = read_report(tmp / "hook" / "index.html")
    assert visit.console_errors == [] and visit.page_errors == [] and visit.requests == [visit.url]
    written = dict(db.query("select model, sum(rows_written)::bigint from barsmith_run_log group by model"))
    shown = {m["model"]: int(m["rows"]) for m in data["models"] if m["rows"] != ""}
    assert {k: shown.get(k) for k in written} == written, "models: rows written as logged by this refresh"
    rebuilt = {k: v for k, v in shown.items() if k not in written}  # seeds and plain tables: every row
    assert rebuilt == {t: db.query(f"select count(*) from {t}")[0][0]
                       for t in ("dim_timeframe", "ema_periods", "assets", "ema_alpha_lookup")}
    assert written["price_bars_1d"] == 2396 and written["ema_multi_tf_cal_iso"] > 0
    tests = {t["tests"] for t in data["tests"]}
    assert "pass" in tests and "fail" not in tests


def test_report_numbers_equal_sql_counts(refreshed):
    db, tmp, _hook, output, _mp = refreshed
    assert "wrote" in output and "3 chart(s)" in output
    data, visit, png = read_report(tmp / "report" / "index.html")
    assert visit.console_errors == [] and visit.page_errors == []
    assert visit.requests == [visit.url], "one file, everything inline"
    assert pixel_stddev(png) > 5

    tables = [r[0] for r in db.query("select tablename from pg_tables where schemaname = 'public'")]
    counts = {t: db.query(f'select count(*) from "{t}"')[0][0] for t in tables}
    assert {r["table"]: int(r["rows"]) for r in data["tables"]} == counts
    assert counts["price_bars_1d_rejects"] == 1 and counts["ema_multi_tf"] > 0

    one_d = {r["reason"]: int(r["rows"]) for r in data["rejects"] if r["kind"] == "1d"}
    assert one_d == dict(db.query("select reason, count(*) from price_bars_1d_rejects group by reason"))
    ema = {(r["source"], r["reason"]): int(r["rows"]) for r in data["rejects"] if r["kind"] == "ema"}
    assert ema == {(s, v): n for s, v, n in db.query(
        "select source_table, violation_type, count(*) from ema_rejects group by 1, 2")}
    assert ema[("ema_multi_tf", "negative")] == 1, "the synthetic row"

    fresh = {int(r["id"]): r["reason"] for r in data["fresh"]}
    assert fresh == dict(db.query("select id, reason from asset_freshness")) and len(fresh) == 3

    days = db.query("select id, (time_close at time zone 'UTC')::date from price_bars_1d")
    observed = Counter((i, d.strftime("%Y-%m")) for i, d in days)
    expected: Counter = Counter()
    for asset_id in {i for i, _d in days}:
        mine = [d for i, d in days if i == asset_id]
        day = min(mine)
        while day <= max(mine):
            expected[(asset_id, day.strftime("%Y-%m"))] += 1
            day += timedelta(days=1)
    cells = {(int(c["id"]), c["month"]): (int(c["observed"]), int(c["expected"])) for c in data["cells"]}
    assert cells == {k: (observed[k], n) for k, n in expected.items()}
    assert cells[(1, "2024-02")] == (25, 29), "the 4-day gap"
    assert cells[(1, "2024-03")] == (30, 31), "the rejected day"

    newest = dict(db.query("select distinct on (model) model, rows_written from barsmith_run_log "
                           "order by model, recorded_at desc"))
    assert {m["model"]: int(m["rows"]) for m in data["models"] if m["rows"] != ""} == newest

    links = data["links"]
    assert "docs/index.html" in links and (tmp / "report" / "docs" / "index.html").exists()
    assert sorted(x for x in links if x.startswith("charts/")) == sorted(f"charts/{i}.html" for i in fresh for _ in (0, 1))


def test_report_charts_open_from_disk_with_the_shared_plotly_file(refreshed):
    db, tmp, _hook, _out, _mp = refreshed
    chart = tmp / "report" / "charts" / "1.html"
    with chromium_page(chart, allow=(chart.parent / "plotly.min.js",)) as (page, visit):
        page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullLayout")
        candles = page.evaluate("() => document.querySelectorAll('g.trace.boxes path.box').length")
    assert visit.console_errors == [] and visit.page_errors == []
    assert visit.requests == [visit.url, (tmp / "report" / "charts" / "plotly.min.js").resolve().as_uri()]
    newest = db.query("select max(time_close) from price_bars_1d where id = 1")[0][0].date()
    assert candles == db.query("select count(*) from price_bars_1d where id = 1 and time_close >= %s",
                               (newest - timedelta(days=364),))[0][0]


def test_dbt_docs_describe_every_model_the_views_columns_and_the_exposures(refreshed):
    _db, tmp, _hook, _out, _mp = refreshed
    docs = tmp / "report" / "docs"
    manifest = json.loads((docs / "manifest.json").read_text())
    catalog = json.loads((docs / "catalog.json").read_text())
    undocumented = [k for k, v in {**manifest["nodes"], **manifest["sources"]}.items()
                    if v["resource_type"] in ("model", "seed", "source") and not v["description"].strip()]
    assert undocumented == []
    for view in ("ema_multi_tf_u", "price_bars_multi_tf_u"):
        node = manifest["nodes"][f"model.barsmith.{view}"]
        built = {c.lower() for c in catalog["nodes"][f"model.barsmith.{view}"]["columns"]}
        described = {c for c, v in node["columns"].items() if v["description"].strip()}
        assert built == described, f"{view}: every column of the view is described"
    exposures = {v["name"]: v for v in manifest["exposures"].values()}
    assert set(exposures) == {"barsmith_report", "barsmith_plot"}
    assert "model.barsmith.asset_freshness" in exposures["barsmith_report"]["depends_on"]["nodes"]
    assert "model.barsmith.ema_multi_tf_cal_iso" in exposures["barsmith_plot"]["depends_on"]["nodes"]
    with chromium_page(docs / "index.html") as (page, visit):
        page.wait_for_selector("text=barsmith_report", state="attached", timeout=20000)
    assert visit.page_errors == []
    assert [u for u in visit.requests if not u.startswith("file:")] == [], "the static docs fetch nothing"


def test_docs_command_writes_the_static_site(refreshed, tmp_path):
    _db, _tmp, _hook, _out, _mp = refreshed
    res = runner.invoke(app, ["docs", "--out", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "site" / "index.html").read_text()
    assert "ema_multi_tf_u" in page and "barsmith_plot" in page


def test_completeness_comes_from_source_completeness_when_that_model_exists(refreshed, tmp_path):
    db, _tmp, _hook, _out, _mp = refreshed
    db.execute("create table source_completeness (id integer, calendar text, month date, expected_sessions integer, "
               "observed_rows integer, extra_rows integer, pct_complete numeric)")
    try:
        db.execute("insert into source_completeness values (1, 'XNYS', '2024-01-01', 21, 20, 0, 95.2), "
                   "(1, 'XNYS', '2024-02-01', 20, 20, 0, 100), (52, '24/7', '2024-01-01', 31, 31, 0, 100)")
        res = runner.invoke(app, ["report", "--out", str(tmp_path), "--no-charts"])
        assert res.exit_code == 0, res.output
        page = (tmp_path / "index.html").read_text()
    finally:
        db.execute("drop table source_completeness")
    cells = re.findall(r'data-id="(\d+)" data-month="([\d-]+)" data-observed="(\d+)" data-expected="(\d+)"', page)
    assert sorted(cells) == [("1", "2024-01", "20", "21"), ("1", "2024-02", "20", "20"), ("52", "2024-01", "31", "31")]
    assert "source_completeness: source rows / expected sessions" in page
    assert "charts/" not in re.sub(r"<p class=\"meta\">charts:.*?</p>", "", page)
