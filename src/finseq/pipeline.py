"""prepare · window · train · evaluate · lockbox as plain in-process calls on Params: what the
tests' tiny runs, the control experiments and the benchmarks call.

`run_<stage>` is the very function `python -m finseq.stages.<stage>` runs, on a project root:
it lives in its stage's module (panel, window_sets, folds, scoring), so that dvc.yaml can
list for each stage the code that decides its outputs, and this module, which only hands
the calls on, is in no stage's deps. `prepare`, `window`, `train_fold` and `score_fold`
compute in memory. Each function imports its stage's module when called, so that a caller
of `prepare` never loads torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

    from finseq.artifacts import PreparedData, WindowSets
    from finseq.evaluate import FoldScores
    from finseq.fit import FitResult
    from finseq.params import Params
    from finseq.scoring import Evaluation


def prepare(params: Params, frames: dict[str, pd.DataFrame] | None = None) -> PreparedData:
    """The prepared dataset of `params.data.files`, or of already loaded `frames`."""
    from finseq.panel import prepare_panel

    return prepare_panel(params, frames)


def window(params: Params, data: PreparedData) -> WindowSets:
    from finseq.window_sets import make_window_sets

    return make_window_sets(data, params.window)


def train_fold(
    params: Params, data: PreparedData, windows: WindowSets, fold: str, device: torch.device
) -> tuple[nn.Module, FitResult]:
    """One fold's model at train.seed, fit in this process; nothing logged or saved."""
    from finseq.folds import train_fold

    return train_fold(data, windows, fold, params.model, params.train, device)


def score_fold(
    params: Params,
    model: nn.Module,
    data: PreparedData,
    windows: WindowSets,
    fold: str,
    device: torch.device,
) -> FoldScores:
    """`fold`'s model on its own val and test windows, beside its training prior."""
    from finseq.scoring import score_fold_as_configured

    return score_fold_as_configured(params, model, data, windows, fold, device)


def run_prepare(params: Params, root: Path = Path()) -> PreparedData:
    from finseq.panel import run_prepare

    return run_prepare(params, root)


def run_window(params: Params, root: Path = Path()) -> WindowSets:
    from finseq.window_sets import run_window

    return run_window(params, root)


def run_train(params: Params, root: Path = Path()) -> None:
    from finseq.folds import run_train

    run_train(params, root)


def run_evaluate(params: Params, root: Path = Path()) -> Evaluation:
    from finseq.scoring import run_evaluate

    return run_evaluate(params, root)


def run_lockbox(params: Params, root: Path = Path()) -> dict:
    from finseq.lockbox import run_lockbox

    return run_lockbox(params, root)
