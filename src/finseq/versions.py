"""Which finseq releases read each other's checkpoints (finseq predict and finseq info).

Kept apart from finseq.provenance, whose hashes decide the model's bytes: a change to the
version rule retrains nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import finseq
from finseq.errors import DataError


def readable_version(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: '0.1.0' -> (0, 1, 0); '0.10.1rc1' ->
    (0, 10, 1): a part's leading digits, up to the first part that has none."""
    numbers = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


def compatible_series(version: str) -> tuple[int, ...]:
    """Versions that read each other's checkpoints: same major, and same minor before 1.0."""
    numbers = (*readable_version(version), 0, 0)
    return numbers[:2] if numbers[0] == 0 else numbers[:1]


def check_finseq_version(checkpoint: dict, model_file: str | Path) -> None:
    """A checkpoint from another release series may mean other features or semantics."""
    written_by = checkpoint["provenance"]["finseq_version"]
    if compatible_series(written_by) != compatible_series(finseq.__version__):
        series = ".".join(map(str, compatible_series(finseq.__version__)))
        raise DataError(
            f"{model_file} was written by finseq {written_by}; this is finseq "
            f"{finseq.__version__}, which reads checkpoints of finseq {series}.*; install "
            f"finseq {written_by} or retrain the model"
        )
