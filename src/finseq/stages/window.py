"""window: window end indices per fold and part over the prepared feature matrix
(data/windows)."""

from finseq.command import run_stage
from finseq.params import load_params


def main() -> None:
    params = load_params()
    from finseq.window_sets import run_window  # after the params: a bad one stops at once

    run_window(params)


if __name__ == "__main__":
    run_stage(main)
