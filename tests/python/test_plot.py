"""`driver plot`: the chart opens in headless Chromium without console errors or any request, and
shows the candles and traces that SQL on the same database says it must; bad arguments are
refused before any query; `--png` renders a non-blank image through kaleido."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from typer.testing import CliRunner

from driver.cli import app

from .helpers import DbtProject, drop_database, new_database
from .viz_helpers import GAP_DAYS, REJECT_DAY, add_defects, chromium_page, pixel_stddev

runner = CliRunner()
CHART_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  return {traces: gd.data.map(t => ({type: t.type, name: t.name, n: (t.x || []).length,
                                     x: (t.x || []).map(String), text: t.text || null})),
          drawnCandles: document.querySelectorAll('g.trace.boxes path.box').length,
          shapes: (gd.layout.shapes || []).length}; }"""


@pytest.fixture(scope="module")
def charted(server, golden_dir, tmp_path_factory):
    """Golden input with a 4-day gap and a rejected row for id 1, built for the families plotted."""
    conn_info = new_database(server, "barsmith_plot")
    project = DbtProject(conn_info, tmp_path_factory.mktemp("plot"))
    project.load(golden_dir / "price_histories.csv")
    add_defects(project)
    project.build(select="+ema_multi_tf_cal_iso +ema_multi_tf +ema_multi_tf_v2 +ema_multi_tf_cal_anchor_us "
                         "price_bars_1d_rejects")
    yield project
    drop_database(server, conn_info)


@pytest.fixture()
def cli(charted, monkeypatch):
    monkeypatch.setenv("BARSMITH_DB_URL", charted.connection.url)
    return lambda *args: runner.invoke(app, ["plot", *args])


def last_year(project, table: str, asset_id: int, tf: str) -> tuple[date, date]:
    newest = project.query(f"select max(time_close) from {table} where id = %s and tf = %s", (asset_id, tf))[0][0]
    end = newest.date()
    return end - timedelta(days=364), end


def expected_ema_traces(project, table: str, dual: bool, asset_id, tf, periods, lo, hi) -> int:
    """Per period: bar-space points at closes, a daily preview when there are days between closes,
    the daily-space path (dual families); v2: one daily-space path."""
    value = "ema_bar" if dual else "ema"
    n = 0
    for p in periods:
        closes, rolls, daily, rows = project.query(
            f"select count(*) filter (where not roll and {value} is not null), count(*) filter (where roll), "
            f"count(*) filter (where ema is not null), count(*) from {table} where id = %s and tf = %s "
            f"and period = %s and ts >= %s and ts < %s", (asset_id, tf, p, lo, hi + timedelta(days=1)))[0]
        if table == "ema_multi_tf_v2":
            n += 1 if rows else 0
        else:
            n += (closes > 0) + (rolls > 0) + (dual and daily > 0)
    return n


def test_week_chart_opens_in_chromium_with_the_expected_candles_and_traces(charted, cli, tmp_path):
    out = tmp_path / "week.html"
    res = cli("--id", "1", "--tf", "1W_CAL_ISO", "--periods", "20,50", "--out", str(out))
    assert res.exit_code == 0, res.output
    start, end = last_year(charted, "price_bars_multi_tf_cal_iso", 1, "1W_CAL_ISO")
    lo, hi = start, end + timedelta(days=1)
    completed, partial_start, missing = charted.query(
        "select count(*), count(*) filter (where is_partial_start), count(*) filter (where is_missing_days) "
        "from price_bars_multi_tf_cal_iso where id = 1 and tf = '1W_CAL_ISO' and not is_partial_end "
        "and time_close >= %s and time_close < %s", (lo, hi))[0]
    newest_partial, newest_missing = charted.query(
        "select is_partial_end, is_missing_days from price_bars_multi_tf_cal_iso where id = 1 and tf = '1W_CAL_ISO' "
        "and time_close < %s order by time_close desc limit 1", (hi,))[0]
    rejects = charted.query("select count(*) from price_bars_1d_rejects where id = 1 and \"timestamp\" >= %s "
                            "and \"timestamp\" < %s", (lo, hi))[0][0]
    emas = expected_ema_traces(charted, "ema_multi_tf_cal_iso", True, 1, "1W_CAL_ISO", [20, 50], start, end)
    assert newest_partial and completed > 40 and emas == 6 and rejects == 1 and missing >= 1
    expected_candles = completed + int(newest_partial)
    expected_traces = ((completed - partial_start > 0) + (partial_start > 0) + int(newest_partial) + emas
                       + int(missing + (newest_partial and newest_missing) > 0) + int(rejects > 0) + 1)

    with chromium_page(out) as (page, visit):
        page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullLayout")
        chart = page.evaluate(CHART_JS)
        png = page.screenshot()
    assert visit.console_errors == [] and visit.page_errors == []
    assert visit.requests == [visit.url], "the page itself is the only request: plotly.js is inline"
    candles = [t for t in chart["traces"] if t["type"] == "candlestick"]
    assert sum(t["n"] for t in candles) == expected_candles
    assert chart["drawnCandles"] == expected_candles
    assert len(chart["traces"]) == expected_traces
    names = [t["name"] for t in chart["traces"]]
    assert any(n.startswith("in progress: bar to date") for n in names)
    assert {"EMA 20 bar-space (at closes)", "EMA 20 daily preview", "EMA 20 daily-space"} <= set(names)
    volume = [t for t in chart["traces"] if t["type"] == "bar"]
    assert len(volume) == 1 and volume[0]["n"] == expected_candles
    assert chart["shapes"] >= 1, "the bar in progress is shaded"
    assert pixel_stddev(png) > 10, "the screenshot shows a chart, not a blank page"


