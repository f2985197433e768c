"""prepare: raw OHLCV CSVs → causal features, labels and splits (data/prepared), and
metrics/data.json."""

from finseq.command import run_stage
from finseq.params import load_params


def main() -> None:
    params = load_params()
    from finseq.panel import run_prepare  # after the params: a bad one stops at once

    run_prepare(params)


if __name__ == "__main__":
    run_stage(main)
