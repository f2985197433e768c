"""train: fit the configured model on the train windows, early-stopped on val (models/model.pth)."""

from functools import partial

import torch
from dvclive import Live

from finseq.atomic import atomic_path, write_json
from finseq.checkpoint import make_checkpoint, save_checkpoint
from finseq.dataset import PreparedData, WindowSets
from finseq.models import build_model
from finseq.params import load_params
from finseq.stages import MODEL_FILE, PREPARED_DIR, TRAIN_LIVE_DIR, WINDOWS_DIR, run_stage
from finseq.training import TrainingData, configure_torch, fit, log_epoch, run_summary


def main() -> None:
    params = load_params()
    device = configure_torch(params.train)
    data = PreparedData.load(PREPARED_DIR)
    windows = WindowSets.load(WINDOWS_DIR)
    ends = windows.ends
    training_data = TrainingData.from_arrays(
        data.features, data.labels, ends["train"], ends["val"], windows.seq_len, device
    )
    torch.manual_seed(params.train.seed)
    model = build_model(params.model, data.features.shape[1])
    with atomic_path(TRAIN_LIVE_DIR, directory=True) as live_dir:
        with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
            on_epoch = partial(log_epoch, live)
            result = fit(model, training_data, params.train, on_epoch, params.evaluate.batch_size)
        # Replaces DVCLive's own summary (last epoch's values) with the restored best epoch's.
        write_json(live_dir / "metrics.json", run_summary(result))
    checkpoint = make_checkpoint(
        model,
        params.model,
        seq_len=windows.seq_len,
        feature_names=data.meta["feature_names"],
        scaler_mean=data.meta["scaler_mean"],
        scaler_std=data.meta["scaler_std"],
        training={
            "best_epoch": result.best_epoch,
            "stop_reason": result.stop_reason,
            "seed": params.train.seed,
            "label_horizon": data.meta["label_horizon"],
        },
    )
    save_checkpoint(checkpoint, MODEL_FILE)


if __name__ == "__main__":
    run_stage(main)
