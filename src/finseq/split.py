"""Timestamps → folds: train/val/test parts cut at calendar dates shared by every series.

A fold is a set of cut dates. A bar belongs to its train part if it ends in
[train_start, val_start), to val if in [val_start, test_start), to test if in
[test_start, test_end), and to no part of the fold otherwise; a bar ends one bar length
(its series' median bar spacing) after its timestamp, so a daily bar that starts before
an hourly cut and closes after it lies after the cut. Because the cuts are calendar
dates, one series' test period can never overlap another series' training period.

- holdout: one fold; the cuts sit at the `train` and `train + val` fractions of all
  distinct timestamps, and test runs to the last bar.
- walk_forward: the out-of-sample period, from the `oos_start` fraction of the distinct
  timestamps to the last one, is cut into `folds` test blocks of equal calendar length.
  Fold i trains on the history before block i (all of it, or a rolling window of the last
  `history` distinct timestamps), whose most recent `val_share` is its validation part.
  A last fold, `final`, has no test block: it is the refit on all the history that
  becomes models/model.pth.

A sample's label looks `horizon` bars ahead, so a train sample near its fold's val cut
would learn from prices inside val, and a val sample near the test cut from prices of
the test block. Such samples are purged, together with an embargo of `embargo` further
bars (López de Prado, AFML ch. 7): a train or val sample at bar t is kept only if bars
t .. t + horizon + embargo of its series all lie in t's part. Test samples are not
purged at the end of their block: no model of the fold sees anything after the block,
and the later folds that train on this block purge it at their own cuts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from finseq.errors import ConfigError
from finseq.params import SplitConfig

TRAIN, VAL, TEST = 0, 1, 2
OUTSIDE = -1  # a bar that is in no part of the fold
SPLIT_NAMES = ("train", "val", "test")
HOLDOUT = "holdout"
FINAL = "final"

# The tolerance keeps float error from moving a cut: 0.7 * 700 is 489.99999999999994.
_FRACTION_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Fold:
    """Cut dates of one fold; None means unbounded (from the first bar, to the last bar)."""

    name: str
    train_start: np.datetime64 | None
    val_start: np.datetime64
    test_start: np.datetime64 | None  # None: the fold has no test part (the final refit)
    test_end: np.datetime64 | None  # exclusive

    def describe(self) -> dict[str, str | None]:
        """The cut dates as ISO strings, for meta.json, metrics and checkpoints."""

        def iso(stamp: np.datetime64 | None) -> str | None:
            return None if stamp is None else pd.Timestamp(stamp).isoformat()

        return {
            "train_start": iso(self.train_start),
            "val_start": iso(self.val_start),
            "test_start": iso(self.test_start),
            "test_end": iso(self.test_end),
        }


@dataclass(frozen=True)
class FoldPlan:
    """Every fold, the ones whose test parts are scored, and the one models/model.pth is."""

    folds: tuple[Fold, ...]
    evaluated: tuple[str, ...]
    model_fold: str

    def by_name(self, name: str) -> Fold:
        return next(fold for fold in self.folds if fold.name == name)


def distinct_timestamps(timestamps: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(timestamps))


def _fraction_index(fraction: float, count: int) -> int:
    return int(np.floor(fraction * count + _FRACTION_TOLERANCE))


def holdout_fold(distinct: np.ndarray, config: SplitConfig) -> Fold:
    """Cuts at the `train` and `train + val` fractions of all distinct timestamps."""
    val_index = _fraction_index(config.train, len(distinct))
    test_index = _fraction_index(config.train + config.val, len(distinct))
    if not 0 < val_index < test_index < len(distinct):
        raise ConfigError(
            f"split.train = {config.train} and split.val = {config.val} over "
            f"{len(distinct)} distinct timestamps leave a split empty; "
            "choose fractions that give each of train, val and test at least one bar"
        )
    return Fold(HOLDOUT, None, distinct[val_index], distinct[test_index], None)


def _block_starts(distinct: np.ndarray, config: SplitConfig) -> np.ndarray:
    """Indices into `distinct` of each test block's first timestamp, plus len(distinct).

    Blocks have equal calendar length: block i starts at the first timestamp at or after
    first + i * (last - first) / folds.
    """
    first_index = _fraction_index(config.oos_start, len(distinct))
    if not 0 < first_index < len(distinct):
        raise ConfigError(
            f"split.oos_start = {config.oos_start} over {len(distinct)} distinct timestamps "
            "leaves no history before the out-of-sample period or no period after it"
        )
    first = distinct[first_index].astype("datetime64[ns]").astype(np.int64)
    last = distinct[-1].astype("datetime64[ns]").astype(np.int64)
    bounds = first + (last - first) * np.arange(config.folds) // config.folds
    starts = np.searchsorted(distinct.astype("datetime64[ns]").astype(np.int64), bounds)
    starts = np.append(starts, len(distinct))
    if (np.diff(starts) <= 0).any():
        raise ConfigError(
            f"split.folds = {config.folds} over the {len(distinct) - first_index} out-of-sample "
            f"timestamps (split.oos_start = {config.oos_start}) leaves a test block empty; "
            "lower split.folds or split.oos_start"
        )
    return starts


def _history_fold(
    name: str, distinct: np.ndarray, end_index: int, config: SplitConfig
) -> tuple[np.datetime64 | None, np.datetime64]:
    """train_start and val_start of the history that ends before distinct[end_index]."""
    start_index = 0 if config.history == "expanding" else max(0, end_index - config.history)
    span = end_index - start_index
    val_index = start_index + _fraction_index(1 - config.val_share, span)
    if not start_index < val_index < end_index:
        raise ConfigError(
            f"split.val_share = {config.val_share} of the {span} timestamps of fold {name}'s "
            "history leaves its train or val part empty; choose a val_share that gives both "
            "at least one bar"
        )
    train_start = None if start_index == 0 else distinct[start_index]
    return train_start, distinct[val_index]


def walk_forward_folds(distinct: np.ndarray, config: SplitConfig) -> tuple[Fold, ...]:
    starts = _block_starts(distinct, config)
    folds = []
    for number in range(config.folds):
        name = f"f{number + 1}"
        begin, end = starts[number], starts[number + 1]
        train_start, val_start = _history_fold(name, distinct, begin, config)
        test_end = distinct[end] if end < len(distinct) else None
        folds.append(Fold(name, train_start, val_start, distinct[begin], test_end))
    train_start, val_start = _history_fold(FINAL, distinct, len(distinct), config)
    folds.append(Fold(FINAL, train_start, val_start, None, None))
    return tuple(folds)


def fold_plan(timestamps: list[np.ndarray], config: SplitConfig) -> FoldPlan:
    """The folds `split.method` asks for, over the timestamps of every series."""
    distinct = distinct_timestamps(timestamps)
    if config.method == "holdout":
        return FoldPlan((holdout_fold(distinct, config),), (HOLDOUT,), HOLDOUT)
    folds = walk_forward_folds(distinct, config)
    return FoldPlan(folds, tuple(fold.name for fold in folds[:-1]), FINAL)


def bar_length(timestamps: np.ndarray) -> np.timedelta64:
    """A series' bar length: the median spacing of its consecutive bars (0 for one bar)."""
    if len(timestamps) < 2:
        return np.timedelta64(0, "ns")
    steps = np.diff(timestamps.astype("datetime64[ns]")).astype(np.int64)
    return np.timedelta64(int(np.median(steps)), "ns")


