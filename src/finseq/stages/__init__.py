"""One thin entry point per dvc.yaml stage: read params, call the library, write outputs.

Run as `python -m finseq.stages.<stage>` from the repository root (dvc.yaml does).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from finseq.dataset import PreparedData, WindowSets
from finseq.errors import UserError, in_local_rank, record_failure
from finseq.provenance import check_windows

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


def _exit(status: int) -> NoReturn:
    """Exits with `status`. A rank of a distributed run whose peers are gone would wait in
    the process group's teardown at interpreter exit, so it leaves at once (its outputs
    were already unwound)."""
    if "WORLD_SIZE" in os.environ:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def run_stage(
    main: Callable[[], None], interrupted: str = "outputs of this stage were not written"
) -> None:
    """Runs a stage (or a command); a user's mistake or an interruption ends it with one line
    and a non-zero exit.

    SIGTERM is turned into KeyboardInterrupt so that, like Ctrl-C, it unwinds through
    the atomic writers and leaves no temporary or half-written file behind. The ranks the
    train stage starts itself stay quiet: their launcher prints the one line.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except UserError as exc:
        # A rank of a distributed run hands its line to the launcher, which prints the first.
        record_failure(str(exc), exc.exit_status)
        if not in_local_rank():
            print(f"error: {exc}", file=sys.stderr)
        _exit(exc.exit_status)
    except KeyboardInterrupt:
        if not in_local_rank():
            print(f"error: interrupted; {interrupted}", file=sys.stderr)
        _exit(130)
    except BrokenPipeError:
        # The reader of stdout went away (`finseq predict ... | head`): stop quietly, as
        # command-line tools do, without a traceback when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)


def load_windowed_data() -> tuple[PreparedData, WindowSets]:
    """data/prepared and data/windows, refused when the windows index other prepared data."""
    data = PreparedData.load(PREPARED_DIR)
    windows = WindowSets.load(WINDOWS_DIR)
    check_windows(data, windows, prepared_dir=PREPARED_DIR, windows_dir=WINDOWS_DIR)
    return data, windows
