"""Timestamps → train/val/test by calendar cut dates shared by every series, with purge and embargo.

A bar belongs to train if it is before `val_start`, to val if before `test_start`,
else to test. Because the cuts are calendar dates, one series' test period can
never overlap another series' training period.

A sample's label looks `horizon` bars ahead, so a sample near the end of train
would learn from prices inside val. Such samples are purged, together with an
embargo of `embargo` further bars (López de Prado, AFML ch. 7): a sample at bar t
is kept only if bars t .. t + horizon + embargo of its series all lie in t's split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finseq.errors import ConfigError
from finseq.params import SplitConfig

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class CutDates:
    val_start: np.datetime64
    test_start: np.datetime64


def cut_dates(timestamps: list[np.ndarray], config: SplitConfig) -> CutDates:
    """Cuts at the `train` and `train + val` fractions of all distinct timestamps of all series."""
    distinct = np.unique(np.concatenate(timestamps))
    # The tolerance keeps float error from moving a cut: 0.7 * 700 is 489.99999999999994.
    val_index = int(np.floor(config.train * len(distinct) + 1e-9))
    test_index = int(np.floor((config.train + config.val) * len(distinct) + 1e-9))
    if not 0 < val_index < test_index < len(distinct):
        raise ConfigError(
            f"split.train = {config.train} and split.val = {config.val} over "
            f"{len(distinct)} distinct timestamps leave a split empty; "
            "choose fractions that give each of train, val and test at least one bar"
        )
    return CutDates(val_start=distinct[val_index], test_start=distinct[test_index])


def assign_split(timestamps: np.ndarray, cuts: CutDates) -> np.ndarray:
    """TRAIN, VAL or TEST (int8) for each timestamp."""
    split = np.full(len(timestamps), TRAIN, dtype=np.int8)
    split[timestamps >= cuts.val_start] = VAL
    split[timestamps >= cuts.test_start] = TEST
    return split


def purge_mask(split: np.ndarray, horizon: int, embargo: int) -> np.ndarray:
    """True where bars t .. t + horizon + embargo of one series stay in t's split.

    `split` holds one series' bars in time order. Past the series' end there are no
    bars, hence nothing to leak; labels that need those bars are undefined anyway
    and are removed by the label mask.
    """
    reach = horizon + embargo
    split_ahead = np.full(len(split), split[-1] if len(split) else 0, dtype=split.dtype)
    if reach < len(split):
        split_ahead[: len(split) - reach] = split[reach:]
    # Splits only move forward in time, so equal split codes at t and t + reach mean
    # every bar between them is in the same split.
    return split_ahead == split
