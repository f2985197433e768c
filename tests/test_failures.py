"""Outputs are never half-written: atomic writes, interrupted training, recovery after a failure.

DVC deletes a stage's outputs before running it, so a failed stage leaves none; the
last good ones come back with `dvc checkout` (cached outs) and `git checkout -- metrics`
(the `cache: false` metrics, kept in git). These tests run exactly those commands.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import Project, reproduced_project

from finseq.atomic import atomic_path, write_json
from finseq.checkpoint import save_checkpoint


class WriterFailed(Exception):
    pass


def entries(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_a_failed_file_write_keeps_the_previous_file(tmp_path: Path):
    target = tmp_path / "eval.json"
    target.write_text("previous")
    with pytest.raises(WriterFailed), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise WriterFailed
    assert target.read_text() == "previous"
    assert entries(tmp_path) == ["eval.json"]


def test_a_failed_first_write_leaves_no_file(tmp_path: Path):
    target = tmp_path / "out" / "eval.json"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise KeyboardInterrupt
    assert entries(tmp_path / "out") == []


def test_a_failed_directory_write_keeps_the_previous_directory(tmp_path: Path):
    target = tmp_path / "prepared"
    target.mkdir()
    (target / "features.npy").write_text("previous")
    with pytest.raises(WriterFailed), atomic_path(target, directory=True) as temporary:
        (temporary / "features.npy").write_text("half")
        (temporary / "labels.npy").write_text("half")
        raise WriterFailed
    assert entries(tmp_path) == ["prepared"]
    assert entries(target) == ["features.npy"]
    assert (target / "features.npy").read_text() == "previous"


def test_a_successful_directory_write_replaces_the_whole_directory(tmp_path: Path):
    target = tmp_path / "windows"
    target.mkdir()
    (target / "stale.npy").write_text("old")
    with atomic_path(target, directory=True) as temporary:
        (temporary / "train.npy").write_text("new")
    assert entries(tmp_path) == ["windows"]
    assert entries(target) == ["train.npy"]
    assert target.stat().st_mode & 0o777 == 0o755


def test_a_successful_file_write_gets_ordinary_permissions(tmp_path: Path):
    write_json(tmp_path / "metrics.json", {"b": 1, "a": 2})
    assert (tmp_path / "metrics.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert entries(tmp_path) == ["metrics.json"]


def test_a_figure_that_is_not_a_number_is_written_as_json_null(tmp_path: Path):
    """NaN and Infinity are not JSON: a strict reader must be able to read every metrics file."""
    target = tmp_path / "eval.json"
    write_json(
        target, {"test": {"hit_rate": float("nan"), "sharpe": 0.5}, "bounds": [float("-inf"), 1]}
    )
    strict = json.loads(target.read_text(), parse_constant=lambda name: pytest.fail(name))
    assert strict == {"bounds": [None, 1], "test": {"hit_rate": None, "sharpe": 0.5}}


def test_a_checkpoint_that_fails_to_save_keeps_the_previous_model(tmp_path: Path):
    target = tmp_path / "model.pth"
    save_checkpoint({"weights": torch.ones(3)}, target)
    previous = target.read_bytes()
    with pytest.raises(AttributeError):  # a lambda cannot be pickled
        save_checkpoint({"weights": torch.zeros(3), "bad": lambda: None}, target)
    assert target.read_bytes() == previous
    assert entries(tmp_path) == ["model.pth"]


def snapshot(project: Project) -> dict[str, str]:
    """sha256 of every file in the working tree outside .git and .dvc."""
    return {
        str(path.relative_to(project.path)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(project.path.rglob("*"))
        if path.is_file() and path.relative_to(project.path).parts[0] not in (".git", ".dvc")
    }


@pytest.fixture(scope="module")
def reproduced(reproduced_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project whose pipeline ran and was committed: every output is in git or the cache."""
    return reproduced_project(reproduced_template, tmp_path_factory.mktemp("failures") / "repo")


@pytest.fixture
def committed(reproduced: Project) -> Project:
    """The shared project, checked to be exactly at its last commit before and after a test."""
    assert_at_last_commit(reproduced)
    yield reproduced
    assert_at_last_commit(reproduced)


def assert_at_last_commit(project: Project) -> None:
    assert project.run("git", "status", "--porcelain").stdout == ""
    assert "Data and pipelines are up to date" in project.run("dvc", "status").stdout


