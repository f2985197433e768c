"""A grid queued with `dvc exp run --queue`, run by the queue's workers, ranked, and promoted."""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import Project, make_project

pytestmark = pytest.mark.slow

SKILL = "metrics/eval.json:test.skill"


def experiments_by_name(shown: list[dict]) -> dict[str, dict]:
    """`dvc exp show --json` rows → experiment name → its data (params and metrics)."""
    found = {}
    for row in shown:
        for experiment in row.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                found[experiment["name"]] = revision["data"]
    return found


def ranked_rows(project: Project) -> list[dict[str, str]]:
    """The experiments of `dvc exp show --csv`, in the order the sort put them."""
    output = project.run(
        "dvc",
        "exp",
        "show",
        "--csv",
        "--sort-by",
        SKILL,
        "--sort-order",
        "desc",
        "--drop",
        ".*",
        "--keep",
        r"Experiment|typ|test\.skill|model\.type",
    ).stdout
    return [row for row in csv.DictReader(io.StringIO(output)) if row["typ"].startswith("branch_")]


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Project:
    project = make_project(tmp_path_factory.mktemp("sweep") / "repo")
    # One holdout fold per experiment, not four walk-forward models: the queue is under test.
    params = project.read_params()
    params["split"]["method"] = "holdout"
    project.write_params(params)
    project.run("dvc", "repro")
    project.commit("lstm baseline")
    # A different seed, so neither experiment is the committed baseline itself.
    project.run("dvc", "exp", "run", "--queue", "-S", "model.type=lstm,gru", "-S", "train.seed=1")
    queued = project.run("dvc", "queue", "status").stdout
    assert queued.count("Queued") == 2, queued
    try:
        project.run("dvc", "exp", "run", "--run-all", "-j", "2", timeout=900)
    finally:
        project.run("dvc", "queue", "stop", check=False)
    return project


def test_both_queued_experiments_ran_and_have_metrics(swept):
    status = swept.run("dvc", "queue", "status").stdout
    assert status.count("Success") == 2, status
    experiments = experiments_by_name(json.loads(swept.run("dvc", "exp", "show", "--json").stdout))
    types = {}
    for name, data in experiments.items():
        params = data["params"]["params.yaml"]["data"]
        assert params["train"]["seed"] == 1
        test_metrics = data["metrics"]["metrics/eval.json"]["data"]["test"]
        assert test_metrics["skill"] == pytest.approx(
            1 - test_metrics["loss"] / test_metrics["prior_loss"]
        )
        types[params["model"]["type"]] = name
    assert set(types) == {"lstm", "gru"}, experiments


def test_exp_show_ranks_the_experiments_by_test_skill(swept):
    rows = ranked_rows(swept)
    assert {row["model.type"] for row in rows} == {"lstm", "gru"}
    skills = [float(row["test.skill"]) for row in rows]
    assert skills == sorted(skills, reverse=True)


def test_exp_branch_promotes_the_winner_to_a_git_branch(swept):
    winner = ranked_rows(swept)[0]
    swept.run("dvc", "exp", "branch", winner["Experiment"], "winner")
    params = swept.run("git", "show", "winner:params.yaml").stdout
    assert f"type: {winner['model.type']}" in params
    metrics = json.loads(swept.run("git", "show", "winner:metrics/eval.json").stdout)
    assert metrics["test"]["skill"] == pytest.approx(float(winner["test.skill"]))
