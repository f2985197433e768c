"""OHLCV frame → 23 causal technical-indicator features, and the train-only scaler.

Every feature at bar t is computed from bars 0..t of the same series only: trailing
rolling windows, exponential averages run forward in time, and positive shifts.
Nothing here is centred or looks ahead; tests/test_causality.py checks it.
Ratios whose denominator can be zero on flat data (a constant price or volume)
fall back to a neutral value instead of producing inf/NaN.

The rolling and exponential averages call pandas' own window kernels on arrays: the code
that Series.rolling and Series.ewm run, bit for bit, without their per-call bookkeeping
(about 0.2 ms a call, which was 70% of a 5,000-bar series' feature time). pandas is pinned,
and tests/test_features.py checks each primitive against the public call it stands for.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas._libs.window import aggregations as window_kernels

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

OHLCV_FIELDS = ("open", "high", "low", "close", "volume")


def _kernel_input(values: np.ndarray) -> np.ndarray:
    """float64, inf as NaN: what pandas' rolling and ewm hand their kernels."""
    values = np.asarray(values, dtype=np.float64)
    infinite = np.isinf(values)
    return np.where(infinite, np.nan, values) if infinite.any() else values


@functools.lru_cache(maxsize=32)
def _trailing_bounds(n_values: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Each bar's window [start, end): the `window` bars up to and including it. Cached:
    a universe's series share a few lengths and every call asks for the same 7 windows."""
    end = np.arange(1, n_values + 1, dtype=np.int64)
    start = np.maximum(end - window, 0)
    start.flags.writeable = end.flags.writeable = False
    return start, end


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Series.rolling(window, min_periods=window).mean()."""
    start, end = _trailing_bounds(len(values), window)
    return window_kernels.roll_mean(_kernel_input(values), start, end, window)


def rolling_std(values: np.ndarray, window: int, ddof: int = 1) -> np.ndarray:
    """Series.rolling(window, min_periods=window).std(ddof): a negative rounding-error
    variance gives 0, as pandas' zsqrt does."""
    start, end = _trailing_bounds(len(values), window)
    variance = window_kernels.roll_var(_kernel_input(values), start, end, window, ddof=ddof)
    with np.errstate(invalid="ignore"):
        std = np.sqrt(variance)
    std[variance < 0] = 0.0
    return std


def rolling_min(values: np.ndarray, window: int) -> np.ndarray:
    start, end = _trailing_bounds(len(values), window)
    return window_kernels.roll_min(_kernel_input(values), start, end, window)


def rolling_max(values: np.ndarray, window: int) -> np.ndarray:
    start, end = _trailing_bounds(len(values), window)
    return window_kernels.roll_max(_kernel_input(values), start, end, window)


def exponential_mean(values: np.ndarray, centre_of_mass: float, min_periods: int) -> np.ndarray:
    """Series.ewm(com=centre_of_mass, adjust=False, min_periods=min_periods).mean()."""
    bounds = np.array([0], dtype=np.int64), np.array([len(values)], dtype=np.int64)
    return window_kernels.ewm(
        _kernel_input(values), *bounds, min_periods, centre_of_mass, False, False, None, True
    )


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    """ewm(span=span): pandas' centre of mass (span - 1) / 2."""
    return exponential_mean(values, float((span - 1) / 2), span)


def _wilder(values: np.ndarray, period: int) -> np.ndarray:
    """Wilder's smoothing (RSI, ATR): an EMA with alpha = 1/period (pandas' centre of mass
    (1 - alpha) / alpha)."""
    alpha = 1 / period
    return exponential_mean(values, float((1 - alpha) / alpha), period)


def _difference(values: np.ndarray, bars: int) -> np.ndarray:
    """Series.diff(bars): NaN for the first `bars` bars."""
    result = np.full(len(values), np.nan)
    result[bars:] = values[bars:] - values[:-bars]
    return result


def _previous(values: np.ndarray) -> np.ndarray:
    """Series.shift(1)."""
    result = np.full(len(values), np.nan)
    result[1:] = values[:-1]
    return result


def _safe_ratio(top: np.ndarray, bottom: np.ndarray, neutral: float) -> np.ndarray:
    """top / bottom, `neutral` where the denominator is 0; NaN stays NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bottom != 0, top / bottom, neutral)
    ratio[np.isnan(top) | np.isnan(bottom)] = np.nan
    return ratio


def _clip(values: np.ndarray, *, lower: bool) -> np.ndarray:
    """values.clip(lower=0) or values.clip(upper=0), NaN kept."""
    keep = (values >= 0 if lower else values <= 0) | np.isnan(values)
    return np.where(keep, values, 0.0)


def _zscore(values: np.ndarray, window: int) -> np.ndarray:
    return _safe_ratio(values - rolling_mean(values, window), rolling_std(values, window), 0.0)


def feature_matrix(frame: pd.DataFrame) -> np.ndarray:
    """Features of one series as a C-ordered float64 (bars, features) array, columns in
    FEATURE_NAMES order; the first WARMUP_BARS rows hold NaN."""
    columns = {name: frame[name].to_numpy(dtype=np.float64) for name in OHLCV_FIELDS}
    close, high, low = columns["close"], columns["high"], columns["low"]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(close)
        ret_1 = _difference(log_close, 1)
        prev_close = _previous(close)

        features: dict[str, np.ndarray] = {}
        for bars in (1, 5, 10, 20, 60):
            features[f"ret_{bars}"] = _difference(log_close, bars)
        for bars in (10, 20, 60):
            features[f"vol_{bars}"] = rolling_std(ret_1, bars)
        features["vol_ratio_10_60"] = _safe_ratio(features["vol_10"], features["vol_60"], 1.0) - 1.0

        change = _difference(close, 1)
        mean_gain = _wilder(_clip(change, lower=True), 14)
        mean_loss = _wilder(-_clip(change, lower=False), 14)
        features["rsi_14"] = _safe_ratio(mean_gain, mean_gain + mean_loss, 0.5) - 0.5

        macd = (_ema(close, 12) - _ema(close, 26)) / close
        signal = _ema(macd, 9)
        features["macd"] = macd
        features["macd_signal"] = signal
        features["macd_hist"] = macd - signal

        # Bollinger's bands, as TA-Lib computes them: the population std (ddof = 0) of 20
        # closes.
        sma_20 = rolling_mean(close, 20)
        std_20 = rolling_std(close, 20, ddof=0)
        features["bb_position_20"] = _safe_ratio(close - sma_20, 2 * std_20, 0.0)
        features["bb_width_20"] = 4 * std_20 / sma_20

        # The largest of the three, NaN where any is NaN (the first bar has no previous
        # close).
        true_range = np.maximum(
            np.maximum(high - low, np.abs(high - prev_close)), np.abs(low - prev_close)
        )
        features["atr_14"] = _wilder(true_range, 14) / close

        lowest = rolling_min(low, 14)
        highest = rolling_max(high, 14)
        stoch_k = _safe_ratio(close - lowest, highest - lowest, 0.5)
        features["stoch_k_14"] = stoch_k
        features["stoch_d_3"] = rolling_mean(stoch_k, 3)

        log_volume = np.log1p(columns["volume"])
        features["volume_z_20"] = _zscore(log_volume, 20)
        features["volume_z_60"] = _zscore(log_volume, 60)

        features["range_hl"] = np.log(high / low)
        features["gap"] = np.log(columns["open"] / prev_close)
        features["sma_ratio_50"] = close / rolling_mean(close, 50) - 1.0

    result = np.empty((len(close), len(FEATURE_NAMES)))
    for position, name in enumerate(FEATURE_NAMES):
        result[:, position] = features[name]
    result[:WARMUP_BARS] = np.nan
    return result


def compute_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Features of one series, index aligned with `frame`; the first WARMUP_BARS rows hold NaN."""
    return pd.DataFrame(feature_matrix(frame), index=frame.index, columns=list(FEATURE_NAMES))


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
