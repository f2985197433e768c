"""Series → one prepared dataset: scaled features, labels, splits; and window sets.

`prepare_dataset` is the whole prepare stage as a pure function over frames, and
`make_window_sets` the whole window stage, so tests run them without DVC.
On disk each array is its own .npy file (np.savez embeds the write time, which
would break byte-for-byte reproducibility) next to a meta.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
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

from finseq.atomic import atomic_path, write_json
from finseq.cores import in_dvc_temp_workspace, usable_cores
from finseq.errors import ConfigError, DataError, UserError, note
from finseq.features import FEATURE_NAMES, WARMUP_BARS, StandardScaler, compute_features
from finseq.labels import (
    CLASS_LABELS,
    TIE_DECIDED_BY_OPEN,
    TIE_UNDECIDED,
    UNKNOWN_LABEL,
    label_outcome,
)
from finseq.load import PRICE_COLUMNS, line_of, load_series, one_bar_moves
from finseq.params import LabelConfig, SplitConfig, WindowConfig
from finseq.progress import tracked
from finseq.provenance import array_hash
from finseq.split import (
    FINAL,
    HOLDOUT,
    SPLIT_NAMES,
    TEST,
    TRAIN,
    Fold,
    assign_parts,
    fold_plan,
    sample_mask,
)
from finseq.windows import window_ends

ARRAYS = (
    "features",
    "labels",
    "series",
    "timestamps",
    "forward_return",
    "next_return",
    "parts",
    "samples",
)


@dataclass(frozen=True)
class PreparedData:
    """All series stacked row-wise, each series' rows consecutive and in time order.

    Warm-up rows (features not yet defined) are dropped, so every row has finite
    features. The features are unscaled: each fold scales them with the scaler fit on its
    own training rows (`scaled_features`). `labels` holds -1/0/1 and is meaningful only
    where a fold has a sample: the label is defined and the fold's purge kept it.
    `forward_return` and `next_return` are outcomes, never inputs: what a position decided
    at a row's bar would have earned.
    """

    features: np.ndarray  # float64 (rows, features), unscaled
    labels: np.ndarray  # int8
    series: np.ndarray  # int16 index into meta["series_names"]
    timestamps: np.ndarray  # datetime64[ns]
    forward_return: np.ndarray  # float64: log close[t + horizon] / close[t]; NaN past the end
    next_return: np.ndarray  # float64: log open[t + 2] / open[t + 1]; NaN past the end
    parts: np.ndarray  # int8 (folds, rows): TRAIN, VAL, TEST or OUTSIDE in each fold
    samples: np.ndarray  # bool (folds, rows): a sample of its part in that fold
    meta: dict

    @property
    def fold_names(self) -> list[str]:
        return list(self.meta["fold_names"])

    @property
    def content_hash(self) -> str | None:
        """sha256 of the arrays and meta, set by prepare_dataset (None: an older finseq's)."""
        return self.meta.get("content_hash")

    def fold_index(self, fold: str) -> int:
        return self.fold_names.index(fold)

    def scaler(self, fold: str) -> StandardScaler:
        statistics = self.meta["folds"][fold]
        return StandardScaler(
            mean=np.asarray(statistics["scaler_mean"]), std=np.asarray(statistics["scaler_std"])
        )

    def scaled_features(self, fold: str) -> np.ndarray:
        """float32 features z-scored with the scaler of `fold`, fit on its training rows only."""
        return self.scaler(fold).transform(self.features)

    def save(self, directory: str | Path) -> None:
        with atomic_path(directory, directory=True) as temporary:
            for name in ARRAYS:
                np.save(temporary / f"{name}.npy", getattr(self, name), allow_pickle=False)
            write_json(temporary / "meta.json", self.meta)

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = False) -> PreparedData:
        directory = Path(directory)
        _require_files(directory, [*(f"{name}.npy" for name in ARRAYS), "meta.json"], "prepare")
        mode = "r" if mmap else None
        arrays = {
            name: np.load(directory / f"{name}.npy", allow_pickle=False, mmap_mode=mode)
            for name in ARRAYS
        }
        return cls(**arrays, meta=json.loads((directory / "meta.json").read_text()))


def _require_files(directory: Path, names: list[str], stage: str) -> None:
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"{directory}: missing {', '.join(missing)}; run `dvc repro {stage}` "
            "(or `dvc checkout`) first"
        )


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


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    return {str(label): int((labels == label).sum()) for label in CLASS_LABELS}


