"""The pull-request report: Markdown formatting on dicts, and the command on a real git history."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
from conftest import Project, make_project, reproduced_project

from finseq.report import (
    EvidenceSettings,
    LossCurves,
    ReportInputs,
    build_report,
    curves_section,
    eval_section,
    format_change,
    format_value,
    markdown_table,
    ordered_eval_keys,
    params_section,
    parse_curve,
    training_section,
    verdict_section,
)

EVAL_DIFF = {
    "val.loss": {"old": 1.11015, "new": 1.15107},
    "test.macro_f1": {"old": 0.3547, "new": 0.2388},
    "test.majority_accuracy": {"old": 0.42, "new": 0.42},
    "test.accuracy": {"old": 0.43, "new": 0.39},
    "test.prior_loss": {"old": 1.05128, "new": 1.05128},
    "test.loss": {"old": 1.08124, "new": 1.08296},
    "test.skill": {"old": -0.02849, "new": -0.03013},
    "test.samples": {"old": 100, "new": 100},
}
SUMMARY_DIFF = {
    "best_epoch": {"old": 2, "new": 3},
    "epochs_run": {"old": 7, "new": 3},
    "stopped_early": {"old": 1, "new": 0},
    "val.loss": {"old": 1.0383, "new": 1.0301},
    "train.loss": {"old": 1.0299, "new": 1.0102},
}


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every table row below a header, as stripped strings."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def test_values_are_formatted_for_a_table():
    assert format_value(1.0812361264510297) == "1.0812"
    assert format_value(100) == "100"
    assert format_value("gru") == "gru"
    assert format_value(None) == "—"
    assert format_value(True) == "true"
    assert format_value(["data/raw/a.csv", "data/raw/b.csv"]) == "data/raw/a.csv, data/raw/b.csv"


def test_changes_carry_their_sign_and_need_two_numbers():
    assert format_change(1.0812, 1.0830) == "+0.0018"
    assert format_change(-0.0285, -0.0301) == "-0.0016"
    assert format_change(7, 3) == "-4"
    assert format_change(0.42, 0.42) == "0"
    assert format_change(None, 1.0) == "—"
    assert format_change("lstm", "gru") == "—"


def test_markdown_table_escapes_pipes_in_cells():
    table = markdown_table(["a", "b"], [["x|y", "1"]])
    assert table.splitlines() == ["| a | b |", "| --- | --: |", "| x\\|y | 1 |"]


def test_params_section_lists_each_changed_parameter_with_both_values():
    diff = {
        "params.yaml": {
            "model.type": {"old": "lstm", "new": "gru"},
            "model.hidden_dim": {"old": 64, "new": 32},
        },
        "other.yaml": {"lr": {"old": 0.1, "new": None}},
    }
    section = params_section(diff, "main", "my-branch")
    assert "| parameter | main | my-branch |" in section
    assert table_rows(section) == [
        ["`other.yaml:lr`", "0.1000", "—"],
        ["`model.hidden_dim`", "64", "32"],
        ["`model.type`", "lstm", "gru"],
    ]


def test_params_section_says_so_when_nothing_changed():
    assert params_section({}, "main", "workspace").endswith("No parameter changed.")
    assert params_section({"params.yaml": {}}, "main", "workspace").endswith(
        "No parameter changed."
    )


def test_eval_keys_put_skill_first_and_each_baseline_beside_its_metric():
    ordered = ordered_eval_keys([*EVAL_DIFF, "test.brier"])
    assert ordered == [
        "test.skill",
        "test.loss",
        "test.prior_loss",
        "test.accuracy",
        "test.majority_accuracy",
        "test.macro_f1",
        "test.samples",
        "val.loss",
        "test.brier",
    ]


def test_eval_section_shows_old_new_and_change_and_marks_baselines():
    rows = table_rows(eval_section(EVAL_DIFF, "main", "gru"))
    assert rows[0] == ["test.skill", "-0.0285", "-0.0301", "-0.0016"]
    assert rows[1] == ["test.loss", "1.0812", "1.0830", "+0.0017"]
    assert rows[2] == ["test.prior_loss (baseline)", "1.0513", "1.0513", "0"]
    assert rows[4] == ["test.majority_accuracy (baseline)", "0.4200", "0.4200", "0"]


def test_training_section_names_the_stop_reason_and_best_epoch():
    rows = table_rows(training_section(SUMMARY_DIFF, "main", "gru"))
    assert rows[0] == ["best epoch (restored)", "2", "3", "+1"]
    assert rows[1] == ["epochs run", "7", "3", "-4"]
    assert rows[2] == ["stop reason", "early stopping", "epoch limit", "—"]
    assert rows[3] == ["val loss at best epoch", "1.0383", "1.0301", "-0.0082"]


def test_parse_curve_reads_dvclive_tsv():
    assert parse_curve("step\tloss\n1\t1.06\n2\t1.03\n") == {1: 1.06, 2: 1.03}
    assert parse_curve(None) == {}
    assert parse_curve("step\tloss\n") == {}


def test_curves_section_pairs_epochs_and_bolds_each_restored_epoch():
    base = LossCurves(train={1: 1.2, 2: 1.1, 3: 1.0}, val={1: 1.3, 2: 1.25, 3: 1.27})
    target = LossCurves(train={1: 1.15}, val={1: 1.2})
    section = curves_section(base, target, {"old": 2, "new": 1}, "main", "gru")
    assert "| epoch | main train | main val | gru train | gru val |" in section
    assert table_rows(section) == [
        ["1", "1.2000", "1.3000", "1.1500", "**1.2000**"],
        ["2", "1.1000", "**1.2500**", "—", "—"],
        ["3", "1.0000", "1.2700", "—", "—"],
    ]


def test_curves_section_without_curves_says_so():
    section = curves_section(LossCurves(), LossCurves(), {}, "main", "workspace")
    assert "No per-epoch loss curves" in section


def test_report_has_headline_then_params_metrics_training_and_curves():
    report = build_report(
        ReportInputs(
            base="main",
            target="gru",
            params_diff={"params.yaml": {"model.type": {"old": "lstm", "new": "gru"}}},
            metrics_diff={
                "metrics/eval.json": EVAL_DIFF,
                "metrics/train/metrics.json": SUMMARY_DIFF,
            },
            base_curves=LossCurves(train={1: 1.1}, val={1: 1.2}),
            target_curves=LossCurves(train={1: 1.0}, val={1: 1.1}),
            plots_page="plots/index.html",
        )
    )
    lines = report.splitlines()
    assert lines[0] == "# Model report: `gru` against `main`"
    assert lines[2] == (
        "**test.skill -0.0285 → -0.0301 (-0.0016); test.loss 1.0812 → 1.0830 (+0.0017)**"
    )
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == [
        "## Parameters",
        "## Evaluation (metrics/eval.json)",
        "## Training",
        "## Loss per epoch",
    ]
    assert "`plots/index.html`" in lines[-1]


def test_report_without_metrics_in_either_revision_still_renders():
    report = build_report(ReportInputs("main", "workspace", {}, {}, LossCurves(), LossCurves()))
    assert "No metrics/eval.json in either revision." in report
    assert "No metrics/train/metrics.json in either revision." in report


@pytest.fixture(scope="module")
def history(reproduced_template, tmp_path_factory) -> Project:
    """main at tiny default params (lstm), branch `gru` one commit ahead with model.type=gru."""
    project = reproduced_project(reproduced_template, tmp_path_factory.mktemp("report") / "repo")
    project.run("git", "checkout", "-q", "-b", "gru")
    params = project.read_params()
    params["model"]["type"] = "gru"
    project.write_params(params)
    project.run("dvc", "repro")
    project.commit("gru")
    project.run("git", "checkout", "-q", "main")
    return project


def committed_eval(project: Project, revision: str) -> dict:
    return json.loads(project.run("git", "show", f"{revision}:metrics/eval.json").stdout)


def report_command(project: Project, *args: str, check: bool = True):
    return project.run(sys.executable, "-m", "finseq.report", *args, check=check)


@pytest.mark.slow
def test_report_of_a_branch_shows_the_parameter_and_metric_changes(history):
    report_command(history, "--base", "main", "--target", "gru", "--out", "report.md")
    report = (history.path / "report.md").read_text()
    assert "| `model.type` | lstm | gru |" in report
    old, new = committed_eval(history, "main")["test"], committed_eval(history, "gru")["test"]
    assert old["loss"] != new["loss"]
    for name in ("skill", "loss"):
        row = (
            f"| test.{name} | {format_value(old[name])} | {format_value(new[name])} "
            f"| {format_change(old[name], new[name])} |"
        )
        assert row in report
    assert "| epoch | main train | main val | gru train | gru val |" in report


@pytest.mark.slow
def test_report_of_the_workspace_reads_its_files(history):
    history.run("git", "checkout", "-q", "gru")
    try:
        report = report_command(history).stdout
    finally:
        history.run("git", "checkout", "-q", "main")
    assert report.startswith("# Model report: `workspace` against `main`")
    assert "| `model.type` | lstm | gru |" in report
    old_skill = committed_eval(history, "main")["test"]["skill"]
    new_skill = committed_eval(history, "gru")["test"]["skill"]
    assert f"| test.skill | {format_value(old_skill)} | {format_value(new_skill)} |" in report


@pytest.mark.slow
def test_plots_dir_writes_the_offline_plots_diff_page(history):
    report_command(history, "--target", "gru", "--plots-dir", "pr-plots", "--out", "report.md")
    page = (history.path / "pr-plots" / "index.html").read_text()
    assert "cdn.jsdelivr" not in page
    assert '"rev": "gru"' in page
    assert '"rev": "main"' in page
    assert "`pr-plots/index.html`" in (history.path / "report.md").read_text()


@pytest.mark.slow
def test_an_unknown_revision_is_one_line_and_exit_2(history):
    result = report_command(history, "--base", "no-such-branch", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: dvc params diff: unknown Git revision 'no-such-branch'"
    )


def verdict_rows(report: str) -> dict[str, list[str]]:
    """The verdict table's rows by figure name."""
    section = report[report.index("## Verdicts") :]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]
    return {row[0]: row for row in cells[:4]}


