"""Same params and data, same bytes: a forced `dvc repro -f` on CPU gives the outputs of the
first run, byte for byte."""

from __future__ import annotations

import hashlib

import pytest
import torch
from conftest import (
    PIPELINE_OUTPUTS,
    PIPELINE_STAGES,
    Project,
    project_at,
    reproduced_project,
)

from finseq.params import parse_params
from finseq.runtime import resolve_fold_workers

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
def test_a_forced_rerun_gives_the_bytes_of_the_first_run(reproduced_template, tmp_path):
    """The session's tiny project, reproduced from nothing on the CPU (tiny params set
    train.device = cpu), then every stage of a copy forced to run again in another
    directory: every output and dvc.lock, byte for byte."""
    first = output_hashes(project_at(reproduced_template))
    project = reproduced_project(reproduced_template, tmp_path / "repo")
    assert project.read_params()["train"]["device"] == "cpu"
    output = project.run("dvc", "repro", "-f").stdout
    assert output.count("Running stage") == len(PIPELINE_STAGES), output
    second = output_hashes(project)
    expected = {*PIPELINE_OUTPUTS, "dvc.lock"}
    assert expected <= set(first)
    assert second == first
    assert (project.path / "models" / "model.pth").stat().st_size > 0


@pytest.mark.slow
def test_folds_trained_side_by_side_give_the_same_bytes_as_one_after_the_other(
    reproduced_template, tmp_path
):
    """The session's tiny project trained its folds one after another (threads = 1 makes
    fold_workers auto mean 1); a copy's train stage forced to run again with
    train.fold_workers = 2 (one thread each) writes the same model bytes. fold_workers is no
    param of the stage (it changes the speed only), so only a forced run retrains."""
    first = output_hashes(project_at(reproduced_template))
    project = reproduced_project(reproduced_template, tmp_path / "repo")
    params = project.read_params()
    params["train"]["fold_workers"] = 2
    project.write_params(params)
    assert resolve_fold_workers(parse_params(params).train, 4, torch.device("cpu")) == 2
    assert "Running stage 'train'" in project.run("dvc", "repro", "-f", "-s", "train").stdout
    second = output_hashes(project)
    models = {name for name in first if name.startswith("models/")}
    assert {"models/model.pth", "models/folds/f1.pth", "models/folds/final.pth"} <= models
    assert {name: second[name] for name in models} == {name: first[name] for name in models}
    assert "up to date" in project.run("dvc", "status").stdout
