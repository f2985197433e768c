"""The training loop: gathered batches, Adam, early stopping with the best epoch restored.

Batches are one gather over the 2-D feature matrix (see windows.gather_windows),
shuffled by a seeded permutation, so an epoch runs no per-sample Python. On CUDA
the feature matrix lives on the device and batches are gathered there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from dvclive import Live
from torch import nn
from torch.nn import functional

import finseq
from finseq.checkpoint import make_checkpoint, save_checkpoint
from finseq.cores import in_dvc_temp_workspace, usable_cores
from finseq.dataset import PreparedData, WindowSets
from finseq.distributed import Ranks, all_sum, rank_device, rank_slice
from finseq.errors import ConfigError, note
from finseq.evaluate import FoldScores, class_prior
from finseq.models import build_model
from finseq.params import ModelConfig, Params, TrainConfig
from finseq.provenance import source_hash
from finseq.split import TRAIN, VAL
from finseq.windows import gather_windows, window_offsets


def resolve_device(requested: str) -> torch.device:
    """`auto` picks CUDA when a GPU is visible, else the CPU; `cuda` without a GPU is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device = 'cuda' but no CUDA GPU is available here; use 'auto' or 'cpu'"
        )
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_fold_workers(
    config: TrainConfig, n_folds: int, device: torch.device, ranks: Ranks | None = None
) -> int:
    """Processes that train folds side by side.

    `auto`: one (in-process) inside DVC's temporary experiment workspaces, on CUDA, when
    `threads` is set to a number, or in a rank of a distributed run (whose folds are trained
    one after another, each by every rank); otherwise every usable core, up to the number of
    folds.
    """
    if ranks is not None:
        if config.fold_workers not in ("auto", 1):
            raise ConfigError(
                f"train.fold_workers = {config.fold_workers} under torchrun: train the folds "
                "side by side or each across ranks, not both; set train.fold_workers to 1"
            )
        workers = 1
    elif config.fold_workers != "auto":
        workers = int(config.fold_workers)
    elif in_dvc_temp_workspace() or device.type == "cuda" or config.threads != "auto":
        workers = 1
    else:
        workers = usable_cores()
    return max(1, min(workers, n_folds))