@pytest.mark.slow
def test_a_branch_against_itself_reads_within_noise_with_zero_change(history):
    report = report_command(history, "--base", "main", "--target", "main").stdout
    rows = verdict_rows(report)
    assert set(rows) == {"skill", "loss", "accuracy", "sharpe"}
    for row in rows.values():
        assert row[3] == "0" and row[5] == "**within noise**", row
    assert "**Verdict: skill within noise, loss within noise, accuracy within noise, " in report
    assert "Paired window by window" in report


@pytest.mark.slow
def test_a_branch_gets_a_paired_interval_and_a_verdict_for_every_row(history):
    report = report_command(history, "--base", "main", "--target", "gru").stdout
    rows = verdict_rows(report)
    assert set(rows) == {"skill", "loss", "accuracy", "sharpe"}
    for row in rows.values():
        low, high = (float(x) for x in row[4].strip("[]").split(", "))
        assert low <= float(row[3]) <= high, row
        assert row[5] in ("**better**", "**worse**", "**within noise**")
    assert "Paired window by window" in report
    assert "a change of seed alone can read `better` or `worse`" in report


@pytest.mark.slow
def test_a_dvc_experiment_name_is_a_target(history):
    history.run("dvc", "exp", "run", "-n", "linear-exp", "-S", "model.type=linear")
    try:
        report = report_command(history, "--base", "main", "--target", "linear-exp").stdout
    finally:
        history.run("git", "checkout", "--", ".")
        history.run("dvc", "checkout", "-q")
    assert "| `model.type` | lstm | linear |" in report
    assert set(verdict_rows(report)) == {"skill", "loss", "accuracy", "sharpe"}


