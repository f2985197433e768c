"""lockbox: metrics/lockbox.json. Sealed (split.lockbox_open false), it reads no bar from
split.lockbox on; opened (`dvc exp run -S split.lockbox_open=true`), it scores
models/model.pth on those bars and counts the opening."""

from finseq.command import run_stage
from finseq.params import load_params


def main() -> None:
    params = load_params()
    from finseq.lockbox import run_lockbox  # after the params: a bad one stops at once

    run_lockbox(params)


if __name__ == "__main__":
    run_stage(main)
