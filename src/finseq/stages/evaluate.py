"""evaluate: each fold's model on its own val and test windows, pooled, beside the baselines.

Writes metrics/eval.json (val.*, test.*, in walk-forward folds.<fold>.*, and model_md5,
the md5 of the model users take away), the out-of-sample predictions
(metrics/predictions.csv), the equity curve and the test confusion matrix.
"""

from finseq.command import run_stage
from finseq.params import load_params


def main() -> None:
    params = load_params()
    from finseq.scoring import run_evaluate  # after the params: a bad one stops at once

    run_evaluate(params)


if __name__ == "__main__":
    run_stage(main)
