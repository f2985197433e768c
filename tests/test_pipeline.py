"""End to end on tiny params: real `dvc repro`, `dvc exp run -S`, `exp show`, `metrics diff`."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import (
    PIPELINE_OUTPUTS,
    PIPELINE_STAGES,
    TINY_OVERRIDES,
    Project,
    reproduced_project,
    template_repro_output,
)

from finseq.crosssection import not_enough_series

pytestmark = pytest.mark.slow

EVAL_KEYS = {
    "samples",
    "loss",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "prior_loss",
    "majority_accuracy",
    "skill",
    "move_loss",
    "move_prior_loss",
    "move_skill",
    "direction_samples",
    "direction_loss",
    "direction_prior_loss",
    "direction_skill",
}
HEADLINE = (
    "skill",
    "move_skill",
    "direction_skill",
    "accuracy_gain",
    "balanced_accuracy",
    "sharpe",
    "annual_return",
)
EVIDENCE_KEYS = {
    *(f"{name}{end}" for name in HEADLINE for end in ("", "_low", "_high")),
    "skill_p",
    "annual_volatility",
    "max_drawdown",
    "turnover",
    "traded_hit_rate",
    "traded_ic",
    "label_hit_rate",
    "label_ic",
    "gross_sharpe",
    "gross_annual_return",
    *(f"buy_hold_{name}" for name in ("annual_return", "annual_volatility", "sharpe")),
    "buy_hold_max_drawdown",
}


@pytest.fixture(scope="module")
def reproduced(reproduced_template, tmp_path_factory) -> tuple[Project, str]:
    """A copy of the session's tiny project, reproduced from nothing by `dvc repro` (which
    left dvc.yaml as it was), and what that `dvc repro` printed."""
    project = reproduced_project(reproduced_template, tmp_path_factory.mktemp("pipeline") / "repo")
    return project, template_repro_output(reproduced_template)


def test_repro_runs_every_stage_and_writes_every_output(reproduced):
    project, output = reproduced
    for stage in PIPELINE_STAGES:
        assert f"Running stage '{stage}'" in output
    for path in PIPELINE_OUTPUTS:
        assert (project.path / path).is_file(), path


def test_a_second_repro_has_nothing_to_do(reproduced):
    project, _ = reproduced
    output = project.run("dvc", "repro").stdout
    assert "Running stage" not in output
    assert "Data and pipelines are up to date" in output
    assert "up to date" in project.run("dvc", "status").stdout


def test_metrics_show_lists_model_metrics_and_baselines_for_val_and_test(reproduced):
    project, _ = reproduced
    shown = json.loads(project.run("dvc", "metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    evaluation = files["metrics/eval.json"]["data"]
    assert set(evaluation["val"]) == EVAL_KEYS
    assert set(evaluation["test"]) >= EVAL_KEYS | EVIDENCE_KEYS
    # Two series: the cross-section is a string, which DVC shows as it is.
    assert evaluation["test"]["cs_status"] == not_enough_series()
    for name in HEADLINE:
        test = evaluation["test"]
        assert test[f"{name}_low"] <= test[name] <= test[f"{name}_high"], name
    for split in ("val", "test"):
        metrics = evaluation[split]
        assert metrics["skill"] == pytest.approx(1 - metrics["loss"] / metrics["prior_loss"])
        correct = metrics["accuracy"] * metrics["samples"]  # a share of whole windows
        assert correct == pytest.approx(round(correct), abs=1e-6) and correct > 0
    summary = files["metrics/train/metrics.json"]["data"]
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"] <= 2
    assert set(summary["val"]) == {"loss", "accuracy"}


def test_per_epoch_curves_have_one_row_per_epoch(reproduced):
    project, _ = reproduced
    epochs = json.loads((project.path / "metrics/train/metrics.json").read_text())["epochs_run"]
    for name in ("train/loss", "val/loss", "val/accuracy", "learning_rate"):
        lines = (project.path / f"metrics/train/plots/metrics/{name}.tsv").read_text().splitlines()
        assert len(lines) == 1 + epochs, name
        assert [int(line.split("\t")[0]) for line in lines[1:]] == list(range(1, epochs + 1))


def test_plots_are_the_hand_written_ones_without_duplicates(reproduced):
    project, _ = reproduced
    shown = json.loads(project.run("dvc", "plots", "show", "--json").stdout)["data"]
    assert all(len(renderers) == 1 for renderers in shown.values())
    plot_ids = sorted(shown)
    assert plot_ids == sorted(
        [
            "Loss per epoch",
            "Validation accuracy per epoch",
            "Learning rate",
            "Validation loss per epoch, by fold",
            "metrics/confusion_test.csv",
            "metrics/equity.csv",
            "metrics/reliability.csv",
        ]
    ), plot_ids
    by_fold = shown["Validation loss per epoch, by fold"][0]
    folds = {row["fold"] for row in by_fold["content"]["data"]["values"]}
    n_folds = TINY_OVERRIDES["split"]["folds"]
    assert folds == {f"f{number}" for number in range(1, n_folds + 1)} | {"final"}


def test_model_is_a_weights_only_checkpoint_with_what_is_needed_to_use_it(reproduced):
    project, _ = reproduced
    checkpoint = torch.load(project.path / "models/model.pth", weights_only=True)
    assert checkpoint["model_config"]["type"] == "lstm"
    assert len(checkpoint["feature_names"]) == 23 == checkpoint["n_features"]
    assert checkpoint["scaler_mean"].shape == (23,)
    assert checkpoint["class_labels"] == [-1, 0, 1]
    assert checkpoint["seq_len"] == 8
    lock = (project.path / "dvc.lock").read_text()
    assert "models/model.pth" in lock
    assert "/model.pth" in (project.path / "models/.gitignore").read_text()


@pytest.fixture
def workspace_restored(reproduced):
    """`dvc exp run` leaves the experiment's params and outputs in the workspace: put the
    last commit's back, so that the other tests of this module, in any order, see it."""
    project, _ = reproduced
    yield
    project.run("git", "checkout", "--", ".")
    project.run("dvc", "checkout", "--force")
    assert project.run("git", "status", "--porcelain", "--untracked-files=no").stdout == ""


def test_exp_run_switches_to_gru_and_shows_up_in_exp_show_and_metrics_diff(
    reproduced, workspace_restored
):
    project, _ = reproduced
    output = project.run("dvc", "exp", "run", "-S", "model.type=gru").stdout
    assert "Running stage 'train'" in output
    assert "Running stage 'prepare'" not in output
    shown = json.loads(project.run("dvc", "exp", "show", "--json").stdout)
    experiments = [
        exp for row in shown for exp in (row.get("experiments") or []) if exp.get("revs")
    ]
    gru_runs = [
        rev["data"]
        for exp in experiments
        for rev in exp["revs"]
        if rev["data"]["params"]["params.yaml"]["data"]["model"]["type"] == "gru"
    ]
    assert gru_runs, shown
    evaluation = gru_runs[0]["metrics"]["metrics/eval.json"]["data"]
    assert set(evaluation["test"]) >= EVAL_KEYS | EVIDENCE_KEYS

    diff = json.loads(project.run("dvc", "metrics", "diff", "HEAD", "--json").stdout)
    changed = diff["metrics/eval.json"]
    assert "test.skill" in changed
    assert changed["test.loss"]["old"] != changed["test.loss"]["new"]
    params = json.loads(project.run("dvc", "params", "diff", "HEAD", "--json").stdout)
    assert params["params.yaml"]["model.type"] == {"old": "lstm", "new": "gru"}