def resolve_threads(
    requested: int | str, cwd: str | Path | None = None, local_processes: int = 1
) -> int:
    """Intra-op CPU threads for torch.

    `auto`: one thread inside DVC's temporary experiment workspaces, where queue
    workers run side by side and every extra thread would fight another
    experiment for a core; otherwise every core this process may use, shared evenly by
    the `local_processes` ranks of a distributed run on this machine.
    """
    if requested != "auto":
        return int(requested)
    return 1 if in_dvc_temp_workspace(cwd) else max(1, usable_cores() // local_processes)


def has_native_bf16(device: torch.device) -> bool | None:
    """Whether `device` computes bf16 in hardware (not emulated); None when torch cannot tell."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for; parameters, loss and optimiser state stay fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class TrainingData:
    """Everything on the training device: the feature matrix, class indices and window ends."""

    features: torch.Tensor  # (rows, features) float32
    classes: torch.Tensor  # (rows,) int64 class index: label + 1
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
            classes=to(labels.astype(np.int64) + 1, torch.int64),
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
# the last bits of its logits (see predict_logits), and so the epoch early stopping keeps:
# fixed here, so that evaluate.batch_size, a speed knob of evaluation, never retrains a model.
VAL_BATCH = 4096


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    features: torch.Tensor,
    ends: torch.Tensor,
    seq_len: int,
    batch_size: int,
    precision: str = "fp32",
    *,
    pad: bool = False,
) -> torch.Tensor:
    """Logits (float32) for every window end, in large no-grad batches.

    The kernels a batch runs on depend on its size, so a short last batch can round a
    window differently from a full one. `pad` fills the last batch with copies of its last
    window (dropped afterwards): every batch then has exactly `batch_size` windows, and a
    window's logits do not depend on how many others are scored with it (finseq predict on
    one bar agrees bit for bit with the same bar scored among thousands).
    """
    model.eval()
    offsets = window_offsets(seq_len, features.device)
    chunks = []
    with autocast(features.device, precision):
        for start in range(0, len(ends), batch_size):
            batch_ends = ends[start : start + batch_size]
            count = len(batch_ends)
            if pad and count < batch_size:
                batch_ends = torch.cat([batch_ends, batch_ends[-1:].expand(batch_size - count)])
            windows = gather_windows(features, batch_ends, offsets)
            chunks.append(model(windows).float()[:count])
    if not chunks:
        return torch.empty(0, 3, device=features.device)
    return torch.cat(chunks)


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


def train_fold(
    data: PreparedData,
    windows: WindowSets,
    fold: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
    *,
    eval_batch_size: int = VAL_BATCH,
    on_epoch: Callable[[EpochResult], None] | None = None,
    ranks: Ranks | None = None,
) -> tuple[nn.Module, FitResult]:
    """A fresh model of `model_config` fit on `fold`'s train windows, early-stopped on its val
    windows, with the seed and settings every fold shares."""
    training_data = TrainingData.from_arrays(
        data.scaled_features(fold),
        data.labels,
        windows.ends[fold]["train"],
        windows.ends[fold]["val"],
        windows.seq_len,
        device,
    )
    torch.manual_seed(train_config.seed)
    model = build_model(model_config, data.features.shape[1])
    result = fit(model, training_data, train_config, on_epoch, eval_batch_size, ranks)
    return model, result


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
    classes = data.labels.astype(np.int64) + 1
    prior = class_prior(classes[windows.ends[fold]["train"]])
    return FoldScores(fold=fold, ends=ends, logits=logits, prior=prior)


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
    return make_checkpoint(
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
            "label": data.meta["label"],
            "split": data.meta["split"],
            "window": {"seq_len": windows.seq_len, "stride": windows.stride},
            "model": dataclasses.asdict(params.model),
            "train": train_settings,
        },
        provenance={
            "finseq_version": finseq.__version__,
            "torch_version": str(torch.__version__),
            "source_hash": source_hash(),
            "prepared_hash": data.content_hash,
            "windows_hash": windows.content_hash,
        },
    )


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


def set_numerics(device: torch.device) -> None:
    """Deterministic kernels and flushed denormals, for every run of a model."""
    # Gradients through saturated gates can become denormal floats, which x86 CPUs handle
    # many times slower; flushing them (|x| < 1.2e-38) to zero changes nothing that matters.
    # NumPy computes its float limits lazily and warns if it first does so after the flush.
    for dtype in (np.float32, np.float64):
        np.finfo(dtype)
    torch.set_flush_denormal(True)
    # CPU kernels are deterministic; on CUDA some (e.g. cuDNN RNN backward) are not, so warn only.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")


def configure_torch(config: TrainConfig, ranks: Ranks | None = None) -> torch.device:
    """Device, CPU threads and numerics for one run (or one rank of it); returns the device."""
    device = rank_device(resolve_device(config.device), ranks)
    local_processes = 1 if ranks is None else ranks.local_world_size
    torch.set_num_threads(resolve_threads(config.threads, local_processes=local_processes))
    set_numerics(device)
    if config.precision == "bf16" and has_native_bf16(device) is False:
        note(
            f"train.precision = 'bf16' but this {device.type} has no native bf16 support; "
            "it is emulated and likely slower than 'fp32' here"
        )
    return device


def log_epoch(live, result: EpochResult, fold: str | None = None) -> None:
    """One DVCLive step per epoch, numbered from 1, and one line on stdout."""
    live.step = result.epoch
    live.log_metric("train/loss", result.train_loss)
    live.log_metric("val/loss", result.val_loss)
    live.log_metric("val/accuracy", result.val_accuracy)
    live.log_metric("learning_rate", result.learning_rate)
    live.next_step()
    prefix = f"fold {fold:>5}  " if fold else ""
    print(
        f"{prefix}epoch {result.epoch:3d}  train/loss {result.train_loss:.4f}  "
        f"val/loss {result.val_loss:.4f}  val/accuracy {result.val_accuracy:.4f}",
        flush=True,
    )


def run_summary(result: FitResult) -> dict:
    """Summary metrics of the restored (best) epoch, not of the last epoch run."""
    best = result.history[result.best_epoch - 1]
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": int(result.stop_reason == "early_stopping"),
        "train": {"loss": best.train_loss},
        "val": {"loss": best.val_loss, "accuracy": best.val_accuracy},
        "learning_rate": best.learning_rate,
    }


def training_summary(results: dict[str, FitResult], model_fold: str) -> dict:
    """metrics/train/metrics.json: the summary of models/model.pth's run, and each other
    fold's best epoch, epochs run and val figures under `folds`."""
    summary = run_summary(results[model_fold])
    others = {
        fold: {key: value for key, value in run_summary(result).items() if key in FOLD_SUMMARY}
        for fold, result in results.items()
        if fold != model_fold
    }
    return {**summary, "folds": others} if others else summary


FOLD_SUMMARY = ("best_epoch", "epochs_run", "val")


