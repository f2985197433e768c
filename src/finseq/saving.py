"""A trained fold model → its checkpoint: the model's weights (or a tree model's text), its
scaler and cut dates, how it was trained, its provenance, and every calibration fit on its
val windows, all plain data (finseq.checkpoint saves and loads it)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch
from torch import nn

import finseq
from finseq.artifacts import PreparedData, WindowSets
from finseq.calibration import CALIBRATION_METHODS, fit_calibration
from finseq.checkpoint import make_checkpoint
from finseq.fit import VAL_BATCH, FitResult
from finseq.labels import to_classes
from finseq.models import predict_logits
from finseq.params import ModelConfig, Params, TrainConfig
from finseq.provenance import source_hash
from finseq.split import TRAIN, VAL


def fold_checkpoint(
    model: nn.Module,
    result: FitResult,
    data: PreparedData,
    windows: WindowSets,
    fold: str,
    params: Params,
    world_size: int = 1,
) -> dict:
    """The checkpoint of one fold's model: its scaler, its cut dates and how it was trained
    (`world_size`: the processes that trained it together)."""
    scaler = data.scaler(fold)
    cuts = {key: value for key, value in data.meta["folds"][fold].items() if "scaler" not in key}
    train_settings = {
        key: value
        for key, value in dataclasses.asdict(params.train).items()
        if key not in EXECUTION_ONLY
    }
    checkpoint = make_checkpoint(
        model,
        params.model,
        seq_len=windows.seq_len,
        feature_names=data.meta["feature_names"],
        scaler_mean=scaler.mean.tolist(),
        scaler_std=scaler.std.tolist(),
        training={
            "fold": fold,
            **cuts,
            "trained_until": trained_until(data, fold),
            "best_epoch": result.best_epoch,
            "stop_reason": result.stop_reason,
            "seed": params.train.seed,
            "world_size": world_size,
            "label_horizon": data.meta["label_horizon"],
            "warmup_bars": data.meta["warmup_bars"],
            "series": list(data.meta["series_names"]),
            "bar_interval": bar_interval(data),
        },
        params={
            "data": {"adjust_volume": not data.meta.get("volume_as_reported", False)},
            "label": data.meta["label"],
            "split": data.meta["split"],
            "window": {"seq_len": windows.seq_len, "stride": windows.stride},
            "model": dataclasses.asdict(params.model),
            "train": train_settings,
        },
        provenance={
            "finseq_version": finseq.__version__,
            "torch_version": str(torch.__version__),
            **_trees_version(params.model),
            "source_hash": source_hash(),
            "prepared_hash": data.content_hash,
            "windows_hash": windows.content_hash,
        },
    )
    checkpoint["calibrations"] = fold_calibrations(model, data, windows, fold, params.train)
    return checkpoint


def fold_calibrations(
    model: nn.Module, data: PreparedData, windows: WindowSets, fold: str, train: TrainConfig
) -> dict[str, dict[str, float]]:
    """Every calibration method (finseq.calibration) fit on the fold's val windows, never its
    test windows: evaluate applies the one `evaluate.calibration` names, finseq predict the
    one its --calibration names, so a change of method retrains nothing."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    ends = windows.ends[fold]["val"]
    logits = predict_logits(
        model,
        torch.as_tensor(data.scaled_features(fold), device=device),
        torch.as_tensor(ends, device=device),
        windows.seq_len,
        VAL_BATCH,
        train.precision,
    )
    values = logits.cpu().numpy().astype(np.float64)
    classes = to_classes(data.labels[ends])
    return {
        method: fit_calibration(method, values, classes).as_dict() for method in CALIBRATION_METHODS
    }


def _trees_version(model_config: ModelConfig) -> dict:
    """The LightGBM release that wrote a tree model's text (nothing for a torch model)."""
    if model_config.type != "lightgbm":
        return {}
    import lightgbm

    return {"lightgbm_version": lightgbm.__version__}


# Settings that change how fast a model trains, never its weights: left out of its checkpoint.
EXECUTION_ONLY = ("threads", "fold_workers")


def bar_interval(data: PreparedData) -> str:
    """The median spacing of consecutive bars of a series, as a pandas Timedelta string."""
    steps = np.diff(data.timestamps.astype("datetime64[ns]").astype(np.int64))
    same_series = data.series[1:] == data.series[:-1]
    return str(pd.Timedelta(int(np.median(steps[same_series])), unit="ns"))


def trained_until(data: PreparedData, fold: str) -> str:
    """The last bar a fold's model learned from or was early-stopped on (ISO timestamp)."""
    parts = data.parts[data.fold_index(fold)]
    seen = (parts == TRAIN) | (parts == VAL)
    return pd.Timestamp(data.timestamps[seen].max()).isoformat()
