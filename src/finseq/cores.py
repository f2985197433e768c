"""How many CPU cores this process may use, and whether it runs beside other experiments."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_dvc_temp_workspace(cwd: str | Path | None = None) -> bool:
    """True inside the temporary copies where `dvc queue` and `dvc exp run --temp` run."""
    return f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}" in f"{Path(cwd or os.getcwd())}{os.sep}"
