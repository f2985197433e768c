"""Raw files → featurised series: each file read (finseq.inputs: one series, or one per
symbol of a panel), validated and featurised, side by side.

What one series contributes before any cut (features, labels, ties, the returns a position
would earn) depends on that series alone, so files are read in forked workers and handed
back in file order: the prepared bytes do not depend on how many workers ran.
`finseq.panel` stacks the series into one prepared dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import multiprocessing
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.errors import ConfigError, DataError, UserError
from finseq.features import FEATURE_NAMES, WARMUP_BARS, feature_matrix
from finseq.inputs import series_name, split_sources
from finseq.labels import ahead, label_outcome
from finseq.load import PRICE_COLUMNS, line_of, one_bar_moves, validate_series
from finseq.params import LabelConfig
from finseq.progress import tracked
from finseq.runtime import resolve_data_workers
from finseq.split import before_lockbox

__all__ = ["series_name"]  # finseq.inputs's, named here too


def check_distinct_names(files: Sequence[str], listed_in: str = "data.files") -> None:
    """A series is named after its file's stem or its panel symbol (inputs.series_name), so
    two series keys (files, or `file::SYMBOL`) may not give the same name."""
    seen: dict[str, str] = {}
    for path in files:
        name = series_name(path)
        if name in seen:
            raise ConfigError(
                f"{listed_in} lists {seen[name]!r} and {path!r}: two series named {name!r}; "
                "give each file or symbol a distinct name"
            )
        seen[name] = path


def outcome_returns(frame: pd.DataFrame, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """The forward log return over the label horizon, and the next-bar return.

    A position decided with bars up to t (its close included) can first trade at the next
    open, so the next-bar return is log(open[t + 2] / open[t + 1]): held from the open
    after the decision to the open after that, when the next decision takes over.
    """
    log_close = np.log(frame["close"].to_numpy())
    log_open = np.log(frame["open"].to_numpy())
    forward = ahead(log_close, horizon) - log_close
    next_bar = ahead(log_open, 2) - ahead(log_open, 1)
    return forward, next_bar


def seal_lockbox(frame: pd.DataFrame, lockbox: str | None) -> pd.DataFrame:
    """The series as if its file ended before split.lockbox: every later bar cut off before
    any feature, label or return is computed, so the labels and returns of the last bars
    before the cut are unknown exactly as at the end of a file, and no number prepare
    writes can depend on a sealed bar. attrs["sealed_bars"] counts the bars cut (cutting
    again cuts none and keeps the count)."""
    kept = before_lockbox(frame.index.to_numpy(), lockbox)
    sealed = frame[kept].copy()
    sealed.attrs = {**frame.attrs, "sealed_bars": sealed_bars(frame) + int((~kept).sum())}
    return sealed


def sealed_bars(frame: pd.DataFrame) -> int:
    return int(frame.attrs.get("sealed_bars", 0))


@dataclass(frozen=True)
class FeaturisedSeries:
    """What one series contributes on its own, before any cut: every bar's causal features,
    its label and tie code, and the returns a position there would earn."""

    features: np.ndarray  # float64 (bars, features), warm-up rows included
    labels: np.ndarray  # float64 -1/0/1, NaN where undefined
    ties: np.ndarray  # int8 tie codes (labels.label_outcome)
    forward_return: np.ndarray
    next_return: np.ndarray


def featurise(frame: pd.DataFrame, label_config: LabelConfig) -> FeaturisedSeries:
    labels, ties = label_outcome(frame, label_config)
    forward, next_bar = outcome_returns(frame, label_config.horizon)
    # pandas hands its columns over in Fortran order; rows are what every later step reads,
    # and copying here, series by series (in the pool), spares a copy of the whole panel.
    features = feature_matrix(frame)
    return FeaturisedSeries(features, labels, ties, forward, next_bar)


def _spill(series: FeaturisedSeries, directory: Path, stem: str) -> dict[str, Path]:
    """Writes a worker's arrays to `directory`: a file through the page cache costs a
    fraction of pickling hundreds of MB through the pool's pipe."""
    paths = {}
    for field in dataclasses.fields(FeaturisedSeries):
        paths[field.name] = directory / f"{stem}.{field.name}.npy"
        np.save(paths[field.name], getattr(series, field.name))
    return paths


def _unspill(paths: dict[str, Path]) -> FeaturisedSeries:
    return FeaturisedSeries(**{name: np.load(path) for name, path in paths.items()})


