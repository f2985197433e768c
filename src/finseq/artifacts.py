"""The artefacts stages hand on: prepared data, window sets, and the checks that keep them
apart.

On disk each array is its own .npy file (np.savez embeds the write time, which would break
byte-for-byte reproducibility) next to a meta.json. Prepared data carries a content hash of
its arrays and meta; window sets carry the hash of the prepared data they index; a
checkpoint carries both (finseq.checkpoint). check_windows refuses window sets of other
prepared data with one line; evaluate's check of a model against both is
finseq.scoring.check_model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finseq.atomic import atomic_path, write_json
from finseq.errors import DataError
from finseq.features import StandardScaler
from finseq.provenance import array_hash, short

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
        require_files(directory, [*(f"{name}.npy" for name in ARRAYS), "meta.json"], "prepare")
        mode = "r" if mmap else None
        try:
            arrays = {
                name: np.load(directory / f"{name}.npy", allow_pickle=False, mmap_mode=mode)
                for name in ARRAYS
            }
            meta = json.loads((directory / "meta.json").read_text())
        except (ValueError, OSError, EOFError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise DataError(
                f"{directory}: unreadable ({reason}); run `dvc repro -f -s prepare` "
                "(or `dvc checkout`)"
            ) from None
        if not isinstance(meta, dict):
            raise DataError(f"{directory}/meta.json: not a prepare meta.json; run `dvc repro`")
        if (
            "content_hash" in meta
            and array_hash(
                ((name, arrays[name]) for name in ARRAYS),
                {key: value for key, value in meta.items() if key != "content_hash"},
            )
            != meta["content_hash"]
        ):
            raise DataError(
                f"{directory} changed after prepare wrote it: its arrays and meta.json no longer "
                "give its content hash; run `dvc repro -f -s prepare` (or `dvc checkout`)"
            )
        return cls(**arrays, meta=meta)


def require_files(directory: Path, names: list[str], stage: str) -> None:
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"{directory}: missing {', '.join(missing)}; run `dvc repro {stage}` "
            "(or `dvc checkout`) first"
        )


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
        require_files(directory, ["meta.json"], "window")
        try:
            meta = json.loads((directory / "meta.json").read_text())
            names = [
                f"{fold}_{name}.npy" for fold in meta["folds"] for name in meta["windows"][fold]
            ]
            require_files(directory, names, "window")
            ends = {
                fold: {
                    name: np.load(directory / f"{fold}_{name}.npy", allow_pickle=False)
                    for name in meta["windows"][fold]
                }
                for fold in meta["folds"]
            }
        except (ValueError, OSError, EOFError, KeyError, TypeError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise DataError(
                f"{directory}: unreadable ({reason}); run `dvc repro -f -s window` "
                "(or `dvc checkout`)"
            ) from None
        return cls(
            seq_len=meta["seq_len"],
            stride=meta["stride"],
            ends=ends,
            prepared_hash=meta.get("prepared_hash"),
        )


def check_windows(
    data: PreparedData, windows: WindowSets, *, prepared_dir: str | Path, windows_dir: str | Path
) -> None:
    """Window sets index rows of one prepared dataset; any other would pick wrong rows."""
    if data.content_hash is None:
        raise DataError(
            f"{prepared_dir} has no content hash (written by an older finseq); run `dvc repro`"
        )
    if windows.prepared_hash != data.content_hash:
        raise DataError(
            f"{windows_dir} was built from other prepared data (it indexes "
            f"{short(windows.prepared_hash)}, {prepared_dir} is {short(data.content_hash)}); "
            "run `dvc repro`"
        )


def load_windowed(
    prepared_dir: str | Path, windows_dir: str | Path
) -> tuple[PreparedData, WindowSets]:
    """Prepared data and the window sets cut from it, refused when the windows index other
    prepared data."""
    data = PreparedData.load(prepared_dir)
    windows = WindowSets.load(windows_dir)
    check_windows(data, windows, prepared_dir=prepared_dir, windows_dir=windows_dir)
    return data, windows
