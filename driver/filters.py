"""Validation of user filters before anything reaches dbt or SQL (refresh.md OP-R14).

ids must be integers (or `all`, any case), timeframes must exist in the dim_timeframe seed,
periods must be positive integers. Every error message says what was wrong.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .db import PROJECT_DIR

SEED = PROJECT_DIR / "seeds" / "dim_timeframe.csv"
MAX_INT = 2**31 - 1


class FilterError(ValueError):
    """A filter value was refused."""


@lru_cache(maxsize=1)
def known_timeframes(path: Path = SEED) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {row["tf"]: row for row in csv.DictReader(fh)}


def _items(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise FilterError(f"{what}: empty value in {text!r} (give a comma-separated list)")
    return items


def parse_ids(text: str | None) -> list[int] | None:
    """None for all ids, else the distinct ids in the order given."""
    if text is None or text.strip().lower() == "all":
        return None
    ids: list[int] = []
    for item in _items(text, "--ids"):
        if not re.fullmatch(r"[0-9]+", item):
            raise FilterError(f"--ids: {item!r} is not a non-negative integer id (or use 'all')")
        value = int(item)
        if value > MAX_INT:
            raise FilterError(f"--ids: {item} is out of range")
        if value not in ids:
            ids.append(value)
    return ids


def parse_tfs(text: str | None) -> list[str] | None:
    if text is None:
        return None
    known = known_timeframes()
    tfs: list[str] = []
    for item in _items(text, "--tfs"):
        if item not in known:
            close = [k for k in known if k.lower() == item.lower()]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FilterError(f"--tfs: unknown timeframe {item!r}{hint}; see seeds/dim_timeframe.csv")
        if item not in tfs:
            tfs.append(item)
    return tfs


def parse_periods(text: str | None) -> list[int] | None:
    if text is None:
        return None
    periods: list[int] = []
    for item in _items(text, "--periods"):
        if not re.fullmatch(r"[0-9]+", item) or int(item) <= 0 or int(item) > 100_000:
            raise FilterError(f"--periods: {item!r} is not a positive integer period")
        if int(item) not in periods:
            periods.append(int(item))
    return periods


def parse_combos(text: str | None) -> list[dict[str, object]] | None:
    if text is None:
        return None
    combos: list[dict[str, object]] = []
    for item in _items(text, "--tf-period-combos"):
        if item.count(":") != 1:
            raise FilterError(f"--tf-period-combos: {item!r} is not TF:PERIOD (e.g. 7D:10)")
        tf, period = item.split(":")
        (tf_ok,) = parse_tfs(tf)
        (p_ok,) = parse_periods(period)
        combo = {"tf": tf_ok, "period": p_ok}
        if combo not in combos:
            combos.append(combo)
    return combos


@dataclass
class Filters:
    ids: list[int] | None = None
    tfs: list[str] | None = None
    periods: list[int] | None = None
    combos: list[dict[str, object]] | None = None
    rebuild_ids: list[int] = field(default_factory=list)

    def dbt_vars(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.ids is not None:
            out["asset_ids"] = self.ids
        if self.tfs is not None:
            out["timeframes"] = self.tfs
        if self.periods is not None:
            out["ema_periods"] = self.periods
        if self.combos is not None:
            out["tf_period_combos"] = self.combos
        if self.rebuild_ids:
            out["rebuild_ids"] = self.rebuild_ids
        return out


def from_recorded(data: dict[str, object]) -> Filters:
    """Filters stored with a run (driver/runs.py), validated again as if typed on the command line."""
    def text(values) -> str | None:
        return None if values is None else ",".join(str(v) for v in values)

    combos = data.get("combos")
    rebuild = parse_ids(text(data.get("rebuild_ids")) or "all") or []
    return Filters(
        ids=parse_ids(text(data.get("ids"))), tfs=parse_tfs(text(data.get("tfs"))),
        periods=parse_periods(text(data.get("periods"))),
        combos=None if combos is None else parse_combos(",".join(f"{c['tf']}:{c['period']}" for c in combos)),
        rebuild_ids=rebuild,
    )


def parse_all(ids: str | None, tfs: str | None, periods: str | None, combos: str | None) -> Filters:
    return Filters(ids=parse_ids(ids), tfs=parse_tfs(tfs), periods=parse_periods(periods), combos=parse_combos(combos))
