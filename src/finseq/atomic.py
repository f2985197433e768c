"""Outputs appear whole or not at all: write beside the target, then rename into place.

os.replace is atomic within a file system, so an interrupted stage (Ctrl-C,
SIGTERM, a crash) leaves either the previous output or none, never a truncated one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: str | Path, *, directory: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `target`; renames it onto `target` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        temporary = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        )
    else:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(handle)
        temporary = Path(name)
    try:
        yield temporary
        # mkstemp/mkdtemp create owner-only entries; outputs get ordinary permissions.
        os.chmod(temporary, 0o755 if directory else 0o644)
        if directory and target.exists():
            previous = target.with_name(f".{target.name}.old")
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(target, previous)
            os.replace(temporary, target)
            shutil.rmtree(previous)
        else:
            os.replace(temporary, target)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def remove_temporaries(target: str | Path) -> None:
    """Removes the temporaries atomic_path left beside `target` in a process that was killed
    (SIGKILL cannot be caught and unwound), so that a failed run leaves none behind."""
    target = Path(target)
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def write_json(target: str | Path, payload: Any) -> None:
    """Deterministic JSON (sorted keys), written atomically. A figure that is not a number
    (a hit rate of a strategy that never traded, a bound no bootstrap could draw) is written
    `null`: NaN and Infinity are not JSON, and strict readers (jq, JavaScript) refuse them."""
    with atomic_path(target) as temporary:
        text = json.dumps(_finite(payload), indent=2, sort_keys=True, allow_nan=False)
        temporary.write_text(text + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(text)
