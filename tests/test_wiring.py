"""The stages wired as the README says: baselines fit on each fold's training windows, and
the validation loss training reports is the restored model's loss on the val windows.

Recomputed by hand from the reproduced project's own data/prepared, data/windows and model
files, so a stage that scored the baselines on the scored labels, or early-stopped on the
test windows, fails here even though its metrics files look well formed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from finseq.artifacts import PreparedData, WindowSets
from finseq.breakdown import breakdowns
from finseq.calibration import table_calibration
from finseq.checkpoint import load_checkpoint
from finseq.crosssection import cross_section_figures
from finseq.evaluate import fold_metrics, read_predictions, table_metrics
from finseq.fit import VAL_BATCH
from finseq.models import predict_logits
from finseq.params import load_params
from finseq.scoring import part_skill_intervals, volatility_baseline
from finseq.seeds import figures_of_seed

pytestmark = pytest.mark.slow


def _prior(classes: np.ndarray) -> np.ndarray:
    """Add-one smoothed class frequencies, written out again here (not finseq's)."""
    counts = np.array([(classes == k).sum() for k in range(3)], dtype=np.float64)
    return (counts + 1) / (counts.sum() + 3)


def _mean_log_loss(probabilities: np.ndarray, classes: np.ndarray) -> float:
    return float(-np.mean(np.log(probabilities[np.arange(len(classes)), classes])))


# val figures come from the logits; test figures from metrics/predictions.csv, whose prior_p
# holds 8 significant digits (baselines fit on other windows miss by far more).
TOLERANCE = {"val": 1e-12, "test": 1e-8}


def check_baselines(root: Path) -> None:
    """prior_loss, majority_accuracy and samples of val, test and every fold's test block,
    from each fold's training windows; and a control: the scored labels' own prior differs."""
    data = PreparedData.load(root / "data" / "prepared")
    windows = WindowSets.load(root / "data" / "windows")
    metrics = json.loads((root / "metrics" / "eval.json").read_text())
    classes = data.labels.astype(np.int64) + 1
    scored = {"val": [], "test": []}
    for fold in data.meta["evaluated_folds"]:
        prior = _prior(classes[windows.ends[fold]["train"]])
        for part in scored:
            labels = classes[windows.ends[fold][part]]
            labels = labels[labels >= 0]  # a test window of unknown label is traded, not scored
            scored[part].append((labels, np.tile(prior, (len(labels), 1))))
        if "folds" in metrics:
            test = classes[windows.ends[fold]["test"]]
            test = test[test >= 0]
            assert metrics["folds"][fold]["samples"] == len(test)
            assert metrics["folds"][fold]["prior_loss"] == pytest.approx(
                _mean_log_loss(np.tile(prior, (len(test), 1)), test), rel=TOLERANCE["test"]
            )
    for part, pieces in scored.items():
        labels = np.concatenate([piece[0] for piece in pieces])
        priors = np.concatenate([piece[1] for piece in pieces])
        assert metrics[part]["samples"] == len(labels)
        prior_loss = _mean_log_loss(priors, labels)
        assert metrics[part]["prior_loss"] == pytest.approx(prior_loss, rel=TOLERANCE[part])
        majority = priors.argmax(axis=1)
        assert metrics[part]["majority_accuracy"] == pytest.approx(np.mean(labels == majority))
        own = _mean_log_loss(np.tile(_prior(labels), (len(labels), 1)), labels)
        assert abs(own - prior_loss) > 1e-6, "the control cannot tell the two priors apart"


def check_validation_loss(root: Path) -> None:
    """Each fold's reported val loss is its restored model's loss on its val windows (and
    not on its test windows)."""
    params = load_params(root / "params.yaml")
    data = PreparedData.load(root / "data" / "prepared")
    windows = WindowSets.load(root / "data" / "windows")
    summary = json.loads((root / "metrics" / "train" / "metrics.json").read_text())
    classes = data.labels.astype(np.int64) + 1
    for fold in data.meta["evaluated_folds"]:
        model, _ = load_checkpoint(root / "models" / "folds" / f"{fold}.pth")
        features = torch.as_tensor(data.scaled_features(fold))
        losses = {}
        for part in ("val", "test"):
            ends = windows.ends[fold][part]
            ends = ends[classes[ends] >= 0]
            logits = predict_logits(
                model,
                features,
                torch.as_tensor(ends),
                windows.seq_len,
                VAL_BATCH,
                params.train.precision,
            )
            probabilities = torch.softmax(logits.double(), dim=1).numpy()
            losses[part] = _mean_log_loss(probabilities, classes[ends])
        reported = summary["folds"][fold]["val"]["loss"]
        assert reported == pytest.approx(losses["val"], abs=1e-5), fold
        assert abs(reported - losses["test"]) > 1e-4, fold


def test_every_baseline_is_fit_on_its_folds_training_windows(shared_reproduced):
    check_baselines(shared_reproduced.path)


def test_the_reported_val_loss_is_the_restored_models_loss_on_the_val_windows(shared_reproduced):
    check_validation_loss(shared_reproduced.path)


def test_every_test_figure_is_the_one_the_recorded_predictions_give(shared_reproduced):
    """eval.json's test.* and folds.* are computed from metrics/predictions.csv as any reader
    of it computes them, to the last bit: one source. (The tiny project trains one seed: the
    committed default run's seeds.* are checked in tests/test_evaluate.py.)"""
    root = shared_reproduced.path
    metrics = json.loads((root / "metrics" / "eval.json").read_text())
    params = load_params(root / "params.yaml")
    table = read_predictions((root / "metrics" / "predictions.csv").read_text())
    pooled = table_metrics(table)
    assert {key: metrics["test"][key] for key in pooled} == pooled
    horizon = params.label.horizon
    folds = fold_metrics(table)
    for fold, figures in folds.items():
        figures.update(part_skill_intervals(table[table["fold"] == fold], params, horizon))
    assert params.split.method == "walk_forward" and metrics["folds"] == folds
    assert metrics["baselines"]["volatility"] == volatility_baseline(table, params, horizon)
    # As text, so that a group too short for an interval (NaN) compares equal too.
    assert json.dumps(metrics["breakdown"], sort_keys=True) == json.dumps(
        breakdowns(table, params.backtest, params.evaluate, horizon), sort_keys=True
    )
    calibration, _ = table_calibration(table)
    assert {key: metrics["test"][key] for key in calibration} == calibration
    cross_section = cross_section_figures(table, params.backtest, params.evaluate, horizon)
    recorded = {key: metrics["test"][key] for key in cross_section}
    assert json.dumps(recorded, sort_keys=True) == json.dumps(cross_section, sort_keys=True)
    seed_figures = figures_of_seed(table, params.backtest, params.label.horizon)
    assert seed_figures["sharpe"] == metrics["test"]["sharpe"]
