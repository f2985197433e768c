"""The evaluate stage (`run_evaluate`): each fold's model, checked against the data and
windows it was trained on, on its own val and test windows, and every figure and output the
stage writes.

Each fold's model is its seed ensemble (train.seeds models, their calibrated probabilities
averaged). Every test figure (pooled, per fold, the backtest, every interval) comes from the
out-of-sample predictions table as metrics/predictions.csv records it (8 significant
digits), and each seed's own figures from its own such table: the report, which reads that
file at each revision through the same functions, computes the same numbers to the
last bit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from finseq.artifacts import PreparedData, WindowSets, load_windowed
from finseq.atomic import write_json, write_text
from finseq.backtest import stale_open_fill_share
from finseq.baselines import fit_volatility_baseline, regime_cuts, regimes, volatility_p_flat
from finseq.breakdown import breakdowns
from finseq.calibration import (
    IDENTITY,
    Calibration,
    calibrated_probabilities,
    checkpoint_calibration,
    table_calibration,
)
from finseq.checkpoint import load_ensemble
from finseq.crosssection import cross_section_figures
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
    volatility_baseline_table,
)
from finseq.evidence import (
    change_intervals,
    configured_totals,
    figure_of,
    out_of_sample_evidence,
    skill_intervals,
)
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
    RELIABILITY_FILE,
    WINDOWS_DIR,
)
from finseq.provenance import file_md5, short
from finseq.runtime import configure_torch
from finseq.seeds import ensemble_scores, figures_of_seed, seed_spread
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
    calibration: Calibration = IDENTITY,
    fold_scores: FoldScores | None = None,
) -> FoldScores:
    """`fold`'s model on its own val and test windows, beside the class prior and the
    volatility baseline of its own training windows (the baselines of every window it
    scores), with each test window's volatility regime; its test probabilities calibrated
    by `calibration` (fit on its val windows when the model was saved). Given another
    seed's `fold_scores` of the same fold, its prior, baseline and regimes are reused."""
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
    test_probabilities = calibrated_probabilities(calibration, logits["test"])
    if fold_scores is not None:
        return replace(fold_scores, logits=logits, test_probabilities=test_probabilities)
    classes = to_classes(data.labels)
    train_ends = windows.ends[fold]["train"]
    prior = class_prior(classes[train_ends])
    names = data.meta["feature_names"]
    scaled = data.scaled_features(fold)
    coefficients = fit_volatility_baseline(scaled, names, train_ends, classes[train_ends])
    cuts = regime_cuts(data.features, names, train_ends)
    return FoldScores(
        fold=fold,
        ends=ends,
        logits=logits,
        prior=prior,
        test_probabilities=test_probabilities,
        volatility_p_flat=volatility_p_flat(coefficients, scaled, names, ends["test"]),
        regime=regimes(cuts, data.features, names, ends["test"]),
    )


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


def score_every_seed(
    params: Params,
    data: PreparedData,
    windows: WindowSets,
    device: torch.device,
    fold_dir: Path,
    *,
    prepared_dir: str | Path,
    windows_dir: str | Path,
) -> list[list[FoldScores]]:
    """Each seed's model of each scored fold (`fold_dir`/<fold>.pth holds them all) on the
    fold's own val and test, as [seed][fold]; refused if a model was trained on other data
    or windows, or if a fold holds other than `train.seeds` models."""
    per_fold = []
    for fold in data.meta["evaluated_folds"]:
        model_file = Path(fold_dir) / f"{fold}.pth"
        members, checkpoint = load_ensemble(model_file, device)
        check_model(
            checkpoint,
            model_file,
            data,
            windows,
            prepared_dir=prepared_dir,
            windows_dir=windows_dir,
        )
        if checkpoint["training"]["fold"] != fold:
            raise DataError(
                f"{model_file} holds the models of fold {checkpoint['training']['fold']!r}, "
                f"not of fold {fold!r}: they may have trained on its test bars; run `dvc repro`"
            )
        if len(members) != params.train.seeds:
            raise DataError(
                f"{model_file} holds {len(members)} seed(s)' models, train.seeds is "
                f"{params.train.seeds}; run `dvc repro`"
            )
        seeds: list[FoldScores] = []
        for member in members:  # the further seeds reuse the first's baselines
            calibration = checkpoint_calibration(
                member.record, model_file, params.evaluate.calibration
            )
            first = seeds[0] if seeds else None
            seeds.append(
                score_fold_as_configured(
                    params, member.model, data, windows, fold, device, calibration, first
                )
            )
        per_fold.append(seeds)
    return [list(seed) for seed in zip(*per_fold, strict=True)]


