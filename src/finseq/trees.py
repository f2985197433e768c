"""One gradient-boosted tree model's training (model.type lightgbm): LightGBM's boosting on
the last bar of each training window, early-stopped on the validation windows' multi-class
log loss, the counterpart of fit.fit for the torch models.

LightGBM is a dependency because it is the reference implementation of gradient-boosted
trees: histogram splits, bagging and early stopping written here would be a second, untested
copy of it. Its text model is kept, cut at the best round, and models.LastBarTrees loads it
from that text, in training as from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import lightgbm
import numpy as np

from finseq.errors import ConfigError
from finseq.fit import EpochResult, FitResult
from finseq.labels import NUM_CLASSES, to_classes
from finseq.models import build_model
from finseq.params import LightGBMConfig, ModelConfig

if TYPE_CHECKING:
    from torch import nn

    from finseq.artifacts import PreparedData, WindowSets
    from finseq.distributed import Ranks

# LightGBM's name of the multi-class log loss, the cross-entropy fit minimises for torch models.
LOSS = "multi_logloss"


def booster_settings(config: LightGBMConfig, seed: int) -> dict:
    """LightGBM's parameters: the model's, and those that make a fit the same bytes every time.

    One thread, not the fold worker's count: LightGBM sums histograms per thread and adds the
    sums in an order that depends on it, which changed the trees of the default data's final
    fold between 1 and 2 threads. `deterministic` and row-wise histograms keep one thread's
    result stable; `seed` seeds every draw (bagging, feature fraction, binning samples).
    """
    return {
        "objective": "multiclass",
        "num_class": NUM_CLASSES,
        "metric": LOSS,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "learning_rate": config.learning_rate,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": 1 if config.bagging_fraction < 1 else 0,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbosity": -1,
    }


def _accuracy(probabilities: np.ndarray, dataset: lightgbm.Dataset) -> tuple[str, float, bool]:
    """Validation accuracy per round, for the curves (early stopping reads the loss alone)."""
    correct = probabilities.argmax(axis=1) == dataset.get_label()
    return "accuracy", float(correct.mean()), True


def fit_trees(
    features: np.ndarray,
    labels: np.ndarray,
    train_ends: np.ndarray,
    val_ends: np.ndarray,
    config: LightGBMConfig,
    seed: int,
    feature_names: Sequence[str],
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> tuple[str, FitResult]:
    """The booster's text model, cut at its best round, and its per-round curves.

    Trees are grown on the scaled features of the training windows' end rows (the last bar of
    each window) and stop once `config.early_stopping_rounds` rounds bring no lower
    validation loss (or at `max_rounds`); the round of lowest validation loss is kept. A
    round is an epoch of the curves: `on_epoch` gets each one after the fit.
    """
    classes = to_classes(labels)
    settings = booster_settings(config, seed)
    train_set = lightgbm.Dataset(
        features[train_ends],
        label=classes[train_ends],
        feature_name=list(feature_names),
        params=settings,
    )
    val_set = lightgbm.Dataset(features[val_ends], label=classes[val_ends], reference=train_set)
    curves: dict = {}
    booster = lightgbm.train(
        settings,
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[train_set, val_set],
        valid_names=["train", "val"],
        feval=_accuracy,
        callbacks=[
            lightgbm.early_stopping(
                config.early_stopping_rounds, first_metric_only=True, verbose=False
            ),
            lightgbm.record_evaluation(curves),
        ],
    )
    history = tuple(
        EpochResult(
            epoch=round_ + 1,
            train_loss=float(train_loss),
            val_loss=float(val_loss),
            val_accuracy=float(val_accuracy),
            learning_rate=config.learning_rate,
        )
        for round_, (train_loss, val_loss, val_accuracy) in enumerate(
            zip(curves["train"][LOSS], curves["val"][LOSS], curves["val"]["accuracy"], strict=True)
        )
    )
    if on_epoch is not None:
        for result in history:
            on_epoch(result)
    best_round = booster.best_iteration
    result = FitResult(
        best_epoch=best_round,
        best_val_loss=history[best_round - 1].val_loss,
        epochs_run=len(history),
        stop_reason="early_stopping" if len(history) < config.max_rounds else "max_epochs",
        history=history,
    )
    return booster.model_to_string(num_iteration=best_round), result


def train_trees(
    data: PreparedData,
    windows: WindowSets,
    fold: str,
    model_config: ModelConfig,
    seed: int,
    on_epoch: Callable[[EpochResult], None] | None = None,
    ranks: Ranks | None = None,
) -> tuple[nn.Module, FitResult]:
    """folds.train_fold for trees: `fold`'s model, grown on the CPU in this process whatever
    the device (which then only holds the windows evaluate gathers), loaded from its text."""
    if ranks is not None and ranks.world_size > 1:
        raise ConfigError(
            f"model.type = 'lightgbm' under torchrun ({ranks.world_size} ranks): trees train "
            "in one process; run the train stage without torchrun"
        )
    assert model_config.lightgbm is not None  # finseq.params requires it for lightgbm
    booster_text, result = fit_trees(
        data.scaled_features(fold),
        data.labels,
        windows.ends[fold]["train"],
        windows.ends[fold]["val"],
        model_config.lightgbm,
        seed,
        data.meta["feature_names"],
        on_epoch,
    )
    model = build_model(model_config, data.features.shape[1])
    model.load_state_dict({"_extra_state": booster_text})
    return model, result
