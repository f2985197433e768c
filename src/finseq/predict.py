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

A prediction depends on where its file starts (finseq.predict_inputs says how much
history it needs); reading, validating and featurising the files is that module's.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
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
from finseq.command import OneLineParser, run_stage
from finseq.errors import DataError
from finseq.features import FEATURE_NAMES, StandardScaler
from finseq.inputs import expand_entries
from finseq.labels import CLASS_LABELS
from finseq.models import predict_logits
from finseq.paths import MODEL_FILE
from finseq.predict_inputs import (
    ModelInputs,
    Selection,
    SeriesInputs,
    gather_inputs,
    note_short_history,
)
from finseq.prepare import check_distinct_names
from finseq.provenance import file_md5
from finseq.runtime import set_numerics
from finseq.versions import check_finseq_version

# Windows per forward pass. Every batch is padded to this size (see predict_logits), so a
# bar's probabilities are the same whether it is predicted alone or among thousands.
PREDICT_BATCH = 256

OUTPUT_COLUMNS = ("timestamp", "series", "p_down", "p_flat", "p_up", "label", "model")


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


def check_output(out: Path, reads: Sequence[Path] = ()) -> None:
    """Before any work: a path that cannot be written, or whose writing would destroy
    something (a file the command reads, a device, a link), stops here, nothing written."""
    parent = out.parent  # "." for a bare file name
    if out.is_dir():
        raise DataError(f"--out {out}: is a directory; give a file name")
    if out.is_symlink():
        raise DataError(f"--out {out}: is a symbolic link; give the file itself")
    if out.exists() and not out.is_file():
        raise DataError(f"--out {out}: is not a regular file (a device or a pipe)")
    if not parent.is_dir():
        raise DataError(f"--out {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise DataError(f"--out {out}: not writable")
    for path in reads:
        if path.exists() and out.resolve() == path.resolve():
            raise DataError(f"--out {out}: is {path}, which this command reads; give another name")


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
    series = gather_inputs(csv_paths, inputs, selection)
    check_distinct_names([one.path for one in series], "the command line")
    for one in series:
        note_short_history(one, inputs)
    fitted = [
        (member.model, checkpoint_calibration(member.record, model_file, calibration))
        for member in members
    ]
    with np.errstate(invalid="ignore"):  # NaN logits: refused below, in one line
        frame = predict_series(fitted, checkpoint, file_md5(model_file), series)
    not_numbers = ~np.isfinite(frame[["p_down", "p_flat", "p_up"]].to_numpy()).all(axis=1)
    if not_numbers.any():
        first = frame.iloc[int(np.argmax(not_numbers))]
        raise DataError(
            f"{model_file}: its probabilities for {first['series']} at {first['timestamp']} are "
            "not numbers (weights that are not finite?); rebuild it with `dvc repro train`"
        )
    return frame


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
    parser = OneLineParser(
        prog=prog,
        description="Probabilities of the -1/0/1 label for the bars of OHLCV files.",
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
        inputs = expand_entries(args.csv, listed_in="the command line")
        check_output(args.out, [args.model, *map(Path, inputs)])
    frame = predict(args.csv, args.model, selection, args.calibration)
    if args.out is None:
        print(f"model {args.model} (md5 {frame['model'].iloc[0]}), calibration {args.calibration}")
        print(table(frame))
        return
    try:
        with atomic_path(args.out) as temporary:
            frame.to_csv(temporary, index=False, float_format="%.9g", lineterminator="\n")
    except OSError as exc:
        raise DataError(f"--out {args.out}: cannot be written ({exc.strerror or exc})") from None


def main(argv: Sequence[str] | None = None, prog: str = "finseq predict") -> None:
    """One line and exit 2 for a user's mistake, as the stages do."""
    run_stage(lambda: run(argv, prog), interrupted="nothing was written")


if __name__ == "__main__":
    main(prog="python -m finseq.predict")
