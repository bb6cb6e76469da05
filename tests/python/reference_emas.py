"""An independent pandas/numpy reference of the six EMA families (emas.md §1-§5, OP-22 amended).

Written from the spec, not from the SQL: it takes the tables a dbt build produced as its input
(the validated 1D bars = the daily spine, OP-12; the snapshot bar tables = the canonical closes;
dim_timeframe and ema_alpha_lookup), decides itself which closes feed each recursion and which
spine days are emitted, and returns the rows each EMA table should hold.

What var('ema_start_date') (`start`, None = '' = no clipping) does, per OP-22 (amended):
  multi_tf   (§2.1, §2.2) spine clipped; bar EMA over EVERY canonical close of the bar table
  v2         (§3.1, §3.2) nothing clipped: full 1D history, roll positions from the first bar
  cal        (§4.1, §4.2) spine clipped; closes used only where a spine row has that day
  cal_anchor (§5.1, §5.2) spine clipped; E over EVERY canonical close of the bar table
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

KEYS = ["id", "tf", "period", "ts"]
KINDS = {
    "id": "int", "tf": "str", "ts": "ts", "period": "int", "tf_days": "int", "roll": "bool", "roll_bar": "bool",
    **{c: "float" for c in ("ema", "d1", "d2", "d1_roll", "d2_roll", "ema_bar", "d1_bar", "d2_bar", "d1_roll_bar",
                            "d2_roll_bar")},
}
TABLES = ["ema_multi_tf", "ema_multi_tf_v2", "ema_multi_tf_cal_us", "ema_multi_tf_cal_iso",
          "ema_multi_tf_cal_anchor_us", "ema_multi_tf_cal_anchor_iso"]
BAR_TABLES = ["price_bars_multi_tf", "price_bars_multi_tf_cal_us", "price_bars_multi_tf_cal_iso",
              "price_bars_multi_tf_cal_anchor_us", "price_bars_multi_tf_cal_anchor_iso"]
SINGLE = ["ema", "tf_days", "roll", "d1_roll", "d2_roll", "d1", "d2"]
DUAL = ["tf_days", "roll", "ema", "d1", "d2", "d1_roll", "d2_roll", "ema_bar", "d1_bar", "d2_bar", "roll_bar",
        "d1_roll_bar", "d2_roll_bar"]


# --------------------------------------------------------------------------- inputs

@dataclass
class Inputs:
    bars_1d: pd.DataFrame               # price_bars_1d: id, bar_seq, time_close, close, is_partial_end
    bars: dict[str, pd.DataFrame]       # bar table name -> id, tf, bar_seq, time_close, close, is_partial_end
    dim_timeframe: pd.DataFrame
    alpha_lookup: pd.DataFrame          # ema_alpha_lookup: tf, period, alpha_ema_dailyspace


def _utc(frame: pd.DataFrame, column: str = "time_close") -> pd.DataFrame:
    frame = frame.copy()
    frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["day"] = frame[column].dt.tz_convert("UTC").dt.date
    return frame


def load_inputs(project) -> Inputs:
    """The input tables of a built project (tests/python/helpers.DbtProject)."""
    columns = "id, tf, bar_seq, time_close, close, is_partial_end"
    bars_1d = pd.DataFrame(project.query(f"select {columns} from price_bars_1d"),
                           columns=columns.split(", "))
    bars = {t: _utc(pd.DataFrame(project.query(f"select {columns} from {t}"), columns=columns.split(", ")))
            for t in BAR_TABLES}
    dim = project.frame("dim_timeframe", ["tf"])
    lookup = pd.DataFrame(project.query("select tf, period, alpha_ema_dailyspace from ema_alpha_lookup"),
                          columns=["tf", "period", "alpha_ema_dailyspace"])
    return Inputs(_utc(bars_1d), bars, dim, lookup)


# --------------------------------------------------------------------------- primitives

def seeded_ema(y, n: int, alpha: float | None = None) -> np.ndarray:
    """S(y; n) (§1.2): NaN before the seed index s (the first index whose last n inputs are all
    present), the mean of those n inputs at s, then alpha*y + (1-alpha)*S with a missing input
    carrying S forward. alpha defaults to 2/(n+1)."""
    y = np.asarray(y, dtype=float)
    out = np.full(len(y), np.nan)
    a = 2.0 / (n + 1) if alpha is None else alpha
    present = ~np.isnan(y)
    # run length of consecutive present values ending at each index
    run = np.zeros(len(y), dtype=int)
    for i in range(len(y)):
        run[i] = (run[i - 1] + 1 if i else 1) if present[i] else 0
    seeds = np.flatnonzero(run >= n)
    if n <= 0 or len(seeds) == 0:
        return out
    s = seeds[0]
    value = np.mean(y[s - n + 1: s + 1])
    out[s] = value
    for i in range(s + 1, len(y)):
        if present[i]:
            value = a * y[i] + (1 - a) * value
        out[i] = value
    return out


def differences(values: np.ndarray, canonical: np.ndarray) -> tuple[np.ndarray, ...]:
    """§1.3 over the rows of one series: (d1_roll, d2_roll) between consecutive rows, (d1, d2)
    between consecutive canonical rows and NaN on the others."""
    s = pd.Series(values, dtype=float)
    d1_roll = s.diff()
    d2_roll = d1_roll.diff()
    c = s[canonical]
    d1c = c.diff()
    d2c = d1c.diff()
    d1 = pd.Series(np.nan, index=s.index)
    d2 = pd.Series(np.nan, index=s.index)
    d1[c.index] = d1c
    d2[c.index] = d2c
    return d1_roll.to_numpy(), d2_roll.to_numpy(), d1.to_numpy(), d2.to_numpy()


def parse_start(start: str | date | None) -> pd.Timestamp | None:
    """The spine start of var('ema_start_date'): None for '' (no clipping)."""
    if start is None or str(start).strip() == "":
        return None
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(start)), start
    return pd.Timestamp(str(start), tz="UTC")


def daily_spine(inputs: Inputs, start: pd.Timestamp | None) -> dict[int, pd.DataFrame]:
    """The validated daily spine per id (OP-12): ts = time_close, x = close, from `start` on."""
    b = inputs.bars_1d[~inputs.bars_1d["is_partial_end"].astype(bool)]
    if start is not None:
        b = b[b["time_close"] >= start]
    b = b.sort_values(["id", "time_close"])
    return {int(i): g[["time_close", "day", "close"]].rename(columns={"time_close": "ts", "close": "x"})
            .reset_index(drop=True) for i, g in b.groupby("id")}


# --------------------------------------------------------------------------- timeframes

def _selected(tfs: list[str] | None):
    return (lambda tf: True) if not tfs else (lambda tf: tf in set(tfs))


def tf_day_timeframes(inputs: Inputs, tfs: list[str] | None) -> dict[str, int]:
    """multi_tf and v2 (§2.1, §3.1, OP-13): canonical tf_day rows labelled digits + D."""
    d = inputs.dim_timeframe
    keep = _selected(tfs)
    return {r.tf: int(r.tf_days_nominal) for r in d.itertuples()
            if r.alignment_type == "tf_day" and _true(r.is_canonical) and re.fullmatch(r"\d+D", r.tf)
            and r.tf_days_nominal and int(r.tf_days_nominal) > 0 and keep(r.tf)}


def cal_timeframes(inputs: Inputs, scheme: str, tfs: list[str] | None) -> dict[str, int]:
    """cal (§4.1): week TFs of the scheme (_CAL_US / _CAL_ISO) and the shared month / year _CAL
    TFs, never an anchored label; tf_days = tf_days_nominal (OP-7)."""
    keep = _selected(tfs)
    out = {}
    for r in inputs.dim_timeframe.itertuples():
        if r.alignment_type != "calendar" or "_CAL_ANCHOR_" in r.tf or "_ANCHOR" in r.tf or not keep(r.tf):
            continue
        week = r.base_unit == "W" and r.tf.endswith(f"_CAL_{scheme}")
        month_year = r.base_unit in ("M", "Y") and r.tf.endswith("_CAL") and "_CAL_" not in r.tf
        if week or month_year:
            out[r.tf] = int(r.tf_days_nominal)
    return out


def cal_anchor_timeframes(inputs: Inputs, scheme: str, tfs: list[str] | None) -> dict[str, int]:
    """cal_anchor (§5.1): anchored calendar rows with partial start and end allowed; week TFs of
    the scheme, month / year TFs labelled _CAL_ANCHOR; tf_days = tf_days_nominal (OP-6)."""
    keep = _selected(tfs)
    out = {}
    for r in inputs.dim_timeframe.itertuples():
        if not (r.alignment_type == "calendar" and r.roll_policy == "calendar_anchor" and _true(r.has_roll_flag)
                and _true(r.allow_partial_start) and _true(r.allow_partial_end) and keep(r.tf)):
            continue
        week = r.base_unit == "W" and r.calendar_scheme == scheme and r.tf.endswith(f"_CAL_ANCHOR_{scheme}")
        month_year = r.base_unit in ("M", "Y") and r.tf.endswith("_CAL_ANCHOR")
        if week or month_year:
            out[r.tf] = int(r.tf_days_nominal)
    return out


def _true(v) -> bool:
    return v is True or (isinstance(v, str) and v.lower() in ("true", "t")) or (not isinstance(v, str) and bool(v))


# --------------------------------------------------------------------------- families

def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "tf", "ts", "period"] + columns)


def _emit(out: list, asset: int, tf: str, period: int, ts, columns: dict[str, np.ndarray]) -> None:
    for i in range(len(ts)):
        out.append({"id": asset, "tf": tf, "ts": ts[i], "period": period,
                    **{c: (v[i] if not isinstance(v, (int, np.integer)) else v) for c, v in columns.items()}})


def ema_multi_tf(inputs: Inputs, periods: list[int], tfs: list[str] | None, start) -> pd.DataFrame:
    """§2: bar EMA E = S(B; p) over every canonical close of the bar table (1D: the validated
    daily bars, §2.3), including closes before the spine start (OP-22); spine day t emits
    ema = E_k when t is the canonical day of a close with E_k defined (roll false), else the
    one-step preview alpha*x_t + (1-alpha)*E*, E* = the last defined E on an earlier spine row;
    days without a value are not emitted."""
    spines = daily_spine(inputs, parse_start(start))
    out: list[dict] = []
    for tf, tf_days in tf_day_timeframes(inputs, tfs).items():
        if tf == "1D":
            bars = inputs.bars_1d
        else:
            bars = inputs.bars["price_bars_multi_tf"]
            bars = bars[bars["tf"] == tf]
        bars = bars[~bars["is_partial_end"].astype(bool)].sort_values(["id", "bar_seq"])
        for asset, closes in bars.groupby("id"):
            spine = spines.get(int(asset))
            if spine is None:
                continue
            for p in periods:
                if len(closes) < p:                      # §2.2 step 1 (OP-19: cannot seed)
                    continue
                alpha = 2.0 / (p + 1)
                e = pd.Series(seeded_ema(closes["close"].to_numpy(), p), index=closes["day"].to_numpy())
                on_spine = spine["day"].map(e.dropna()).to_numpy(dtype=float)
                canonical = ~np.isnan(on_spine)
                e_star = pd.Series(on_spine).ffill().shift(1).to_numpy()
                ema = np.where(canonical, on_spine, alpha * spine["x"].to_numpy() + (1 - alpha) * e_star)
                keep = ~np.isnan(ema)
                ema, roll = ema[keep], ~canonical[keep]
                d1_roll, d2_roll, d1, d2 = differences(ema, ~roll)
                _emit(out, int(asset), tf, p, spine["ts"].to_numpy()[keep],
                      {"ema": ema, "tf_days": tf_days, "roll": roll, "d1_roll": d1_roll, "d2_roll": d2_roll,
                       "d1": d1, "d2": d2})
    return _frame(out, SINGLE)


def ema_v2(inputs: Inputs, periods: list[int], tfs: list[str] | None) -> pd.DataFrame:
    """§3: ema = S(x; d*p) with alpha 2/(d*p+1) over the whole validated 1D history (never
    clipped, OP-22); roll = false on every d-th day counted from the id's first bar; rows from
    the seed on (OP-3: a series exists iff it can seed; var ema_min_obs_multiplier at its
    default 1)."""
    spines = daily_spine(inputs, None)
    out: list[dict] = []
    for tf, d in tf_day_timeframes(inputs, tfs).items():
        for asset, spine in spines.items():
            x = spine["x"].to_numpy()
            for p in periods:
                ema = seeded_ema(x, d * p)
                keep = ~np.isnan(ema)
                if not keep.any():
                    continue
                roll = (np.arange(len(x)) + 1) % d != 0
                ema, roll = ema[keep], roll[keep]
                d1_roll, d2_roll, d1, d2 = differences(ema, ~roll)
                _emit(out, asset, tf, p, spine["ts"].to_numpy()[keep],
                      {"ema": ema, "tf_days": d, "roll": roll, "d1_roll": d1_roll, "d2_roll": d2_roll,
                       "d1": d1, "d2": d2})
    return _frame(out, SINGLE)


def _dual_columns(ema, ema_bar, roll, roll_bar, tf_days) -> dict[str, np.ndarray]:
    d1_roll, d2_roll, d1, d2 = differences(ema, ~roll)
    d1_roll_bar, d2_roll_bar, d1_bar, d2_bar = differences(ema_bar, ~roll_bar)
    return {"tf_days": tf_days, "roll": roll, "ema": ema, "d1": d1, "d2": d2, "d1_roll": d1_roll,
            "d2_roll": d2_roll, "ema_bar": ema_bar, "d1_bar": d1_bar, "d2_bar": d2_bar, "roll_bar": roll_bar,
            "d1_roll_bar": d1_roll_bar, "d2_roll_bar": d2_roll_bar}


def ema_cal(inputs: Inputs, scheme: str, periods: list[int], tfs: list[str] | None, start) -> pd.DataFrame:
    """§4: the canonical closes of the calendar bars used only where a spine row (clipped at
    `start`) has that day, B_k = that spine close, so the seed forms inside the spine (OP-22);
    E = S(B; p); from t_p on: ema_bar = E_k on canonical days, alpha_d*x + (1-alpha_d)*ema_bar
    elsewhere; ema = E_p on t_p, then alpha_d*x + (1-alpha_d)*ema every day. alpha_d from
    ema_alpha_lookup (mandatory, OP-7), roll = roll_bar = not a canonical day (any k)."""
    spines = daily_spine(inputs, parse_start(start))
    table = inputs.bars[f"price_bars_multi_tf_cal_{scheme.lower()}"]
    lookup = {(r.tf, int(r.period)): float(r.alpha_ema_dailyspace) for r in inputs.alpha_lookup.itertuples()}
    out: list[dict] = []
    for tf, tf_days in cal_timeframes(inputs, scheme, tfs).items():
        bars = table[(table["tf"] == tf) & ~table["is_partial_end"].astype(bool)]
        for asset, closes in bars.groupby("id"):
            spine = spines.get(int(asset))
            if spine is None:
                continue
            canonical = spine["day"].isin(set(closes["day"])).to_numpy()
            matched = np.flatnonzero(canonical)
            x = spine["x"].to_numpy()
            for p in periods:
                if len(matched) < p:                     # §4.2 step 1
                    continue
                alpha_d = lookup[(tf, p)]
                e = seeded_ema(x[matched], p)
                if np.isnan(e).all():
                    continue
                first = matched[np.flatnonzero(~np.isnan(e))[0]]   # t_p
                e_on = dict(zip(matched, e))
                n = len(x) - first
                ema, ema_bar = np.empty(n), np.empty(n)
                for j, i in enumerate(range(first, len(x))):
                    if j == 0:
                        ema[j] = ema_bar[j] = e_on[i]
                        continue
                    ema[j] = alpha_d * x[i] + (1 - alpha_d) * ema[j - 1]
                    ema_bar[j] = e_on[i] if canonical[i] else alpha_d * x[i] + (1 - alpha_d) * ema_bar[j - 1]
                roll = ~canonical[first:]
                _emit(out, int(asset), tf, p, spine["ts"].to_numpy()[first:],
                      _dual_columns(ema, ema_bar, roll, roll.copy(), tf_days))
    return _frame(out, DUAL)


def ema_cal_anchor(inputs: Inputs, scheme: str, periods: list[int], tfs: list[str] | None, start) -> pd.DataFrame:
    """§5: E = S(B; p) over the last canonical snapshot of each anchored bar, ALL history
    (OP-22: closes before the spine start included); on the spine (clipped at `start`):
    roll = not a canonical day, roll_bar = is_partial_end of that day's snapshot (TRUE without
    one, FALSE on canonical days); ema_bar starts at the first roll_bar = false day with E
    defined, then alpha_d*x + (1-alpha_d)*ema_bar, snapping to E_k on canonical days; ema starts
    there too and compounds every day. alpha_d = 1-(1-2/(p+1))^(1/tf_days_nominal) (OP-6).
    Rows only from the seed on (OP-11); a series exists iff it can seed (OP-19)."""
    spines = daily_spine(inputs, parse_start(start))
    table = inputs.bars[f"price_bars_multi_tf_cal_anchor_{scheme.lower()}"]
    out: list[dict] = []
    for tf, tf_days in cal_anchor_timeframes(inputs, scheme, tfs).items():
        rows = table[table["tf"] == tf]
        for asset, snaps in rows.groupby("id"):
            spine = spines.get(int(asset))
            if spine is None:
                continue
            closes = (snaps[~snaps["is_partial_end"].astype(bool)].sort_values(["bar_seq", "time_close"])
                      .groupby("bar_seq").tail(1).sort_values("time_close"))
            last_snap = snaps.sort_values("time_close").groupby("day")["is_partial_end"].last().astype(bool)
            canonical = spine["day"].isin(set(closes["day"])).to_numpy()
            roll_bar = spine["day"].map(last_snap).fillna(True).astype(bool).to_numpy() & ~canonical
            x = spine["x"].to_numpy()
            for p in periods:
                if len(closes) < p:                      # OP-19
                    continue
                alpha_d = 1 - (1 - 2 / (p + 1)) ** (1 / tf_days)
                e = pd.Series(seeded_ema(closes["close"].to_numpy(), p), index=closes["day"].to_numpy()).dropna()
                e_day = spine["day"].map(e).to_numpy(dtype=float)
                starts = np.flatnonzero(~roll_bar & ~np.isnan(e_day))
                if len(starts) == 0:
                    continue
                first = starts[0]
                n = len(x) - first
                ema, ema_bar = np.empty(n), np.empty(n)
                for j, i in enumerate(range(first, len(x))):
                    if j == 0:
                        ema[j] = ema_bar[j] = e_day[i]
                        continue
                    ema_bar[j] = e_day[i] if canonical[i] and not np.isnan(e_day[i]) else \
                        alpha_d * x[i] + (1 - alpha_d) * ema_bar[j - 1]
                    ema[j] = alpha_d * x[i] + (1 - alpha_d) * ema[j - 1]
                _emit(out, int(asset), tf, p, spine["ts"].to_numpy()[first:],
                      _dual_columns(ema, ema_bar, ~canonical[first:], roll_bar[first:], tf_days))
    return _frame(out, DUAL)


def reference_tables(inputs: Inputs, periods: list[int], tfs: list[str] | None, start) -> dict[str, pd.DataFrame]:
    """The six EMA tables as the spec defines them, for var('ema_periods') = periods (also v2's),
    var('timeframes') = tfs (None: all) and var('ema_start_date') = start ('' / None: no clipping)."""
    return {
        "ema_multi_tf": ema_multi_tf(inputs, periods, tfs, start),
        "ema_multi_tf_v2": ema_v2(inputs, periods, tfs),
        "ema_multi_tf_cal_us": ema_cal(inputs, "US", periods, tfs, start),
        "ema_multi_tf_cal_iso": ema_cal(inputs, "ISO", periods, tfs, start),
        "ema_multi_tf_cal_anchor_us": ema_cal_anchor(inputs, "US", periods, tfs, start),
        "ema_multi_tf_cal_anchor_iso": ema_cal_anchor(inputs, "ISO", periods, tfs, start),
    }
