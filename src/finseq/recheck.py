"""Do the committed results come from the committed code? A retrain against what was committed.

    python -m finseq.recheck COMMITTED_EVAL_JSON [RETRAINED_EVAL_JSON]

The pull-request workflow copies the committed metrics/eval.json aside, retrains without
DVC's run cache, and runs this. The runner's CPU may lack the instructions (bf16, AVX-512)
of the machine that produced the commit, so bit-equality cannot be asked for. Instead each
checked figure must land within TOLERANCE_SDS seed-to-seed standard deviations of the
committed value, the spread the commit itself measured (`seeds.<figure>_sd`, train.seeds >
1): a kernel difference moves a result less than a change of seed does, and a retrain that
moves it further than three seed spreads is not noise. Without a measured spread (train.seeds
= 1) there is nothing to justify a tolerance, and the check says so and fails.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from finseq.command import run_stage
from finseq.errors import DataError
from finseq.paths import EVAL_METRICS

TOLERANCE_SDS = 3.0
CHECKED = ("skill", "loss", "accuracy", "sharpe")


def retrain_differences(committed: Mapping, retrained: Mapping) -> list[str]:
    """One phrase per figure of `test` that moved beyond tolerance; empty when all agree."""
    spread = committed.get("seeds")
    if not spread:
        raise DataError(
            "the committed metrics measured no seed-to-seed spread (train.seeds = 1), so no "
            "retrain tolerance can be justified; commit a run with train.seeds >= 2"
        )
    moved = []
    for name in CHECKED:
        was, now = committed["test"][name], retrained["test"][name]
        if was is None or now is None or spread[f"{name}_sd"] is None:
            # null: not a number (a strategy that never traded); only null and null agree
            if (was is None) != (now is None):
                moved.append(f"test.{name} {was} -> {now}")
            continue
        tolerance = TOLERANCE_SDS * spread[f"{name}_sd"]
        if abs(now - was) > tolerance:
            moved.append(f"test.{name} {was:.4f} -> {now:.4f} (tolerance {tolerance:.4f})")
    return moved


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2):
        raise DataError("usage: python -m finseq.recheck COMMITTED_EVAL_JSON [RETRAINED_EVAL_JSON]")
    committed = json.loads(Path(args[0]).read_text())
    retrained = json.loads(Path(args[1] if len(args) == 2 else EVAL_METRICS).read_text())
    moved = retrain_differences(committed, retrained)
    if moved:
        raise DataError("the retrain does not reproduce the committed results: " + "; ".join(moved))
    print(f"retrain within {TOLERANCE_SDS:g} seed spreads of the committed results", flush=True)


if __name__ == "__main__":
    run_stage(main)