def test_default_chart_is_the_last_year_of_1d_with_gaps_and_rejects_marked(charted, cli, tmp_path):
    out = tmp_path / "daily.html"
    res = cli("--id", "1", "--out", str(out))
    assert res.exit_code == 0, res.output
    start, end = last_year(charted, "price_bars_1d", 1, "1D")
    assert f"1D (price_bars_1d) {start} .. {end}" in res.output
    bars = charted.query("select count(*) from price_bars_1d where id = 1 and time_close >= %s and time_close < %s",
                         (start, end + timedelta(days=1)))[0][0]
    reject = charted.query("select \"timestamp\", reason from price_bars_1d_rejects where id = 1")
    emas = (expected_ema_traces(charted, "ema_multi_tf", False, 1, "1D", [20, 50], start, end)
            + expected_ema_traces(charted, "ema_multi_tf_v2", False, 1, "1D", [20, 50], start, end))
    with chromium_page(out) as (page, visit):
        page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullLayout")
        chart = page.evaluate(CHART_JS)
    assert visit.console_errors == [] and visit.page_errors == [] and visit.requests == [visit.url]
    traces = {t["name"]: t for t in chart["traces"]}
    assert traces["completed bars"]["n"] == bars == chart["drawnCandles"]
    assert len(chart["traces"]) == 1 + emas + 2 + 1  # candles, EMAs, missing days, rejects, volume
    assert [t[1] for t in reject] == ["null_open_close"]
    assert traces["1D rejects"]["n"] == 1 and traces["1D rejects"]["x"][0].startswith(REJECT_DAY)
    gap_end = date.fromisoformat(GAP_DAYS[-1]) + timedelta(days=1)
    assert any(x.startswith(str(gap_end)) for x in traces["missing days"]["x"]), "the 4-day gap is marked"
    assert chart["shapes"] == 2, "the gap and the rejected day are shaded"


def test_anchored_chart_shades_the_partial_first_bar(charted, cli, tmp_path):
    first = charted.query("select min(time_open) from price_bars_multi_tf_cal_anchor_us where id = 1 "
                          "and tf = '1M_CAL_ANCHOR'")[0][0].date()
    out = tmp_path / "anchor.html"
    res = cli("--id", "1", "--family", "cal_anchor_us", "--tf", "1M_CAL_ANCHOR", "--from", str(first), "--out", str(out))
    assert res.exit_code == 0, res.output
    partial = charted.query(
        "select count(*) from price_bars_multi_tf_cal_anchor_us where id = 1 and tf = '1M_CAL_ANCHOR' "
        "and is_partial_start and not is_partial_end and time_close < %s", (first + timedelta(days=365),))[0][0]
    assert partial == 1
    with chromium_page(out) as (page, visit):
        page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullLayout")
        chart = page.evaluate(CHART_JS)
    assert visit.console_errors == [] and visit.requests == [visit.url]
    traces = {t["name"]: t for t in chart["traces"]}
    assert traces["partial-start bars (shaded)"]["n"] == partial
    assert chart["shapes"] >= 1


def test_png_is_written_through_kaleido_and_is_not_blank(charted, cli, tmp_path):
    out = tmp_path / "week.html"
    res = cli("--id", "52", "--tf", "1W_CAL_ISO", "--out", str(out), "--png")
    assert res.exit_code == 0, res.output
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert pixel_stddev(png) > 10


@pytest.mark.parametrize("args, code, message", [
    (["--family", "weekly"], 2, "unknown family 'weekly'"),
    (["--tf", "8X"], 2, "unknown timeframe '8X'"),
    (["--tf", "1w_cal_iso"], 2, "did you mean 1W_CAL_ISO"),
    (["--tf", "1D; drop table price_bars_1d"], 2, "unknown timeframe"),
    (["--family", "cal_us", "--tf", "1W_CAL_ISO"], 2, "not a timeframe of family cal_us"),
    (["--periods", "20,0"], 2, "not a positive integer period"),
    (["--from", "2024-05-01", "--to", "2024-01-01"], 2, "is after --to"),
    (["--from", "May 1"], 2, "--from must be YYYY-MM-DD"),
])
def test_bad_arguments_are_refused_before_any_chart(cli, charted, tmp_path, args, code, message):
    out = tmp_path / "x.html"
    res = cli("--id", "1", "--out", str(out), *args)
    assert res.exit_code == code, res.output
    assert message in res.output
    assert not out.exists()
    assert charted.query("select to_regclass('price_bars_1d') is not null")[0][0]


def test_an_id_without_bars_is_an_error_naming_the_table(cli, tmp_path):
    res = cli("--id", "999", "--out", str(tmp_path / "x.html"))
    assert res.exit_code == 1
    assert "id 999 has no bars in price_bars_multi_tf" in res.output
    res = cli("--id", "1", "--family", "cal_us", "--out", str(tmp_path / "x.html"))
    assert res.exit_code == 1
    assert "table price_bars_multi_tf_cal_us does not exist yet (driver refresh --all builds it)" in res.output
