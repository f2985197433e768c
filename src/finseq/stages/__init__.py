"""One thin entry point per dvc.yaml stage: read params, call the library, write outputs.

Run as `python -m finseq.stages.<stage>` from the repository root (dvc.yaml does).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from finseq.errors import UserError

RAW_DIR = "data/raw"
PREPARED_DIR = "data/prepared"
WINDOWS_DIR = "data/windows"
MODEL_FILE = "models/model.pth"
FOLD_MODELS_DIR = "models/folds"
DATA_METRICS = "metrics/data.json"
TRAIN_LIVE_DIR = "metrics/train"
EVAL_METRICS = "metrics/eval.json"
CONFUSION_FILE = "metrics/confusion_test.csv"
PREDICTIONS_FILE = "metrics/predictions.csv"
EQUITY_FILE = "metrics/equity.csv"


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def run_stage(main: Callable[[], None]) -> None:
    """Runs a stage; a user's mistake or an interruption ends it with one line and a non-zero exit.

    SIGTERM is turned into KeyboardInterrupt so that, like Ctrl-C, it unwinds through
    the atomic writers and leaves no temporary or half-written file behind.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; outputs of this stage were not written", file=sys.stderr)
        sys.exit(130)
