"""The evaluate stage as a function: each fold's model on its own val and test windows, and
every figure and output the stage writes.

The pooled and per-fold figures come from the logits; the backtest and the intervals from
the out-of-sample predictions table as metrics/predictions.csv records it (8 significant
digits), so that the report, which reads that file at each revision, computes the same.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from finseq.artifacts import PreparedData, WindowSets, check_model
from finseq.checkpoint import load_checkpoint
from finseq.evaluate import (
    FoldScores,
    class_prior,
    confusion_csv,
    fold_metrics,
    pooled_metrics,
    predictions_csv,
    predictions_frame,
)
from finseq.evidence import figures_of_seed, out_of_sample_evidence, seed_spread
from finseq.labels import to_classes
from finseq.models import predict_logits
from finseq.params import Params
from finseq.provenance import file_md5
from finseq.split import HOLDOUT


def score_fold(
    model: nn.Module,
    data: PreparedData,
    windows: WindowSets,
    fold: str,
    device: torch.device,
    *,
    batch_size: int,
    precision: str,
) -> FoldScores:
    """`fold`'s model on its own val and test windows, beside the class prior of its own
    training windows (the baselines of every window it scores)."""
    features = torch.as_tensor(data.scaled_features(fold), device=device)
    ends = {part: windows.ends[fold][part] for part in ("val", "test")}
    logits = {
        part: predict_logits(
            model,
            features,
            torch.as_tensor(part_ends, device=device),
            windows.seq_len,
            batch_size,
            precision,
        )
        .cpu()
        .numpy()
        for part, part_ends in ends.items()
    }
    classes = to_classes(data.labels)
    prior = class_prior(classes[windows.ends[fold]["train"]])
    return FoldScores(fold=fold, ends=ends, logits=logits, prior=prior)


def score_every_fold(
    params: Params,
    data: PreparedData,
    windows: WindowSets,
    device: torch.device,
    fold_dir: Path,
    *,
    suffix: str = "",
    prepared_dir: str | Path,
    windows_dir: str | Path,
) -> list[FoldScores]:
    """Each scored fold's model (`fold_dir`/<fold><suffix>.pth) on its own val and test,
    refused if it was trained on other data or windows."""
    scores = []
    for fold in data.meta["evaluated_folds"]:
        model_file = Path(fold_dir) / f"{fold}{suffix}.pth"
        model, checkpoint = load_checkpoint(model_file, device)
        check_model(
            checkpoint,
            model_file,
            data,
            windows,
            prepared_dir=prepared_dir,
            windows_dir=windows_dir,
        )
        scores.append(
            score_fold(
                model,
                data,
                windows,
                fold,
                device,
                batch_size=params.evaluate.batch_size,
                precision=params.train.precision,
            )
        )
    return scores


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate stage writes: metrics/eval.json's content and three files' text."""

    metrics: dict
    predictions_csv: str
    equity_csv: str
    confusion_csv: str


def evaluate_folds(
    params: Params,
    data: PreparedData,
    windows: WindowSets,
    device: torch.device,
    fold_dir: str | Path,
    *,
    prepared_dir: str | Path,
    windows_dir: str | Path,
) -> Evaluation:
    """val.* and test.* pooled over the scored folds beside their baselines, folds.<fold>.*,
    the backtest and every interval, the seed-to-seed spread (train.seeds), and model_md5."""
    fold_dir = Path(fold_dir)
    where = {"prepared_dir": prepared_dir, "windows_dir": windows_dir}
    classes = to_classes(data.labels)
    scores = score_every_fold(params, data, windows, device, fold_dir, **where)
    outcomes = (
        data.labels,
        data.meta["series_names"],
        data.series,
        data.timestamps,
        data.forward_return,
        data.next_return,
    )
    metrics = {part: pooled_metrics(scores, classes, part) for part in ("val", "test")}
    if data.meta["evaluated_folds"] != [HOLDOUT]:
        metrics["folds"] = {
            score.fold: fold_metrics(score, classes, data.timestamps) for score in scores
        }
    predictions_text = predictions_csv(predictions_frame(scores, *outcomes))
    # Figures and intervals from the table as recorded, as the report reads it.
    predictions = pd.read_csv(io.StringIO(predictions_text))
    evidence, equity = out_of_sample_evidence(
        predictions, params.backtest, params.evaluate, data.meta["label_horizon"]
    )
    # The pooled point values stay; the evidence adds the backtest and the intervals.
    metrics["test"].update(
        {key: value for key, value in evidence.items() if key not in metrics["test"]}
    )
    if params.train.seeds > 1:
        further_seeds = (
            score_every_fold(
                params, data, windows, device, fold_dir, suffix=f".seed{offset}", **where
            )
            for offset in range(1, params.train.seeds)
        )
        per_seed = [
            figures_of_seed(scores_of_seed, classes, outcomes, params)
            for scores_of_seed in [scores, *further_seeds]
        ]
        metrics["seeds"] = seed_spread(per_seed, params.train.seed)
    # The model users take away (models/model.pth holds the same bytes), named as dvc.lock
    # names it: finseq info shows these metrics only beside the model they belong to.
    metrics["model_md5"] = file_md5(fold_dir / f"{data.meta['model_fold']}.pth")
    test_ends = np.concatenate([score.ends["test"] for score in scores])
    test_logits = np.concatenate([score.logits["test"] for score in scores])
    known = classes[test_ends] >= 0
    predicted = test_logits.argmax(axis=1)
    return Evaluation(
        metrics=metrics,
        predictions_csv=predictions_text,
        equity_csv=equity.to_csv(index=False, float_format="%.8g", lineterminator="\n"),
        confusion_csv=confusion_csv(classes[test_ends][known], predicted[known]),
    )
