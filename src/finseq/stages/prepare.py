"""prepare: raw OHLCV CSVs → causal features, labels and splits (data/prepared), and
metrics/data.json."""

from finseq.command import run_stage
from finseq.panel import run_prepare
from finseq.params import load_params


def main() -> None:
    run_prepare(load_params())


if __name__ == "__main__":
    run_stage(main)
