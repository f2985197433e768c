"""prepare: raw OHLCV CSVs → causal features, labels and splits (data/prepared), and
metrics/data.json."""

from finseq.command import run_stage
from finseq.params import load_params
from finseq.pipeline import run_prepare


def main() -> None:
    run_prepare(load_params())


if __name__ == "__main__":
    run_stage(main)