def _ahead(values: np.ndarray, bars: int) -> np.ndarray:
    """values[t + bars] at position t, NaN past the end."""
    shifted = np.full(len(values), np.nan)
    if bars < len(values):
        shifted[: len(values) - bars] = values[bars:]
    return shifted


def outcome_returns(frame: pd.DataFrame, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """The forward log return over the label horizon, and the next-bar return.

    A position decided with bars up to t (its close included) can first trade at the next
    open, so the next-bar return is log(open[t + 2] / open[t + 1]): held from the open
    after the decision to the open after that, when the next decision takes over.
    """
    log_close = np.log(frame["close"].to_numpy())
    log_open = np.log(frame["open"].to_numpy())
    forward = _ahead(log_close, horizon) - log_close
    next_bar = _ahead(log_open, 2) - _ahead(log_open, 1)
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


def resolve_data_workers(requested: int | str, n_files: int) -> int:
    """Processes that read and featurise files side by side (data.workers).

    `auto`: one inside DVC's temporary experiment workspaces (queued experiments already run
    side by side), else every usable core; never more than the files.
    """
    if requested != "auto":
        workers = int(requested)
    else:
        workers = 1 if in_dvc_temp_workspace() else usable_cores()
    return max(1, min(workers, n_files))


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


def prepare_dataset(
    frames: dict[str, pd.DataFrame],
    label_config: LabelConfig,
    split_config: SplitConfig,
    featurised: Sequence[FeaturisedSeries | None] | None = None,
) -> PreparedData:
    """Features, labels, the folds' calendar parts with purge and embargo, and each fold's
    train-only scaler statistics.

    `frames` maps each source file to its validated OHLCV frame (see load.load_series);
    `featurised`, if given, holds featurise's result for each of them (read_series computes
    them side by side), else they are computed here.
    """
    files = tuple(frames)
    check_distinct_names(files)
    minimum_bars = WARMUP_BARS + label_config.horizon + 1
    for path, frame in frames.items():
        if len(frame) < minimum_bars:
            raise DataError(
                f"{path}: only {len(frame)} bars; at least {minimum_bars} are needed "
                f"(warm-up {WARMUP_BARS} + label.horizon {label_config.horizon} + 1)"
            )
    plan = fold_plan([frame.index.to_numpy() for frame in frames.values()], split_config)

    parts = []
    path_of = list(frames)
    tie_shares: dict[str, float] = {}
    tie_counts = {
        fold.name: {name: dict.fromkeys(TIE_KINDS, 0) for name in SPLIT_NAMES}
        for fold in plan.folds
    }
    each_frame = tracked(frames.values(), len(frames), "prepare", "series featurised")
    for code, frame in enumerate(each_frame):
        timestamps = frame.index.to_numpy()
        series = featurised[code] if featurised else featurise(frame, label_config)
        labels, ties = series.labels, series.ties
        labelled = ~np.isnan(labels)
        undecided = ties == TIE_UNDECIDED
        tie_shares[path_of[code]] = _undecided_share(undecided, labelled)
        fold_parts = np.stack([assign_parts(timestamps, fold) for fold in plan.folds])
        fold_samples = np.stack(
            [
                _fold_samples(fold_part, labelled, undecided, label_config, split_config)
                for fold_part in fold_parts
            ]
        )
        _count_ties(tie_counts, plan.folds, fold_parts, ties, label_config, split_config)
        rows = slice(WARMUP_BARS, None)
        parts.append(
            {
                "features": series.features[rows],
                "labels": np.where(undecided, UNKNOWN_LABEL, np.nan_to_num(labels))[rows].astype(
                    np.int8
                ),
                "series": np.full(len(frame) - WARMUP_BARS, code, dtype=np.int16),
                "timestamps": timestamps[rows],
                "forward_return": series.forward_return[rows],
                "next_return": series.next_return[rows],
                "parts": fold_parts[:, rows],
                "samples": fold_samples[:, rows],
            }
        )
    # The float64 features stay one array per series until the scalers are fit: each fold's
    # scaler is fit series by series in blocks (see StandardScaler.fit), never on a copy of
    # the panel's training rows.
    raw_features = [part.pop("features") for part in parts]
    _note_undecided_ties(tie_shares, label_config)
    for (path, frame), series_features in zip(frames.items(), raw_features, strict=True):
        check_finite_features(path, frame, series_features)
    stacked = {
        name: np.concatenate([part[name] for part in parts], axis=-1 if name in FOLD_ARRAYS else 0)
        for name in parts[0]
    }
    for index, fold in enumerate(plan.folds):
        _check_every_part_has_samples(
            fold, stacked["parts"][index], stacked["samples"][index], label_config, split_config
        )
    fold_meta = {}
    for index, fold in enumerate(plan.folds):
        scaler = StandardScaler.fit(
            series_features[part["parts"][index] == TRAIN]
            for series_features, part in zip(raw_features, parts, strict=True)
        )
        fold_meta[fold.name] = {
            **fold.describe(),
            "scaler_mean": scaler.mean.tolist(),
            "scaler_std": scaler.std.tolist(),
        }
    stacked["features"] = np.concatenate(raw_features)
    del raw_features
    meta = {
        "files": list(files),
        "series_names": [series_name(path) for path in files],
        "series_bars": [len(frame) for frame in frames.values()],
        "feature_names": list(FEATURE_NAMES),
        "warmup_bars": WARMUP_BARS,
        "label_horizon": label_config.horizon,
        "split_method": split_config.method,
        "fold_names": [fold.name for fold in plan.folds],
        "evaluated_folds": list(plan.evaluated),
        "model_fold": plan.model_fold,
        "folds": fold_meta,
        "both_touch": tie_counts,
        "label": dataclasses.asdict(label_config),
        "split": dataclasses.asdict(split_config),
    }
    meta["content_hash"] = array_hash(((name, stacked[name]) for name in ARRAYS), meta)
    data = PreparedData(meta=meta, **stacked)
    _note_empty_splits(data)
    return data


FOLD_ARRAYS = ("parts", "samples")

# A series with more undecided ties than this share of its labelled bars gets a note.
TIE_NOTE_SHARE = 0.01
# metrics/data.json's both_touch keys, and the tie codes they count.
TIE_KINDS = {"decided_by_open": TIE_DECIDED_BY_OPEN, "undecided": TIE_UNDECIDED}


def _fold_samples(
    parts: np.ndarray,
    labelled: np.ndarray,
    undecided: np.ndarray,
    label_config: LabelConfig,
    split_config: SplitConfig,
) -> np.ndarray:
    """Samples of one series in one fold. A triple-barrier tie the open cannot decide has no
    label, so it is no train or val sample. A test window keeps it (labelled UNKNOWN_LABEL)
    for the backtest, which must trade every bar: which bars are traded may not depend on
    the bars after them, or the most volatile would drop out. The classification metrics
    leave it out."""
    horizon, embargo = label_config.horizon, split_config.embargo
    learned = sample_mask(parts, labelled, horizon, embargo)
    traded = sample_mask(parts, labelled | undecided, horizon, embargo)
    return np.where(parts == TEST, traded, learned)


def _undecided_share(undecided: np.ndarray, labelled: np.ndarray) -> float:
    """Undecided ties among the bars that have or would have a label."""
    defined = int(undecided.sum()) + int(labelled.sum())
    return float(undecided.sum() / defined) if defined else 0.0


def _note_undecided_ties(shares: dict[str, float], label_config: LabelConfig) -> None:
    """One note for the panel: how many series have more than TIE_NOTE_SHARE undecided."""
    over = {path: share for path, share in shares.items() if share > TIE_NOTE_SHARE}
    if not over:
        return
    worst = max(over, key=over.get)
    which = (
        f"{worst}: {over[worst]:.1%} of its triple-barrier labels are undecided"
        if len(over) == 1
        else f"{len(over)} series have over {TIE_NOTE_SHARE:.0%} of their triple-barrier "
        f"labels undecided (the most, {worst}: {over[worst]:.1%})"
    )
    note(
        f"{which}: one bar touched both barriers after opening between them, so which came "
        "first is unknown. They are left out of training, validation and the test metrics "
        f"(the backtest trades them); a wider barrier (label.threshold = "
        f"{label_config.threshold} now) makes them rarer"
    )


def _count_ties(
    counts: dict,
    folds: Sequence[Fold],
    fold_parts: np.ndarray,
    ties: np.ndarray,
    label_config: LabelConfig,
    split_config: SplitConfig,
) -> None:
    """Adds one series' both-touch bars to `counts[fold][part][kind]`: those after the
    warm-up that the purge keeps, decided by the open or undecided (no train or val sample;
    in test, traded but not scored)."""
    rows = slice(WARMUP_BARS, None)
    for fold, parts in zip(folds, fold_parts, strict=True):
        for kind, code in TIE_KINDS.items():
            kept = sample_mask(parts, ties == code, label_config.horizon, split_config.embargo)
            for split_code, split_name in enumerate(SPLIT_NAMES):
                counts[fold.name][split_name][kind] += int(
                    (kept[rows] & (parts[rows] == split_code)).sum()
                )


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


def _check_every_part_has_samples(
    fold: Fold,
    parts: np.ndarray,
    samples: np.ndarray,
    label_config: LabelConfig,
    split_config: SplitConfig,
) -> None:
    """A part whose every bar is purged or unlabelled: name the params that did it."""
    if not (parts == TRAIN).any() and fold.name == HOLDOUT:
        raise ConfigError(
            f"split.train = {split_config.train} leaves no training rows after the "
            f"{WARMUP_BARS}-bar warm-up of each series; raise split.train"
        )
    if not (parts == TRAIN).any():
        raise ConfigError(
            f"fold {fold.name} has no training rows after the {WARMUP_BARS}-bar warm-up of each "
            "series; give it more history (split.train, split.oos_start or split.history)"
        )
    where = "" if fold.name == HOLDOUT else f" in fold {fold.name}"
    for split_code, split_name in enumerate(SPLIT_NAMES):
        rows = int((parts == split_code).sum())
        if rows and not (samples & (parts == split_code)).any():
            raise ConfigError(
                f"no {split_name} samples are left of {rows} {split_name} rows{where}: each needs "
                f"label.horizon ({label_config.horizon}) + split.embargo ({split_config.embargo}) "
                f"bars after it inside the split and label.vol_window ({label_config.vol_window}) "
                "bars before it; lower those or widen the split"
            )


def _counts_by_series_and_split(series: np.ndarray, split: np.ndarray, n_series: int) -> np.ndarray:
    """counts[series, split]: how many of the given rows fall in each series and split."""
    n_splits = len(SPLIT_NAMES)
    inside = split >= 0
    flat = np.bincount(
        series[inside].astype(np.int64) * n_splits + split[inside], minlength=n_series * n_splits
    )
    return flat.reshape(n_series, n_splits)


def _note_empty_splits(data: PreparedData) -> None:
    """Per series, the parts of the scored folds it has no bars in."""
    names = data.meta["series_names"]
    for fold in data.meta["evaluated_folds"]:
        parts = data.parts[data.fold_index(fold)]
        rows = _counts_by_series_and_split(data.series, parts, len(names))
        where = "" if fold == HOLDOUT else f" in fold {fold}"
        for code, split_code in np.argwhere(rows == 0):
            note(
                f"series {names[code]!r} has no {SPLIT_NAMES[split_code]} bars{where}: "
                "it does not cover that period"
            )


def _part_summary(data: PreparedData, fold: str) -> dict:
    index = data.fold_index(fold)
    summary = {}
    for split_code, split_name in enumerate(SPLIT_NAMES):
        in_split = data.parts[index] == split_code
        if fold == FINAL and split_code == TEST:
            continue
        samples = in_split & data.samples[index]
        summary[split_name] = {
            "rows": int(in_split.sum()),
            "samples": int(samples.sum()),
            "class_counts": _class_counts(data.labels[samples]),
        }
        if "both_touch" in data.meta:
            summary[split_name]["both_touch"] = data.meta["both_touch"][fold][split_name]
    return summary


def data_summary(data: PreparedData) -> dict:
    """Sample counts and class balance per part of each fold, for metrics/data.json."""
    if data.meta["split_method"] == "holdout":
        dates = data.meta["folds"][HOLDOUT]
        return {
            "val_start": dates["val_start"],
            "test_start": dates["test_start"],
            **_part_summary(data, HOLDOUT),
        }
    return {
        "method": data.meta["split_method"],
        "folds": {
            fold: {
                **{
                    key: value
                    for key, value in data.meta["folds"][fold].items()
                    if not key.startswith("scaler")
                },
                **_part_summary(data, fold),
            }
            for fold in data.fold_names
        },
    }


@dataclass(frozen=True)
class WindowSets:
    """Window end rows per fold and part, the window length they were cut for, and the
    content hash of the prepared data whose rows they index."""

    seq_len: int
    stride: int
    ends: dict[str, dict[str, np.ndarray]]  # fold -> part name -> int64 end rows, ascending
    prepared_hash: str | None

    @property
    def content_hash(self) -> str:
        arrays = (
            (f"{fold}_{name}", self.ends[fold][name])
            for fold in sorted(self.ends)
            for name in sorted(self.ends[fold])
        )
        return array_hash(
            arrays,
            {"seq_len": self.seq_len, "stride": self.stride, "prepared_hash": self.prepared_hash},
        )

    def save(self, directory: str | Path) -> None:
        meta = {
            "seq_len": self.seq_len,
            "stride": self.stride,
            "prepared_hash": self.prepared_hash,
            "content_hash": self.content_hash,
            "folds": list(self.ends),
            "windows": {
                fold: {name: len(ends) for name, ends in parts.items()}
                for fold, parts in self.ends.items()
            },
        }
        with atomic_path(directory, directory=True) as temporary:
            for fold, parts in self.ends.items():
                for name, ends in parts.items():
                    np.save(temporary / f"{fold}_{name}.npy", ends, allow_pickle=False)
            write_json(temporary / "meta.json", meta)

    @classmethod
    def load(cls, directory: str | Path) -> WindowSets:
        directory = Path(directory)
        _require_files(directory, ["meta.json"], "window")
        meta = json.loads((directory / "meta.json").read_text())
        names = [f"{fold}_{name}.npy" for fold in meta["folds"] for name in meta["windows"][fold]]
        _require_files(directory, names, "window")
        ends = {
            fold: {
                name: np.load(directory / f"{fold}_{name}.npy", allow_pickle=False)
                for name in meta["windows"][fold]
            }
            for fold in meta["folds"]
        }
        return cls(
            seq_len=meta["seq_len"],
            stride=meta["stride"],
            ends=ends,
            prepared_hash=meta.get("prepared_hash"),
        )


def make_window_sets(data: PreparedData, config: WindowConfig) -> WindowSets:
    """Window ends for each part of each fold; stops with a clear message when a part gets none.

    Holdout windows lie inside one part; walk-forward windows only end in their part
    (see finseq.windows).
    """
    files = data.meta["files"]
    needed = data.meta["warmup_bars"] + config.seq_len + data.meta["label_horizon"]
    for path, bars in zip(files, data.meta["series_bars"], strict=True):
        if bars < needed:
            raise DataError(
                f"{path}: only {bars} bars; too short for warm-up ({data.meta['warmup_bars']}) "
                f"+ window.seq_len ({config.seq_len}) + label.horizon "
                f"({data.meta['label_horizon']}) = {needed}"
            )
    names = data.meta["series_names"]
    holdout = data.meta["split_method"] == "holdout"
    whole_series = np.zeros(len(data.series), dtype=np.int8)
    ends: dict[str, dict[str, np.ndarray]] = {}
    for fold in data.fold_names:
        index = data.fold_index(fold)
        parts = np.asarray(data.parts[index])
        runs = parts if holdout else whole_series
        ends_all = window_ends(
            data.series, runs, np.asarray(data.samples[index]), config.seq_len, config.stride
        )
        rows = _counts_by_series_and_split(data.series, parts, len(names))
        windows = _counts_by_series_and_split(data.series[ends_all], parts[ends_all], len(names))
        used = [code for code in range(len(SPLIT_NAMES)) if rows[:, code].sum() > 0]
        where = "" if fold == HOLDOUT else f" in fold {fold}"
        for split_code in used:
            split_name = SPLIT_NAMES[split_code]
            if windows[:, split_code].sum() == 0:
                setting = f"window.seq_len = {config.seq_len} (window.stride = {config.stride})"
                if holdout:
                    raise ConfigError(
                        f"{setting} leaves no {split_name} windows: the longest {split_name} "
                        f"stretch of any series has {rows[:, split_code].max()} rows after "
                        "warm-up; lower window.seq_len or widen the split"
                    )
                raise ConfigError(
                    f"{setting} leaves no {split_name} windows{where}: no {split_name} sample of "
                    f"any series has {config.seq_len} rows of its series up to it after warm-up; "
                    "lower window.seq_len or raise split.oos_start"
                )
        if fold in data.meta["evaluated_folds"]:
            for code, split_code in np.argwhere(windows == 0):
                note(
                    f"series {names[code]!r} has no {SPLIT_NAMES[split_code]} windows{where} of "
                    f"window.seq_len = {config.seq_len}"
                )
        ends[fold] = {
            SPLIT_NAMES[split_code]: ends_all[parts[ends_all] == split_code] for split_code in used
        }
    return WindowSets(
        seq_len=config.seq_len, stride=config.stride, ends=ends, prepared_hash=data.content_hash
    )
