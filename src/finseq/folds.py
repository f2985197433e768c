"""The train stage (`run_train`): every model of a run, one per fold (and per further
seed), trained side by side in forked workers or one after another across the ranks of a
distributed run; each fold's DVCLive curves and checkpoint.
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

import torch
from dvclive import Live
from torch import nn

from finseq.artifacts import PreparedData, WindowSets, load_windowed
from finseq.atomic import atomic_path, write_json, write_text
from finseq.checkpoint import save_checkpoint, with_further_seeds
from finseq.distributed import Ranks
from finseq.fit import VAL_BATCH, EpochResult, FitResult, TrainingData, fit
from finseq.models import build_model
from finseq.params import ModelConfig, Params, TrainConfig
from finseq.paths import FOLD_MODELS_DIR, MODEL_FILE, PREPARED_DIR, TRAIN_LIVE_DIR, WINDOWS_DIR
from finseq.runtime import (
    configure_torch,
    fold_worker_threads,
    resolve_fold_workers,
    set_numerics,
)
from finseq.saving import fold_checkpoint


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
    if model_config.type == "lightgbm":
        from finseq.trees import train_trees  # LightGBM is loaded for tree models only

        return train_trees(data, windows, fold, model_config, train_config.seed, on_epoch, ranks)
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


def fold_runs(data: PreparedData, params: Params, live_root: Path | None, fold_dir: Path | None):
    """Every model to train: each fold at train.seed, then each fold at the further seeds
    (train.seeds), the members of its ensemble. Without directories (ranks but rank 0),
    nothing is logged or saved."""

    def place(directory: Path | None, name: str) -> Path | None:
        return None if directory is None else directory / name

    model_fold = data.meta["model_fold"]
    runs = [
        FoldRun(
            fold,
            live_root if fold == model_fold or live_root is None else live_root / "folds" / fold,
            place(fold_dir, f"{fold}.pth"),
        )
        for fold in data.fold_names
    ]
    runs += [
        FoldRun(fold, None, place(fold_dir, seed_file_name(fold, offset)), offset)
        for offset in range(1, params.train.seeds)
        for fold in data.fold_names
    ]
    return runs


def seed_file_name(fold: str, offset: int) -> str:
    """Where a further seed's checkpoint waits until its fold's ensemble is assembled."""
    return f"{fold}.seed{offset}.pth"


def assemble_ensembles(fold_dir: Path, fold_names: list[str], seeds: int) -> None:
    """Each fold's further seeds' checkpoints moved into its first seed's, as its ensemble
    members: one file per fold, the model that evaluate scores and finseq predict loads."""
    if seeds == 1:
        return
    for fold in fold_names:
        further = [fold_dir / seed_file_name(fold, offset) for offset in range(1, seeds)]
        first = torch.load(fold_dir / f"{fold}.pth", weights_only=True)
        others = [torch.load(path, weights_only=True) for path in further]
        save_checkpoint(with_further_seeds(first, others), fold_dir / f"{fold}.pth")
        for path in further:
            path.unlink()


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
        threads = fold_worker_threads(params.train.threads)
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


def train_models(
    params: Params,
    data: PreparedData,
    windows: WindowSets,
    device: torch.device,
    ranks: Ranks | None = None,
    root: Path = Path(),
) -> None:
    """models/folds, models/model.pth (the model fold's bytes) and the training curves under
    `root`. Under torch.distributed (`ranks`, in a joined process group) every rank trains;
    rank 0 alone logs and writes."""
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
        assemble_ensembles(Path(fold_dir), data.fold_names, params.train.seeds)
        results = {fold: trained[fold] for fold in data.fold_names}
        write_json(live_root / "metrics.json", training_summary(results, model_fold))
        write_text(live_root / "folds" / "curves.tsv", fold_curves_tsv(results))
        model_bytes = (Path(fold_dir) / f"{model_fold}.pth").read_bytes()
    with atomic_path(root / MODEL_FILE) as temporary:
        temporary.write_bytes(model_bytes)


def run_train(params: Params, root: Path = Path()) -> None:
    """The train stage in one process under a project root."""
    device = configure_torch(params.train)
    data, windows = load_windowed(root / PREPARED_DIR, root / WINDOWS_DIR)
    train_models(params, data, windows, device, root=root)
