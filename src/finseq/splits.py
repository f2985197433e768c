"""Split-like steps of the Adj Close / Close factor, and volume adjusted for them: pure
functions of one series' arrays, which finseq.load applies and notes."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

# Adj Close / Close steps by a ratio of small whole numbers (2:1, 3:2, 1:10, ...) at a split
# the Close column was not adjusted for; a dividend moves it by a few percent at most.
SPLIT_RATIOS = sorted(
    {p / q for p in range(1, 11) for q in range(1, 11) if p != q and max(p, q) / min(p, q) >= 1.25}
)
SPLIT_TOLERANCE = 0.01


def split_like_steps(factor: np.ndarray) -> list[tuple[int, str]]:
    """Bars where the adjustment factor steps by a split-like ratio, with the ratio as 'p:q'."""
    return [(position, f"{r.numerator}:{r.denominator}") for position, r in split_steps(factor)]


def split_adjusted_volume(volume: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Volume in the shares of the first bar: each bar's volume divided by every split ratio
    up to it (a 2:1 split halves the volume from it on). The vendors' convention (CRSP,
    Yahoo) counts in the last bar's shares instead, which makes every bar's volume depend
    on the splits after it: on bars not yet seen, or sealed in the lockbox. Counted from
    the first bar, a bar's volume depends only on bars up to it; the volume features are
    z-scores of its logarithm, which a constant factor barely moves. Only the split-like
    steps of the factor count: a dividend changes no share count."""
    adjusted = volume.copy()
    for position, ratio in split_steps(factor):
        adjusted[position:] /= float(ratio)
    return adjusted


def split_steps(factor: np.ndarray) -> list[tuple[int, Fraction]]:
    """Bars where the adjustment factor steps by a split-like ratio, and that ratio."""
    steps = factor[1:] / factor[:-1]
    found = []
    for position in np.flatnonzero((steps >= 1.25) | (steps <= 0.8)):
        step = steps[position]
        nearest = min(SPLIT_RATIOS, key=lambda ratio: abs(np.log(step / ratio)))
        if abs(np.log(step / nearest)) <= SPLIT_TOLERANCE:
            found.append((int(position) + 1, Fraction(nearest).limit_denominator(10)))
    return found
