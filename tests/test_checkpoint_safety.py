"""Untrusted model files: a crafted .pth runs nothing and is refused; broken ones get clear errors.

A pickle can name any importable callable and have the unpickler call it. The
payload here calls `exec` to create a marker file, so "the code did not run"
is checked on the file system, and a control shows the same file does run code
when loaded the unsafe way.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import Project, make_project

from finseq.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from finseq.errors import DataError
from finseq.models import build_model
from finseq.params import ModelConfig

CONFIG = ModelConfig(type="gru", hidden_dim=4, num_layers=1, dropout=0.0)


class RunsCode:
    """Unpickling this calls exec, as a malicious model file would."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def finseq_checkpoint() -> dict:
    torch.manual_seed(0)
    return make_checkpoint(
        build_model(CONFIG, n_features=3),
        CONFIG,
        seq_len=5,
        feature_names=["a", "b", "c"],
        scaler_mean=[0.0, 0.0, 0.0],
        scaler_std=[1.0, 1.0, 1.0],
        training={"best_epoch": 1, "fold": "final", "seed": 0},
        params={},
        provenance={"finseq_version": "0.1.0"},
    )


def write_malicious(path: Path, marker: Path) -> Path:
    """A genuine finseq checkpoint with one extra entry that runs code when unpickled."""
    checkpoint = finseq_checkpoint()
    checkpoint["training"] = {"best_epoch": 1, "note": RunsCode(marker)}
    torch.save(checkpoint, path)
    return path


