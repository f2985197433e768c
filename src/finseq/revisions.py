"""A file as a git revision keeps it, and the workspace's settings for the out-of-sample
evidence: what the report and the experiments table both read.

A revision is a commit (a branch tip, or a `dvc exp` experiment's commit); None is the
workspace, whose files are read from disk.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd

from finseq import evaluate
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


def read_predictions(revision: str | None) -> pd.DataFrame | None:
    """metrics/predictions.csv of a revision (None: the workspace's), or None if absent."""
    text = read_at_revision(PREDICTIONS_FILE, revision)
    return None if text is None else evaluate.read_predictions(text)


def evidence_settings() -> EvidenceSettings:
    """The workspace's backtest and bootstrap params, with which every revision's
    predictions are judged alike."""
    return EvidenceSettings.of(load_params())