def _featurised(
    number: int,
    sources: Callable[[], Iterable[tuple[str, pd.DataFrame]]],
    label_config: LabelConfig,
    lockbox: str | None,
    spill_dir: Path | None = None,
    adjust_volume: bool = True,
) -> tuple[dict[str, pd.DataFrame], list, str, UserError | None]:
    """Series read (`sources()`: their keys and rows, as inputs.split_sources gives them),
    validated, cut at the lockbox and featurised, with the notes they printed and the error
    that stopped them; with `spill_dir`, the arrays are left there and their paths
    returned. A series too short to featurise is left to prepare_dataset, which names what
    it lacks."""
    notes = io.StringIO()
    frames, featurised, error = {}, [], None
    with contextlib.redirect_stderr(notes):
        try:
            for index, (key, rows) in enumerate(sources()):
                frame = validate_series(Path(key), rows, adjust_volume)
                frames[key] = frame = seal_lockbox(frame, lockbox)
                minimum_bars = WARMUP_BARS + label_config.horizon + 1
                series = featurise(frame, label_config) if len(frame) >= minimum_bars else None
                if series is not None and spill_dir is not None:
                    series = _spill(series, spill_dir, f"{number}.{index}")
                featurised.append(series)
        except UserError as exc:
            error = exc
    return frames, featurised, notes.getvalue(), error


def _read_and_featurise(numbered_path: tuple[int, str], **options: object) -> tuple:
    """One file's series: a task of a pool of files."""
    number, path = numbered_path
    return _featurised(number, lambda: split_sources(path).items(), **options)


# The series of a few files, read and split in the parent, as each forked worker sees them.
_shared_series: list[tuple[str, pd.DataFrame]] = []


def _start_series_worker(series: list[tuple[str, pd.DataFrame]]) -> None:
    _start_data_worker()
    _shared_series[:] = series


def _featurise_shared(number: int, **options: object) -> tuple:
    """One series of a panel: a task of a pool of series."""
    key, rows = _shared_series[number]
    return _featurised(number, lambda: [(key, rows)], **options)


