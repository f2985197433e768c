"""The prepare stage: featurised series → one prepared dataset (stacked rows, the folds'
parts with purge and embargo, each fold's train-only scaler statistics), and
`run_prepare`, which writes it and metrics/data.json. `prepare_dataset` is a pure function
over frames, so tests run it without DVC.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.artifacts import ARRAYS, PreparedData
from finseq.atomic import write_json
from finseq.errors import ConfigError, DataError, note
from finseq.features import FEATURE_NAMES, WARMUP_BARS, StandardScaler
from finseq.inputs import expand_entries
from finseq.labels import TIE_DECIDED_BY_OPEN, TIE_UNDECIDED, UNKNOWN_LABEL
from finseq.params import LabelConfig, Params, SplitConfig
from finseq.paths import DATA_METRICS, PREPARED_DIR
from finseq.prepare import (
    FeaturisedSeries,
    check_distinct_names,
    check_finite_features,
    featurise,
    read_series,
    seal_lockbox,
    sealed_bars,
    series_name,
    stale_open_periods,
)
from finseq.progress import tracked
from finseq.provenance import array_hash
from finseq.split import (
    HOLDOUT,
    SPLIT_NAMES,
    TEST,
    TRAIN,
    Fold,
    assign_parts,
    fold_plan,
    sample_mask,
)
from finseq.summary import (
    data_summary,
    note_empty_splits,
    note_missing_classes,
    note_stale_opens,
    note_undecided_ties,
)


def prepare_panel(params: Params, frames: dict[str, pd.DataFrame] | None = None) -> PreparedData:
    """The prepared dataset of the files `params.data.files` lists (inputs.expand_entries;
    read in data.workers processes: prepare.read_series), or of `frames`, already loaded
    series keyed by their file name (or `file::SYMBOL`)."""
    featurised = None
    if frames is None:
        files = expand_entries(params.data.files)
        note_files_outside(files, Path.cwd())
        frames, featurised = read_series(
            files,
            params.label,
            params.data.workers,
            params.split.lockbox,
            params.data.adjust_volume,
        )
    return prepare_dataset(
        frames, params.label, params.split, featurised, params.data.adjust_volume
    )


def note_files_outside(files: list[str], root: Path) -> None:
    """A file outside the project is no DVC dependency of prepare: a change to it reruns
    nothing, and the prepared data go stale without a word. Named once, with the count."""
    top = root.resolve()
    outside = [path for path in files if not (root / path).resolve().is_relative_to(top)]
    if outside:
        more = f" and {len(outside) - 1} more" if len(outside) > 1 else ""
        note(
            f"data.files reads {outside[0]!r}{more} from outside the project: DVC does not "
            "track it, so a change to it will not rerun prepare; copy it under data/raw"
        )


def run_prepare(params: Params, root: Path = Path()) -> PreparedData:
    """The prepare stage under a project root: data/prepared and metrics/data.json."""
    data = prepare_panel(params)
    data.save(root / PREPARED_DIR)
    write_json(root / DATA_METRICS, data_summary(data))
    return data


def prepare_dataset(
    frames: dict[str, pd.DataFrame],
    label_config: LabelConfig,
    split_config: SplitConfig,
    featurised: Sequence[FeaturisedSeries | None] | None = None,
    adjust_volume: bool = True,
) -> PreparedData:
    """Features, labels, the folds' calendar parts with purge and embargo, and each fold's
    train-only scaler statistics.

    `frames` maps each series key (a file, or `file::SYMBOL` of a panel: inputs.read_sources)
    to its validated OHLCV frame (see load.validate_series);
    each is cut at split.lockbox first (prepare.seal_lockbox; a frame read_series cut
    already loses nothing more). `featurised`, if given, holds featurise's result for each
    of the cut frames (read_series computes them side by side), else they are computed here.
    `adjust_volume` is data.adjust_volume, recorded for the model (predict) when false only,
    so that the prepared bytes of data read before it existed stay the same.
    """
    files = tuple(frames)
    check_distinct_names(files)
    frames = {path: seal_lockbox(frame, split_config.lockbox) for path, frame in frames.items()}
    _check_lockbox(frames, label_config, split_config)
    short = _first_too_short(frames, label_config)
    if short is not None:
        path, bars, needed = short
        raise DataError(
            f"{path}: only {bars} bars; at least {needed} are needed "
            f"(warm-up {WARMUP_BARS} + label.horizon {label_config.horizon} + 1)"
        )
    with _naming_the_lockbox(split_config):
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
    note_undecided_ties(tie_shares, label_config)
    for (path, frame), series_features in zip(frames.items(), raw_features, strict=True):
        check_finite_features(path, frame, series_features)
    stacked = {
        name: np.concatenate([part[name] for part in parts], axis=-1 if name in FOLD_ARRAYS else 0)
        for name in parts[0]
    }
    with _naming_the_lockbox(split_config):
        for index, fold in enumerate(plan.folds):
            _check_every_part_has_samples(
                fold,
                stacked["parts"][index],
                stacked["samples"][index],
                stacked["labels"] == UNKNOWN_LABEL,
                label_config,
                split_config,
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
        "sealed_bars": {series_name(path): sealed_bars(frame) for path, frame in frames.items()},
        "stale_opens": {
            series_name(path): stale_open_periods(frame) for path, frame in frames.items()
        },
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
        "split": split_config.prepared_view(),
    }
    if not adjust_volume:
        meta["volume_as_reported"] = True
    meta["content_hash"] = array_hash(((name, stacked[name]) for name in ARRAYS), meta)
    data = PreparedData(meta=meta, **stacked)
    note_empty_splits(data)
    note_missing_classes(data)
    note_stale_opens(data)
    return data


FOLD_ARRAYS = ("parts", "samples")


def _check_lockbox(
    frames: dict[str, pd.DataFrame], label_config: LabelConfig, split_config: SplitConfig
) -> None:
    """A lockbox that seals nothing, or leaves a series too short to prepare, is a mistake
    in split.lockbox: one line naming it."""
    lockbox = split_config.lockbox
    if lockbox is None:
        return
    if not any(sealed_bars(frame) for frame in frames.values()):
        raise ConfigError(
            f"split.lockbox = {lockbox!r} is after the last bar of every series: it seals "
            "nothing; choose a date inside the data, or null for no lockbox"
        )
    short = _first_too_short(frames, label_config)
    if short is not None:
        path, bars, needed = short
        raise ConfigError(
            f"split.lockbox = {lockbox!r} leaves {path} only {bars} bars before it; "
            f"at least {needed} are needed (warm-up {WARMUP_BARS} + label.horizon "
            f"{label_config.horizon} + 1); choose a later date"
        )


def _first_too_short(frames: dict, label_config: LabelConfig) -> tuple[str, int, int] | None:
    """The first series with fewer bars than a label and the features' warm-up need:
    (its path, its bars, the bars needed), or None."""
    needed = WARMUP_BARS + label_config.horizon + 1
    for path, frame in frames.items():
        if len(frame) < needed:
            return path, len(frame), needed
    return None


@contextlib.contextmanager
def _naming_the_lockbox(split_config: SplitConfig) -> Iterator[None]:
    """A split the bars before the lockbox leave impossible names the lockbox too, since
    moving it may be the fix."""
    try:
        yield
    except ConfigError as exc:
        if split_config.lockbox is None:
            raise
        raise ConfigError(
            f"{exc} (over the bars before split.lockbox = {split_config.lockbox!r})"
        ) from None


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


def _check_every_part_has_samples(
    fold: Fold,
    parts: np.ndarray,
    samples: np.ndarray,
    undecided: np.ndarray,
    label_config: LabelConfig,
    split_config: SplitConfig,
) -> None:
    """A part whose every bar is purged or unlabelled: name the params that did it, or the
    undecided labels where they are most of the part (flat prices: every bar touches both
    barriers of width 0)."""
    if not (parts == TRAIN).any() and fold.name == HOLDOUT:
        raise ConfigError(
            f"split.train = {split_config.train} leaves no training rows after the "
            f"{WARMUP_BARS}-bar warm-up of each series; raise split.train"
        )
    if not (parts == TRAIN).any():
        raise ConfigError(
            f"fold {fold.name} has no training rows after the {WARMUP_BARS}-bar warm-up of each "
            "series; give it more history (split.oos_start or split.history) or a smaller "
            f"split.val_share ({split_config.val_share})"
        )
    where = "" if fold.name == HOLDOUT else f" in fold {fold.name}"
    widen = (
        "split.train, split.val"
        if fold.name == HOLDOUT
        else "split.history, split.val_share, split.folds"
    )
    for split_code, split_name in enumerate(SPLIT_NAMES):
        rows = int((parts == split_code).sum())
        if rows and not (samples & (parts == split_code)).any():
            ties = int((undecided & (parts == split_code)).sum())
            if 2 * ties >= rows:
                raise ConfigError(
                    f"no {split_name} samples are left of {rows} {split_name} rows{where}: "
                    f"{ties} of them have an undecided label (a bar touched both "
                    "triple-barrier barriers): flat prices, or label.threshold too small"
                )
            raise ConfigError(
                f"no {split_name} samples are left of {rows} {split_name} rows{where}: each needs "
                f"label.horizon ({label_config.horizon}) + split.embargo ({split_config.embargo}) "
                f"bars after it inside the split and label.vol_window ({label_config.vol_window}) "
                f"bars before it; lower those or widen the split ({widen})"
            )
