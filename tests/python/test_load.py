"""`driver load`: upsert rules, load_ts rules, and malformed files refused whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from driver import load as loadmod

HEADER = "id,name,timeopen,timeclose,timehigh,timelow,timestamp,open,high,low,close,volume,marketcap,load_ts"


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def row(day: str, close: str = "10.5", load_ts: str = "2026-01-01T00:00:00Z", id_: str = "1") -> str:
    return (f"{id_},Coin,{day}T00:00:00.000Z,{day}T23:59:59.999Z,{day}T12:00:00Z,{day}T01:00:00Z,"
            f"{day}T23:59:59.999Z,10,11,9,{close},100,1000,{load_ts}")


def count(project) -> int:
    return project.query("select count(*) from price_histories")[0][0]


def test_load_creates_table_and_is_idempotent(project, tmp_path):
    f = write(tmp_path / "a.csv", HEADER, row("2024-01-01"), row("2024-01-02"))
    first = project.load(f)
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    before = project.query('select id, "timestamp", load_ts, close from price_histories order by 2')
    second = project.load(f)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 2)
    assert project.query('select id, "timestamp", load_ts, close from price_histories order by 2') == before


def test_load_keeps_file_load_ts_on_insert_and_renews_it_on_change(project, tmp_path):
    project.load(write(tmp_path / "a.csv", HEADER, row("2024-01-01"), row("2024-01-02")))
    old = dict(project.query('select "timestamp"::date, load_ts from price_histories'))
    assert all(ts.isoformat().startswith("2026-01-01") for ts in old.values())
    res = project.load(write(tmp_path / "b.csv", HEADER, row("2024-01-01", close="12.25"), row("2024-01-02")))
    assert (res.inserted, res.updated, res.unchanged) == (0, 1, 1)
    new = dict(project.query('select "timestamp"::date, load_ts from price_histories'))
    changed, same = sorted(new)
    assert new[changed] > old[changed], "a changed row gets a new load_ts"
    assert new[same] == old[same], "an unchanged row keeps its load_ts"
    assert project.query("select close from price_histories order by 1 desc limit 1")[0][0] == 12.25


def test_load_without_load_ts_column_uses_now(project, tmp_path):
    header = HEADER.rsplit(",", 1)[0]
    line = row("2024-01-01").rsplit(",", 1)[0]
    project.load(write(tmp_path / "a.csv", header, line))
    (age,) = project.query("select now() - load_ts < interval '1 hour' from price_histories")[0]
    assert age


@pytest.mark.parametrize(
    "lines, message",
    [
        ([HEADER.replace("volume", "vol"), row("2024-01-02")], "line 1: unknown column 'vol'"),
        ([HEADER, row("2024-01-01"), row("2024-01-02", close="ten")], "line 3, column 'close': cannot parse 'ten'"),
        ([HEADER, row("2024-01-01").replace("2024-01-01T23:59:59.999Z,10,", "2024-13-01T23:59:59.999Z,10,")],
         "line 2, column 'timestamp': cannot parse"),
        ([HEADER, row("2024-01-01", id_="")], "line 2, column 'id': missing value"),
        ([HEADER, row("2024-01-01", id_="x1")], "line 2, column 'id': cannot parse"),
        ([HEADER.replace(",timestamp", ""), row("2024-01-01").replace(",2024-01-01T23:59:59.999Z,10", ",10")],
         "missing required column 'timestamp'"),
        ([HEADER, row("2024-01-01"), row("2024-01-01")], "line 3: duplicate row for id 1"),
        ([HEADER, row("2024-01-01") + ",extra"], "line 2: 15 fields, header has 14"),
    ],
    ids=["unknown-column", "bad-number", "bad-timestamp", "missing-id", "bad-id", "missing-timestamp-column",
         "duplicate-key", "extra-field"],
)
def test_malformed_file_is_refused_whole(project, tmp_path, lines, message):
    good = write(tmp_path / "good.csv", HEADER, row("2023-12-31"))
    project.load(good)
    bad = write(tmp_path / "bad.csv", *lines)
    with pytest.raises(loadmod.LoadError) as exc:
        project.load(good, bad)
    assert message in str(exc.value)
    assert str(bad) in str(exc.value), "the message names the file"
    assert count(project) == 1, "nothing of any file is half-loaded"


def test_refused_first_load_creates_nothing(project, tmp_path):
    bad = write(tmp_path / "bad.csv", HEADER, row("2024-01-01", close="1,2"))
    with pytest.raises(loadmod.LoadError):
        project.load(bad)
    assert project.query("select to_regclass('public.price_histories')")[0][0] is None


def test_golden_input_loads_every_row(project, golden_dir):
    res = project.load(golden_dir / "price_histories.csv")
    assert res.inserted == 2401
    nulls = project.query("select count(*) filter (where timehigh is null), count(*) filter (where timelow is null) "
                          "from price_histories")[0]
    assert nulls[0] > 0 and nulls[1] > 0
