"""Deterministic sample data for the quick start (no download needed).

Same arguments -> same rows. Several ids over a few years, with the defects the models must
handle: a missing day, a multi-day gap, NULL timehigh / timelow, a NULL market cap stretch,
a repaired extreme outside its day, and (with the default span) at least one leap day.
"""

from __future__ import annotations

import csv
import math
import random
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from .load import COLUMNS

ASSETS = [(1, "SampleOne", 30000.0), (52, "SampleXRP", 0.6), (825, "SampleStable", 1.0), (1027, "SampleEth", 2000.0)]


def _instant(day: date, seconds: float) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc) + timedelta(seconds=seconds)


def generate(end: date, years: int = 4, seed: int = 20260205) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for k, (asset_id, name, price) in enumerate(ASSETS):
        rng = random.Random(seed * 1000 + asset_id)
        start = end - timedelta(days=365 * years + 1 - 45 * k)  # staggered listing dates
        supply = 19_000_000.0 * (k + 1)
        day = start
        n = 0
        while day <= end:
            n += 1
            # a single missing day and a 9-day gap per id
            if n in (40 + k, *range(300 + 7 * k, 309 + 7 * k)):
                day += timedelta(days=1)
                continue
            vol = 0.04 if asset_id != 825 else 0.002
            open_ = price
            close = max(open_ * math.exp(rng.gauss(0, vol)), 1e-6)
            high = max(open_, close) * (1 + abs(rng.gauss(0, vol / 2)))
            low = min(open_, close) * (1 - abs(rng.gauss(0, vol / 2)))
            t_high, t_low = rng.uniform(0, 86399.998), rng.uniform(0, 86399.998)
            timehigh = _instant(day, t_high)
            timelow = _instant(day, t_low)
            if n % 97 == 5:
                timehigh = None  # NULL extreme instant: repaired by 1D
            if n % 113 == 7:
                timelow = _instant(day, 86400 + 3600)  # outside its day: repaired by 1D
            supply *= 1 + rng.uniform(0, 1e-4)
            marketcap = None if (asset_id == 52 and 500 <= n < 520) else close * supply
            rows.append(
                {
                    "id": asset_id,
                    "name": name,
                    "timeopen": _instant(day, 0),
                    "timeclose": _instant(day, 86399.999),
                    "timehigh": timehigh,
                    "timelow": timelow,
                    "timestamp": _instant(day, 86399.999),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": close * supply * rng.uniform(0.01, 0.05),
                    "marketcap": marketcap,
                    "circulatingsupply": supply,
                    "date": day,
                    "source_file": "barsmith_sample.csv",
                    "load_ts": None,
                }
            )
            price = close
            day += timedelta(days=1)
    return rows


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(rows: list[dict[str, object]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        cols = [c for c in COLUMNS if c != "load_ts"]
        writer.writerow(cols)
        for row in rows:
            writer.writerow([_fmt(row[c]) for c in cols])
    return path
