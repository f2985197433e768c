"""The files given to finseq predict → each series' scaled feature rows: the predicted bars'
windows and nothing before them, read and validated as prepare does, in a pool.

Windows are causal, so a bar's prediction does not change when later bars are appended.
It does depend on where the file starts: the EMA and Wilder features carry the first bars'
influence, which decays by about 7% a bar. A bar whose window's earliest row has
CONVERGED_BARS bars before it agrees with a longer history to about 1e-7 (the figures
are in docs/predicting.md); shorter files get a note.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.errors import DataError, UserError, note
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
class SeriesOutcome:
    """One series as a task leaves it: its inputs, or the DataError computing them raised
    (too few bars, --since after its end, ...), kept to be raised where one process would
    raise it: after every series of its file is validated; and whether it ends before
    --since (a delisted symbol of a panel)."""

    key: str
    inputs: SeriesInputs | None
    problem: DataError | None
    ended: bool


@dataclass(frozen=True)
class TaskResult:
    """What a task printed (replayed by the parent, in task order), its series, and the
    error that stopped it (reading or validating)."""

    notes: str
    outcomes: list[SeriesOutcome]
    error: UserError | None


def source_outcome(
    key: str, rows: pd.DataFrame, inputs: ModelInputs, selection: Selection
) -> SeriesOutcome:
    """One series' rows as read (split_sources), validated as prepare validates them (a
    validation error raises), then its inputs computed."""
    frame = validate_series(Path(key), rows, inputs.adjust_volume)
    ended = selection.since is not None and bool(frame.index[-1] < selection.since)
    try:
        return SeriesOutcome(key, series_inputs(key, frame, inputs, selection), None, ended)
    except DataError as exc:
        return SeriesOutcome(key, None, exc, ended)


def run_task(
    sources: Callable[[], Iterable], inputs: ModelInputs, selection: Selection
) -> TaskResult:
    """`sources()` (keys and rows) → their outcomes, with the notes printed on the way and
    the error that stopped them."""
    notes, outcomes, error = io.StringIO(), [], None
    with contextlib.redirect_stderr(notes):
        try:
            for key, rows in sources():
                outcomes.append(source_outcome(key, rows, inputs, selection))
        except UserError as exc:
            error = exc
    return TaskResult(notes.getvalue(), outcomes, error)


def file_task(path: str, inputs: ModelInputs, selection: Selection) -> TaskResult:
    """Every series of one file (one, or a panel's symbols): a task of a pool of files."""
    return run_task(lambda: split_sources(path).items(), inputs, selection)


def replayed(result: TaskResult) -> list[SeriesOutcome]:
    """A task's notes printed here, its error raised here, its outcomes returned."""
    sys.stderr.write(result.notes)
    if result.error is not None:
        raise result.error
    return result.outcomes


def file_series(
    path: str, outcomes: list[SeriesOutcome], selection: Selection
) -> list[SeriesInputs]:
    """One file's series as one process gives them: under --since, a panel's symbols that
    end before it are left out with a note (unless all do); then the first problem of the
    others is raised."""
    ended = [one for one in outcomes if one.ended]
    if len(outcomes) > 1 and ended and len(ended) < len(outcomes):
        names = ", ".join(series_name(one.key) for one in ended[:5])
        more = f" and {len(ended) - 5} more" if len(ended) > 5 else ""
        note(
            f"{path}: {len(ended)} symbol(s) end before --since {selection.since.date()} "
            f"and are not predicted ({names}{more})"
        )
        outcomes = [one for one in outcomes if not one.ended]
    for one in outcomes:
        if one.problem is not None:
            raise one.problem
    return [one.inputs for one in outcomes]


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
    function: Callable[[object], TaskResult],
    items: Sequence,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Iterator[TaskResult]:
    """`function` over `items`, yielded in order as they come; in a pool of one process per
    core when there are enough. `initializer(*initargs)` runs first in each process
    (forked, so its arguments are inherited, never pickled). Close it (contextlib.closing)
    to end the pool early."""
    workers = min(usable_cores(), len(items) // TASKS_PER_WORKER)
    if workers < 2:
        if initializer is not None:
            initializer(*initargs)
        yield from tracked(map(function, items), len(items), "predict", "series")
        return
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=initializer, initargs=initargs
    )
    try:
        chunk = max(1, len(items) // (4 * workers))
        results = pool.map(function, items, chunksize=chunk)
        yield from tracked(results, len(items), "predict", "series")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# A few files' series, read in the parent, as each forked worker of gather_inputs sees them.
_split: list[tuple[str, pd.DataFrame]] = []


def _share_split(split: list[tuple[str, pd.DataFrame]]) -> None:
    _split[:] = split


def _split_task(index: int, inputs: ModelInputs, selection: Selection) -> TaskResult:
    return run_task(lambda: [_split[index]], inputs, selection)


def gather_inputs(
    paths: Sequence[str], inputs: ModelInputs, selection: Selection
) -> list[SeriesInputs]:
    """Every series of every file, in file order, with the notes and the first error one
    process would give. Many files are a task each; a few (one panel of a universe) are
    read and split here, and each of their series is a task."""
    series: list[SeriesInputs] = []
    if len(paths) >= TASKS_PER_WORKER * usable_cores():
        tasks = map_tasks(partial(file_task, inputs=inputs, selection=selection), paths)
        with contextlib.closing(tasks):
            for path, result in zip(paths, tasks, strict=True):
                series += file_series(path, replayed(result), selection)
        return series
    split, read_error = [], None
    for path in paths:
        try:
            split.append((path, list(split_sources(path).items())))
        except UserError as exc:  # raised once the files before it are done, as in order
            read_error = exc
            break
    flat = [one for _, parts in split for one in parts]
    tasks = map_tasks(
        partial(_split_task, inputs=inputs, selection=selection),
        range(len(flat)),
        initializer=_share_split,
        initargs=(flat,),
    )
    try:
        with contextlib.closing(tasks):
            for path, parts in split:
                outcomes = [one for _ in parts for one in replayed(next(tasks))]
                series += file_series(path, outcomes, selection)
    finally:
        _split.clear()
    if read_error is not None:
        raise read_error
    return series


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
