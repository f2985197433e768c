"""OHLCV frame → 23 causal technical-indicator features, and the train-only scaler.

Every feature at bar t is computed from bars 0..t of the same series only: trailing
rolling windows, exponential averages run forward in time, and positive shifts.
Nothing here is centred or looks ahead; tests/test_causality.py checks it.
Ratios whose denominator can be zero on flat data (a constant price or volume)
fall back to a neutral value instead of producing inf/NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURE_NAMES: tuple[str, ...] = (
    "ret_1",
    "ret_5",
    "ret_10",
    "ret_20",
    "ret_60",
    "vol_10",
    "vol_20",
    "vol_60",
    "vol_ratio_10_60",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_position_20",
    "bb_width_20",
    "atr_14",
    "stoch_k_14",
    "stoch_d_3",
    "volume_z_20",
    "volume_z_60",
    "range_hl",
    "gap",
    "sma_ratio_50",
)

# The first bar at which every feature is defined: ret_60 and vol_60 need 60 earlier closes.
WARMUP_BARS = 60


def _safe_ratio(numerator: pd.Series, denominator: pd.Series, neutral: float) -> pd.Series:
    """numerator / denominator, `neutral` where the denominator is 0; NaN stays NaN.

    In NumPy: the same IEEE division as pandas' operators, at a fraction of their overhead.
    """
    top, bottom = numerator.to_numpy(), denominator.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bottom != 0, top / bottom, neutral)
    ratio[np.isnan(top) | np.isnan(bottom)] = np.nan
    return pd.Series(ratio, index=numerator.index)


def _clip(values: pd.Series, *, lower: bool) -> pd.Series:
    """values.clip(lower=0) or values.clip(upper=0), in NumPy, bit for bit (NaN kept)."""
    array = values.to_numpy()
    keep = (array >= 0 if lower else array <= 0) | np.isnan(array)
    return pd.Series(np.where(keep, array, 0.0), index=values.index)


def _ema(values: pd.Series, span: int) -> pd.Series:
    return values.ewm(span=span, adjust=False, min_periods=span).mean()


def _wilder(values: pd.Series, period: int) -> pd.Series:
    """Wilder's smoothing (RSI, ATR): an EMA with alpha = 1/period."""
    return values.ewm(alpha=1 / period, adjust=False, min_periods=period).mean()


def _zscore(values: pd.Series, window: int) -> pd.Series:
    rolling = values.rolling(window, min_periods=window)
    return _safe_ratio(values - rolling.mean(), rolling.std(), 0.0)


def compute_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Features of one series, index aligned with `frame`; the first WARMUP_BARS rows hold NaN."""
    close, high, low = frame["close"], frame["high"], frame["low"]
    log_close = np.log(close)
    ret_1 = log_close.diff()
    prev_close = close.shift(1)

    features: dict[str, pd.Series] = {}
    for bars in (1, 5, 10, 20, 60):
        features[f"ret_{bars}"] = log_close.diff(bars)
    for bars in (10, 20, 60):
        features[f"vol_{bars}"] = ret_1.rolling(bars, min_periods=bars).std()
    features["vol_ratio_10_60"] = _safe_ratio(features["vol_10"], features["vol_60"], 1.0) - 1.0

    change = close.diff()
    mean_gain = _wilder(_clip(change, lower=True), 14)
    mean_loss = _wilder(-_clip(change, lower=False), 14)
    rs_total = mean_gain + mean_loss
    features["rsi_14"] = _safe_ratio(mean_gain, rs_total, 0.5) - 0.5

    macd = (_ema(close, 12) - _ema(close, 26)) / close
    signal = _ema(macd, 9)
    features["macd"] = macd
    features["macd_signal"] = signal
    features["macd_hist"] = macd - signal

    # Bollinger's bands, as TA-Lib computes them: the population std (ddof = 0) of 20 closes.
    sma_20 = close.rolling(20, min_periods=20).mean()
    std_20 = close.rolling(20, min_periods=20).std(ddof=0)
    features["bb_position_20"] = _safe_ratio(close - sma_20, 2 * std_20, 0.0)
    features["bb_width_20"] = 4 * std_20 / sma_20

    # The largest of the three, NaN where any is NaN (the first bar has no previous close).
    true_range = pd.Series(
        np.maximum(
            np.maximum((high - low).to_numpy(), (high - prev_close).abs().to_numpy()),
            (low - prev_close).abs().to_numpy(),
        ),
        index=frame.index,
    )
    features["atr_14"] = _wilder(true_range, 14) / close

    lowest = low.rolling(14, min_periods=14).min()
    highest = high.rolling(14, min_periods=14).max()
    stoch_k = _safe_ratio(close - lowest, highest - lowest, 0.5)
    features["stoch_k_14"] = stoch_k
    features["stoch_d_3"] = stoch_k.rolling(3, min_periods=3).mean()

    log_volume = np.log1p(frame["volume"])
    features["volume_z_20"] = _zscore(log_volume, 20)
    features["volume_z_60"] = _zscore(log_volume, 60)

    features["range_hl"] = np.log(high / low)
    features["gap"] = np.log(frame["open"] / prev_close)
    features["sma_ratio_50"] = close / close.rolling(50, min_periods=50).mean() - 1.0

    result = pd.DataFrame(features, index=frame.index)[list(FEATURE_NAMES)]
    result.iloc[:WARMUP_BARS] = np.nan
    return result


# Rows per block in the scaler: float64 temporaries stay a few MB however large the panel.
SCALER_BLOCK_ROWS = 1 << 15


def _row_blocks(n_rows: int) -> Iterator[slice]:
    for start in range(0, n_rows, SCALER_BLOCK_ROWS):
        yield slice(start, start + SCALER_BLOCK_ROWS)


@dataclass(frozen=True)
class StandardScaler:
    """Per-feature mean and standard deviation, fit on training rows only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, train_rows: np.ndarray | Iterable[np.ndarray]) -> StandardScaler:
        """Fits on one array of rows, or on arrays of rows taken one at a time (e.g. one per
        series), in blocks merged exactly (Chan et al.), so that memory stays flat.

        A constant feature (std within rounding of zero) gets std 1, so it scales to 0
        rather than to inf or rounding noise.
        """
        arrays = [train_rows] if isinstance(train_rows, np.ndarray) else train_rows
        count, mean, m2 = 0, 0.0, 0.0
        for array in arrays:
            for block in _row_blocks(len(array)):
                values = array[block].astype(np.float64, copy=False)
                n = len(values)
                if n == 0:
                    continue
                block_mean = values.mean(axis=0)
                block_m2 = np.square(values - block_mean).sum(axis=0)
                delta = block_mean - mean
                total = count + n
                mean = mean + delta * (n / total)
                m2 = m2 + block_m2 + np.square(delta) * (count * n / total)
                count = total
        if count == 0:
            raise ValueError("cannot fit a scaler on zero rows")
        std = np.sqrt(m2 / count)
        constant = std <= 1e-12 * np.maximum(np.abs(mean), 1.0)
        return cls(mean=mean, std=np.where(constant, 1.0, std))

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """float32 z-scores, computed in float64 block by block."""
        scaled = np.empty(rows.shape, dtype=np.float32)
        for block in _row_blocks(len(rows)):
            scaled[block] = np.subtract(rows[block], self.mean, dtype=np.float64) / self.std
        return scaled
