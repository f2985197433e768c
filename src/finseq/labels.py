"""OHLCV frame → one label per bar: -1 (down), 0 (flat), 1 (up), or NaN when undefined.

The label at bar t looks only at bars t+1 .. t+horizon (and at the trailing
volatility known at t, which sets the barrier width). The last `horizon` bars of
a series and the bars before the volatility is defined have no label: they are NaN and
must be dropped, never filled. Nor has a triple-barrier bar whose first touching bar
touched both barriers in an unknown order (see triple_barrier_outcome).

Barrier width, in log-return units, for both methods:
    width_t = threshold * vol_t * sqrt(horizon)
where vol_t is the standard deviation of the last `vol_window` one-bar log returns
up to and including bar t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finseq.params import LabelConfig

# Class index i of every model's output stands for label CLASS_LABELS[i]: class = label + 1.
CLASS_LABELS = (-1, 0, 1)
NUM_CLASSES = len(CLASS_LABELS)
# The prepared label of a test window whose triple-barrier tie its open cannot decide: it is
# traded in the backtest and left out of every classification metric (class UNKNOWN + 1 < 0).
UNKNOWN_LABEL = -2


def trailing_volatility(close: np.ndarray, vol_window: int) -> np.ndarray:
    """Std of the `vol_window` one-bar log returns ending at each bar; NaN until defined."""
    returns = pd.Series(np.log(close)).diff()
    return returns.rolling(vol_window, min_periods=vol_window).std().to_numpy()


def to_classes(labels: np.ndarray) -> np.ndarray:
    """Class indices (int64) of -1/0/1 labels: class = label + 1 (UNKNOWN_LABEL maps below 0)."""
    return np.asarray(labels).astype(np.int64) + 1


def ahead(values: np.ndarray, bars: int) -> np.ndarray:
    """values[t + bars] at position t, NaN past the end."""
    shifted = np.full(len(values), np.nan)
    if bars < len(values):
        shifted[: len(values) - bars] = values[bars:]
    return shifted


def fixed_horizon_labels(close: np.ndarray, width: np.ndarray, horizon: int) -> np.ndarray:
    """Sign of the log return from t to t+horizon, 0 unless it exceeds the width strictly."""
    forward = ahead(np.log(close), horizon) - np.log(close)
    labels = np.where(forward > width, 1.0, np.where(forward < -width, -1.0, 0.0))
    labels[np.isnan(forward) | np.isnan(width)] = np.nan
    return labels


# Codes of `triple_barrier_outcome`'s tie array: how a bar that touched both barriers ended.
NO_TIE, TIE_DECIDED_BY_OPEN, TIE_UNDECIDED = 0, 1, 2


def triple_barrier_outcome(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    width: np.ndarray,
    horizon: int,
) -> tuple[np.ndarray, np.ndarray]:
    """First barrier touched by the bars after t: +1 upper, -1 lower, 0 vertical; and ties.

    The upper barrier is touched when a bar's High reaches close_t * exp(width),
    the lower when its Low reaches close_t * exp(-width) (touching counts). If neither
    is touched within `horizon` bars, the vertical barrier gives 0.

    When the first bar to touch a barrier touches both, its open decides where it can: an
    open at or beyond a barrier touched that barrier first, being the bar's first price.
    Otherwise the order inside the bar is unknown, and the label is undefined (NaN): taught
    as 0, "flat" would come to mean "volatile" whenever one bar's range spans both
    barriers, which a small `threshold` makes the usual case. (prepare leaves such bars out
    of training and validation; test keeps them for the backtest only; see
    panel._fold_samples.)

    Returns the labels and, per bar, NO_TIE, TIE_DECIDED_BY_OPEN or TIE_UNDECIDED (int8).
    """
    entry = np.log(close)
    labels = np.full(len(close), np.nan)
    ties = np.full(len(close), NO_TIE, dtype=np.int8)
    undecided = ~np.isnan(width)
    undecided[max(len(close) - horizon, 0) :] = False
    labels[undecided] = 0.0
    for bars in range(1, horizon + 1):
        up = (ahead(np.log(high), bars) - entry >= width) & undecided
        down = (ahead(np.log(low), bars) - entry <= -width) & undecided
        both = up & down
        opening = ahead(np.log(open_), bars) - entry
        # With a zero width an open at the entry price is at both barriers: still unknown.
        at_upper, at_lower = opening >= width, opening <= -width
        opened_up = both & at_upper & ~at_lower
        opened_down = both & at_lower & ~at_upper
        labels[(up & ~down) | opened_up] = 1.0
        labels[(down & ~up) | opened_down] = -1.0
        ties[opened_up | opened_down] = TIE_DECIDED_BY_OPEN
        unknown = both & ~opened_up & ~opened_down
        labels[unknown] = np.nan
        ties[unknown] = TIE_UNDECIDED
        undecided &= ~(up | down)
    return labels, ties


def label_outcome(frame: pd.DataFrame, config: LabelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Labels for one series as a float array (NaN where undefined), and its tie codes
    (all NO_TIE for fixed_horizon, which reads closes only)."""
    close = frame["close"].to_numpy()
    width = (
        config.threshold * trailing_volatility(close, config.vol_window) * np.sqrt(config.horizon)
    )
    if config.method == "fixed_horizon":
        labels = fixed_horizon_labels(close, width, config.horizon)
        return labels, np.full(len(close), NO_TIE, dtype=np.int8)
    return triple_barrier_outcome(
        frame["open"].to_numpy(),
        frame["high"].to_numpy(),
        frame["low"].to_numpy(),
        close,
        width,
        config.horizon,
    )


def make_labels(frame: pd.DataFrame, config: LabelConfig) -> np.ndarray:
    """Labels for one series as a float array (NaN where undefined)."""
    return label_outcome(frame, config)[0]
