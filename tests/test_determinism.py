"""Same params and data, same bytes: `dvc repro -f` twice on CPU gives identical outputs."""

from __future__ import annotations

import hashlib

import pytest
from conftest import PIPELINE_OUTPUTS, Project

OUTPUTS = ("data/prepared", "data/windows", "models", "metrics", "dvc.lock")


def output_hashes(project: Project) -> dict[str, str]:
    """sha256 of every file the pipeline writes (and of dvc.lock, which records their md5s)."""
    hashes = {}
    for name in OUTPUTS:
        root = project.path / name
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            relative = str(path.relative_to(project.path))
            hashes[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@pytest.mark.slow
def test_forced_reruns_give_bit_identical_models_metrics_and_data(project: Project):
    params = project.read_params()
    params["train"]["device"] = "cpu"
    project.write_params(params)
    project.run("dvc", "repro", "-f")
    first = output_hashes(project)
    project.run("dvc", "repro", "-f")
    second = output_hashes(project)
    expected = {*PIPELINE_OUTPUTS, "dvc.lock"}
    assert expected <= set(first)
    assert second == first
    assert (project.path / "models" / "model.pth").stat().st_size > 0


@pytest.mark.slow
def test_folds_trained_side_by_side_give_the_same_bytes_as_one_after_the_other(
    project: Project,
):
    """train.fold_workers = 2 (one thread each) against 1: same models, metrics, predictions."""
    hashes = {}
    for workers in (1, 2):
        params = project.read_params()
        params["train"].update(device="cpu", fold_workers=workers)
        project.write_params(params)
        project.run("dvc", "repro")
        hashes[workers] = {
            name: digest
            for name, digest in output_hashes(project).items()
            if name.startswith(("models/", "metrics/eval.json", "metrics/predictions.csv"))
        }
    assert "models/folds/f1.pth" in hashes[1]
    assert hashes[2] == hashes[1]
