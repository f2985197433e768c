"""The evaluate stage (`run_evaluate`): each fold's model, checked against the data and
windows it was trained on, on its own val and test windows, and every figure and output the
stage writes.

Every test figure (pooled, per fold, the backtest, every interval) comes from the
out-of-sample predictions table as metrics/predictions.csv records it (8 significant
digits), and each further seed's figures from its own such table: the report, which reads
that file at each revision through the same functions, computes the same numbers to the
last bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from finseq.artifacts import PreparedData, WindowSets, load_windowed
from finseq.atomic import write_json, write_text
from finseq.checkpoint import load_checkpoint
from finseq.errors import DataError
from finseq.evaluate import (
    FoldScores,
    class_prior,
    fold_metrics,
    pooled_metrics,
    predictions_frame,
    recorded_predictions,
    table_confusion_csv,
    table_metrics,
)
from finseq.evidence import figures_of_seed, out_of_sample_evidence, seed_spread
from finseq.labels import to_classes
from finseq.models import predict_logits
from finseq.params import Params
from finseq.paths import (
    CONFUSION_FILE,
    EQUITY_FILE,
    EVAL_METRICS,
    FOLD_MODELS_DIR,
    PREDICTIONS_FILE,
    PREPARED_DIR,
    WINDOWS_DIR,
)
from finseq.provenance import file_md5, short
from finseq.runtime import configure_torch
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


def params_differences(model_params: dict, data_meta: dict) -> list[str]:
    """label.* and split.* keys on which a model and the prepared data disagree."""
    differences = []
    for section in ("label", "split"):
        theirs, ours = model_params.get(section, {}), data_meta.get(section, {})
        for key in sorted(set(theirs) | set(ours)):
            if theirs.get(key) != ours.get(key):
                differences.append(
                    f"{section}.{key} is {theirs.get(key)!r} in the model, "
                    f"{ours.get(key)!r} in the data"
                )
    return differences


def check_model(
    checkpoint: dict,
    model_file: str | Path,
    data: PreparedData,
    windows: WindowSets,
    *,
    prepared_dir: str | Path,
    windows_dir: str | Path,
) -> None:
    """A model scored on data or windows other than those it was trained on gives numbers
    that mean nothing; name what differs."""
    provenance = checkpoint["provenance"]
    if provenance["prepared_hash"] != data.content_hash:
        differences = params_differences(checkpoint["params"], data.meta)
        what = (
            "; ".join(differences)
            if differences
            else f"{short(provenance['prepared_hash'])} against {short(data.content_hash)}"
        )
        raise DataError(
            f"{model_file} was trained on other prepared data than {prepared_dir} ({what}); "
            "run `dvc repro`"
        )
    if provenance["windows_hash"] != windows.content_hash:
        raise DataError(
            f"{model_file} was trained on other window sets than {windows_dir} "
            f"({short(provenance['windows_hash'])} against {short(windows.content_hash)}); "
            "run `dvc repro`"
        )


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
        scores.append(score_fold_as_configured(params, model, data, windows, fold, device))
    return scores


def score_fold_as_configured(
    params: Params,
    model: nn.Module,
    data: PreparedData,
    windows: WindowSets,
    fold: str,
    device: torch.device,
) -> FoldScores:
    """score_fold with the run's evaluate.batch_size and train.precision."""
    return score_fold(
        model,
        data,
        windows,
        fold,
        device,
        batch_size=params.evaluate.batch_size,
        precision=params.train.precision,
    )


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
    """val.* pooled over the scored folds' validation windows; every test.* and folds.*
    figure, the backtest and every interval from one out-of-sample predictions table; the
    seed-to-seed spread (train.seeds) from each seed's table; and model_md5."""
    fold_dir = Path(fold_dir)
    where = {"prepared_dir": prepared_dir, "windows_dir": windows_dir}
    scores = score_every_fold(params, data, windows, device, fold_dir, **where)
    predictions_text, predictions = recorded_predictions(out_of_sample_frame(scores, data))
    metrics = {
        "val": pooled_metrics(scores, to_classes(data.labels), "val"),
        "test": table_metrics(predictions),
    }
    if data.meta["evaluated_folds"] != [HOLDOUT]:
        metrics["folds"] = fold_metrics(predictions)
    evidence, equity = out_of_sample_evidence(
        predictions, params.backtest, params.evaluate, data.meta["label_horizon"]
    )
    # The class figures stay table_metrics'; the evidence adds the backtest and the intervals.
    metrics["test"].update(
        {key: value for key, value in evidence.items() if key not in metrics["test"]}
    )
    if params.train.seeds > 1:
        further_seeds = [
            score_every_fold(params, data, windows, device, fold_dir, suffix=f".seed{n}", **where)
            for n in range(1, params.train.seeds)
        ]
        horizon = data.meta["label_horizon"]
        per_seed = [figures_of_seed(predictions, params.backtest, horizon)] + [
            figures_of_seed(
                recorded_predictions(out_of_sample_frame(seed, data))[1], params.backtest, horizon
            )
            for seed in further_seeds
        ]
        metrics["seeds"] = seed_spread(per_seed, params.train.seed)
    # The model users take away (models/model.pth holds the same bytes), named as dvc.lock
    # names it: finseq info shows these metrics only beside the model they belong to.
    metrics["model_md5"] = file_md5(fold_dir / f"{data.meta['model_fold']}.pth")
    return Evaluation(
        metrics=metrics,
        predictions_csv=predictions_text,
        equity_csv=equity.to_csv(index=False, float_format="%.8g", lineterminator="\n"),
        confusion_csv=table_confusion_csv(predictions),
    )


def out_of_sample_frame(scores: list[FoldScores], data: PreparedData) -> pd.DataFrame:
    """Every scored fold's test windows, with what each would have earned."""
    return predictions_frame(
        scores,
        data.labels,
        data.meta["series_names"],
        data.series,
        data.timestamps,
        data.forward_return,
        data.next_return,
    )


def run_evaluate(params: Params, root: Path = Path()) -> Evaluation:
    """The evaluate stage under a project root: metrics/eval.json, the predictions, the
    equity curve and the confusion matrix."""
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