def score_fold_as_configured(
    params: Params,
    model: nn.Module,
    data: PreparedData,
    windows: WindowSets,
    fold: str,
    device: torch.device,
    calibration: Calibration = IDENTITY,
    fold_scores: FoldScores | None = None,
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
        calibration=calibration,
        fold_scores=fold_scores,
    )


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate stage writes: metrics/eval.json's content and four files' text."""

    metrics: dict
    predictions_csv: str
    equity_csv: str
    confusion_csv: str
    reliability_csv: str


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
    figure, the backtest and every interval from one out-of-sample predictions table, all
    of the seed ensemble (each fold's train.seeds models averaged); each seed's own figures
    and their spread (training noise) from each seed's own table; and model_md5."""
    fold_dir = Path(fold_dir)
    where = {"prepared_dir": prepared_dir, "windows_dir": windows_dir}
    per_seed = score_every_seed(params, data, windows, device, fold_dir, **where)
    scores = [ensemble_scores(list(members)) for members in zip(*per_seed, strict=True)]
    predictions_text, predictions = recorded_predictions(out_of_sample_frame(scores, data))
    metrics = {
        "val": pooled_metrics(scores, to_classes(data.labels), "val"),
        "test": table_metrics(predictions),
    }
    horizon = data.meta["label_horizon"]
    if data.meta["evaluated_folds"] != [HOLDOUT]:
        metrics["folds"] = fold_metrics(predictions)
        for fold, figures in metrics["folds"].items():
            rows = predictions[predictions["fold"] == fold]
            figures.update(part_skill_intervals(rows, params, horizon))
    evidence, equity = out_of_sample_evidence(
        predictions, params.backtest, params.evaluate, horizon
    )
    # The class figures stay table_metrics'; the evidence adds the backtest and the intervals.
    metrics["test"].update(
        {key: value for key, value in evidence.items() if key not in metrics["test"]}
    )
    calibration_figures, reliability_csv = table_calibration(predictions)
    metrics["test"].update(calibration_figures)
    metrics["test"].update(
        cross_section_figures(predictions, params.backtest, params.evaluate, horizon)
    )
    metrics["baselines"] = {"volatility": volatility_baseline(predictions, params, horizon)}
    stale = stale_open_fill_share(predictions, data.meta)
    if stale is not None:
        metrics["test"]["stale_open_fill_share"] = stale
    metrics["breakdown"] = breakdowns(predictions, params.backtest, params.evaluate, horizon)
    if params.train.seeds > 1:
        per_seed_figures = [
            figures_of_seed(
                recorded_predictions(out_of_sample_frame(seed, data))[1], params.backtest, horizon
            )
            for seed in per_seed
        ]
        metrics["seeds"] = seed_spread(per_seed_figures, params.train.seed)
    # The model users take away (models/model.pth holds the same bytes), named as dvc.lock
    # names it: finseq info shows these metrics only beside the model they belong to.
    metrics["model_md5"] = file_md5(fold_dir / f"{data.meta['model_fold']}.pth")
    return Evaluation(
        metrics=metrics,
        predictions_csv=predictions_text,
        equity_csv=equity.to_csv(index=False, float_format="%.8g", lineterminator="\n"),
        confusion_csv=table_confusion_csv(predictions),
        reliability_csv=reliability_csv,
    )


def part_skill_intervals(table: pd.DataFrame, params: Params, horizon: int) -> dict:
    """The 95% intervals of skill and its parts over a part of the predictions table."""
    figures = skill_intervals(
        configured_totals(table, params.backtest, horizon),
        horizon,
        params.evaluate.resamples,
        params.evaluate.bootstrap_seed,
    )
    return {key: value for key, value in figures.items() if key.endswith(("_low", "_high"))}


def volatility_baseline(predictions: pd.DataFrame, params: Params, horizon: int) -> dict:
    """The volatility baseline's skill and its parts (with intervals) on the same windows,
    and how much more move skill the model has (`move_gain`: model - baseline, paired over
    the same resampled dates)."""
    baseline = volatility_baseline_table(predictions)
    pooled = table_metrics(baseline)
    base_totals = configured_totals(baseline, params.backtest, horizon)
    model_totals = configured_totals(predictions, params.backtest, horizon)
    evaluate = params.evaluate
    figures = skill_intervals(base_totals, horizon, evaluate.resamples, evaluate.bootstrap_seed)
    gains = change_intervals(
        base_totals,
        model_totals,
        {name: figure_of(name) for name in ("skill", "move_skill")},
        horizon,
        evaluate.resamples,
        evaluate.bootstrap_seed,
        paired=True,
    )
    return {
        "samples": pooled["samples"],
        "loss": pooled["loss"],
        **figures,
        **{
            f"{name.removesuffix('_skill')}_gain{end}": value
            for name, (change, low, high) in gains.items()
            for end, value in (("", change), ("_low", low), ("_high", high))
        },
    }


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
    equity curve, the confusion matrix and the reliability table."""
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
    write_text(root / RELIABILITY_FILE, evaluation.reliability_csv)
    return evaluation
