"""train: one model per fold, each fit on its train windows and early-stopped on its val windows.

Writes models/folds/<fold>.pth for every fold and models/model.pth, the fold users take
away (walk-forward: the final refit on all the history; holdout: its one model).
"""

from pathlib import Path

from finseq.atomic import atomic_path, write_json, write_text
from finseq.params import load_params
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


def main() -> None:
    params = load_params()
    device = configure_torch(params.train)
    data, windows = load_windowed_data()
    model_fold = data.meta["model_fold"]
    with (
        atomic_path(TRAIN_LIVE_DIR, directory=True) as live_root,
        atomic_path(FOLD_MODELS_DIR, directory=True) as fold_dir,
    ):
        (live_root / "folds").mkdir()
        runs = [
            FoldRun(
                fold,
                live_root if fold == model_fold else live_root / "folds" / fold,
                Path(fold_dir) / f"{fold}.pth",
            )
            for fold in data.fold_names
        ]
        # Further seeds of every scored fold measure training noise (train.seeds).
        runs += [
            FoldRun(fold, None, Path(fold_dir) / f"{fold}.seed{offset}.pth", offset)
            for offset in range(1, params.train.seeds)
            for fold in data.meta["evaluated_folds"]
        ]
        trained = train_folds(data, windows, params, device, runs)
        results = {fold: trained[fold] for fold in data.fold_names}
        write_json(live_root / "metrics.json", training_summary(results, model_fold))
        write_text(live_root / "folds" / "curves.tsv", fold_curves_tsv(results))
        model_bytes = (Path(fold_dir) / f"{model_fold}.pth").read_bytes()
    with atomic_path(MODEL_FILE) as temporary:
        temporary.write_bytes(model_bytes)


if __name__ == "__main__":
    run_stage(main)
