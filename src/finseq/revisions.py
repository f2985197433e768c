"""A file as a git revision keeps it, and the workspace's settings for the out-of-sample
evidence: what the report and the experiments table both read.

A revision is a commit (a branch tip, or a `dvc exp` experiment's commit); None is the
workspace, whose files are read from disk.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from finseq import evaluate
from finseq.errors import DataError
from finseq.params import load_params
from finseq.paths import PREDICTIONS_FILE
from finseq.verdicts import EvidenceSettings


def read_at_revision(path: str, revision: str | None) -> str | None:
    """A file's text in `revision` (git show), or in the workspace if None; None if absent."""
    if revision is None:
        file = Path(path)
        return file.read_text() if file.is_file() else None
    result = subprocess.run(
        ["git", "show", f"{revision}:{path}"], capture_output=True, text=True, check=False
    )
    return result.stdout if result.returncode == 0 else None


# What every reader of a predictions table computes from, beside the probabilities.
PREDICTION_KEYS = ("timestamp", "series", "next_return")


def read_predictions(revision: str | None) -> pd.DataFrame | None:
    """metrics/predictions.csv of a revision (None: the workspace's), or None if absent.
    A cut or edited file is refused: read as it is, its half row would be a window of
    unknown label and its verdicts those of the rows left."""
    text = read_at_revision(PREDICTIONS_FILE, revision)
    if text is None:
        return None
    where = f"{PREDICTIONS_FILE} {'in the workspace' if revision is None else f'at {revision}'}"
    if text and not text.endswith("\n"):
        raise DataError(f"{where}: truncated (its last line is cut); run `dvc repro` or restore it")
    try:
        table = evaluate.read_predictions(text)
    except (ValueError, pd.errors.ParserError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{where}: not a predictions table ({reason})") from None
    missing = [
        name for name in (*evaluate.PROBABILITY_COLUMNS, *PREDICTION_KEYS) if name not in table
    ]
    if missing:
        raise DataError(f"{where}: no column(s) {', '.join(missing)}; run `dvc repro`")
    numbers = table[[*evaluate.PROBABILITY_COLUMNS, "next_return"]].to_numpy(dtype=float)
    if not np.isfinite(numbers).all():
        row = int(np.argmax(~np.isfinite(numbers).all(axis=1)))
        raise DataError(f"{where}: line {row + 2} has a probability or return that is no number")
    return table


def evidence_settings() -> EvidenceSettings:
    """The workspace's backtest and bootstrap params, with which every revision's
    predictions are judged alike."""
    return EvidenceSettings.of(load_params())
