"""Beyond one process and one machine, with the real engines: `dvc exp run -S
train.processes=2` (torch.distributed ranks), torchrun across two nodes, a rank killed
mid-epoch, and a sweep shared by two worker clones and a reviewer through a Git remote and a
DVC remote."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import Project, make_project, tiny_params_dict
from test_failures import processes_in, snapshot, stop_training_mid_epoch

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def fold_models(project: Project) -> dict[str, Path]:
    return {path.name: path for path in sorted((project.path / "models" / "folds").glob("*.pth"))}


def best_val_losses(project: Project) -> dict[str, float]:
    """metrics/train/metrics.json's best-epoch val loss of models/model.pth and each fold."""
    summary = json.loads((project.path / "metrics" / "train" / "metrics.json").read_text())
    losses = {"model": summary["val"]["loss"]}
    losses |= {fold: values["val"]["loss"] for fold, values in summary["folds"].items()}
    return losses


def set_params(project: Project, **sections: dict) -> None:
    params = project.read_params()
    for section, values in sections.items():
        params[section].update(values)
    project.write_params(params)


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory) -> dict:
    """One tiny walk-forward project trained by one process (`dvc repro train`), then by two
    ranks (`dvc exp run -S train.processes=2 train`), then by torchrun on two one-process
    nodes."""
    # One walk-forward fold and the final refit: two models trained one after another.
    params = tiny_params_dict(
        split={"folds": 1}, model={"dropout": 0.0}, train={"precision": "fp32", "epochs": 2}
    )
    project = make_project(tmp_path_factory.mktemp("ddp") / "repo", params)
    # Up to the train stage only: nothing here reads what evaluate writes.
    project.run("dvc", "repro", "train")
    project.commit("one process")
    one = tmp_path_factory.mktemp("one-process")
    shutil.copytree(project.path / "models", one / "models")
    shutil.copytree(project.path / "metrics", one / "metrics")
    one_project = Project(one, project.env)

    exp = project.run("dvc", "exp", "run", "-S", "train.processes=2", "train")
    assert "Running stage 'train'" in exp.stdout
    two = tmp_path_factory.mktemp("two-ranks")
    shutil.copytree(project.path / "models", two / "models")
    shutil.copytree(project.path / "metrics", two / "metrics")

    # Two machines stand-in: two torchrun agents, one process each, meeting at a c10d
    # rendezvous on 127.0.0.1; the params are the experiment's (train.processes = 2).
    shutil.rmtree(project.path / "models" / "folds")
    (project.path / "models" / "model.pth").unlink()
    port = 29_400 + os.getpid() % 500
    command = [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=finseq-test",
        "-m",
        "finseq.stages.train",
    ]
    nodes = [
        subprocess.Popen(
            command,
            cwd=project.path,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    return {
        "project": project,
        "one": one_project,
        "two": Project(two, project.env),
        "torchrun": outputs,
    }


def test_two_ranks_train_the_weights_and_val_losses_of_one_process(distributed_runs):
    """fp32, dropout 0, 2 epochs: every fold's model and its best val loss within 1e-5."""
    one, two = distributed_runs["one"], distributed_runs["two"]
    assert set(fold_models(two)) == set(fold_models(one)) == {"f1.pth", "final.pth"}
    for name, path in fold_models(one).items():
        first, second = load_checkpoint(path), load_checkpoint(fold_models(two)[name])
        assert (first["training"]["world_size"], second["training"]["world_size"]) == (1, 2)
        assert second["params"]["train"]["processes"] == 2
        for key, weight in first["state_dict"].items():
            torch.testing.assert_close(
                second["state_dict"][key], weight, rtol=0, atol=TOLERANCE, msg=f"{name} {key}"
            )
    losses_one, losses_two = best_val_losses(one), best_val_losses(two)
    assert set(losses_two) == set(losses_one) == {"model", "f1"}
    for fold, loss in losses_one.items():
        assert abs(losses_two[fold] - loss) <= TOLERANCE, fold


def test_only_rank_zero_logs_and_the_curves_are_one_runs(distributed_runs):
    two = distributed_runs["two"].path
    loss_curve = two / "metrics" / "train" / "plots" / "metrics" / "val" / "loss.tsv"
    assert len(loss_curve.read_text().strip().splitlines()) == 1 + 2  # header + 2 epochs
    curves = (two / "metrics" / "train" / "folds" / "curves.tsv").read_text()
    assert len(curves.strip().splitlines()) == 1 + 2 * 2


def test_torchrun_across_two_nodes_gives_the_bytes_of_two_processes_on_one(distributed_runs):
    project, two = distributed_runs["project"], distributed_runs["two"]
    assert "epoch   2" in "".join(distributed_runs["torchrun"])
    for name, path in fold_models(two).items():
        assert (project.path / "models" / "folds" / name).read_bytes() == path.read_bytes()
    model = project.path / "models" / "model.pth"
    assert model.read_bytes() == (two.path / "models" / "model.pth").read_bytes()


def test_a_rank_killed_mid_epoch_ends_the_stage_with_one_line_and_no_output(
    distributed_runs,
):
    project = distributed_runs["project"]
    project.run("dvc", "checkout", "--force")
    before = snapshot(project)
    set_params(project, train={"processes": 2, "epochs": 100_000, "patience": 100_000})
    killed: list[int] = []
    try:
        run, ended_within = stop_training_mid_epoch(
            project, lambda stage: killed.append(kill_rank(stage.pid, rank=1))
        )
    finally:
        project.run("git", "checkout", "--", "params.yaml")
    stderr = run.stderr
    assert ended_within < 60
    assert run.returncode == 2
    assert stderr.strip().splitlines() == [
        "error: training rank 1 was ended by SIGKILL; every rank stopped and no output of "
        "this stage was written"
    ], stderr
    assert killed and killed[0] not in processes_in(project.path)
    assert processes_in(project.path) == []
    after = snapshot(project)
    del before["params.yaml"], after["params.yaml"]
    assert after == before  # nothing written, and no temporary file left beside an output


def kill_rank(launcher: int, rank: int) -> int:
    """SIGKILLs the launcher's child whose RANK is `rank`; returns its pid."""
    children = subprocess.run(
        ["pgrep", "-P", str(launcher)], capture_output=True, text=True
    ).stdout.split()
    for child in children:
        environment = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environment:
            os.kill(int(child), signal.SIGKILL)
            return int(child)
    raise AssertionError(f"no child of {launcher} has RANK={rank}: {children}")


def clone(origin: Path, directory: Path, env: dict[str, str]) -> Project:
    subprocess.run(
        ["git", "clone", "-q", str(origin), str(directory)], env=env, check=True, timeout=60
    )
    return Project(directory, {**env, "PYTHONPATH": str(directory / "src")})


def wait_for_queue(project: Project, timeout: float = 600) -> str:
    """Polls `dvc queue status` until nothing is queued or running; returns the last status.

    Every 4 s: each `dvc queue status` is a DVC process of over a second of CPU, which a
    tighter loop would take from the experiments it waits for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = project.run("dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(4)
    raise AssertionError(f"the queue did not finish within {timeout} s:\n{status}")


VAL_LOSS = "metrics/eval.json:val.loss"


def ranked_on_val_loss(project: Project) -> list[dict[str, str]]:
    """The experiments of `dvc exp show`, best validation loss first (never test: see
    docs/reviewing.md)."""
    shown = project.run(
        "dvc",
        "exp",
        "show",
        "--csv",
        "--sort-by",
        VAL_LOSS,
        "--sort-order",
        "asc",
        "--drop",
        ".*",
        "--keep",
        r"Experiment|typ|metrics/eval\.json:val\.loss|model\.type",
    ).stdout
    rows = csv.DictReader(io.StringIO(shown))
    return [row for row in rows if row["typ"].startswith("branch_")]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_sweep_shared_by_two_workers_is_ranked_and_its_winner_pulled(tmp_path):
    """The commands of docs/scale.md: two clones each queue and run their part of a grid, push
    it with `dvc exp push origin` (models to the DVC remote); a third pulls every experiment,
    ranks them on validation loss, branches the winner and `dvc pull`s its model from the
    DVC remote."""
    params = tiny_params_dict(split={"method": "holdout"})
    seed = make_project(tmp_path / "seed", params)
    origin, storage = tmp_path / "origin.git", tmp_path / "dvc-storage"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    seed.run("dvc", "remote", "add", "-d", "storage", str(storage))
    seed.commit("a DVC remote")
    seed.run("git", "remote", "add", "origin", str(origin))
    seed.run("git", "push", "-q", "origin", "main")

    # Worker A runs a two-point grid with two queue workers, worker B one experiment.
    grid = {"worker-a": ["-S", "model.type=linear,gru"], "worker-b": ["-S", "train.seed=1"]}
    for name, assignments in grid.items():
        worker = clone(origin, tmp_path / name, seed.env)
        worker.run("dvc", "exp", "run", "--queue", *assignments)
        worker.run("dvc", "queue", "start", "-j", "2")
        status = wait_for_queue(worker)
        assert status.count("Success") == len(assignments[1].split(",")), status
        worker.run("dvc", "exp", "push", "origin")

    reviewer = clone(origin, tmp_path / "reviewer", seed.env)
    reviewer.run("dvc", "exp", "pull", "--no-cache", "origin")
    rows = ranked_on_val_loss(reviewer)
    assert sorted(row["model.type"] for row in rows) == ["gru", "linear", "lstm"], rows
    losses = [float(row[VAL_LOSS]) for row in rows]
    assert losses == sorted(losses)
    for data in experiments_by_name(reviewer).values():
        test = data["metrics"]["metrics/eval.json"]["data"]["test"]
        assert test["skill"] == pytest.approx(1 - test["loss"] / test["prior_loss"])

    winner = rows[0]
    reviewer.run("dvc", "exp", "branch", winner["Experiment"], "winner")
    reviewer.run("git", "checkout", "-q", "winner")
    assert f"type: {winner['model.type']}" in (reviewer.path / "params.yaml").read_text()
    model = reviewer.path / "models" / "model.pth"
    assert not model.exists() and not (reviewer.path / ".dvc" / "cache").exists()
    reviewer.run("dvc", "pull", "models/model.pth")  # from the DVC remote: no cache before
    assert load_checkpoint(model)["model_config"]["type"] == winner["model.type"]
    assert f"md5: {md5(model)}" in (reviewer.path / "dvc.lock").read_text()


def experiments_by_name(project: Project) -> dict[str, dict]:
    """`dvc exp show --json` → experiment name → its data (params and metrics)."""
    found = {}
    for row in json.loads(project.run("dvc", "exp", "show", "--json").stdout):
        for experiment in row.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                found[experiment["name"]] = revision["data"]
    return found
