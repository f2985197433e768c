"""evaluate: each fold's model on its own val and test windows, pooled, beside the baselines.

Writes metrics/eval.json (val.*, test.*, in walk-forward folds.<fold>.*, and model_md5,
the md5 of the model users take away), the out-of-sample predictions
(metrics/predictions.csv) and the test confusion matrix.
"""

import io
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.atomic import write_json, write_text
from finseq.checkpoint import load_checkpoint
from finseq.evaluate import (
    FoldScores,
    confusion_csv,
    fold_metrics,
    pooled_metrics,
    predictions_csv,
    predictions_frame,
)
from finseq.evidence import figures_of_seed, out_of_sample_evidence, seed_spread
from finseq.params import load_params
from finseq.provenance import check_model, file_md5
from finseq.split import HOLDOUT
from finseq.stages import (
    CONFUSION_FILE,
    EQUITY_FILE,
    EVAL_METRICS,
    FOLD_MODELS_DIR,
    PREDICTIONS_FILE,
    PREPARED_DIR,
    WINDOWS_DIR,
    load_windowed_data,
    run_stage,
)
from finseq.training import configure_torch, score_fold


def score_every_fold(params, data, windows, device, suffix: str = "") -> list[FoldScores]:
    """Each scored fold's model (models/folds/<fold><suffix>.pth) on its own val and test."""
    scores = []
    for fold in data.meta["evaluated_folds"]:
        model_file = Path(FOLD_MODELS_DIR) / f"{fold}{suffix}.pth"
        model, checkpoint = load_checkpoint(model_file, device)
        check_model(
            checkpoint,
            model_file,
            data,
            windows,
            prepared_dir=PREPARED_DIR,
            windows_dir=WINDOWS_DIR,
        )
        scores.append(
            score_fold(
                model,
                data,
                windows,
                fold,
                device,
                batch_size=params.evaluate.batch_size,
                precision=params.train.precision,
            )
        )
    return scores


def main() -> None:
    params = load_params()
    device = configure_torch(params.train)
    data, windows = load_windowed_data()
    classes = data.labels.astype(np.int64) + 1
    scores = score_every_fold(params, data, windows, device)
    outcomes = (
        data.labels,
        data.meta["series_names"],
        data.series,
        data.timestamps,
        data.forward_return,
        data.next_return,
    )
    metrics = {part: pooled_metrics(scores, classes, part) for part in ("val", "test")}
    if data.meta["evaluated_folds"] != [HOLDOUT]:
        metrics["folds"] = {
            score.fold: fold_metrics(score, classes, data.timestamps) for score in scores
        }
    predictions_text = predictions_csv(predictions_frame(scores, *outcomes))
    # Figures and intervals from the file as written, as the report reads it.
    predictions = pd.read_csv(io.StringIO(predictions_text))
    evidence, equity = out_of_sample_evidence(
        predictions, params.backtest, params.evaluate, data.meta["label_horizon"]
    )
    # The pooled point values stay; the evidence adds the backtest and the intervals.
    metrics["test"].update(
        {key: value for key, value in evidence.items() if key not in metrics["test"]}
    )
    if params.train.seeds > 1:
        per_seed = [
            figures_of_seed(scores_of_seed, classes, outcomes, params)
            for scores_of_seed in [
                scores,
                *(
                    score_every_fold(params, data, windows, device, f".seed{offset}")
                    for offset in range(1, params.train.seeds)
                ),
            ]
        ]
        metrics["seeds"] = seed_spread(per_seed, params.train.seed)
    # The model users take away (models/model.pth holds the same bytes), named as dvc.lock
    # names it: finseq info shows these metrics only beside the model they belong to.
    metrics["model_md5"] = file_md5(Path(FOLD_MODELS_DIR) / f"{data.meta['model_fold']}.pth")
    write_json(EVAL_METRICS, metrics)
    write_text(PREDICTIONS_FILE, predictions_text)
    write_text(EQUITY_FILE, equity.to_csv(index=False, float_format="%.8g", lineterminator="\n"))
    test_ends = np.concatenate([score.ends["test"] for score in scores])
    test_logits = np.concatenate([score.logits["test"] for score in scores])
    known = classes[test_ends] >= 0
    predicted = test_logits.argmax(axis=1)
    write_text(CONFUSION_FILE, confusion_csv(classes[test_ends][known], predicted[known]))


if __name__ == "__main__":
    run_stage(main)
