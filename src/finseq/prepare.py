"""Raw files → featurised series: each file read, validated and featurised, side by side.

What one series contributes before any cut (features, labels, ties, the returns a position
would earn) depends on that file alone, so files are read in forked workers and handed
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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.errors import ConfigError, DataError, UserError
from finseq.features import FEATURE_NAMES, WARMUP_BARS, compute_features
from finseq.labels import ahead, label_outcome
from finseq.load import PRICE_COLUMNS, line_of, load_series, one_bar_moves
from finseq.params import LabelConfig
from finseq.progress import tracked


def series_name(path: str) -> str:
    return Path(path).stem


def check_distinct_names(files: Sequence[str], listed_in: str = "data.files") -> None:
    """A series is named after its file's stem, so two stems may not be equal."""
    seen: dict[str, str] = {}
    for path in files:
        name = series_name(path)
        if name in seen:
            raise ConfigError(
                f"{listed_in} lists {seen[name]!r} and {path!r}: two series named {name!r}; "
                "give each file a distinct name"
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
    features = np.ascontiguousarray(compute_features(frame).to_numpy())
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


def _read_and_featurise(
    numbered_path: tuple[int, str], label_config: LabelConfig, spill_dir: Path | None = None
) -> tuple[pd.DataFrame | None, FeaturisedSeries | dict | None, str, UserError | None]:
    """One file read, validated and featurised, with the notes it printed and the error that
    stopped it; with `spill_dir`, the arrays are left there and their paths returned. A
    series too short to featurise is left to prepare_dataset, which names what it lacks."""
    number, path = numbered_path
    notes = io.StringIO()
    frame = series = error = None
    with contextlib.redirect_stderr(notes):
        try:
            frame = load_series(path)
            minimum_bars = WARMUP_BARS + label_config.horizon + 1
            series = featurise(frame, label_config) if len(frame) >= minimum_bars else None
        except UserError as exc:
            error = exc
    if series is not None and spill_dir is not None:
        series = _spill(series, spill_dir, str(number))
    return frame, series, notes.getvalue(), error


def _start_data_worker() -> None:
    """Ctrl-C is the parent's to handle; SIGTERM (the parent ending its pool) ends a worker."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def read_series(
    files: Sequence[str], label_config: LabelConfig, workers: int = 1
) -> tuple[dict[str, pd.DataFrame], list[FeaturisedSeries | None]]:
    """Every file loaded and featurised, in `workers` forked processes when above 1.

    Results, notes and the first failure come back in file order, so the output and any
    error are those of one worker. The per-file work is pure, so the prepared bytes are too.
    """
    frames, featurised = {}, []
    with contextlib.ExitStack() as stack:
        if workers > 1:
            spill_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="finseq-")))
            work = partial(_read_and_featurise, label_config=label_config, spill_dir=spill_dir)
            pool = multiprocessing.get_context("fork").Pool(workers, _start_data_worker)
            stack.callback(pool.join)
            stack.callback(pool.terminate)
            results = pool.imap(work, enumerate(files))
        else:
            work = partial(_read_and_featurise, label_config=label_config)
            results = map(work, enumerate(files))
        for path, (frame, series, notes, error) in zip(
            files, tracked(results, len(files), "prepare", "files read"), strict=True
        ):
            sys.stderr.write(notes)
            if error is not None:
                raise error
            frames[path] = frame
            featurised.append(_unspill(series) if isinstance(series, dict) else series)
    return frames, featurised


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
        f"line {line_of(frame, culprit)}"
        if "path" in frame.attrs
        else f"the bar of {pd.Timestamp(frame.index[culprit])}"
    )
    raise DataError(
        f"{path}: feature {FEATURE_NAMES[column]} is not finite at "
        f"{pd.Timestamp(frame.index[position])}; the largest one-bar move of the "
        f"{WARMUP_BARS} bars it reads is {bar} ({name.capitalize()} "
        f"{prices[name][culprit]:g}); check that bar"
    )