def test_the_crafted_file_does_run_code_when_loaded_unsafely(tmp_path: Path):
    """Control: without weights_only the payload runs, so the refusal below is meaningful."""
    marker = tmp_path / "pwned"
    path = write_malicious(tmp_path / "model.pth", tmp_path / "pwned")
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = write_malicious(tmp_path / "model.pth", marker)
    with pytest.raises(DataError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == (
        f"{path}: refused to load: it asks for exec, which is not a tensor or plain "
        "value and could run code; load only checkpoints written by finseq"
    )
    assert not marker.exists()


def test_a_hand_written_zip_with_a_malicious_pickle_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": RunsCode(marker)}, protocol=2))
        archive.writestr("archive/version", "3\n")
    with pytest.raises(DataError, match=r"refused to load: it asks for exec, "):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_genuine_checkpoint_still_loads(tmp_path: Path):
    path = tmp_path / "model.pth"
    save_checkpoint(finseq_checkpoint(), path)
    model, checkpoint = load_checkpoint(path)
    assert checkpoint["feature_names"] == ["a", "b", "c"]
    assert model(torch.zeros(2, 5, 3)).shape == (2, 3)


def genuine_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "genuine.pth"
    save_checkpoint(finseq_checkpoint(), path)
    return path.read_bytes()


NOT_AN_ARCHIVE = (
    "not a readable model checkpoint: not a PyTorch zip archive (truncated, corrupt or another "
    "format); rebuild it with `dvc repro train` or `dvc pull`"
)


@pytest.mark.parametrize(
    ("make_bytes", "expected"),
    [
        pytest.param(lambda genuine: genuine[: len(genuine) // 2], NOT_AN_ARCHIVE, id="truncated"),
        pytest.param(lambda genuine: genuine[:-1], NOT_AN_ARCHIVE, id="last-byte-missing"),
        pytest.param(lambda genuine: os.urandom(len(genuine)), NOT_AN_ARCHIVE, id="random-bytes"),
        pytest.param(lambda genuine: b"", NOT_AN_ARCHIVE, id="empty"),
    ],
)
def test_a_broken_file_gives_a_clear_error(tmp_path: Path, make_bytes, expected):
    path = tmp_path / "model.pth"
    path.write_bytes(make_bytes(genuine_bytes(tmp_path)))
    with pytest.raises(DataError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == f"{path}: {expected}"


def test_a_zip_that_is_not_a_torch_archive_is_not_readable(tmp_path: Path):
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("prices.csv", "Date,Close\n")
    with pytest.raises(DataError, match=r"model\.pth: not a readable model checkpoint \("):
        load_checkpoint(path)


def test_plain_tensors_that_are_not_a_finseq_checkpoint_are_named_as_such(tmp_path: Path):
    path = tmp_path / "model.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(DataError, match=r"not a finseq checkpoint \(expected keys: format_version"):
        load_checkpoint(path)


def test_a_missing_model_file_says_how_to_get_it(tmp_path: Path):
    path = tmp_path / "model.pth"
    with pytest.raises(DataError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == (
        f"{path}: model file not found; run `dvc repro train` or `dvc pull`"
    )


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project with prepared data and windows: evaluate then only needs a model file."""
    project = make_project(tmp_path_factory.mktemp("checkpoint") / "repo")
    project.run("dvc", "repro", "window")
    (project.path / "models" / "folds").mkdir(parents=True)
    return project


# The first model evaluate loads: walk-forward's first fold.
FIRST_FOLD_MODEL = "models/folds/f1.pth"


def evaluate(project: Project) -> subprocess.CompletedProcess:
    return project.run("python", "-m", "finseq.stages.evaluate", check=False)


@pytest.mark.slow
def test_evaluate_refuses_a_malicious_model_with_one_error_line(windowed, tmp_path: Path):
    marker = tmp_path / "pwned"
    write_malicious(windowed.path / FIRST_FOLD_MODEL, marker)
    result = evaluate(windowed)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {FIRST_FOLD_MODEL}: refused to load: it asks for exec, which is not a "
        "tensor or plain value and could run code; load only checkpoints written by finseq"
    ]
    assert not marker.exists()
    assert not (windowed.path / "metrics" / "eval.json").exists()


@pytest.mark.slow
def test_evaluate_names_a_truncated_model_with_one_error_line(windowed, tmp_path: Path):
    (windowed.path / FIRST_FOLD_MODEL).write_bytes(genuine_bytes(tmp_path)[:1000])
    result = evaluate(windowed)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {FIRST_FOLD_MODEL}: {NOT_AN_ARCHIVE}"]


def test_flipped_bits_in_the_weights_are_refused_by_the_archives_checksum(tmp_path: Path):
    """torch.load would read other weights; the zip's CRC-32 of that member fails."""
    import struct
    import zipfile

    path = tmp_path / "model.pth"
    save_checkpoint(finseq_checkpoint(), path)
    with zipfile.ZipFile(path) as archive:
        member = next(info for info in archive.infolist() if "/data/" in info.filename)
    data = bytearray(path.read_bytes())
    header = member.header_offset  # the local header's name and extra-field lengths
    name_length, extra_length = struct.unpack("<HH", data[header + 26 : header + 30])
    start = header + 30 + name_length + extra_length
    for offset in range(start + 4, start + 12):
        data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == (
        f"{path}: corrupt: the checksum of {member.filename} fails; rebuild it with "
        "`dvc repro train` or `dvc pull`"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq_len", 0),
        ("scaler_std", torch.zeros(3, dtype=torch.float64)),
        ("scaler_mean", torch.tensor([0.0, float("nan"), 0.0], dtype=torch.float64)),
        ("scaler_std", torch.ones(2, dtype=torch.float64)),
        ("feature_names", ["a", "b"]),
        ("class_labels", [1, 0, -1]),
        ("provenance", {}),
        ("training", {"best_epoch": 1}),
        ("ensemble", [{"seed": 1}]),
        ("ensemble", "x"),
    ],
)
def test_a_hand_edited_checkpoint_field_is_refused_by_name(tmp_path: Path, field, value):
    checkpoint = finseq_checkpoint()
    checkpoint[field] = value
    path = tmp_path / "model.pth"
    save_checkpoint(checkpoint, path)
    name = "scaler_mean, scaler_std" if field.startswith("scaler") else field
    with pytest.raises(DataError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == (
        f"{path}: not a checkpoint finseq wrote: {name} missing or malformed; rebuild it "
        "with `dvc repro train` or `dvc pull`"
    )
