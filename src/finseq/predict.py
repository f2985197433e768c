"""finseq predict: a trained checkpoint on new bars, computed exactly as the pipeline does.

    finseq predict [--model models/model.pth] [--last N | --since DATE | --all] [--out FILE] PATH...

Each PATH (a CSV or Parquet file, one series or a long-format panel, a directory or a glob,
as data.files takes them: finseq.inputs) goes through prepare's own load and validation
(finseq.load), volume split-adjusted as the model's data.adjust_volume says, and feature code
(finseq.features); scaling and windows come only from the checkpoint (its scaler
statistics, feature names and seq_len). A checkpoint of several seeds' models
(train.seeds) predicts their average, each calibrated by its own fit. Nothing else is
read: no params.yaml, no data/prepared, so a model file fetched alone works in any
directory. The model reads features, not series names, so series it never saw in training
are allowed.

Windows are causal, so a bar's prediction does not change when later bars are appended.
It does depend on where the file starts: the EMA and Wilder features carry the first bars'
influence, which decays by about 7% a bar. A bar whose window's earliest row has
CONVERGED_BARS bars before it agrees with a longer history to about 1e-7 (the figures
are in docs/predicting.md); shorter files get a note.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from finseq.atomic import atomic_path
from finseq.calibration import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION,
    Calibration,
    calibrated_probabilities,
    checkpoint_calibration,
    ensemble_probabilities,
)
from finseq.checkpoint import Member, load_ensemble
from finseq.command import run_stage
from finseq.errors import DataError, note
from finseq.features import FEATURE_NAMES, WARMUP_BARS, StandardScaler, feature_matrix
from finseq.inputs import expand_entries, read_sources
from finseq.labels import CLASS_LABELS
from finseq.models import predict_logits
from finseq.paths import MODEL_FILE
from finseq.prepare import check_distinct_names, check_finite_features, series_name
from finseq.progress import tracked
from finseq.provenance import file_md5
from finseq.runtime import set_numerics, usable_cores
from finseq.versions import check_finseq_version

# Windows per forward pass. Every batch is padded to this size (see predict_logits), so a
# bar's probabilities are the same whether it is predicted alone or among thousands.
PREDICT_BATCH = 256

# Bars of history before a window's earliest row after which the slowest features (MACD's
# EMAs, Wilder's RSI and ATR) agree with a longer history's to about 5e-8.
CONVERGED_BARS = 240

# Files per process below which a pool costs more than it saves.
FILES_PER_WORKER = 4

OUTPUT_COLUMNS = ("timestamp", "series", "p_down", "p_flat", "p_up", "label", "model")


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


def file_inputs(path: str, inputs: ModelInputs, selection: Selection) -> list[SeriesInputs]:
    """Every series of one file (one, or a panel's symbols), loaded as prepare loads them.
    With --since, a panel's symbols that end before it (delisted) are left out with a note;
    a file with no bar from it on is refused, as a one-series file is."""
    sources = read_sources(path, adjust_volume=inputs.adjust_volume)
    if selection.since is not None and len(sources) > 1:
        ended = [key for key, frame in sources.items() if frame.index[-1] < selection.since]
        if ended and len(ended) < len(sources):
            for key in ended:
                del sources[key]
            names = ", ".join(series_name(key) for key in ended[:5])
            more = f" and {len(ended) - 5} more" if len(ended) > 5 else ""
            note(
                f"{path}: {len(ended)} symbol(s) end before --since {selection.since.date()} "
                f"and are not predicted ({names}{more})"
            )
    return [series_inputs(key, frame, inputs, selection) for key, frame in sources.items()]


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


def map_files(function: Callable[[str], list], paths: Sequence[str]) -> list:
    """`function` over every file, in order; in a pool of one process per core when there are
    enough files. The first file that fails (in the given order) raises, as in one process."""
    workers = min(usable_cores(), len(paths) // FILES_PER_WORKER)
    if workers < 2:
        return list(tracked(map(function, paths), len(paths), "predict", "files"))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        chunk = max(1, len(paths) // (4 * workers))
        results = pool.map(function, paths, chunksize=chunk)
        return list(tracked(results, len(paths), "predict", "files"))


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


def predict_series(
    members: list[tuple[torch.nn.Module, Calibration]],
    checkpoint: dict,
    model_md5: str,
    series: list[SeriesInputs],
) -> pd.DataFrame:
    """Probabilities of every predicted bar: the rows stacked as the pipeline stacks series,
    windows gathered by end index, batches padded to PREDICT_BATCH; each seed's model
    calibrated by its own fit and their probabilities averaged, as evaluate scores its test
    windows, then written in float32."""
    seq_len = checkpoint["seq_len"]
    offsets = np.cumsum([0] + [len(one.rows) for one in series])
    ends = np.concatenate(
        [
            np.arange(start + seq_len - 1, start + len(one.rows))
            for start, one in zip(offsets, series, strict=False)
        ]
    )
    features = torch.as_tensor(np.concatenate([one.rows for one in series]))
    precision = checkpoint["params"]["train"]["precision"]
    each_seed = []
    for model, calibration in members:
        logits = predict_logits(
            model, features, torch.as_tensor(ends), seq_len, PREDICT_BATCH, precision, pad=True
        )
        each_seed.append(calibrated_probabilities(calibration, logits.numpy()))
    probabilities = ensemble_probabilities(each_seed).astype(np.float32)
    frame = pd.DataFrame(
        {
            "timestamp": np.concatenate([one.timestamps for one in series]),
            "series": np.concatenate([[one.name] * len(one.timestamps) for one in series]),
            "p_down": probabilities[:, 0],
            "p_flat": probabilities[:, 1],
            "p_up": probabilities[:, 2],
            "label": np.asarray(CLASS_LABELS)[probabilities.argmax(axis=1)],
            "model": model_md5,
        }
    )
    return frame[list(OUTPUT_COLUMNS)]


def check_output(out: Path) -> None:
    """Before any work: a path that cannot be written stops here, with nothing written."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise DataError(f"--out {out}: is a directory; give a file name")
    if not parent.is_dir():
        raise DataError(f"--out {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise DataError(f"--out {out}: not writable")


def read_model(path: Path) -> tuple[list[Member], dict]:
    """Every seed's model of a checkpoint this finseq can use, and the checkpoint."""
    members, checkpoint = load_ensemble(path)
    check_finseq_version(checkpoint, path)
    if list(checkpoint["feature_names"]) != list(FEATURE_NAMES):
        raise DataError(
            f"{path} was trained on other features than this finseq computes "
            f"({len(checkpoint['feature_names'])} named features); retrain it"
        )
    return members, checkpoint


def predict(
    csv_paths: Sequence[str],
    model_file: Path,
    selection: Selection,
    calibration: str = DEFAULT_CALIBRATION,
) -> pd.DataFrame:
    """The whole command as a function: checkpoint + CSVs -> one row per predicted bar,
    each seed's model with its own `calibration` (fit on its val windows when it was
    saved), their probabilities averaged."""
    csv_paths = expand_entries(csv_paths, listed_in="the command line")
    set_numerics(torch.device("cpu"))
    members, checkpoint = read_model(model_file)
    inputs = ModelInputs(
        seq_len=checkpoint["seq_len"],
        scaler=StandardScaler(
            mean=checkpoint["scaler_mean"].numpy(), std=checkpoint["scaler_std"].numpy()
        ),
        adjust_volume=checkpoint["params"].get("data", {}).get("adjust_volume", False),
    )
    by_file = map_files(partial(file_inputs, inputs=inputs, selection=selection), csv_paths)
    series = [one for file_series in by_file for one in file_series]
    check_distinct_names([one.path for one in series], "the command line")
    for one in series:
        note_short_history(one, inputs)
    fitted = [
        (member.model, checkpoint_calibration(member.record, model_file, calibration))
        for member in members
    ]
    return predict_series(fitted, checkpoint, file_md5(model_file), series)


def parse_since(text: str) -> pd.Timestamp:
    stamp = pd.to_datetime(text, utc=True, errors="coerce")
    if pd.isna(stamp):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date")
    return stamp.tz_localize(None)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return int(text)


def build_parser(prog: str = "finseq predict") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Probabilities of the -1/0/1 label for the bars of OHLCV CSV files.",
    )
    parser.add_argument(
        "csv",
        nargs="+",
        help="OHLCV CSV or Parquet files (one series each, or long-format panels with a "
        "Symbol column), directories or globs",
    )
    parser.add_argument(
        "--model", type=Path, default=Path(MODEL_FILE), help=f"default: {MODEL_FILE}"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--last", type=positive, help="the last N bars of each file (default 1)")
    which.add_argument("--since", type=parse_since, help="every bar from DATE on")
    which.add_argument("--all", action="store_true", help="every bar with a full window")
    parser.add_argument("--out", type=Path, help="write CSV here (default: a table on stdout)")
    parser.add_argument(
        "--calibration",
        choices=CALIBRATION_METHODS,
        default=DEFAULT_CALIBRATION,
        help=f"as evaluate.calibration (default: {DEFAULT_CALIBRATION}, params.yaml's default)",
    )
    return parser


def table(frame: pd.DataFrame) -> str:
    shown = frame.drop(columns="model")
    shown["timestamp"] = shown["timestamp"].astype(str)
    return shown.to_string(
        index=False, formatters={name: "{:.4f}".format for name in ("p_down", "p_flat", "p_up")}
    )


def run(argv: Sequence[str] | None = None, prog: str = "finseq predict") -> None:
    args = build_parser(prog).parse_args(argv)
    if args.all:
        selection = Selection(last=None)
    elif args.since is not None:
        selection = Selection(last=None, since=args.since)
    else:
        selection = Selection(last=args.last or 1)
    if args.out is not None:
        check_output(args.out)
    frame = predict(args.csv, args.model, selection, args.calibration)
    if args.out is None:
        print(f"model {args.model} (md5 {frame['model'].iloc[0]}), calibration {args.calibration}")
        print(table(frame))
        return
    with atomic_path(args.out) as temporary:
        frame.to_csv(temporary, index=False, float_format="%.9g", lineterminator="\n")


def main(argv: Sequence[str] | None = None, prog: str = "finseq predict") -> None:
    """One line and exit 2 for a user's mistake, as the stages do."""
    run_stage(lambda: run(argv, prog), interrupted="nothing was written")


if __name__ == "__main__":
    main(prog="python -m finseq.predict")