def lockbox_instant(lockbox: str) -> np.datetime64:
    """split.lockbox as the naive UTC instant the loaded timestamps are in."""
    stamp = pd.Timestamp(lockbox)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.to_datetime64(), "ns")


def before_lockbox(timestamps: np.ndarray, lockbox: str | None) -> np.ndarray:
    """True for each bar of one series that ends before the lockbox date: the bars any
    default stage may read. As in assign_parts, a bar ends one bar length after its
    timestamp (the length measured on the bars that start before the date), so a weekly
    bar that starts before the date and closes after it is sealed with the bars after it."""
    stamps = np.asarray(timestamps).astype("datetime64[ns]")
    if lockbox is None:
        return np.ones(len(stamps), dtype=bool)
    cut = lockbox_instant(lockbox)
    one_ns = np.timedelta64(1, "ns")
    length = max(bar_length(stamps[stamps < cut]), one_ns)
    return stamps + length - one_ns < cut


def assign_parts(timestamps: np.ndarray, fold: Fold) -> np.ndarray:
    """TRAIN, VAL, TEST or OUTSIDE (int8) for each bar of one series, in this fold.

    A timestamp is the start of its bar, and the bar's High, Low and Close form until it
    ends, one bar length later. So a bar belongs to the part in which it ends: one that
    starts before a cut and ends after it (a daily bar on the day an hourly series puts
    the cut at 14:00) falls after the cut. When every series' bars start on the cut dates,
    as daily bars of one calendar do, this is the part in which the bar starts.
    """
    one_ns = np.timedelta64(1, "ns")
    last_instant = timestamps.astype("datetime64[ns]") + max(bar_length(timestamps), one_ns)
    last_instant -= one_ns
    parts = np.full(len(timestamps), TRAIN, dtype=np.int8)
    parts[last_instant >= fold.val_start] = VAL
    if fold.test_start is not None:
        parts[last_instant >= fold.test_start] = TEST
    if fold.train_start is not None:
        parts[last_instant < fold.train_start] = OUTSIDE
    if fold.test_end is not None:
        parts[last_instant >= fold.test_end] = OUTSIDE
    return parts


def purge_mask(split: np.ndarray, horizon: int, embargo: int) -> np.ndarray:
    """True where bars t .. t + horizon + embargo of one series stay in t's part.

    `split` holds one series' parts in time order. Past the series' end there are no
    bars, hence nothing to leak; labels that need those bars are undefined anyway
    and are removed by the label mask.
    """
    reach = horizon + embargo
    split_ahead = np.full(len(split), split[-1] if len(split) else 0, dtype=split.dtype)
    if reach < len(split):
        split_ahead[: len(split) - reach] = split[reach:]
    # Train, val and test follow each other in time, so equal codes at t and t + reach
    # mean every bar between them is in the same part.
    return split_ahead == split


def sample_mask(parts: np.ndarray, labelled: np.ndarray, horizon: int, embargo: int) -> np.ndarray:
    """Samples of one series in one fold: labelled, in a part, and purged at the fold's cuts.

    Test samples are kept up to the end of their block (see the module docstring).
    """
    kept = purge_mask(parts, horizon, embargo) | (parts == TEST)
    return labelled & kept & (parts != OUTSIDE)


def counts_by_series_and_part(series: np.ndarray, parts: np.ndarray, n_series: int) -> np.ndarray:
    """counts[series, part]: how many of the given rows fall in each series and part."""
    n_splits = len(SPLIT_NAMES)
    inside = parts >= 0
    flat = np.bincount(
        series[inside].astype(np.int64) * n_splits + parts[inside], minlength=n_series * n_splits
    )
    return flat.reshape(n_series, n_splits)
