"""Hand-checked bar assignment on edge dates (bars.md §6-§8, worked example §12.1)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from .histories import day_row, write_rows


def days(start: str, end: str, skip=()) -> list[date]:
    d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
    skipped = {date.fromisoformat(s) for s in skip}
    return [d0 + timedelta(n) for n in range((d1 - d0).days + 1) if d0 + timedelta(n) not in skipped]


SERIES = {
    101: days("2024-01-24", "2024-02-12", skip=["2024-02-01"]),   # bars.md §12.1
    102: days("2020-12-20", "2021-01-10"),                         # ISO week 53, year end
    103: days("2024-02-20", "2024-03-15"),                         # leap day, DST start 03-10
    104: days("2024-01-08", "2024-01-08"),                         # a 1-day series (a Monday)
    105: days("2024-10-25", "2024-11-20", skip=[f"2024-11-{d:02d}" for d in range(5, 14)]),  # 9-day gap, DST end
}
TFS = ["7D", "1W_CAL_ISO", "1W_CAL_US", "1M_CAL", "2W_CAL_ANCHOR_ISO", "1M_CAL_ANCHOR", "1W_CAL_ANCHOR_US",
       "12M_CAL", "1Y_CAL", "2D"]


@pytest.fixture(scope="module")
def built(server, tmp_path_factory):
    from .helpers import DbtProject, new_database

    project = DbtProject(new_database(server), tmp_path_factory.mktemp("assign"))
    with project.connection.connect() as conn:
        write_rows(conn, [day_row(i, d) for i, ds in SERIES.items() for d in ds])
    project.build(vars={"timeframes": TFS})
    return project


def cells(project, asset: int, tf: str) -> dict[str, str]:
    """{local day: bar_seq with * on the canonical row} for one id and tf."""
    table = {"7D": "price_bars_multi_tf", "2D": "price_bars_multi_tf", "1W_CAL_ISO": "price_bars_multi_tf_cal_iso",
             "1W_CAL_US": "price_bars_multi_tf_cal_us", "1M_CAL": "price_bars_multi_tf_cal_iso",
             "12M_CAL": "price_bars_multi_tf_cal_us", "1Y_CAL": "price_bars_multi_tf_cal_us",
             "2W_CAL_ANCHOR_ISO": "price_bars_multi_tf_cal_anchor_iso",
             "1M_CAL_ANCHOR": "price_bars_multi_tf_cal_anchor_iso",
             "1W_CAL_ANCHOR_US": "price_bars_multi_tf_cal_anchor_us"}[tf]
    rows = project.query(f"""select (time_close at time zone 'America/New_York')::date, bar_seq, is_partial_end
                             from {table} where id = %s and tf = %s order by time_close""", (asset, tf))
    return {d.isoformat()[5:]: f"{s}{'' if p else '*'}" for d, s, p in rows}


# bars.md §12.1, column by column (local day -> bar_seq, * = canonical row)
EXAMPLE = {
    "7D": "01-24 1,01-25 1,01-26 1,01-27 1,01-28 1,01-29 1,01-30 1*,01-31 2,02-02 2,02-03 2,02-04 2,02-05 2,"
          "02-06 2,02-07 2*,02-08 3,02-09 3,02-10 3,02-11 3,02-12 3",
    "1W_CAL_ISO": "01-29 1,01-30 1,01-31 1,02-02 1,02-03 1,02-04 1*,02-05 2,02-06 2,02-07 2,02-08 2,02-09 2,02-10 2,"
                  "02-11 2*,02-12 3",
    "1W_CAL_US": "01-28 1,01-29 1,01-30 1,01-31 1,02-02 1,02-03 1*,02-04 2,02-05 2,02-06 2,02-07 2,02-08 2,02-09 2,"
                 "02-10 2*,02-11 3,02-12 3",
    "1M_CAL": "02-02 1,02-03 1,02-04 1,02-05 1,02-06 1,02-07 1,02-08 1,02-09 1,02-10 1,02-11 1,02-12 1",
    "2W_CAL_ANCHOR_ISO": "01-24 1,01-25 1,01-26 1,01-27 1,01-28 1,01-29 1,01-30 1,01-31 1,02-02 1,02-03 1,02-04 1*,"
                         "02-05 2,02-06 2,02-07 2,02-08 2,02-09 2,02-10 2,02-11 2,02-12 2",
    "1M_CAL_ANCHOR": "01-24 1,01-25 1,01-26 1,01-27 1,01-28 1,01-29 1,01-30 1,01-31 1*,02-02 2,02-03 2,02-04 2,"
                     "02-05 2,02-06 2,02-07 2,02-08 2,02-09 2,02-10 2,02-11 2,02-12 2",
}


@pytest.mark.parametrize("tf", sorted(EXAMPLE))
def test_worked_example_12_1(built, tf):
    expected = dict(cell.split(" ") for cell in EXAMPLE[tf].split(","))
    assert cells(built, 101, tf) == expected


def test_worked_example_12_1_bar_details(built):
    rows = dict(((tf, s), rest) for tf, s, *rest in built.query(
        """select tf, bar_seq, time_open, count_days, count_missing_days, count_missing_days_start,
                  count_missing_days_interior, count_days_remaining, is_partial_start, bar_anchor_offset, tf_days
           from (select *, row_number() over (partition by tf, bar_seq order by time_close desc) as r
                 from price_bars_multi_tf_cal_anchor_iso where id = 101) x where r = 1"""))
    two_w_1 = rows[("2W_CAL_ANCHOR_ISO", 1)]
    assert two_w_1[1:] == [11, 1, 0, 1, 0, True, 0, 14]  # OP-5: remaining 0 on the canonical row
    month_2 = rows[("1M_CAL_ANCHOR", 2)]
    assert month_2[0].isoformat() == "2024-02-01T00:00:00+00:00"  # time_open from the 01-31 row (OP-20)
    assert month_2[1:] == [11, 1, 1, 0, 17, False, 31, 29]  # OP-4: missing start day counted
    (cal_open, where, first, last) = built.query(
        """select time_open, missing_days_where, first_missing_day, last_missing_day from price_bars_multi_tf_cal_us
           where id = 101 and tf = '1M_CAL' order by time_close desc limit 1""")[0]
    assert cal_open.isoformat() == "2024-02-02T00:00:00+00:00"  # first observed day's 00:00Z (OP-20)
    assert (where, first.isoformat(), last.isoformat()) == ("start", "2024-02-01", "2024-02-01")  # OP-6, OP-7


def test_us_anchored_week_keeps_the_partial_start_bar(built):
    got = cells(built, 101, "1W_CAL_ANCHOR_US")
    assert [got[d] for d in ("01-24", "01-27", "01-28", "02-03", "02-04", "02-10", "02-11")] == \
        ["1", "1*", "2", "2*", "3", "3*", "4"]


def test_iso_week_53_spans_the_year_end(built):
    got = cells(built, 102, "1W_CAL_ISO")
    # first Monday on/after Sun 2020-12-20 is 12-21; ISO week 53 of 2020 = 12-28 .. 2021-01-03
    assert got["12-21"] == "1" and got["12-27"] == "1*"
    assert {got[d] for d in ("12-28", "12-31", "01-01", "01-03")} == {"2", "2*"} and got["01-03"] == "2*"
    assert "12-20" not in got, "rows before the first full week are not emitted"
    us = cells(built, 102, "1W_CAL_US")
    assert us["12-20"] == "1" and us["12-26"] == "1*" and us["01-02"] == "2*"
    year = cells(built, 102, "1Y_CAL")
    assert set(year) == {f"01-{d:02d}" for d in range(1, 11)}, "1Y_CAL starts at the first Jan 1"
    assert cells(built, 102, "12M_CAL") == {f"01-{d:02d}": "1" for d in range(1, 11)}, \
        "12M_CAL groups 12 months from the first month start on/after F (2021-01-01); still partial"


def test_leap_day_closes_february_and_dst_days_are_ordinary(built):
    anchored = cells(built, 103, "1M_CAL_ANCHOR")
    assert anchored["02-29"] == "1*" and anchored["03-01"] == "2", "February 2024 closes on the leap day"
    assert min(cells(built, 103, "1M_CAL")) == "03-01", "1M_CAL starts at the first full month"
    (tf_days,) = built.query("select tf_days from price_bars_multi_tf_cal_anchor_iso where id = 103 and "
                             "tf = '1M_CAL_ANCHOR' and time_close::date = '2024-02-29'")[0]
    assert tf_days == 29
    missing = built.query("""select count(*) filter (where count_missing_days > 0), count(*) from price_bars_multi_tf
                             where id = 103 and tf = '7D'""")[0]
    assert missing[0] == 0 and missing[1] == len(SERIES[103]), "DST start (03-10) neither skips nor doubles a day"
    local_days = [r[0] for r in built.query(
        "select (time_close at time zone 'America/New_York')::date from price_bars_1d where id = 103 order by 1")]
    assert local_days == SERIES[103]


def test_one_day_series(built):
    assert cells(built, 104, "2D") == {"01-08": "1"}
    assert cells(built, 104, "1W_CAL_ISO") == {"01-08": "1"}, "a Monday starts the first full ISO week"
    assert cells(built, 104, "1W_CAL_US") == {}, "no full US week starts before the data ends"
    row = built.query("""select is_partial_start, count_days_remaining, time_open from price_bars_multi_tf_cal_anchor_us
                         where id = 104 and tf = '1W_CAL_ANCHOR_US'""")[0]
    assert row[0] is True and row[1] == 5 and row[2].isoformat() == "2024-01-08T00:00:00+00:00"


def test_nine_day_gap_inside_a_rolling_bar(built):
    rows = built.query("""select (time_close at time zone 'America/New_York')::date, bar_seq, count_days,
                                 count_missing_days, first_missing_day, last_missing_day, missing_days_where
                          from price_bars_multi_tf where id = 105 and tf = '7D' order by time_close""")
    after_gap = [r for r in rows if r[0] == date(2024, 11, 14)][0]
    assert after_gap[3] == 9 and after_gap[4] == date(2024, 11, 5) and after_gap[5] == date(2024, 11, 13)
    assert after_gap[6] == "interior"
    assert [r[1] for r in rows] == [(k // 7) + 1 for k in range(len(rows))], "bars count rows, not days"
