"""Sharing through a DVC remote: push, a fresh clone, pull; the clone has the same bytes and
nothing left to run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import Project, reproduced_project

PULLED_OUTPUTS = ("models", "data/prepared", "data/windows")


def output_hashes(project: Project) -> dict[str, str]:
    hashes = {}
    for name in PULLED_OUTPUTS:
        for path in sorted((project.path / name).rglob("*")):
            if path.is_file() and path.name != ".gitignore":
                relative = str(path.relative_to(project.path))
                hashes[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@pytest.mark.slow
def test_push_clone_pull_restores_every_output_and_leaves_nothing_to_run(
    reproduced_template: Path, tmp_path: Path
):
    origin = reproduced_project(reproduced_template, tmp_path / "origin")
    remote = tmp_path / "remote"
    origin.run("dvc", "remote", "add", "-d", "store", str(remote))
    origin.commit("a remote")
    origin.run("dvc", "push")
    originals = output_hashes(origin)
    assert {"models/model.pth", "data/prepared/meta.json", "data/windows/f1_train.npy"} <= set(
        originals
    )

    clone_path = tmp_path / "clone"
    origin.run("git", "clone", "-q", str(origin.path), str(clone_path))
    clone = Project(path=clone_path, env={**origin.env, "PYTHONPATH": str(clone_path / "src")})
    assert not (clone_path / "models" / "model.pth").exists()
    clone.run("dvc", "pull")

    assert output_hashes(clone) == originals
    assert "Data and pipelines are up to date" in clone.run("dvc", "status").stdout
    repro = clone.run("dvc", "repro")
    assert "Running stage" not in repro.stdout
    assert "Data and pipelines are up to date" in repro.stdout
    assert clone.run("git", "status", "--porcelain").stdout == ""
