"""window: window end indices per fold and part over the prepared feature matrix
(data/windows)."""

from finseq.command import run_stage
from finseq.params import load_params
from finseq.window_sets import run_window


def main() -> None:
    run_window(load_params())


if __name__ == "__main__":
    run_stage(main)
