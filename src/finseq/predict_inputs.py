"""The files given to finseq predict → each series' scaled feature rows: the predicted bars'
windows and nothing before them, read and validated as prepare does, in a pool.

Windows are causal, so a bar's prediction does not change when later bars are appended.
It does depend on where the file starts: the EMA and Wilder features carry the first bars'
influence, which decays by about 7% a bar. A bar whose window's earliest row has
CONVERGED_BARS bars before it agrees with a longer history to about 1e-7 (the figures
are in docs/predicting.md); shorter files get a note.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.errors import DataError, note
from finseq.features import WARMUP_BARS, StandardScaler, feature_matrix
from finseq.inputs import split_sources
from finseq.load import validate_series
from finseq.prepare import check_finite_features, series_name
from finseq.progress import tracked
from finseq.runtime import usable_cores

# Bars of history before a window's earliest row after which the slowest features (MACD's
# EMAs, Wilder's RSI and ATR) agree with a longer history's to about 5e-8.
CONVERGED_BARS = 240

# Tasks (files, or the series of a few files) per process below which a pool costs more
# than it saves.
TASKS_PER_WORKER = 4


@dataclass(frozen=True)
class Selection:
    """Which bars of each file to predict: the last `last`, those from `since`, or all."""

    last: int | None = 1
    since: pd.Timestamp | None = None

    def first_row(self, path: str, timestamps: np.ndarray, first_possible: int) -> int:
        """Index of the first bar to predict (every bar from it to the end is predicted)."""
        if self.since is not None:
            if self.since > timestamps[-1]:
                raise DataError(
                    f"{path}: --since {self.since} is after the file's last bar "
                    f"({pd.Timestamp(timestamps[-1])})"
                )
            since = np.datetime64(self.since.to_datetime64(), "ns")
            return max(first_possible, int(np.searchsorted(timestamps, since)))
        if self.last is not None:
            return max(first_possible, len(timestamps) - self.last)
        return first_possible


@dataclass(frozen=True)
class ModelInputs:
    """What the checkpoint says about its inputs: window length, scaler, and whether its
    volume was split-adjusted (data.adjust_volume; a checkpoint from before it was not)."""

    seq_len: int
    scaler: StandardScaler
    adjust_volume: bool = False

    @property
    def bars_needed(self) -> int:
        """The fewest bars that give one prediction: the features' warm-up, then one window."""
        return WARMUP_BARS + self.seq_len

    @property
    def bars_for_full_history(self) -> int:
        """History up to a predicted bar for it to agree with a longer file's (module doc)."""
        return CONVERGED_BARS + self.seq_len


@dataclass(frozen=True)
class SeriesInputs:
    """One file's scaled feature rows: the predicted bars' windows, and nothing before them."""

    path: str
    name: str
    timestamps: np.ndarray  # datetime64[ns] of the predicted bars
    rows: np.ndarray  # float32 (seq_len - 1 + predicted bars, features)
    first_history: int  # bars in the file up to and including the first predicted bar


@dataclass(frozen=True)
class EndedBefore:
    """A series whose last bar comes before --since: a panel leaves it out (a delisted
    symbol); a file of nothing else is refused."""

    path: str
    last: np.datetime64


def source_inputs(
    key: str, rows: pd.DataFrame, inputs: ModelInputs, selection: Selection
) -> SeriesInputs | EndedBefore:
    """One series' rows as read (split_sources), validated as prepare validates them."""
    frame = validate_series(Path(key), rows, inputs.adjust_volume)
    if selection.since is not None and frame.index[-1] < selection.since:
        return EndedBefore(key, frame.index[-1])
    return series_inputs(key, frame, inputs, selection)


def file_inputs(
    path: str, inputs: ModelInputs, selection: Selection
) -> list[SeriesInputs | EndedBefore]:
    """Every series of one file (one, or a panel's symbols)."""
    return [
        source_inputs(key, rows, inputs, selection) for key, rows in split_sources(path).items()
    ]