def _start_data_worker() -> None:
    """Ctrl-C is the parent's to handle; SIGTERM (the parent ending its pool) ends a worker."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def read_series(
    files: Sequence[str],
    label_config: LabelConfig,
    workers: int | str = 1,
    lockbox: str | None = None,
    adjust_volume: bool = True,
) -> tuple[dict[str, pd.DataFrame], list[FeaturisedSeries | None]]:
    """Every file's series (keyed as inputs.split_sources keys them) loaded, cut at `lockbox`
    (seal_lockbox) and featurised, in forked processes as `workers` (data.workers) allows:
    a file per task, or, with fewer files than processes (one panel of a universe), the
    files read and split here and a series per task.

    Results, notes and the first failure come back in file (and series) order, so the
    output and any error are those of one worker. The work is pure, so the prepared bytes
    are too.
    """
    options = {"label_config": label_config, "lockbox": lockbox, "adjust_volume": adjust_volume}
    processes = resolve_data_workers(workers, len(files))
    by_series = processes < resolve_data_workers(workers, len(files) + 1)
    shared: list[tuple[str, pd.DataFrame]] = []
    read_error = None
    if by_series:
        for path in files:
            try:
                shared += split_sources(path).items()
            except UserError as exc:  # raised once the files before it are done, as in order
                read_error = exc
                break
        processes = resolve_data_workers(workers, len(shared))
    frames, featurised = {}, []
    with contextlib.ExitStack() as stack:
        if processes > 1:
            spill_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="finseq-")))
            context = multiprocessing.get_context("fork")
            if by_series:
                work = partial(_featurise_shared, spill_dir=spill_dir, **options)
                pool = context.Pool(processes, _start_series_worker, (shared,))
                tasks = range(len(shared))
            else:
                work = partial(_read_and_featurise, spill_dir=spill_dir, **options)
                pool = context.Pool(processes, _start_data_worker)
                tasks = enumerate(files)
            stack.callback(pool.join)
            stack.callback(pool.terminate)
            results = pool.imap(work, tasks)
        elif by_series:
            results = (
                _featurised(number, lambda one=one: [one], **options)
                for number, one in enumerate(shared)
            )
        else:
            results = map(partial(_read_and_featurise, **options), enumerate(files))
        unit = "series read" if by_series else "files read"
        for task_frames, task_series, notes, error in tracked(
            results, len(shared) if by_series else len(files), "prepare", unit
        ):
            sys.stderr.write(notes)
            if error is not None:
                raise error
            frames.update(task_frames)
            featurised += [_unspill(one) if isinstance(one, dict) else one for one in task_series]
    if read_error is not None:
        raise read_error
    return frames, featurised


# An Open within this relative difference of the previous Close counts as equal to it: CSV
# round trips give ~1e-15, and an Adj Close rescaling (load_series) whose factor is rounded
# to 6 decimals moves a price by under 1e-6 when Adj Close is above 1, while a cent apart
# stays apart at any price below 10,000.
STALE_OPEN_TOLERANCE = 1e-6
# A calendar year in which at least this share of the bars opens at the previous bar's
# close is flagged: a real daily open lands exactly on the previous close on a few percent
# of bars at most (the default nasdaq.csv: under 1% every year), while a vendor that fills
# Open with the previous close does so on most bars, or on a quarter in sp500.csv's 2012-13.
STALE_OPEN_SHARE = 0.2
# Fewer bars than this in a year (a series starting in December) say too little to flag it.
STALE_OPEN_MIN_BARS = 20
# On bars closer than this, trading runs on from one bar into the next, so an open at the
# previous close is the rule, not a vendor's fill: only daily and longer bars are checked.
STALE_OPEN_MIN_SPACING = np.timedelta64(20, "h")


def stale_open_periods(frame: pd.DataFrame) -> list[dict]:
    """The periods of one series (a frame from load_series) whose bars open at the previous
    bar's close implausibly often: consecutive calendar years with at least
    STALE_OPEN_SHARE of such bars, merged. There the `gap` feature is about 0 and the
    backtest's fill at the next open is the signal bar's own close.

    Each period: its first and last bar (ISO timestamps; the series' first bar, with no
    previous close, is in none), `bars`, `stale_bars` and their `share`.
    """
    stamps = frame.index.to_numpy().astype("datetime64[ns]")
    if len(stamps) < 2 or np.median(np.diff(stamps)) < STALE_OPEN_MIN_SPACING:
        return []
    opens, previous_close = frame["open"].to_numpy()[1:], frame["close"].to_numpy()[:-1]
    stale = np.abs(opens - previous_close) <= STALE_OPEN_TOLERANCE * previous_close
    judged = stamps[1:]
    years = judged.astype("datetime64[Y]").astype(np.int64)
    year_list, year_starts, year_bars = np.unique(years, return_index=True, return_counts=True)
    year_stale = np.add.reduceat(stale.astype(np.int64), year_starts)
    flagged = (year_bars >= STALE_OPEN_MIN_BARS) & (year_stale / year_bars >= STALE_OPEN_SHARE)
    periods: list[dict] = []
    for year, first, bars, stale_bars in zip(
        year_list[flagged],
        year_starts[flagged],
        year_bars[flagged],
        year_stale[flagged],
        strict=True,
    ):
        last = first + bars - 1
        if periods and periods[-1]["year"] == year - 1:
            periods[-1].update(
                year=year, last=last, stale_bars=periods[-1]["stale_bars"] + stale_bars
            )
        else:
            periods.append({"year": year, "first": first, "last": last, "stale_bars": stale_bars})
    return [
        {
            "first": pd.Timestamp(judged[period["first"]]).isoformat(),
            "last": pd.Timestamp(judged[period["last"]]).isoformat(),
            "bars": int(period["last"] - period["first"] + 1),
            "stale_bars": int(period["stale_bars"]),
            "share": float(period["stale_bars"] / (period["last"] - period["first"] + 1)),
        }
        for period in periods
    ]


def check_finite_features(path: str, frame: pd.DataFrame, features: np.ndarray) -> None:
    """Features of one series after warm-up (`features`, of `frame` from load_series) must be
    finite. Name the first that is not, and the input bar that most likely caused it: the
    largest one-bar move among the bars its look-back reads."""
    if np.isfinite(features).all():
        return
    row, column = np.argwhere(~np.isfinite(features))[0]
    position = row + WARMUP_BARS
    prices = {name: frame[name].to_numpy() for name in PRICE_COLUMNS}
    moves, which = one_bar_moves(prices)
    start = max(0, position - WARMUP_BARS)
    culprit = start + int(np.argmax(moves[start : position + 1]))
    name = PRICE_COLUMNS[which[culprit]]
    # A frame read by load_series knows its file's lines; one built in memory, only its dates.
    bar = (
        line_of(frame, culprit)
        if "path" in frame.attrs
        else f"the bar of {pd.Timestamp(frame.index[culprit])}"
    )
    raise DataError(
        f"{path}: feature {FEATURE_NAMES[column]} is not finite at "
        f"{pd.Timestamp(frame.index[position])}; the largest one-bar move of the "
        f"{WARMUP_BARS} bars it reads is {bar} ({name.capitalize()} "
        f"{prices[name][culprit]:g}); check that bar"
    )
