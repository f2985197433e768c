"""What an artefact was built from: content hashes, the model's source hash, versions.

Prepared data carries a content hash of its arrays and meta; window sets carry the hash
of the prepared data they index; a checkpoint carries both, the label/split/window params,
a hash of the source files that decide the model, and the finseq and torch versions.
The refusals that compare them live beside the types they check (finseq.artifacts), and
the version check of a checkpoint in finseq.versions.

The model's source is hashed rather than named by git commit: DVC does not track HEAD, so
a commit would make identical runs write different model bytes, and it is wrong in a
dirty workspace. Stages compare these hashes before they use an artefact, so that
`dvc repro -s`, a stage run by hand or a partial `dvc checkout` never mixes artefacts
of different runs without an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

import finseq

# The modules whose code decides a model's weights: the train stage's source deps in
# dvc.yaml, relative to src/finseq (tests/test_predict.py checks that the two agree).
MODEL_SOURCES = (
    "stages/train.py",
    "folds.py",
    "fit.py",
    "trees.py",
    "models.py",
    "calibration.py",
    "runtime.py",
    "distributed.py",
    "checkpoint.py",
    "saving.py",
    "artifacts.py",
    "windows.py",
    "labels.py",
    "features.py",
    "split.py",
    "provenance.py",
)

# Hash prefix shown in messages: enough to tell two artefacts apart at a glance.
SHORT = 12

# Chunks of an array fed to the hash: a memory-mapped feature matrix is never read whole.
HASH_CHUNK_BYTES = 1 << 24


def array_hash(arrays: Iterable[tuple[str, np.ndarray]], meta: dict) -> str:
    """sha256 over each named array's dtype, shape and bytes, then the meta as sorted JSON."""
    digest = hashlib.sha256()
    for name, array in arrays:
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        for start in range(0, len(flat), HASH_CHUNK_BYTES):
            digest.update(flat[start : start + HASH_CHUNK_BYTES].tobytes())
    digest.update(json.dumps(meta, sort_keys=True).encode())
    return digest.hexdigest()


def source_hash() -> str:
    """sha256 over the model's source files (MODEL_SOURCES) as this package holds them."""
    root = Path(finseq.__file__).parent
    digest = hashlib.sha256()
    for relative in MODEL_SOURCES:
        digest.update(relative.encode() + b"\0" + (root / relative).read_bytes() + b"\0")
    return digest.hexdigest()


def file_md5(path: str | Path) -> str:
    """The md5 DVC records for a file in dvc.lock, so a model names the run that wrote it."""
    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def short(content_hash: str | None) -> str:
    return (content_hash or "none")[:SHORT]