def kept_series(
    path: str, results: list[SeriesInputs | EndedBefore], selection: Selection
) -> list[SeriesInputs]:
    """One file's series under --since: a panel's symbols that end before it are left out
    with a note; a file with no bar from it on is refused."""
    ended = [one for one in results if isinstance(one, EndedBefore)]
    if not ended:
        return results
    if len(ended) == len(results):
        raise DataError(
            f"{ended[0].path}: --since {selection.since} is after the file's last bar "
            f"({pd.Timestamp(ended[0].last)})"
        )
    names = ", ".join(series_name(one.path) for one in ended[:5])
    more = f" and {len(ended) - 5} more" if len(ended) > 5 else ""
    note(
        f"{path}: {len(ended)} symbol(s) end before --since {selection.since.date()} "
        f"and are not predicted ({names}{more})"
    )
    return [one for one in results if not isinstance(one, EndedBefore)]


def series_inputs(
    path: str, frame: pd.DataFrame, inputs: ModelInputs, selection: Selection
) -> SeriesInputs:
    """The scaled rows the predicted windows of one loaded series (`path`: its key) read."""
    if len(frame) < inputs.bars_needed:
        raise DataError(
            f"{path}: only {len(frame)} bars; predicting needs at least {inputs.bars_needed} "
            f"(warm-up {WARMUP_BARS} + the model's seq_len {inputs.seq_len})"
        )
    timestamps = frame.index.to_numpy()
    first = selection.first_row(path, timestamps, inputs.bars_needed - 1)
    features = feature_matrix(frame)
    check_finite_features(path, frame, features[WARMUP_BARS:])
    rows = inputs.scaler.transform(features[first - inputs.seq_len + 1 :])
    return SeriesInputs(
        path=path,
        name=series_name(path),
        timestamps=timestamps[first:],
        rows=rows,
        first_history=first + 1,
    )


def map_tasks(
    function: Callable[[object], object],
    items: Sequence,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> list:
    """`function` over `items`, in order; in a pool of one process per core when there are
    enough. `initializer(*initargs)` runs first in each process (forked, so its arguments
    are inherited, never pickled). The first item that fails (in order) raises, as in one
    process."""
    workers = min(usable_cores(), len(items) // TASKS_PER_WORKER)
    if workers < 2:
        if initializer is not None:
            initializer(*initargs)
        return list(tracked(map(function, items), len(items), "predict", "series"))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        chunk = max(1, len(items) // (4 * workers))
        results = pool.map(function, items, chunksize=chunk)
        return list(tracked(results, len(items), "predict", "series"))


# A few files' series, read in the parent, as each forked worker of gather_inputs sees them.
_split: list[tuple[str, pd.DataFrame]] = []


def _share_split(split: list[tuple[str, pd.DataFrame]]) -> None:
    _split[:] = split


def _split_inputs(
    index: int, inputs: ModelInputs, selection: Selection
) -> SeriesInputs | EndedBefore:
    key, rows = _split[index]
    return source_inputs(key, rows, inputs, selection)


def gather_inputs(
    paths: Sequence[str], inputs: ModelInputs, selection: Selection
) -> list[SeriesInputs]:
    """Every series of every file, in file order. Many files are a task each; a few (one
    panel of a universe) are read and split here, and each of their series is a task."""
    if len(paths) >= TASKS_PER_WORKER * usable_cores():
        by_file = map_tasks(partial(file_inputs, inputs=inputs, selection=selection), paths)
    else:
        split = [(path, list(split_sources(path).items())) for path in paths]
        flat = [one for _, parts in split for one in parts]
        try:
            results = map_tasks(
                partial(_split_inputs, inputs=inputs, selection=selection),
                range(len(flat)),
                initializer=_share_split,
                initargs=(flat,),
            )
        finally:
            _split.clear()
        offsets = np.cumsum([0] + [len(parts) for _, parts in split])
        by_file = [results[start:stop] for start, stop in itertools.pairwise(offsets)]
    return [
        one
        for path, results in zip(paths, by_file, strict=True)
        for one in kept_series(path, results, selection)
    ]


def note_short_history(series: SeriesInputs, inputs: ModelInputs) -> None:
    needed = inputs.bars_for_full_history
    if series.first_history >= needed:
        return
    short_bars = min(len(series.timestamps), needed - series.first_history)
    note(
        f"{series.path}: {short_bars} predicted bar(s) have fewer than {needed} bars of history "
        f"(the first has {series.first_history}); their features still depend on where the "
        "file starts, so they may differ from a longer file's by more than 1e-6"
    )