def fold_curves_tsv(results: dict[str, FitResult]) -> str:
    """Every fold's per-epoch curves in one long table (fold, step, ...), charted by fold."""
    lines = ["fold\tstep\ttrain_loss\tval_loss\tval_accuracy"]
    for fold, result in results.items():
        lines += [
            f"{fold}\t{e.epoch}\t{e.train_loss!r}\t{e.val_loss!r}\t{e.val_accuracy!r}"
            for e in result.history
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class FoldRun:
    """One model to train: its fold, its seed (train.seed + seed_offset), and where its curves
    and checkpoint go (None: not logged, not saved, as on every rank but rank 0)."""

    fold: str
    live_dir: Path | None
    checkpoint: Path | None
    seed_offset: int = 0

    @property
    def key(self) -> str:
        return self.fold if self.seed_offset == 0 else f"{self.fold}.seed{self.seed_offset}"


@dataclass(frozen=True)
class _FoldContext:
    data: PreparedData
    windows: WindowSets
    params: Params
    device: torch.device
    ranks: Ranks | None = None


_worker_context: _FoldContext | None = None


def _train_and_save(context: _FoldContext, run: FoldRun) -> tuple[str, FitResult]:
    """Trains one fold, logs its epochs to DVCLive (if it has a live_dir), saves its checkpoint."""
    train_config = dataclasses.replace(
        context.params.train, seed=context.params.train.seed + run.seed_offset
    )
    params = dataclasses.replace(context.params, train=train_config)
    with contextlib.ExitStack() as stack:
        on_epoch = None
        if run.live_dir is not None:
            live = stack.enter_context(
                Live(dir=str(run.live_dir), dvcyaml=None, save_dvc_exp=False)
            )
            on_epoch = partial(log_epoch, live, fold=run.fold)
        model, result = train_fold(
            context.data,
            context.windows,
            run.fold,
            params.model,
            train_config,
            context.device,
            on_epoch=on_epoch,
            ranks=context.ranks,
        )
    if run.live_dir is not None:
        # DVCLive's own summary holds the last epoch; the stage writes the restored epochs'.
        (run.live_dir / "metrics.json").unlink(missing_ok=True)
    if run.checkpoint is not None:
        world_size = 1 if context.ranks is None else context.ranks.world_size
        checkpoint = fold_checkpoint(
            model, result, context.data, context.windows, run.fold, params, world_size
        )
        save_checkpoint(checkpoint, run.checkpoint)
    return run.key, result


def _start_fold_worker(context: _FoldContext, threads: int) -> None:
    """A fold worker: one thread unless told otherwise; SIGTERM ends it quietly (the parent
    terminates its workers when interrupted) and Ctrl-C is left to the parent."""
    global _worker_context
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    set_numerics(context.device)
    _worker_context = context


def _train_in_worker(run: FoldRun) -> tuple[str, FitResult]:
    assert _worker_context is not None
    return _train_and_save(_worker_context, run)


def train_folds(
    data: PreparedData,
    windows: WindowSets,
    params: Params,
    device: torch.device,
    runs: list[FoldRun],
    ranks: Ranks | None = None,
) -> dict[str, FitResult]:
    """Trains every fold of `runs`, side by side in `resolve_fold_workers` processes, or one
    after another, each by every rank of a distributed run.

    Folds are independent and each is seeded alike, so the weights do not depend on how
    many run at once. Workers are forked, so they share the prepared arrays instead of
    copying them; the longest folds (the latest) start first.
    """
    workers = resolve_fold_workers(params.train, len(runs), device, ranks)
    context = _FoldContext(data, windows, params, device, ranks)
    total = len(runs)
    results: dict[str, FitResult] = {}

    def done(fold: str, result: FitResult) -> None:
        results[fold] = result
        if ranks is not None and not ranks.is_main:
            return
        print(
            f"fold {fold} done ({len(results)} of {total}): best epoch {result.best_epoch}, "
            f"val/loss {result.best_val_loss:.4f}",
            flush=True,
        )

    if workers == 1:
        for run in runs:
            done(*_train_and_save(context, run))
    else:
        threads = 1 if params.train.threads == "auto" else int(params.train.threads)
        pool = multiprocessing.get_context("fork").Pool(
            workers, initializer=_start_fold_worker, initargs=(context, threads)
        )
        try:
            for fold, result in pool.imap_unordered(_train_in_worker, runs[::-1]):
                done(fold, result)
            pool.close()
        finally:
            pool.terminate()
            pool.join()
    return {run.key: results[run.key] for run in runs}
