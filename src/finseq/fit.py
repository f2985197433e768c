"""One model's training loop: gathered batches, Adam, early stopping with the best epoch
restored.

Batches are one gather over the 2-D feature matrix (see windows.gather_windows),
shuffled by a seeded permutation, so an epoch runs no per-sample Python. On CUDA
the feature matrix lives on the device and batches are gathered there. Under
torch.distributed each rank takes its slice of every batch (`ranks`); nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from finseq.distributed import Ranks, all_sum, rank_slice
from finseq.errors import ConfigError
from finseq.labels import to_classes
from finseq.models import predict_logits
from finseq.params import TrainConfig
from finseq.runtime import autocast
from finseq.windows import gather_windows, window_offsets


@dataclass(frozen=True)
class TrainingData:
    """Everything on the training device: the feature matrix, class indices and window ends."""

    features: torch.Tensor  # (rows, features) float32
    classes: torch.Tensor  # (rows,) int64 class index (labels.to_classes)
    train_ends: torch.Tensor  # int64 window end rows
    val_ends: torch.Tensor
    seq_len: int

    @classmethod
    def from_arrays(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        train_ends: np.ndarray,
        val_ends: np.ndarray,
        seq_len: int,
        device: torch.device,
    ) -> TrainingData:
        def to(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array)).to(device=device, dtype=dtype)

        return cls(
            features=to(features, torch.float32),
            classes=to(to_classes(labels), torch.int64),
            train_ends=to(train_ends, torch.int64),
            val_ends=to(val_ends, torch.int64),
            seq_len=seq_len,
        )


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_accuracy: float
    learning_rate: float


@dataclass(frozen=True)
class FitResult:
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stop_reason: str  # "early_stopping" or "max_epochs"
    history: tuple[EpochResult, ...]


# Windows per batch when fit scores validation after each epoch. A batch's size can change
# the last bits of its logits (see models.predict_logits), and so the epoch early stopping keeps:
# fixed here, so that evaluate.batch_size, a speed knob of evaluation, never retrains a model.
VAL_BATCH = 4096


def fit(
    model: nn.Module,
    data: TrainingData,
    config: TrainConfig,
    on_epoch: Callable[[EpochResult], None] | None = None,
    eval_batch_size: int = VAL_BATCH,
    ranks: Ranks | None = None,
) -> FitResult:
    """Trains `model` in place and leaves it holding the weights of its best validation epoch.

    Stops early after `config.patience` epochs without a lower validation loss; with
    `lr_schedule: plateau` the learning rate falls by `lr_factor` after `lr_patience` such
    epochs (torch's ReduceLROnPlateau, whose own threshold is a relative 1e-4).
    Seed torch before building the model; the shuffling generator is seeded here.

    With `ranks` (a joined process group), every rank runs this with the same seed and data
    and takes its slice of each batch and of the validation windows; DistributedDataParallel
    averages the gradients, and losses and accuracies are summed over ranks.
    """
    device = data.features.device
    model.to(device)
    trained = model if ranks is None else _data_parallel(model, device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience
        )
        if config.lr_schedule == "plateau"
        else None
    )
    shuffle = torch.Generator().manual_seed(config.seed)
    offsets = window_offsets(data.seq_len, device)
    n_train = len(data.train_ends)
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, best_val_loss, epochs_without_gain = 0, float("inf"), 0
    history: list[EpochResult] = []
    stop_reason = "max_epochs"

    for epoch in range(1, config.epochs + 1):
        model.train()
        # One gather per epoch puts the window ends in shuffled order; a batch is then a view.
        shuffled_ends = data.train_ends[torch.randperm(n_train, generator=shuffle).to(device)]
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n_train, config.batch_size):
            ends = shuffled_ends[start : start + config.batch_size]
            loss, batch_loss_sum = _batch_loss(trained, data, ends, offsets, config, ranks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            loss_sum += batch_loss_sum
        train_loss = float(loss_sum if ranks is None else all_sum(loss_sum)) / n_train
        if not np.isfinite(train_loss):
            raise ConfigError(
                f"training diverged: the training loss is {train_loss} in epoch {epoch}; "
                f"lower train.learning_rate (now {config.learning_rate}) or set train.grad_clip"
            )
        val_loss, val_accuracy = _validation(model, data, eval_batch_size, config.precision, ranks)
        result = EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            learning_rate=float(optimizer.param_groups[0]["lr"]),
        )
        history.append(result)
        if on_epoch is not None:
            on_epoch(result)
        if scheduler is not None and np.isfinite(result.val_loss):
            # The rate logged for an epoch is the one it trained with; the next may be lower.
            scheduler.step(result.val_loss)
        if result.val_loss < best_val_loss:
            best_epoch, best_val_loss, epochs_without_gain = epoch, result.val_loss, 0
            best_state = {
                name: value.detach().clone() for name, value in model.state_dict().items()
            }
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= config.patience:
                stop_reason = "early_stopping"
                break

    if not best_state:
        raise ConfigError(
            "training diverged: the validation loss was never finite; lower "
            f"train.learning_rate (now {config.learning_rate}) or set train.grad_clip"
        )
    model.load_state_dict(best_state)
    return FitResult(
        best_epoch=best_epoch,
        best_val_loss=best_val_loss,
        epochs_run=len(history),
        stop_reason=stop_reason,
        history=tuple(history),
    )


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """The model under DistributedDataParallel, which averages gradients over the ranks."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _batch_loss(
    model: nn.Module,
    data: TrainingData,
    ends: torch.Tensor,
    offsets: torch.Tensor,
    config: TrainConfig,
    ranks: Ranks | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss to backpropagate for one batch, and the sum of its windows' losses.

    A rank's loss is its slice's summed loss times world size / batch size: with
    DistributedDataParallel's average over ranks, the gradient is the whole batch's mean
    loss's, as in one process. A rank whose slice is empty (a last batch shorter than the
    world) backpropagates one window times zero, so that it joins the gradient reduction.
    """
    if ranks is None:
        with autocast(data.features.device, config.precision):
            logits = model(gather_windows(data.features, ends, offsets))
        loss = functional.cross_entropy(logits.float(), data.classes[ends])
        return loss, loss.detach() * len(ends)
    mine = rank_slice(ends, ranks)
    weight = ranks.world_size / len(ends)
    if len(mine) == 0:
        mine, weight = ends[:1], 0.0
    with autocast(data.features.device, config.precision):
        logits = model(gather_windows(data.features, mine, offsets))
    summed = functional.cross_entropy(logits.float(), data.classes[mine], reduction="sum")
    return summed * weight, summed.detach() * (weight > 0)


def _validation(
    model: nn.Module, data: TrainingData, batch_size: int, precision: str, ranks: Ranks | None
) -> tuple[float, float]:
    """Validation loss and accuracy; across ranks, exact sums and counts of each rank's share
    (no window scored twice)."""
    if ranks is None:
        logits = predict_logits(
            model, data.features, data.val_ends, data.seq_len, batch_size, precision
        )
        classes = data.classes[data.val_ends]
        loss = functional.cross_entropy(logits, classes)
        return float(loss), float((logits.argmax(dim=1) == classes).float().mean())
    mine = rank_slice(data.val_ends, ranks)
    logits = predict_logits(model, data.features, mine, data.seq_len, batch_size, precision)
    classes = data.classes[mine]
    totals = torch.stack(
        [
            functional.cross_entropy(logits, classes, reduction="sum").double(),
            (logits.argmax(dim=1) == classes).sum().double(),
            torch.tensor(len(mine), dtype=torch.float64, device=logits.device),
        ]
    )
    loss_sum, correct, count = all_sum(totals).tolist()
    if count == 0:
        return float("nan"), float("nan")
    return loss_sum / count, correct / count
