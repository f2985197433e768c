"""train: one model per fold, each fit on its train windows and early-stopped on its val windows.

Writes models/folds/<fold>.pth for every fold and models/model.pth, the fold users take
away (walk-forward: the final refit on all the history; holdout: its one model).
"""

from pathlib import Path

from dvclive import Live

from finseq.atomic import atomic_path, write_json, write_text
from finseq.checkpoint import make_checkpoint, save_checkpoint
from finseq.dataset import PreparedData, WindowSets
from finseq.params import load_params
from finseq.stages import (
    FOLD_MODELS_DIR,
    MODEL_FILE,
    PREPARED_DIR,
    TRAIN_LIVE_DIR,
    WINDOWS_DIR,
    run_stage,
)
from finseq.training import (
    configure_torch,
    fold_curves_tsv,
    log_epoch,
    run_summary,
    train_fold,
    trained_until,
)


def main() -> None:
    params = load_params()
    device = configure_torch(params.train)
    data = PreparedData.load(PREPARED_DIR)
    windows = WindowSets.load(WINDOWS_DIR)
    model_fold = data.meta["model_fold"]
    summaries, results = {}, {}
    with (
        atomic_path(TRAIN_LIVE_DIR, directory=True) as live_root,
        atomic_path(FOLD_MODELS_DIR, directory=True) as fold_dir,
    ):
        (live_root / "folds").mkdir()
        for number, fold in enumerate(data.fold_names, start=1):
            ends = windows.ends[fold]
            print(
                f"fold {fold} ({number} of {len(data.fold_names)}): {len(ends['train'])} train, "
                f"{len(ends['val'])} val windows",
                flush=True,
            )
            live_dir = live_root if fold == model_fold else live_root / "folds" / fold
            with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
                model, result = train_fold(
                    data,
                    windows,
                    fold,
                    params.model,
                    params.train,
                    device,
                    eval_batch_size=params.evaluate.batch_size,
                    on_epoch=lambda epoch, live=live, fold=fold: log_epoch(live, epoch, fold),
                )
            summaries[fold] = run_summary(result)
            results[fold] = result
            scaler = data.scaler(fold)
            checkpoint = make_checkpoint(
                model,
                params.model,
                seq_len=windows.seq_len,
                feature_names=data.meta["feature_names"],
                scaler_mean=scaler.mean.tolist(),
                scaler_std=scaler.std.tolist(),
                training={
                    "fold": fold,
                    **{
                        key: value
                        for key, value in data.meta["folds"][fold].items()
                        if not key.startswith("scaler")
                    },
                    "trained_until": trained_until(data, fold),
                    "best_epoch": result.best_epoch,
                    "stop_reason": result.stop_reason,
                    "seed": params.train.seed,
                    "label_horizon": data.meta["label_horizon"],
                },
            )
            save_checkpoint(checkpoint, Path(fold_dir) / f"{fold}.pth")
            if fold == model_fold:
                save_checkpoint(checkpoint, MODEL_FILE)
        # Replaces DVCLive's own summaries (last epoch's values) with the restored best epochs'.
        summary = summaries[model_fold]
        others = {fold: values for fold, values in summaries.items() if fold != model_fold}
        if others:
            summary = {
                **summary,
                "folds": {
                    fold: {key: values[key] for key in ("best_epoch", "epochs_run", "val")}
                    for fold, values in others.items()
                },
            }
            for fold in others:
                (live_root / "folds" / fold / "metrics.json").unlink(missing_ok=True)
        write_json(live_root / "metrics.json", summary)
        write_text(live_root / "folds" / "curves.tsv", fold_curves_tsv(results))


if __name__ == "__main__":
    run_stage(main)
