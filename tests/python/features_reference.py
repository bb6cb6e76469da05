"""Reference values of the features models (macros/features/features.sql), per (id, tf) series.

TA-Lib computes the indicators it has (TRANGE, ATR, RSI, BBANDS, MACD); the others come from
their formulas in pandas/NumPy: returns, realized / Parkinson / Garman-Klass volatility, %b,
bandwidth, distances to the 20-bar high and low. The recursion states the models keep
(Wilder averages of RSI, the two EMAs of MACD) are written out here the way TA-Lib computes
them (seeds and update order of ta_RSI.c and ta_MACD.c).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import talib

# every value column of a features table, in table order
VALUE_COLUMNS = [
    "ret", "log_ret", "true_range", "atr_14", "rsi_14",
    "realized_vol_20", "realized_vol_20_ann", "parkinson_vol_20", "parkinson_vol_20_ann",
    "garman_klass_vol_20", "garman_klass_vol_20_ann",
    "bb_middle_20", "bb_upper_20", "bb_lower_20", "bb_pct_b_20", "bb_bandwidth_20",
    "macd_line", "macd_signal", "macd_hist", "dist_high_20", "dist_low_20",
    "rsi_avg_gain_14", "rsi_avg_loss_14", "macd_ema_fast_12", "macd_ema_slow_26",
]
TALIB_COLUMNS = ["true_range", "atr_14", "rsi_14", "bb_middle_20", "bb_upper_20", "bb_lower_20",
                 "macd_line", "macd_signal", "macd_hist"]

# first bar position (0-based) with a value in a series of positive prices
WARM_UP = {
    "ret": 1, "log_ret": 1, "true_range": 1, "atr_14": 14, "rsi_14": 14,
    "realized_vol_20": 20, "realized_vol_20_ann": 20, "parkinson_vol_20": 19, "parkinson_vol_20_ann": 19,
    "garman_klass_vol_20": 19, "garman_klass_vol_20_ann": 19,
    "bb_middle_20": 19, "bb_upper_20": 19, "bb_lower_20": 19, "bb_pct_b_20": 19, "bb_bandwidth_20": 19,
    "macd_line": 33, "macd_signal": 33, "macd_hist": 33, "dist_high_20": 19, "dist_low_20": 19,
    "rsi_avg_gain_14": 14, "rsi_avg_loss_14": 14, "macd_ema_fast_12": 25, "macd_ema_slow_26": 25,
}

# columns whose value is a small difference of price-level quantities: compared relative to the
# price (|ours - ref| <= 1e-9 * close), since a relative error of the difference itself is
# unbounded where it crosses zero; %b is a ratio of such differences, compared on its own scale 1
PRICE_SCALED = {"macd_line", "macd_signal", "macd_hist"}
UNIT_SCALED = {"bb_pct_b_20"}


def bars_per_year(base_unit: str, tf_qty: int, days_per_year: float = 365.0) -> float:
    """Bars in a year of a timeframe (the models' convention, _features.yml)."""
    per_unit = {"D": days_per_year, "W": 365.25 / 7, "M": 12.0, "Q": 4.0, "Y": 1.0}[base_unit]
    return per_unit / tf_qty


def _wilder(x: np.ndarray, n: int, first: int) -> np.ndarray:
    """TA-Lib's Wilder average: mean of x[first:first+n] on position first+n-1, then (prev*(n-1)+x)/n."""
    out = np.full(len(x), np.nan)
    if len(x) < first + n:
        return out
    prev = x[first:first + n].sum() / n
    out[first + n - 1] = prev
    for i in range(first + n, len(x)):
        prev = (prev * (n - 1) + x[i]) / n
        out[i] = prev
    return out


def _ema_from(x: np.ndarray, n: int, seed_end: int) -> np.ndarray:
    """TA-Lib's EMA seeded on position seed_end with the mean of the n values ending there."""
    out = np.full(len(x), np.nan)
    if seed_end >= len(x) or seed_end - n + 1 < 0:
        return out
    k = 2.0 / (n + 1)
    prev = x[seed_end - n + 1:seed_end + 1].sum() / n
    out[seed_end] = prev
    for i in range(seed_end + 1, len(x)):
        prev = (x[i] - prev) * k + prev
        out[i] = prev
    return out


def series_features(bars: pd.DataFrame, per_year: float) -> pd.DataFrame:
    """Expected feature columns of one (id, tf) series: bars sorted by time_close with open,
    high, low, close (floats). NaN = NULL."""
    o, h, lo, c = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    n = len(c)
    out = pd.DataFrame(index=bars.index)
    prev = np.r_[np.nan, c[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ret"] = c / prev - 1
        log_ret = pd.Series(np.where((c > 0) & (prev > 0), np.log(c / prev), np.nan))
        log_hl = np.where((h > 0) & (lo > 0), np.log(h / lo), np.nan)
        log_co = np.where((c > 0) & (o > 0), np.log(c / o), np.nan)
    out["log_ret"] = log_ret.to_numpy()
    out["true_range"] = talib.TRANGE(h, lo, c)
    out["atr_14"] = talib.ATR(h, lo, c, timeperiod=14)
    out["rsi_14"] = talib.RSI(c, timeperiod=14)

    rv = log_ret.rolling(20, min_periods=20).std(ddof=1).to_numpy()
    out["realized_vol_20"] = rv
    out["realized_vol_20_ann"] = rv * math.sqrt(per_year)
    pk = np.sqrt(pd.Series(log_hl ** 2).rolling(20, min_periods=20).mean().to_numpy() / (4 * math.log(2)))
    out["parkinson_vol_20"] = pk
    out["parkinson_vol_20_ann"] = pk * math.sqrt(per_year)
    gk_terms = 0.5 * log_hl ** 2 - (2 * math.log(2) - 1) * log_co ** 2
    gk = np.sqrt(pd.Series(gk_terms).rolling(20, min_periods=20).mean().to_numpy())
    out["garman_klass_vol_20"] = gk
    out["garman_klass_vol_20_ann"] = gk * math.sqrt(per_year)

    upper, middle, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    out["bb_middle_20"], out["bb_upper_20"], out["bb_lower_20"] = middle, upper, lower
    with np.errstate(divide="ignore", invalid="ignore"):
        out["bb_pct_b_20"] = np.where(upper - lower != 0, (c - lower) / (upper - lower), np.nan)
        out["bb_bandwidth_20"] = np.where(middle != 0, (upper - lower) / middle, np.nan)

    macd, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    out["macd_line"], out["macd_signal"], out["macd_hist"] = macd, signal, hist

    high_20 = pd.Series(h).rolling(20, min_periods=20).max().to_numpy()
    low_20 = pd.Series(lo).rolling(20, min_periods=20).min().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["dist_high_20"] = c / high_20 - 1
        out["dist_low_20"] = c / low_20 - 1

    diff = c - prev
    out["rsi_avg_gain_14"] = _wilder(np.where(diff > 0, diff, 0.0), 14, 1) if n > 1 else np.nan
    out["rsi_avg_loss_14"] = _wilder(np.where(diff < 0, -diff, 0.0), 14, 1) if n > 1 else np.nan
    out["macd_ema_fast_12"] = _ema_from(c, 12, 25)
    out["macd_ema_slow_26"] = _ema_from(c, 26, 25)
    return out


def compare_series(ours: pd.DataFrame, expected: pd.DataFrame, label: str, rel: float = 1e-9) -> list[str]:
    """Mismatches (NULL pattern or value) of the value columns of one series; [] = equal."""
    problems = []
    close = ours["close"].to_numpy(dtype=float)
    for col in VALUE_COLUMNS:
        a = ours[col].to_numpy(dtype=float)
        b = expected[col].to_numpy(dtype=float)
        null_a, null_b = np.isnan(a), np.isnan(b)
        if (null_a != null_b).any():
            i = int(np.argmax(null_a != null_b))
            problems.append(f"{label} {col}: NULL differs first at bar {i}: ours={a[i]!r} reference={b[i]!r}")
            continue
        scale = np.abs(close) if col in PRICE_SCALED else (np.ones_like(a) if col in UNIT_SCALED else 0.0)
        both = ~null_a
        tol = rel * np.maximum(np.maximum(np.abs(a), np.abs(b)), scale)
        bad = both & (np.abs(a - b) > tol)
        if bad.any():
            i = int(np.argmax(bad))
            problems.append(f"{label} {col}: bar {i}: ours={a[i]!r} reference={b[i]!r} "
                            f"(rel {abs(a[i] - b[i]) / max(abs(b[i]), 1e-300):.2e})")
    return problems
