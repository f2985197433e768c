"""Series → one prepared dataset: scaled features, labels, splits; and window sets.

`prepare_dataset` is the whole prepare stage as a pure function over frames, and
`make_window_sets` the whole window stage, so tests run them without DVC.
On disk each array is its own .npy file (np.savez embeds the write time, which
would break byte-for-byte reproducibility) next to a meta.json.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.atomic import atomic_path, write_json
from finseq.errors import ConfigError, DataError, note
from finseq.features import FEATURE_NAMES, WARMUP_BARS, StandardScaler, compute_features
from finseq.labels import CLASS_LABELS, make_labels
from finseq.params import LabelConfig, SplitConfig, WindowConfig
from finseq.split import SPLIT_NAMES, TRAIN, assign_split, cut_dates, purge_mask
from finseq.windows import window_ends

ARRAYS = ("features", "labels", "is_sample", "series", "split", "timestamps")


@dataclass(frozen=True)
class PreparedData:
    """All series stacked row-wise, each series' rows consecutive and in time order.

    Warm-up rows (features not yet defined) are dropped, so every row has finite
    features. `labels` holds -1/0/1 and is meaningful only where `is_sample`: the
    label is defined and the purge kept it.
    """

    features: np.ndarray  # float32 (rows, features), scaled with the train-only scaler
    labels: np.ndarray  # int8
    is_sample: np.ndarray  # bool
    series: np.ndarray  # int16 index into meta["series_names"]
    split: np.ndarray  # int8: TRAIN, VAL, TEST
    timestamps: np.ndarray  # datetime64[ns]
    meta: dict

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


def _check_distinct_names(files: tuple[str, ...]) -> None:
    seen: dict[str, str] = {}
    for path in files:
        name = series_name(path)
        if name in seen:
            raise ConfigError(
                f"data.files lists {seen[name]!r} and {path!r}: two series named {name!r}; "
                "give each file a distinct name"
            )
        seen[name] = path


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    return {str(label): int((labels == label).sum()) for label in CLASS_LABELS}


def prepare_dataset(
    frames: dict[str, pd.DataFrame], label_config: LabelConfig, split_config: SplitConfig
) -> PreparedData:
    """Features, labels, calendar split with purge and embargo, and train-only scaling.

    `frames` maps each source file to its validated OHLCV frame (see load.load_series).
    """
    files = tuple(frames)
    _check_distinct_names(files)
    minimum_bars = WARMUP_BARS + label_config.horizon + 1
    for path, frame in frames.items():
        if len(frame) < minimum_bars:
            raise DataError(
                f"{path}: only {len(frame)} bars; at least {minimum_bars} are needed "
                f"(warm-up {WARMUP_BARS} + label.horizon {label_config.horizon} + 1)"
            )
    cuts = cut_dates([frame.index.to_numpy() for frame in frames.values()], split_config)

    parts = []
    for code, frame in enumerate(frames.values()):
        timestamps = frame.index.to_numpy()
        split = assign_split(timestamps, cuts)
        labels = make_labels(frame, label_config)
        keep = purge_mask(split, label_config.horizon, split_config.embargo)
        rows = slice(WARMUP_BARS, None)
        parts.append(
            {
                "features": compute_features(frame).to_numpy()[rows],
                "labels": np.nan_to_num(labels[rows]).astype(np.int8),
                "is_sample": (~np.isnan(labels) & keep)[rows],
                "series": np.full(len(frame) - WARMUP_BARS, code, dtype=np.int16),
                "split": split[rows],
                "timestamps": timestamps[rows],
            }
        )
    # The float64 features stay one array per series (the bulk of memory): checked, fit and
    # scaled part by part into one float32 matrix, never stacked in float64.
    raw_features = [part.pop("features") for part in parts]
    stacked = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    for code, series_features in enumerate(raw_features):
        if not np.isfinite(series_features).all():
            row, column = np.argwhere(~np.isfinite(series_features))[0]
            raise DataError(
                f"{files[code]}: feature {FEATURE_NAMES[column]} is not finite at "
                f"{pd.Timestamp(parts[code]['timestamps'][row])}; check the bars before it"
            )
    train_rows = stacked["split"] == TRAIN
    if not train_rows.any():
        raise ConfigError(
            f"split.train = {split_config.train} leaves no training rows after the "
            f"{WARMUP_BARS}-bar warm-up of each series; raise split.train"
        )
    _check_every_split_has_samples(
        stacked["split"], stacked["is_sample"], label_config, split_config
    )
    # Row range of each series in the stacked arrays, in the order they were stacked.
    bounds = np.cumsum([0, *(len(series_features) for series_features in raw_features)])
    series_rows = [slice(start, end) for start, end in itertools.pairwise(bounds)]
    scaler = StandardScaler.fit(
        series_features[train_rows[rows]]
        for series_features, rows in zip(raw_features, series_rows, strict=True)
    )
    meta = {
        "files": list(files),
        "series_names": [series_name(path) for path in files],
        "series_bars": [len(frame) for frame in frames.values()],
        "feature_names": list(FEATURE_NAMES),
        "warmup_bars": WARMUP_BARS,
        "label_horizon": label_config.horizon,
        "val_start": pd.Timestamp(cuts.val_start).isoformat(),
        "test_start": pd.Timestamp(cuts.test_start).isoformat(),
        "scaler_mean": scaler.mean.tolist(),
        "scaler_std": scaler.std.tolist(),
    }
    features = np.empty((bounds[-1], len(FEATURE_NAMES)), dtype=np.float32)
    for series_features, rows in zip(raw_features, series_rows, strict=True):
        features[rows] = scaler.transform(series_features)
    data = PreparedData(features=features, meta=meta, **stacked)
    _note_empty_splits(data)
    return data


def _check_every_split_has_samples(
    split: np.ndarray, is_sample: np.ndarray, label_config: LabelConfig, split_config: SplitConfig
) -> None:
    """A split whose every bar is purged or unlabelled: name the params that did it."""
    for split_code, split_name in enumerate(SPLIT_NAMES):
        rows = int((split == split_code).sum())
        if rows and not (is_sample & (split == split_code)).any():
            raise ConfigError(
                f"no {split_name} samples are left of {rows} {split_name} rows: each needs "
                f"label.horizon ({label_config.horizon}) + split.embargo ({split_config.embargo}) "
                f"bars after it inside the split and label.vol_window ({label_config.vol_window}) "
                "bars before it; lower those or widen the split"
            )


def _counts_by_series_and_split(series: np.ndarray, split: np.ndarray, n_series: int) -> np.ndarray:
    """counts[series, split]: how many of the given rows fall in each series and split."""
    n_splits = len(SPLIT_NAMES)
    flat = np.bincount(series.astype(np.int64) * n_splits + split, minlength=n_series * n_splits)
    return flat.reshape(n_series, n_splits)


def _note_empty_splits(data: PreparedData) -> None:
    names = data.meta["series_names"]
    rows = _counts_by_series_and_split(data.series, data.split, len(names))
    for code, split_code in np.argwhere(rows == 0):
        note(
            f"series {names[code]!r} has no {SPLIT_NAMES[split_code]} bars: "
            "it does not cover that period"
        )


def data_summary(data: PreparedData) -> dict:
    """Sample counts and class balance per split, for metrics/data.json."""
    summary: dict = {"val_start": data.meta["val_start"], "test_start": data.meta["test_start"]}
    for split_code, split_name in enumerate(SPLIT_NAMES):
        in_split = data.split == split_code
        samples = in_split & data.is_sample
        summary[split_name] = {
            "rows": int(in_split.sum()),
            "samples": int(samples.sum()),
            "class_counts": _class_counts(data.labels[samples]),
        }
    return summary


@dataclass(frozen=True)
class WindowSets:
    """Window end rows per split, plus the window length they were cut for."""

    seq_len: int
    stride: int
    ends: dict[str, np.ndarray]  # split name -> int64 end rows, ascending

    def save(self, directory: str | Path) -> None:
        meta = {
            "seq_len": self.seq_len,
            "stride": self.stride,
            "windows": {name: len(ends) for name, ends in self.ends.items()},
        }
        with atomic_path(directory, directory=True) as temporary:
            for name, ends in self.ends.items():
                np.save(temporary / f"{name}.npy", ends, allow_pickle=False)
            write_json(temporary / "meta.json", meta)

    @classmethod
    def load(cls, directory: str | Path) -> WindowSets:
        directory = Path(directory)
        _require_files(directory, [*(f"{name}.npy" for name in SPLIT_NAMES), "meta.json"], "window")
        meta = json.loads((directory / "meta.json").read_text())
        ends = {
            name: np.load(directory / f"{name}.npy", allow_pickle=False) for name in SPLIT_NAMES
        }
        return cls(seq_len=meta["seq_len"], stride=meta["stride"], ends=ends)


def make_window_sets(data: PreparedData, config: WindowConfig) -> WindowSets:
    """Window ends for each split; stops with a clear message when a split gets none."""
    files = data.meta["files"]
    needed = data.meta["warmup_bars"] + config.seq_len + data.meta["label_horizon"]
    for path, bars in zip(files, data.meta["series_bars"], strict=True):
        if bars < needed:
            raise DataError(
                f"{path}: only {bars} bars; too short for warm-up ({data.meta['warmup_bars']}) "
                f"+ window.seq_len ({config.seq_len}) + label.horizon "
                f"({data.meta['label_horizon']}) = {needed}"
            )
    ends_all = window_ends(data.series, data.split, data.is_sample, config.seq_len, config.stride)
    names = data.meta["series_names"]
    rows = _counts_by_series_and_split(data.series, data.split, len(names))
    windows = _counts_by_series_and_split(data.series[ends_all], data.split[ends_all], len(names))
    for split_code, split_name in enumerate(SPLIT_NAMES):
        if windows[:, split_code].sum() == 0:
            raise ConfigError(
                f"window.seq_len = {config.seq_len} (window.stride = {config.stride}) leaves no "
                f"{split_name} windows: the longest {split_name} stretch of any series has "
                f"{rows[:, split_code].max()} rows after warm-up; lower window.seq_len or "
                "widen the split"
            )
    for code, split_code in np.argwhere(windows == 0):
        note(
            f"series {names[code]!r} has no {SPLIT_NAMES[split_code]} windows of "
            f"window.seq_len = {config.seq_len}"
        )
    ends = {
        split_name: ends_all[data.split[ends_all] == split_code]
        for split_code, split_name in enumerate(SPLIT_NAMES)
    }
    return WindowSets(seq_len=config.seq_len, stride=config.stride, ends=ends)
