"""evaluate: the saved model on val and test, beside the class-prior and majority baselines."""

import numpy as np
import torch

from finseq.atomic import write_json, write_text
from finseq.checkpoint import load_checkpoint
from finseq.dataset import PreparedData, WindowSets
from finseq.errors import DataError
from finseq.evaluate import class_prior, confusion_csv, split_metrics
from finseq.params import load_params
from finseq.stages import (
    CONFUSION_FILE,
    EVAL_METRICS,
    MODEL_FILE,
    PREPARED_DIR,
    WINDOWS_DIR,
    run_stage,
)
from finseq.training import configure_torch, predict_logits


def main() -> None:
    params = load_params()
    device = configure_torch(params.train)
    data = PreparedData.load(PREPARED_DIR)
    windows = WindowSets.load(WINDOWS_DIR)
    model, checkpoint = load_checkpoint(MODEL_FILE, device)
    if (
        checkpoint["seq_len"] != windows.seq_len
        or checkpoint["feature_names"] != data.meta["feature_names"]
    ):
        raise DataError(f"{MODEL_FILE} was trained on other windows or features; run `dvc repro`")
    features = torch.as_tensor(data.features, device=device)
    classes = data.labels.astype(np.int64) + 1
    prior = class_prior(classes[windows.ends["train"]])
    metrics, predicted = {}, {}
    for split in ("val", "test"):
        ends = torch.as_tensor(windows.ends[split], device=device)
        logits = (
            predict_logits(
                model,
                features,
                ends,
                windows.seq_len,
                params.evaluate.batch_size,
                params.train.precision,
            )
            .cpu()
            .numpy()
        )
        metrics[split] = split_metrics(logits, classes[windows.ends[split]], prior)
        predicted[split] = logits.argmax(axis=1)
    write_json(EVAL_METRICS, metrics)
    write_text(CONFUSION_FILE, confusion_csv(classes[windows.ends["test"]], predicted["test"]))


if __name__ == "__main__":
    run_stage(main)