def make_training_long(project: Project, fold_workers: int = 1) -> None:
    """Enough epochs that training is still running when the signal arrives."""
    params = project.read_params()
    params["train"].update(epochs=100_000, patience=100_000, fold_workers=fold_workers)
    project.write_params(params)


def stop_training_mid_epoch(
    project: Project, stop: Callable[[subprocess.Popen], object]
) -> tuple[subprocess.CompletedProcess, float]:
    """Starts the train stage, calls `stop` on it once the first epoch is logged, and waits
    for it; returns the run and the seconds it took to end after `stop`."""
    process = subprocess.Popen(
        ["python", "-m", "finseq.stages.train"],
        cwd=project.path,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that started pytest in the background has SIGINT ignored, and a child
        # inherits that; the stage must see the signal as a user's Ctrl-C would send it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    watchdog = threading.Timer(180, process.kill)
    watchdog.start()
    try:
        head: list[str] = []
        while not head or " epoch " not in head[-1]:
            head.append(process.stdout.readline())
            assert head[-1], "".join(head) + process.stderr.read()
        stop(process)
        stopped = time.monotonic()
        stdout, stderr = process.communicate(timeout=60)
        ended_after = time.monotonic() - stopped
    finally:
        watchdog.cancel()
        process.kill()
    run = subprocess.CompletedProcess(
        process.args, process.returncode, "".join(head) + stdout, stderr
    )
    return run, ended_after


def interrupt_training(project: Project, signum: int) -> subprocess.CompletedProcess:
    """The train stage, sent `signum` once the first epoch is logged."""
    return stop_training_mid_epoch(project, lambda process: process.send_signal(signum))[0]


def processes_in(directory: Path) -> list[int]:
    """Process ids of whatever still runs with `directory` as its working directory."""
    running = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if entry.joinpath("cwd").resolve() == directory.resolve():
                running.append(int(entry.name))
        except OSError:
            continue
    return running


def assert_interrupted(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 130
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: interrupted; outputs of this stage were not written"
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "fold_workers"),
    [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGTERM, 2)],
    ids=["SIGINT", "SIGTERM", "SIGTERM-2-fold-workers"],
)
def test_interrupted_training_leaves_the_previous_outputs_untouched(
    committed, signum, fold_workers
):
    """With 2 fold workers, the stage also ends its workers: nothing is left running."""
    before = snapshot(committed)
    make_training_long(committed, fold_workers)
    try:
        assert_interrupted(interrupt_training(committed, signum))
        assert processes_in(committed.path) == []
        after = snapshot(committed)
    finally:
        committed.run("git", "checkout", "--", "params.yaml")
    del before["params.yaml"], after["params.yaml"]
    assert after == before


@pytest.mark.slow
def test_training_interrupted_after_dvc_removed_the_model_leaves_none_and_repro_recovers(
    committed,
):
    """As under `dvc repro`: the models are gone before training starts; after the
    interruption there is still none, and no temporary file; the next repro rebuilds
    the same bytes."""
    model = committed.path / "models" / "model.pth"
    original = model.read_bytes()
    model.unlink()
    shutil.rmtree(committed.path / "models" / "folds")
    make_training_long(committed)
    assert_interrupted(interrupt_training(committed, signal.SIGTERM))
    assert entries(model.parent) == [".gitignore"]
    assert [name for name in entries(committed.path / "metrics") if name.startswith(".")] == []
    committed.run("git", "checkout", "--", "params.yaml")
    repro = committed.run("dvc", "repro")
    assert "Running stage 'train'" in repro.stdout
    assert model.read_bytes() == original


@pytest.mark.slow
def test_after_a_failed_stage_dvc_checkout_and_git_checkout_restore_the_last_good_outputs(
    committed,
):
    model = committed.path / "models" / "model.pth"
    train_metrics = committed.path / "metrics" / "train" / "metrics.json"
    before = snapshot(committed)
    params = committed.read_params()
    params["model"]["type"] = "transformer"
    committed.write_params(params)

    failed = committed.run("dvc", "repro", check=False)
    assert failed.returncode != 0
    assert "error: model.type = 'transformer' is not allowed" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not model.exists()
    assert not train_metrics.exists()

    committed.run("dvc", "checkout")
    assert model.exists()
    committed.run("git", "checkout", "--", "metrics")
    after = snapshot(committed)
    committed.run("git", "checkout", "--", "params.yaml")
    del before["params.yaml"], after["params.yaml"]
    assert after == before
