"""`driver load`: upsert rules, load_ts rules, and malformed files refused whole."""

from __future__ import annotations

import os
import subprocess
import sys
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


# ------------------------------------------------------------------ issue 18 item 5: strict, complete reports


@pytest.mark.parametrize("value", ["1_000", " 1.5 ", "1.5 ", "0x10", "inf", "-Infinity", "1e999", "1,5", "+-1", "١٢"])
def test_numbers_are_strict(project, tmp_path, value):
    bad = write(tmp_path / "bad.csv", HEADER, row("2024-01-01", close=f'"{value}"'))
    with pytest.raises(loadmod.LoadError) as exc:
        project.load(bad)
    assert f"line 2, column 'close': cannot parse {value!r} as double precision" in str(exc.value)


@pytest.mark.parametrize("value, expected", [("-12.5e3", -12500.0), ("1.", 1.0), (".5", 0.5), ("7", 7.0),
                                             ("1E+2", 100.0)])
def test_plain_decimal_numbers_are_read(project, tmp_path, value, expected):
    project.load(write(tmp_path / "ok.csv", HEADER, row("2024-01-01", close=value)))
    assert project.query("select close from price_histories")[0][0] == expected


@pytest.mark.parametrize("value", ["1_000", " 7", "0x1", "1.0"])
def test_integer_ids_are_strict(project, tmp_path, value):
    with pytest.raises(loadmod.LoadError, match=r"line 2, column 'id': cannot parse"):
        project.load(write(tmp_path / "bad.csv", HEADER, row("2024-01-01", id_=f'"{value}"')))


def test_non_utf8_and_nul_bytes_are_refused_with_file_and_line(project, tmp_path):
    bad = tmp_path / "bytes.csv"
    lines = [HEADER, row("2024-01-01"), row("2024-01-02").replace("Coin", "Co\xefn")]
    data = ("\n".join(lines[:2]) + "\n").encode() + lines[2].encode("latin-1") + b"\n"
    data += row("2024-01-03").replace("Coin", "Co\x00in").encode() + b"\n"
    bad.write_bytes(data)
    with pytest.raises(loadmod.LoadError) as exc:
        project.load(bad)
    assert exc.value.problems == [
        f"{bad}: line 3, byte 5: 0xef is not UTF-8 (save the file as UTF-8)",
        f"{bad}: line 4, byte 5: NUL byte (binary data?)",
    ]
    assert project.query("select to_regclass('public.price_histories')")[0][0] is None


def test_every_malformed_line_is_reported_up_to_the_limit(project, tmp_path):
    good = [row(f"2024-01-{d:02d}") for d in range(1, 4)]
    bad_lines = [row(f"2024-02-{d:02d}", close="x") for d in range(1, 26)]  # 25 bad lines
    bad = write(tmp_path / "many.csv", HEADER, *good, *bad_lines, row("2024-03-01", id_="y"))
    other = write(tmp_path / "other.csv", HEADER, row("2024-04-01", close="1_0"))
    with pytest.raises(loadmod.LoadError) as exc:
        project.load(bad, other)
    problems = exc.value.problems
    assert len(problems) == loadmod.MAX_REPORTED + 2, "20 lines, the count of the rest, the other file"
    assert problems[0].startswith(f"{bad}: line 5, column 'close': cannot parse 'x'")
    assert problems[loadmod.MAX_REPORTED] == f"{bad}: and 6 more malformed line(s) (26 in all)"
    assert problems[-1].startswith(f"{other}: line 2, column 'close': cannot parse '1_0'")


def test_a_line_with_several_bad_fields_is_one_problem(project, tmp_path):
    bad = write(tmp_path / "bad.csv", HEADER, row("2024-01-01", close="ten", id_="one"))
    with pytest.raises(loadmod.LoadError) as exc:
        project.load(bad)
    (problem,) = exc.value.problems
    assert problem.startswith(f"{bad}: line 2, column 'id': cannot parse 'one'")
    assert "; column 'close': cannot parse 'ten'" in problem


def test_a_utf8_byte_order_mark_is_accepted(project, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join([HEADER, row("2024-01-01")]) + "\n").encode())
    assert project.load(path).inserted == 1


def test_nan_is_loaded_for_the_models_to_reject(project, tmp_path):
    """NaN is not refused by the loader: the 1D model rejects such a row with a reason (one bad row
    must not block the file); infinity is refused as out of range."""
    project.load(write(tmp_path / "nan.csv", HEADER, row("2024-01-01", close="NaN")))
    assert project.query("select close = 'NaN'::float8 from price_histories")[0][0]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "driver.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_load_with_the_database_down_is_one_line_and_exit_1(tmp_path):
    good = write(tmp_path / "good.csv", HEADER, row("2024-01-01"))
    env = dict(os.environ, BARSMITH_DB_URL="postgresql://nobody:pw@127.0.0.1:1/none")
    res = cli("load", str(good), env=env)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: cannot connect to PostgreSQL nobody@127.0.0.1:1/none")
    assert lines[0].endswith("nothing was loaded")


def test_cli_lists_every_problem_and_loads_nothing(database, tmp_path):
    bad = write(tmp_path / "bad.csv", HEADER, row("2024-01-01", close="1_000"), row("2024-01-02", close=" 1.5 "))
    env = dict(os.environ, BARSMITH_DB_URL=database.url)
    res = cli("load", str(bad), env=env)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [
        f"refused: {bad}: line 2, column 'close': cannot parse '1_000' as double precision (not a plain decimal "
        "number: no spaces, '_', hex or inf)",
        f"refused: {bad}: line 3, column 'close': cannot parse ' 1.5 ' as double precision (not a plain decimal "
        "number: no spaces, '_', hex or inf)",
        "nothing was loaded",
    ]


def test_load_refused_by_the_database_is_one_line(database, tmp_path):
    """An existing source table of another shape: the database's refusal, not a traceback."""
    with database.connect() as conn:
        conn.execute("create table price_histories (id int primary key, name text)")
        conn.commit()
    good = write(tmp_path / "good.csv", HEADER, row("2024-01-01"))
    res = cli("load", str(good), env=dict(os.environ, BARSMITH_DB_URL=database.url))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: the database refused the load into public.price_histories: ")
    assert res.stderr.strip().endswith("nothing was loaded")
