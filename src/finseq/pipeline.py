"""prepare · window · train · evaluate as plain in-process calls on Params.

The stages (`python -m finseq.stages.<stage>`), the tests' tiny runs, the control
experiments and the benchmarks all run the pipeline through these functions. `run_<stage>`
reads and writes the stage's artefacts under a project root, as dvc.yaml declares them;
`prepare`, `window`, `train_fold` and `score_fold` compute in memory.

The training and evaluation modules (torch, DVCLive) are imported inside the functions
that use them, so that prepare and window start without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from finseq.artifacts import PreparedData, WindowSets, load_windowed
from finseq.atomic import atomic_path, write_json, write_text
from finseq.panel import prepare_dataset
from finseq.params import Params
from finseq.paths import (
    CONFUSION_FILE,
    DATA_METRICS,
    EQUITY_FILE,
    EVAL_METRICS,
    FOLD_MODELS_DIR,
    MODEL_FILE,
    PREDICTIONS_FILE,
    PREPARED_DIR,
    TRAIN_LIVE_DIR,
    WINDOWS_DIR,
)
from finseq.prepare import read_series
from finseq.runtime import resolve_data_workers
from finseq.summary import data_summary
from finseq.window_sets import make_window_sets

if TYPE_CHECKING:
    import torch
    from torch import nn

    from finseq.distributed import Ranks
    from finseq.evaluate import FoldScores
    from finseq.fit import FitResult
    from finseq.scoring import Evaluation


def prepare(params: Params, frames: dict[str, pd.DataFrame] | None = None) -> PreparedData:
    """The prepared dataset of `params.data.files` (read in data.workers processes), or of
    `frames`, already loaded series keyed by their file name."""
    featurised = None
    if frames is None:
        files = params.data.files
        workers = resolve_data_workers(params.data.workers, len(files))
        frames, featurised = read_series(files, params.label, workers)
    return prepare_dataset(frames, params.label, params.split, featurised)


def window(params: Params, data: PreparedData) -> WindowSets:
    return make_window_sets(data, params.window)


def train_fold(
    params: Params, data: PreparedData, windows: WindowSets, fold: str, device: torch.device
) -> tuple[nn.Module, FitResult]:
    """One fold's model at train.seed, fit in this process; nothing logged or saved."""
    from finseq.folds import train_fold

    return train_fold(data, windows, fold, params.model, params.train, device)


def save_fold_model(
    params: Params,
    model: nn.Module,
    result: FitResult,
    data: PreparedData,
    windows: WindowSets,
    fold: str,
    path: Path,
) -> None:
    """`fold`'s checkpoint, as the train stage writes it, saved to `path`."""
    from finseq.checkpoint import save_checkpoint
    from finseq.folds import fold_checkpoint

    save_checkpoint(fold_checkpoint(model, result, data, windows, fold, params), path)


def score_fold(
    params: Params,
    model: nn.Module,
    data: PreparedData,
    windows: WindowSets,
    fold: str,
    device: torch.device,
) -> FoldScores:
    """`fold`'s model on its own val and test windows, beside its training prior."""
    from finseq.scoring import score_fold

    return score_fold(
        model,
        data,
        windows,
        fold,
        device,
        batch_size=params.evaluate.batch_size,
        precision=params.train.precision,
    )


def run_prepare(params: Params, root: Path = Path()) -> PreparedData:
    """data/prepared and metrics/data.json."""
    data = prepare(params)
    data.save(root / PREPARED_DIR)
    write_json(root / DATA_METRICS, data_summary(data))
    return data


def run_window(params: Params, root: Path = Path()) -> WindowSets:
    """data/windows, cut from data/prepared."""
    data = PreparedData.load(root / PREPARED_DIR, mmap=True)
    windows = window(params, data)
    windows.save(root / WINDOWS_DIR)
    return windows


def run_train(
    params: Params,
    root: Path = Path(),
    *,
    device: torch.device | None = None,
    ranks: Ranks | None = None,
) -> None:
    """models/folds, models/model.pth (the model fold's bytes) and the training curves.

    Under torch.distributed (`ranks`, in a joined process group, on the `device` that
    runtime.configure_torch gave the rank) every rank trains; rank 0 alone logs and writes.
    """
    from finseq.folds import fold_curves_tsv, fold_runs, train_folds, training_summary
    from finseq.runtime import configure_torch

    device = device or configure_torch(params.train, ranks)
    data, windows = load_windowed(root / PREPARED_DIR, root / WINDOWS_DIR)
    if ranks is not None and not ranks.is_main:
        train_folds(data, windows, params, device, fold_runs(data, params, None, None), ranks)
        return
    model_fold = data.meta["model_fold"]
    with (
        atomic_path(root / TRAIN_LIVE_DIR, directory=True) as live_root,
        atomic_path(root / FOLD_MODELS_DIR, directory=True) as fold_dir,
    ):
        (live_root / "folds").mkdir()
        runs = fold_runs(data, params, live_root, Path(fold_dir))
        trained = train_folds(data, windows, params, device, runs, ranks)
        results = {fold: trained[fold] for fold in data.fold_names}
        write_json(live_root / "metrics.json", training_summary(results, model_fold))
        write_text(live_root / "folds" / "curves.tsv", fold_curves_tsv(results))
        model_bytes = (Path(fold_dir) / f"{model_fold}.pth").read_bytes()
    with atomic_path(root / MODEL_FILE) as temporary:
        temporary.write_bytes(model_bytes)


def run_evaluate(params: Params, root: Path = Path()) -> Evaluation:
    """metrics/eval.json, metrics/predictions.csv, the equity curve and the confusion matrix."""
    from finseq.runtime import configure_torch
    from finseq.scoring import evaluate_folds

    device = configure_torch(params.train)
    data, windows = load_windowed(root / PREPARED_DIR, root / WINDOWS_DIR)
    evaluation = evaluate_folds(
        params,
        data,
        windows,
        device,
        root / FOLD_MODELS_DIR,
        prepared_dir=root / PREPARED_DIR,
        windows_dir=root / WINDOWS_DIR,
    )
    write_json(root / EVAL_METRICS, evaluation.metrics)
    write_text(root / PREDICTIONS_FILE, evaluation.predictions_csv)
    write_text(root / EQUITY_FILE, evaluation.equity_csv)
    write_text(root / CONFUSION_FILE, evaluation.confusion_csv)
    return evaluation


def run(params: Params, root: Path = Path()) -> Evaluation:
    """The whole pipeline under `root`, in this process, as `dvc repro` runs it."""
    run_prepare(params, root)
    run_window(params, root)
    run_train(params, root)
    return run_evaluate(params, root)
