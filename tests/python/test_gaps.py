"""Gap detection per asset calendar (models/completeness, driver gaps) on hand-made histories.

Expected sessions here are written out by hand (July 2024 on XNYS: the 4th is a holiday, the 3rd
closes at 1 pm), not computed with the code under test."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from driver import gaps as gapsmod
from driver import load as loadmod
from driver.cli import app

SOURCE_VARS = {"source_schema": "public", "source_table": "price_histories"}
AS_OF = datetime(2024, 7, 20, 12, 0, tzinfo=timezone.utc)
# XNYS sessions 2024-06-24 .. 2024-07-19, by hand: no session on weekends and on 4 July
XNYS = [date(2024, 6, d) for d in (24, 25, 26, 27, 28)] + [date(2024, 7, d) for d in (1, 2, 3, 5, 8, 9, 10, 11, 12,
                                                                                       15, 16, 17, 18, 19)]
HALF_DAY = date(2024, 7, 3)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def xnys_close(day: date) -> datetime:
    """16:00 New York (EDT in summer: 20:00 UTC), 13:00 on the half day."""
    return datetime(day.year, day.month, day.day, 17 if day == HALF_DAY else 20, tzinfo=timezone.utc)


def crypto_ts(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, 999000, tzinfo=timezone.utc)


UNTIL_12 = [d for d in XNYS if d <= date(2024, 7, 12)]
ALL_DAYS = days(date(2024, 6, 24), date(2024, 7, 12))
# id -> (calendar, end_date, the days that have a row)
HISTORIES = {
    101: ("XNYS", date(2024, 7, 12), UNTIL_12),                                              # complete
    102: ("XNYS", date(2024, 7, 12), [d for d in UNTIL_12 if d != HALF_DAY]),                # half day missing
    103: ("24/7", date(2024, 7, 12), [d for d in ALL_DAYS if d not in (date(2024, 6, 29), date(2024, 6, 30))]),
    104: ("24/7", date(2024, 7, 12), [d for d in ALL_DAYS if not date(2024, 7, 1) <= d <= date(2024, 7, 8)]),
    105: ("24/7", date(2024, 7, 12), [d for d in ALL_DAYS if not date(2024, 7, 1) <= d <= date(2024, 7, 7)]),
    106: ("XNYS", date(2024, 7, 12), [d for d in UNTIL_12 if d not in (date(2024, 6, 28), date(2024, 7, 1))]),
    107: ("XNYS", date(2024, 7, 12), [d for d in UNTIL_12 if not date(2024, 7, 2) <= d <= date(2024, 7, 10)]),
    108: ("XNYS", date(2024, 7, 12), UNTIL_12 + [date(2024, 7, 6)]),                          # a Saturday row
    109: ("24/7", None, days(date(2024, 6, 24), date(2024, 7, 16))),                          # newest days missing
    110: ("XNYS", None, UNTIL_12),                                                            # newest week missing
}
NOT_IN_SEED = 111  # 24/7 by default


@pytest.fixture()
def histories(database, tmp_path, monkeypatch):
    return write_histories(database, tmp_path, monkeypatch)


def write_histories(database, tmp_path, monkeypatch):
    """The hand-made histories and their assets table in `database` (test_citus runs them on the cluster)."""
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("BARSMITH_STATE_DIR", str(tmp_path / "state"))
    rows = []
    for asset_id, (cal, _end, have) in {**HISTORIES, NOT_IN_SEED: ("24/7", None, [date(2024, 6, 24),
                                                                                   date(2024, 6, 26)])}.items():
        for d in have:
            ts = xnys_close(d) if cal == "XNYS" and d.weekday() < 5 else crypto_ts(d)
            rows.append((asset_id, f"A{asset_id}", ts, 10.0, 11.0, 9.0, 10.5))
    with database.connect() as conn:
        loadmod.upsert_rows(conn, "public", "price_histories",
                            [(["id", "name", "timestamp", "open", "high", "low", "close"], rows)])
        conn.execute("create table assets (id integer primary key, symbol text, name text, provider text, "
                     "calendar text, start_date date, end_date date)")
        for asset_id, (cal, end, _have) in HISTORIES.items():
            conn.execute("insert into assets values (%s, %s, %s, 'polygon', %s, null, %s)",
                         (asset_id, f"S{asset_id}", f"A{asset_id}", cal, end))
        conn.execute("insert into assets values (112, 'NEW', 'New listing', 'polygon', 'XNYS', null, null)")
    return database


def by_id(report: gapsmod.GapReport) -> dict[int, list[tuple]]:
    out: dict[int, list[tuple]] = {}
    for g in report.gaps:
        out.setdefault(g["id"], []).append((g["first_missing_session"], g["last_missing_session"],
                                            g["sessions_missing"], g["gap_days"], g["severity"]))
    return out


def test_gaps_follow_each_assets_calendar(histories):
    report = gapsmod.compute(histories, SOURCE_VARS, AS_OF, seed=False)
    gaps = by_id(report)
    d = date
    assert 101 not in gaps, "4 July is not a session of XNYS, the half day is there"
    assert gaps[102] == [(d(2024, 7, 3), d(2024, 7, 3), 1, 1, "INFO")], "the half day is one missing session"
    assert next(g for g in report.gaps if g["id"] == 102)["early_closes_missing"] == 1
    assert gaps[103] == [(d(2024, 6, 29), d(2024, 6, 30), 2, 2, "WARNING")], "a weekend is a gap for 24/7"
    assert gaps[104] == [(d(2024, 7, 1), d(2024, 7, 8), 8, 8, "CRITICAL")], "8 days > 7: critical"
    assert gaps[105] == [(d(2024, 7, 1), d(2024, 7, 7), 7, 7, "WARNING")], "7 days: not yet critical"
    assert gaps[106] == [(d(2024, 6, 28), d(2024, 7, 1), 2, 4, "WARNING")], "one gap across the weekend"
    assert gaps[107] == [(d(2024, 7, 2), d(2024, 7, 10), 6, 9, "CRITICAL")], "6 sessions over 9 days"
    assert 108 not in gaps
    assert gaps[109] == [(d(2024, 7, 17), d(2024, 7, 19), 3, 3, "WARNING")], "up to the last complete UTC day"
    assert gaps[110] == [(d(2024, 7, 15), d(2024, 7, 19), 5, 5, "WARNING")], "sessions closed before as_of"
    assert gaps[NOT_IN_SEED][0][:3] == (d(2024, 6, 25), d(2024, 6, 25), 1)
    assert 112 not in gaps, "no row and no start_date: nothing expected"
    assert [g["is_trailing"] for g in report.gaps if g["id"] in (109, 110, 104)] == [False, True, True]

    months = {(c["id"], c["month"]): c for c in report.completeness}
    july = months[(101, d(2024, 7, 1))]
    assert (july["expected_sessions"], july["observed_rows"], july["pct_complete"]) == (9, 9, 100.0)
    assert months[(101, d(2024, 6, 1))]["expected_sessions"] == 5
    assert months[(102, d(2024, 7, 1))]["observed_rows"] == 8
    assert months[(108, d(2024, 7, 1))]["extra_rows"] == 1
    assert months[(103, d(2024, 6, 1))]["expected_sessions"] == 7
    assert months[(104, d(2024, 7, 1))]["pct_complete"] == round(100 * 4 / 12, 2)
    assert months[(NOT_IN_SEED, d(2024, 7, 1))]["calendar"] == "24/7"

    # the JSON and the matrix say the same; the alert is CRITICAL and names the longest gap first
    data = report.to_json()
    assert data["summary"]["by_severity"] == {"INFO": 2, "WARNING": 5, "CRITICAL": 3}
    alert = gapsmod.alert_for(report)
    assert alert.severity == "CRITICAL" and alert.lines[0].startswith("id 111 (24/7): 2024-06-27")
    assert [g["id"] for g in gapsmod.over_threshold(report, 7)] == [104, 107, NOT_IN_SEED]

    # a window: only its sessions; an id without rows gets them all (what a first backfill fetches)
    window = gapsmod.compute(histories, SOURCE_VARS, AS_OF, date(2024, 7, 1), date(2024, 7, 12), seed=False)
    assert by_id(window)[112] == [(d(2024, 7, 1), d(2024, 7, 12), 9, 12, "CRITICAL")]
    assert 109 not in by_id(window) and by_id(window)[104] == gaps[104]


@pytest.fixture()
def alert_server():
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request("/botTESTTOKEN/sendMessage", method="POST").respond_with_json({"ok": True})
    server.start()
    yield server
    server.clear()
    server.stop()


def test_driver_gaps_on_the_sample_data(database, tmp_path, monkeypatch, alert_server):
    monkeypatch.setenv("BARSMITH_DB_URL", database.url)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("BARSMITH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "TESTTOKEN")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "42")
    monkeypatch.setenv("BARSMITH_ALERT_URL", alert_server.url_for("/").rstrip("/"))
    runner = CliRunner()
    res = runner.invoke(app, ["sample", "--out", str(tmp_path / "s.csv"), "--end", "2024-06-30", "--years", "2",
                              "--load"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "gaps.json"
    res = runner.invoke(app, ["gaps", "--as-of", "2024-07-01T12:00:00Z", "--json", str(out)])
    # the sample has a 9-day gap per id: critical, past the default --max-gap-days 7
    assert res.exit_code == 1, res.output
    assert "source completeness by year" in res.output and "CRITICAL" in res.output
    data = json.loads(out.read_text())
    assert data["summary"]["ids"] == 4
    nine = [g for g in data["gaps"] if g["gap_days"] == 9]
    assert sorted(g["id"] for g in nine) == [1, 52, 825, 1027] and {g["severity"] for g in nine} == {"CRITICAL"}
    assert all(g["calendar"] == "24/7" for g in data["gaps"])
    sent = [json.loads(req.data) for req, _resp in alert_server.log]
    assert len(sent) == 1 and "CRITICAL" in sent[0]["text"] and sent[0]["chat_id"] == "42"
    # a higher threshold passes; months on request
    res = runner.invoke(app, ["gaps", "--as-of", "2024-07-01T12:00:00Z", "--json", str(out), "--max-gap-days", "9",
                              "--by", "month", "--ids", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["summary"]["ids"] == 1