@pytest.mark.slow
def test_the_experiment_table_ranks_branches_and_experiments_on_val_loss(history):
    """main, the gru branch and two dvc exp runs (linear-exp, from the test above, and one
    more): ranked by pooled validation loss, the differing params only, within 100 columns."""
    if "linear-exp" not in history.run("dvc", "exp", "list", "--name-only").stdout.split():
        history.run("dvc", "exp", "run", "-n", "linear-exp", "-S", "model.type=linear")
    history.run("dvc", "exp", "run", "-n", "wider-exp", "-S", "model.hidden_dim=16")
    try:
        table = history.run(sys.executable, "-m", "finseq.experiments").stdout
        markdown = history.run(sys.executable, "-m", "finseq.experiments", "--markdown").stdout
    finally:
        history.run("git", "checkout", "--", ".")
        history.run("dvc", "checkout", "-q")
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split()[:3] == ["#", "experiment", "params"]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert {"workspace", "main", "gru", "linear-exp", "wider-exp"} <= set(rows)
    assert "type=gru" in rows["gru"] and "hidden_dim=16" in rows["wider-exp"]
    # Only params that differ: the untouched ones (e.g. epochs) are not shown.
    assert "epochs" not in table
    losses = []
    for name in ("main", "gru", "linear-exp", "wider-exp"):
        refs = history.run("git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout
        exp_ref = [ref for ref in refs.split() if ref.endswith(f"/{name}")]
        revision = exp_ref[0] if exp_ref else name
        metrics = json.loads(history.run("git", "show", f"{revision}:metrics/eval.json").stdout)
        losses.append((metrics["val"]["loss"], name))
        skill = metrics["test"]["skill"]
        assert f"{metrics['val']['loss']:.4f}" in rows[name]
        assert f"{skill:+.3f} [{metrics['test']['skill_low']:+.3f}" in rows[name]
    compared = {name for _, name in losses}
    order = [line.split()[1] for line in lines[1:] if line.split()[1] in compared]
    assert order == [name for _, name in sorted(losses)]
    assert (
        markdown.splitlines()[0]
        == "| # | experiment | params | val loss | test skill [95%] | Sharpe |"
    )


def test_a_base_without_predictions_is_said_in_one_line():
    settings = EvidenceSettings(0.0, False, 5, 3, 100, 0)
    text, line = verdict_section(None, pd.DataFrame(), settings, "old", "new")
    assert line == "No verdicts: `old` has no metrics/predictions.csv."
    assert "no verdicts" in text


@pytest.mark.slow
def test_two_runs_that_differ_only_in_their_seeds_read_within_noise(tmp_path):
    """With train.seeds = 3, the measured seed-to-seed spread widens every interval."""
    project = make_project(tmp_path / "repo")
    params = project.read_params()
    # Holdout: 3 models per run rather than 10; the seed spread is what is under test.
    params["train"]["seeds"] = 3
    params["split"]["method"] = "holdout"
    project.write_params(params)
    project.run("dvc", "repro")
    project.commit("seeds 42-44")
    project.run("git", "checkout", "-q", "-b", "other-seeds")
    params["train"]["seed"] = 7
    project.write_params(params)
    project.run("dvc", "repro")
    project.commit("seeds 7-9")
    report = report_command(project, "--base", "main", "--target", "other-seeds").stdout
    assert "widened by the measured seed-to-seed spread" in report
    for row in verdict_rows(report).values():
        assert row[5] == "**within noise**", report
