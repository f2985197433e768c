"""train: one model per fold, each fit on its train windows and early-stopped on its val windows.

Writes models/folds/<fold>.pth for every fold and models/model.pth, the fold users take
away (walk-forward: the final refit on all the history; holdout: its one model).

With `train.processes` above 1 it starts that many ranks of itself (finseq.distributed), and
under torchrun it is one rank: every rank trains, rank 0 alone logs and writes.
"""

from pathlib import Path

from finseq.atomic import atomic_path, remove_temporaries, write_json, write_text
from finseq.dataset import PreparedData
from finseq.distributed import launch_local_ranks, process_group, ranks_from_environment
from finseq.params import Params, load_params
from finseq.stages import (
    FOLD_MODELS_DIR,
    MODEL_FILE,
    TRAIN_LIVE_DIR,
    load_windowed_data,
    run_stage,
)
from finseq.training import (
    FoldRun,
    configure_torch,
    fold_curves_tsv,
    train_folds,
    training_summary,
)


def fold_runs(data: PreparedData, params: Params, live_root: Path | None, fold_dir: Path | None):
    """Every model to train: each fold at train.seed, then further seeds of the scored folds
    (train.seeds), which measure training noise. Without directories (ranks but rank 0),
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
        FoldRun(fold, None, place(fold_dir, f"{fold}.seed{offset}.pth"), offset)
        for offset in range(1, params.train.seeds)
        for fold in data.meta["evaluated_folds"]
    ]
    return runs


def main() -> None:
    params = load_params()
    ranks = ranks_from_environment()
    if ranks is None and params.train.processes > 1:
        load_windowed_data()  # stale or missing inputs are refused once, before any rank starts
        try:
            launch_local_ranks(params.train.processes, "finseq.stages.train")
        except BaseException:
            for output in (TRAIN_LIVE_DIR, FOLD_MODELS_DIR, MODEL_FILE):
                remove_temporaries(output)  # what a killed rank 0 could not remove itself
            raise
        return
    device = configure_torch(params.train, ranks)
    data, windows = load_windowed_data()
    with process_group(ranks, device):
        if ranks is not None and not ranks.is_main:
            train_folds(data, windows, params, device, fold_runs(data, params, None, None), ranks)
            return
        model_fold = data.meta["model_fold"]
        with (
            atomic_path(TRAIN_LIVE_DIR, directory=True) as live_root,
            atomic_path(FOLD_MODELS_DIR, directory=True) as fold_dir,
        ):
            (live_root / "folds").mkdir()
            runs = fold_runs(data, params, live_root, Path(fold_dir))
            trained = train_folds(data, windows, params, device, runs, ranks)
            results = {fold: trained[fold] for fold in data.fold_names}
            write_json(live_root / "metrics.json", training_summary(results, model_fold))
            write_text(live_root / "folds" / "curves.tsv", fold_curves_tsv(results))
            model_bytes = (Path(fold_dir) / f"{model_fold}.pth").read_bytes()
        with atomic_path(MODEL_FILE) as temporary:
            temporary.write_bytes(model_bytes)


if __name__ == "__main__":
    run_stage(main)
