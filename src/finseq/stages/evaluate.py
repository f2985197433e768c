"""evaluate: the saved model on val and test, beside the class-prior and majority baselines."""

import numpy as np
import torch

from finseq.atomic import write_json, write_text
from finseq.checkpoint import CLASS_LABELS, load_checkpoint
from finseq.dataset import PreparedData, WindowSets
from finseq.evaluate import class_prior, split_metrics
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
    features = torch.as_tensor(data.features, device=device)
    classes = data.labels.astype(np.int64) + 1
    prior = class_prior(classes[windows.ends["train"]])
    metrics, predictions = {}, {}
    for split in ("val", "test"):
        ends = windows.ends[split]
        ends_tensor = torch.as_tensor(ends, device=device)
        logits = (
            predict_logits(
                model,
                features,
                ends_tensor,
                checkpoint["seq_len"],
                params.evaluate.batch_size,
                params.train.precision,
            )
            .cpu()
            .numpy()
        )
        metrics[split] = split_metrics(logits, classes[ends], prior)
        predictions[split] = logits.argmax(axis=1)
    write_json(EVAL_METRICS, metrics)
    test_classes = classes[windows.ends["test"]]
    rows = [
        f"{CLASS_LABELS[a]},{CLASS_LABELS[p]}"
        for a, p in zip(test_classes, predictions["test"], strict=True)
    ]
    write_text(CONFUSION_FILE, "\n".join(["actual,predicted", *rows]) + "\n")


if __name__ == "__main__":
    run_stage(main)
