"""The pull-request report: Markdown formatting on dicts, and the command on a real git history."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, Project, make_project, reproduced_project, tiny_params_dict
from scipy import stats

from finseq.errors import DataError
from finseq.evidence import daily_totals
from finseq.markdown import format_change, format_value, markdown_table
from finseq.params import parse_params
from finseq.report import in_path_order, paired_metrics, parse_curve
from finseq.report_sections import (
    LossCurves,
    ReportInputs,
    all_metrics_section,
    build_report,
    curves_section,
    fold_section,
    headline,
    params_section,
    training_section,
)
from finseq.verdicts import (
    EvidenceSettings,
    knowledge_section,
    training_noise,
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
    "folds.f10.first_date": {"old": "2012-01-03", "new": "2012-01-03"},
    "folds.f10.last_date": {"old": "2013-10-02", "new": "2013-10-02"},
    "folds.f10.skill": {"old": 0.0235, "new": None},
    "folds.f10.loss": {"old": 1.0710, "new": None},
    "folds.f2.first_date": {"old": "2005-01-04", "new": "2005-01-04"},
    "folds.f2.last_date": {"old": "2006-10-04", "new": "2006-10-04"},
    "folds.f2.skill": {"old": -0.0112, "new": 0.0331},
    "folds.f2.loss": {"old": 1.1148, "new": 1.0487},
    "folds.f3.first_date": {"old": "2006-10-05", "new": "2006-10-06"},
    "folds.f3.last_date": {"old": "2008-07-03", "new": "2008-07-03"},
    "folds.f3.skill": {"old": 0.0286, "new": 0.0286},
}
SUMMARY_DIFF = {
    "best_epoch": {"old": 2, "new": 3},
    "epochs_run": {"old": 7, "new": 3},
    "stopped_early": {"old": 1, "new": 0},
    "val.loss": {"old": 1.0383, "new": 1.0301},
    "train.loss": {"old": 1.0299, "new": 1.0102},
}
# What `dvc params diff main gru --md` and `dvc metrics diff main gru --all --md` print
# (dvc 3): GitHub Markdown, padded, then a blank line; with no change, the header alone.
PARAMS_MD = """| Path        | Param      | main   | gru   |
|-------------|------------|--------|-------|
| params.yaml | model.type | lstm   | gru   |

"""
NO_PARAMS_MD = """| Path   | Param   | main   | workspace   |
|--------|---------|--------|-------------|

"""
METRICS_MD = """| Path              | Metric          | main     | gru      | Change   |
|-------------------|-----------------|----------|----------|----------|
| metrics/eval.json | folds.f2.skill  | -0.0112  | 0.0331   | 0.0443   |
| metrics/eval.json | test.skill      | -0.02849 | -0.03013 | -0.00164 |

"""


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every table row below a header, as stripped strings."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def header_cells(markdown: str) -> list[str]:
    """The cells of the first table's header row."""
    line = next(line for line in markdown.splitlines() if line.startswith("|"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


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


def test_the_shared_markdown_table_escapes_pipes_in_cells():
    """The report's own tables are written by finseq.markdown, the package's one writer."""
    table = markdown_table(["a", "b"], [["x|y", "1"]])
    assert table.splitlines() == ["| a    |   b |", "| ---- | --: |", "| x\\|y |   1 |"]


def test_params_section_is_dvcs_own_table():
    section = params_section(PARAMS_MD)
    assert section == "## Parameters\n\n" + PARAMS_MD.strip()
    assert table_rows(section) == [["params.yaml", "model.type", "lstm", "gru"]]


def test_params_section_says_so_when_nothing_changed():
    assert params_section(NO_PARAMS_MD) == "## Parameters\n\nNo parameter changed."
    assert params_section("") == "## Parameters\n\nNo parameter changed."


def test_all_metrics_are_dvcs_table_folded_in_a_details_block():
    section = all_metrics_section(METRICS_MD)
    lines = section.splitlines()
    # GitHub renders the table inside <details> only after a blank line.
    assert lines[:2] == ["<details><summary>All metrics (dvc metrics diff)</summary>", ""]
    assert lines[-2:] == ["", "</details>"]
    assert "\n".join(lines[2:-2]) == METRICS_MD.strip()
    empty = "| Path | Metric | main | workspace | Change |\n|---|---|---|---|---|\n"
    assert all_metrics_section(empty) == "No metrics in either revision (`dvc metrics diff`)."


def test_dvcs_tables_get_their_files_in_path_order_and_keep_each_files_rows():
    shuffled = """| Path                       | Metric     | main   | gru   | Change   |
|----------------------------|------------|--------|-------|----------|
| metrics/train/metrics.json | epochs_run | 2      | 3     | 1        |
| metrics/train/metrics.json | best_epoch | 2      | 2     | 0        |
| metrics/eval.json          | val.loss   | 1.1    | 1.0   | -0.1     |
| metrics/eval.json          | test.loss  | 1.2    | 1.1   | -0.1     |

"""
    lines = shuffled.strip().splitlines()
    assert in_path_order(shuffled).splitlines() == [*lines[:2], *lines[4:6], *lines[2:4]]
    assert in_path_order(in_path_order(shuffled)) == in_path_order(shuffled)
    assert in_path_order(NO_PARAMS_MD).strip() == NO_PARAMS_MD.strip()


def test_a_line_without_cells_sorts_first_and_a_path_is_sorted_whole():
    """Rows sort on the whole path cell (with its spaces), stably; a line without cells
    (none of dvc's, but not to be lost) sorts before every path."""
    table = "| Path | x |\n|---|---|\n| z q | 1 |\n| z | 2 |\nnote\n| A | 3 |\n"
    assert in_path_order(table).splitlines()[2:] == [
        "note",
        "| A | 3 |",
        "| z | 2 |",
        "| z q | 1 |",
    ]


def test_metrics_of_two_revisions_are_paired_key_by_key():
    base = {"metrics/eval.json": {"test": {"skill": 0.01, "loss": 1.07}, "model_md5": "a"}}
    target = {
        "metrics/eval.json": {"test": {"skill": 0.02}, "folds": {"f1": {"skill": 0.03}}},
        "metrics/train/metrics.json": {"best_epoch": 3},
    }
    assert paired_metrics(base, target) == {
        "metrics/eval.json": {
            "test.skill": {"old": 0.01, "new": 0.02},
            "test.loss": {"old": 1.07, "new": None},
            "model_md5": {"old": "a", "new": None},
            "folds.f1.skill": {"old": None, "new": 0.03},
        },
        "metrics/train/metrics.json": {"best_epoch": {"old": None, "new": 3}},
    }
    assert paired_metrics({}, {}) == {}


def test_fold_section_has_one_row_per_fold_with_its_period_and_skill():
    section = fold_section(EVAL_DIFF, "main", "gru")
    assert header_cells(section) == ["fold", "test block", "main skill", "gru skill", "change"]
    assert table_rows(section) == [
        ["f2", "2005-01-04 to 2006-10-04", "-0.0112", "0.0331", "+0.0443"],
        ["f3", "2006-10-05 to 2008-07-03 → 2006-10-06 to 2008-07-03", "0.0286", "0.0286", "0"],
        ["f10", "2012-01-03 to 2013-10-02", "0.0235", "—", "—"],
    ]
    assert section.split("\n\n")[1] == (
        "Test skill of each fold's test block (`skill = 1 - loss / prior_loss`: above 0 only "
        "when the model knows more than its training class balance). Every figure of every "
        "fold is under *All metrics*."
    )


def test_a_fold_without_a_number_dates_or_skill_still_gets_its_row_last():
    """A fold named without a number sorts after f10; a fold without dates reads —, one with
    a date on one side only its other side's period, one without skill — for its skill."""
    partial = {
        **EVAL_DIFF,
        "folds.final.skill": {"old": 0.01, "new": 0.02},
        "folds.f4.first_date": {"old": "2009-01-02", "new": "2009-01-02"},
        "folds.f4.last_date": {"old": None, "new": "2010-01-04"},
        "folds.f5.first_date": {"old": "2011-01-03", "new": None},
        "folds.f5.last_date": {"old": "2011-12-30", "new": None},
    }
    rows = table_rows(fold_section(partial, "main", "gru"))
    assert [row[0] for row in rows] == ["f2", "f3", "f4", "f5", "f10", "final"]
    assert rows[2] == ["f4", "2009-01-02 to 2010-01-04", "—", "—", "—"]
    assert rows[3] == ["f5", "2011-01-03 to 2011-12-30", "—", "—", "—"]
    assert rows[5] == ["final", "—", "0.0100", "0.0200", "+0.0100"]


def test_fold_section_without_folds_says_so():
    holdout = {key: value for key, value in EVAL_DIFF.items() if not key.startswith("folds.")}
    assert fold_section(holdout, "main", "gru") == (
        "## Walk-forward folds\n\nNo `folds.*` in metrics/eval.json of either revision "
        "(a holdout split, or a revision from before walk-forward evaluation)."
    )
    assert fold_section({}, "main", "gru").endswith("No metrics/eval.json in either revision.")


def test_headline_has_test_skill_and_loss_with_their_change():
    assert headline(EVAL_DIFF) == (
        "**test.skill -0.0285 → -0.0301 (-0.0016); test.loss 1.0812 → 1.0830 (+0.0017)**"
    )
    assert headline({}) == ""


def test_training_section_names_the_stop_reason_and_best_epoch():
    section = training_section(SUMMARY_DIFF, "main", "gru")
    assert header_cells(section) == ["", "main", "gru", "change"]
    rows = table_rows(section)
    assert rows[0] == ["best epoch (restored)", "2", "3", "+1"]
    assert rows[1] == ["epochs run", "7", "3", "-4"]
    assert rows[2] == ["stop reason", "early stopping", "epoch limit", "—"]
    assert rows[3] == ["val loss at best epoch", "1.0383", "1.0301", "-0.0082"]
    only_epochs = table_rows(training_section({"epochs_run": {"old": 7, "new": 3}}, "a", "b"))
    assert only_epochs[0] == ["best epoch (restored)", "—", "—", "—"]
    assert only_epochs[2] == ["stop reason", "—", "—", "—"]


def test_parse_curve_reads_dvclive_tsv():
    assert parse_curve("step\tloss\n1\t1.06\n2\t1.03\n") == {1: 1.06, 2: 1.03}
    assert parse_curve("step\tloss\ttimestamp\n1\t1.06\t17\n") == {1: 1.06}
    assert parse_curve(None) == {}
    assert parse_curve("step\tloss\n") == {}


def test_curves_section_pairs_epochs_and_bolds_each_restored_epoch():
    base = LossCurves(train={1: 1.2, 2: 1.1, 3: 1.0}, val={1: 1.3, 2: 1.25, 3: 1.27})
    target = LossCurves(train={1: 1.15}, val={1: 1.2})
    section = curves_section(base, target, {"old": 2, "new": 1}, "main", "gru")
    assert section.startswith("<details><summary>Loss per epoch")
    assert section.splitlines()[1] == ""
    assert section.endswith("\n\n</details>")
    assert header_cells(section) == ["epoch", "main train", "main val", "gru train", "gru val"]
    assert table_rows(section) == [
        ["1", "1.2000", "1.3000", "1.1500", "**1.2000**"],
        ["2", "1.1000", "**1.2500**", "—", "—"],
        ["3", "1.0000", "1.2700", "—", "—"],
    ]


def test_curves_section_without_curves_says_so():
    section = curves_section(LossCurves(), LossCurves(), {}, "main", "workspace")
    assert section == "No per-epoch loss curves in either revision."


def test_report_has_headline_verdicts_params_folds_training_then_folded_tables():
    report = build_report(
        ReportInputs(
            base="main",
            target="gru",
            params_table=PARAMS_MD,
            metrics_table=METRICS_MD,
            metrics_diff={
                "metrics/eval.json": EVAL_DIFF,
                "metrics/train/metrics.json": SUMMARY_DIFF,
            },
            base_curves=LossCurves(train={1: 1.1}, val={1: 1.2}),
            target_curves=LossCurves(train={1: 1.0}, val={1: 1.1}),
            plots_page="plots/index.html",
            verdicts=("## Verdicts\n\n(the verdict table)", "Verdict: skill better."),
        )
    )
    lines = report.splitlines()
    assert lines[0] == "# Model report: `gru` against `main`"
    assert lines[2] == "**Verdict: skill better.**"
    assert lines[4] == (
        "**test.skill -0.0285 → -0.0301 (-0.0016); test.loss 1.0812 → 1.0830 (+0.0017)**"
    )
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Verdicts", "## Parameters", "## Walk-forward folds", "## Training"]
    summaries = [line for line in lines if line.startswith("<details>")]
    assert summaries == [
        "<details><summary>Loss per epoch (bold: the best epoch, whose weights were kept)"
        "</summary>",
        "<details><summary>All metrics (dvc metrics diff)</summary>",
    ]
    assert lines.index(summaries[0]) > lines.index("## Training")
    assert PARAMS_MD.strip() in report
    details = report[report.index(summaries[1]) :]
    assert details.index(METRICS_MD.strip()) < details.index("</details>")
    # Skimmable: the folds are three rows, not a row per fold and metric.
    visible = report[: report.index("<details>")]
    folds = table_rows(visible[visible.index("## Walk-forward folds") :].split("\n\n## ")[0])
    assert [row[0] for row in folds] == ["f2", "f3", "f10"]
    assert "folds.f2.loss" not in visible
    assert lines[-1] == (
        "Charts of both revisions (`dvc plots diff`): `plots/index.html`; the page renders "
        "without network."
    )


def gru_against_main(base_curves: LossCurves) -> str:
    """The report of `gru` against `main` from the fixed tables, without predictions."""
    return build_report(
        ReportInputs(
            "main",
            "gru",
            PARAMS_MD,
            METRICS_MD,
            {"metrics/eval.json": EVAL_DIFF},
            base_curves,
            LossCurves(),
        )
    )


def test_a_report_without_verdicts_has_its_headline_right_below_the_title():
    report = gru_against_main(LossCurves())
    assert report.split("\n\n")[:3] == [
        "# Model report: `gru` against `main`",
        "**test.skill -0.0285 → -0.0301 (-0.0016); test.loss 1.0812 → 1.0830 (+0.0017)**",
        "## Parameters",
    ]


def test_a_report_with_curves_but_no_training_summary_bolds_no_epoch():
    report = gru_against_main(LossCurves(train={1: 1.1}, val={1: 1.2}))
    curves = table_rows(report[report.index("Loss per epoch") :])
    assert curves[0] == ["1", "1.1000", "1.2000", "—", "—"]


def test_report_without_metrics_in_either_revision_still_renders():
    report = build_report(
        ReportInputs("main", "workspace", NO_PARAMS_MD, "", {}, LossCurves(), LossCurves())
    )
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


def named_experiment(project: Project, name: str, setting: str) -> None:
    """`dvc exp run -n NAME -S SETTING` once per module, from the committed params: dvc exp run
    leaves its params in the workspace, so it is restored before and after."""
    if name in project.run("dvc", "exp", "list", "--name-only").stdout.split():
        return
    try:
        project.run("git", "checkout", "--", ".")
        project.run("dvc", "exp", "run", "-n", name, "-S", setting)
    finally:
        project.run("git", "checkout", "--", ".")
        project.run("dvc", "checkout", "-q")


def committed_eval(project: Project, revision: str) -> dict:
    return json.loads(project.run("git", "show", f"{revision}:metrics/eval.json").stdout)


def report_command(project: Project, *args: str, check: bool = True):
    return project.run(sys.executable, "-m", "finseq.report", *args, check=check)


def dvc_md(project: Project, *args: str) -> str:
    """The Markdown table DVC itself prints for `dvc <args> --md`, as the report places it:
    its files in path order (dvc lists them in no fixed order)."""
    return in_path_order(project.run("dvc", *args, "--md").stdout).strip()


@pytest.mark.slow
def test_report_of_a_branch_shows_the_parameter_and_metric_changes(history):
    """DVC's own params and metrics tables, and finseq's row per fold from eval.json."""
    report_command(history, "--base", "main", "--target", "gru", "--out", "report.md")
    report = (history.path / "report.md").read_text()
    params = dvc_md(history, "params", "diff", "main", "gru")
    assert params in report
    assert ["params.yaml", "model.type", "lstm", "gru"] in table_rows(params)
    metrics = dvc_md(history, "metrics", "diff", "main", "gru", "--all")
    details = report[report.index("<details><summary>All metrics (dvc metrics diff)</summary>") :]
    assert details.index(metrics) < details.index("</details>")
    metric_rows = {tuple(row[:2]): row for row in table_rows(metrics)}
    assert ("metrics/eval.json", "test.skill") in metric_rows
    old, new = committed_eval(history, "main"), committed_eval(history, "gru")
    assert old["test"]["loss"] != new["test"]["loss"]
    assert (
        f"test.skill {format_value(old['test']['skill'])} → {format_value(new['test']['skill'])}"
        in report
    )
    folds = table_rows(report[report.index("## Walk-forward folds") :].split("\n\n## ")[0])
    assert len(folds) == len(old["folds"]) == 3
    for row, (fold, figures) in zip(folds, new["folds"].items(), strict=True):
        before = old["folds"][fold]["skill"]
        assert row == [
            fold,
            f"{figures['first_date']} to {figures['last_date']}",
            format_value(before),
            format_value(figures["skill"]),
            format_change(before, figures["skill"]),
        ]
    curves = report[report.index("<details><summary>Loss per epoch") :]
    assert header_cells(curves) == ["epoch", "main train", "main val", "gru train", "gru val"]
    # The skimmable part above the folded tables has no per-fold metric rows.
    assert "folds.f1." not in report[: report.index("<details>")]


@pytest.mark.slow
def test_report_of_the_workspace_reads_its_files(history):
    history.run("git", "checkout", "-q", "gru")
    try:
        report = report_command(history).stdout
        params = dvc_md(history, "params", "diff", "main")
    finally:
        history.run("git", "checkout", "-q", "main")
    # gru's files are checked out, not its DVC outputs (no `dvc checkout`): whether dvc
    # status then names stages depends on what the shared project's earlier tests left; if
    # it does, the warning comes first (test_a_stale_workspace_is_reported_as_such).
    if report.startswith("> **Warning:**"):
        warning, report = report.split("\n\n", 1)
        assert "the workspace does not match its dvc.lock" in warning
    assert report.startswith("# Model report: `workspace` against `main`")
    assert params in report
    assert header_cells(params)[2:] == ["main", "workspace"]
    assert ["params.yaml", "model.type", "lstm", "gru"] in table_rows(params)
    old_skill = committed_eval(history, "main")["test"]["skill"]
    new_skill = committed_eval(history, "gru")["test"]["skill"]
    assert f"test.skill {format_value(old_skill)} → {format_value(new_skill)}" in report


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


VERDICT_FIGURES = {"skill", "move_skill", "direction_skill", "loss", "accuracy", "sharpe"}


def verdict_rows(report: str) -> dict[str, list[str]]:
    """The verdict table's rows by figure name."""
    section = report[report.index("## Verdicts") :]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]
    return {row[0]: row for row in cells[: len(VERDICT_FIGURES)]}


@pytest.mark.slow
def test_a_branch_against_itself_reads_within_noise_with_zero_change(history):
    report = report_command(history, "--base", "main", "--target", "main").stdout
    rows = verdict_rows(report)
    assert set(rows) == VERDICT_FIGURES
    for row in rows.values():
        assert row[3] == "0" and row[5] == "**within noise**", row
    assert (
        "**Verdict: skill within noise (primary); also move_skill within noise, "
        "direction_skill within noise, loss within noise, accuracy within noise, " in report
    )
    assert "Paired window by window" in report


@pytest.mark.slow
def test_a_branch_gets_a_paired_interval_and_a_verdict_for_every_row(history):
    report = report_command(history, "--base", "main", "--target", "gru").stdout
    rows = verdict_rows(report)
    assert set(rows) == VERDICT_FIGURES
    for row in rows.values():
        low, high = (float(x) for x in row[4].strip("[]").split(", "))
        assert low <= float(row[3]) <= high, row
        assert row[5] in ("**better**", "**worse**", "**within noise**")
    assert "Paired window by window" in report
    assert "a change of seed alone can read `better` or `worse`" in report


@pytest.mark.slow
def test_a_dvc_experiment_name_is_a_target(history):
    named_experiment(history, "linear-exp", "model.type=linear")
    report = report_command(history, "--base", "main", "--target", "linear-exp").stdout
    assert ["params.yaml", "model.type", "lstm", "linear"] in table_rows(
        report[report.index("## Parameters") :]
    )
    assert set(verdict_rows(report)) == VERDICT_FIGURES


@pytest.mark.slow
def test_the_experiment_table_ranks_branches_and_experiments_on_val_loss(history):
    """main, the gru branch and two dvc exp runs, each from main's params: ranked by pooled
    validation loss, the differing params only, within 100 columns; each one's predictions
    read at its commit for the MCS column, and the lines under the table."""
    named_experiment(history, "linear-exp", "model.type=linear")
    named_experiment(history, "wider-exp", "model.hidden_dim=16")
    table = history.run(sys.executable, "-m", "finseq.experiments").stdout
    markdown = history.run(sys.executable, "-m", "finseq.experiments", "--markdown").stdout
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split()[:3] == ["#", "experiment", "params"]
    under = lines.index("move = test.move_skill; dir = test.direction_skill")
    lines, below = lines[:under], " ".join(lines[under + 1 :])
    rows = {line.split()[1]: line for line in lines[1:]}
    assert {"workspace", "main", "gru", "linear-exp", "wider-exp"} <= set(rows)
    assert "type=gru" in rows["gru"]
    # Every one has its predictions file in git: each is in the MCS or out of it.
    assert {row.split()[-1] for row in rows.values()} <= {"in", "out"}
    assert "in" in {row.split()[-1] for row in rows.values()}
    ranked = f"{len(rows)} experiments ranked; {len(rows)} with predictions in the MCS comparison"
    assert below.startswith(ranked)
    assert "deflated Sharpe of the best (" in below and f"after N={len(rows)} trials" in below
    assert ranked in markdown and "deflated Sharpe of the best (" in markdown
    full = {row[1]: row for row in table_rows(markdown)}
    assert "hidden_dim=16" in full["wider-exp"][2]
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
    assert header_cells(markdown) == [
        "#",
        "experiment",
        "params",
        "val loss",
        "test skill [95%]",
        "move_skill",
        "direction_skill",
        "Sharpe",
        "MCS 90%",
    ]


def test_a_base_without_predictions_is_said_in_one_line():
    settings = EvidenceSettings(0.0, False, 5, 1, "sign", 3, 100, 0)
    text, line = verdict_section(None, pd.DataFrame(), settings, "old", "new")
    assert line == "No verdicts: `old` has no metrics/predictions.csv."
    assert text == (
        "## Verdicts\n\n`old` has no metrics/predictions.csv (a revision from before "
        "walk-forward evaluation, or not reproduced): no verdicts; the metrics below are "
        "point values only."
    )
    _, line = verdict_section(pd.DataFrame(), None, settings, "old", "new")
    assert line == "No verdicts: `new` has no metrics/predictions.csv."


RULE = (
    "**skill is the primary figure: the change is judged on it alone.** The other rows "
    "describe the change, each with a 95% interval of its own, not corrected for the number "
    "of rows: together they read `better` or `worse` by chance more often than one time in "
    "twenty."
)
HOW_JUDGED = (
    "; 95% interval of the change from 300 block-bootstrap resamples of dates. `better` / "
    "`worse` when the interval excludes 0, else `within noise`. Sharpe after 5 bps per unit "
    "of turnover, positions sized by sign and held 1 bars, for both revisions from the "
    "workspace's `backtest` params. "
)
SAMPLE_NOISE_ONLY = (
    "The intervals measure test-sample noise only (neither revision measured its "
    "seed-to-seed spread: `train.seeds` = 1): a change of seed alone can read `better` or "
    "`worse`."
)
TRAINING_NOISE = (
    "Training noise is included: each revision is its seed ensemble, and each interval is "
    "widened by the noise of the difference of two ensembles (the seeds' spread "
    "`seeds.*_sd` over the square root of their number, with a t quantile at the Welch "
    "degrees of freedom; docs/reviewing.md)."
)


def test_the_verdict_section_says_how_it_judged_each_way_in_full():
    """The rule, how the windows were compared (paired, some labels unknown, unpaired), the
    bootstrap, the backtest and which noise the intervals hold, word for word; the table's
    header and each revision's own figure in its own column; the headline."""
    base, target = graded_predictions(0.1), graded_predictions(0.05)
    text, line = verdict_section(base, target, SETTINGS, "base", "t")
    paragraphs = text.split("\n\n")
    assert paragraphs[:3] == [
        "## Verdicts",
        RULE,
        "Paired window by window over the 500 out-of-sample windows both predicted"
        + HOW_JUDGED
        + SAMPLE_NOISE_ONLY,
    ]
    assert header_cells(paragraphs[3]) == [
        "figure",
        "base",
        "t",
        "change",
        "95% interval",
        "verdict",
    ]
    skill = verdict_rows(text)["skill"]
    swapped = verdict_rows(verdict_section(target, base, SETTINGS, "t", "base")[0])["skill"]
    assert skill[1:3] == swapped[2:0:-1] and skill[1] != skill[2]
    assert line == (
        "Verdict: skill worse (primary); also move_skill not measured in both, "
        "direction_skill not measured in both, loss worse, accuracy within noise, sharpe within "
        "noise."
    )
    unknown = target.copy()
    unknown.loc[:9, "label"] = np.nan
    spread = {"count": 3, "skill_sd": 0.01}
    text = verdict_section(
        base.assign(label=unknown["label"]), unknown, SETTINGS, "b", "t", (spread, None)
    )[0]
    assert text.split("\n\n")[2] == (
        "Paired window by window over the 500 out-of-sample windows both predicted (490 of "
        "them with a known label, on which the class figures are)" + HOW_JUDGED + TRAINING_NOISE
    )
    text = verdict_section(base, target.iloc[2:], SETTINGS, "b", "t")[0]
    assert text.split("\n\n")[2] == (
        "The two revisions scored different windows (500 and 498): each is resampled on its "
        "own dates (unpaired), so the intervals are wider" + HOW_JUDGED + SAMPLE_NOISE_ONLY
    )


def test_a_paired_comparison_of_near_identical_models_is_narrower_than_unpaired():
    """Two models whose edge varies window by window, the target's 0.002 above the base's on
    every window: paired over the same windows, the interval of the change is far narrower
    than the same two resampled each on its own dates."""
    edges = np.random.default_rng(1).uniform(0.0, 0.3, size=500)

    def with_edges(edge: np.ndarray) -> pd.DataFrame:
        frame = graded_predictions(0.0)
        true = frame["label"].to_numpy() + 1
        probabilities = np.repeat(((2 / 3 - edge) / 2)[:, None], 3, axis=1)
        probabilities[np.arange(len(frame)), true] = 1 / 3 + edge
        frame[["p_down", "p_flat", "p_up"]] = probabilities
        return frame

    base, target = with_edges(edges), with_edges(edges + 0.002)

    def width(text: str) -> float:
        low, high = verdict_rows(text)["skill"][4].strip("[]").split(", ")
        return float(high) - float(low)

    paired = width(verdict_section(base, target, SETTINGS, "b", "t")[0])
    unpaired = width(verdict_section(base, target.iloc[2:], SETTINGS, "b", "t")[0])
    assert paired < 0.002 < unpaired


def test_the_verdicts_backtest_is_the_settings_own():
    """EvidenceSettings.totals passes each backtest setting on: long-only differs from
    long-short."""
    frame = graded_predictions(0.1)
    long_only = dataclasses.replace(SETTINGS, long_only=True)
    ours = long_only.totals(frame)
    theirs = daily_totals(frame, 0.0, True, 5, hold=1, sizing="sign")
    assert np.array_equal(ours.strategy, theirs.strategy, equal_nan=True)
    assert not np.array_equal(ours.strategy, SETTINGS.totals(frame).strategy, equal_nan=True)


@pytest.mark.slow
def test_two_runs_that_differ_only_in_their_seeds_read_within_noise(tmp_path):
    """With train.seeds = 3, the training noise of two 3-seed ensembles widens every interval."""
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
    assert "Training noise is included" in report
    for row in verdict_rows(report).values():
        assert row[5] == "**within noise**", report


def graded_predictions(edge: float, seed: int = 0, n_dates: int = 250) -> pd.DataFrame:
    """A predictions table of two series whose model gives each window's true label the
    probability 1/3 + `edge` (the rest split evenly): `edge` > 0 knows the labels, < 0 is
    confidently wrong. Labels, priors and returns depend on `seed` only."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=n_dates).strftime("%Y-%m-%dT%H:%M:%S")
    labels = rng.integers(-1, 2, size=(n_dates, 2))
    rows = []
    for day, date in enumerate(dates):
        for column, series in enumerate(("a", "b")):
            label = int(labels[day, column])
            probabilities = np.full(3, (2 / 3 - edge) / 2)
            probabilities[label + 1] = 1 / 3 + edge
            rows.append(
                {
                    "timestamp": date,
                    "series": series,
                    "fold": "f1",
                    "label": label,
                    "p_down": probabilities[0],
                    "p_flat": probabilities[1],
                    "p_up": probabilities[2],
                    "prior_p": 1 / 3,
                    "majority": 0,
                    "forward_return": 0.0,
                    "next_return": rng.normal(0, 0.01),
                }
            )
    return pd.DataFrame(rows)


SETTINGS = EvidenceSettings(
    threshold=0.0,
    long_only=False,
    cost_bps=5,
    hold=1,
    sizing="sign",
    horizon=1,
    resamples=300,
    seed=0,
)


def test_the_verdicts_take_the_backtest_and_bootstrap_of_the_params_given():
    """Each setting from its own key; hold `horizon` resolves to the label horizon."""
    params = tiny_params_dict(
        backtest={"threshold": 0.1, "long_only": True, "cost_bps": 7, "sizing": "score"},
        label={"horizon": 4},
        evaluate={"resamples": 123, "bootstrap_seed": 9},
    )
    assert EvidenceSettings.of(parse_params(params)) == EvidenceSettings(
        threshold=0.1,
        long_only=True,
        cost_bps=7,
        hold=4,
        sizing="score",
        horizon=4,
        resamples=123,
        seed=9,
    )


def verdicts_of(text: str) -> dict[str, str]:
    """figure → verdict word, from the verdict table's rows."""
    found = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 6 and cells[5].startswith("**"):
            found[cells[0]] = cells[5].strip("*")
    return found


@pytest.mark.parametrize(
    ("base_edge", "target_edge", "expected"),
    [(0.1, -0.1, "worse"), (-0.1, 0.1, "better"), (0.1, 0.1, "within noise")],
)
def test_verdicts_point_the_right_way(base_edge, target_edge, expected):
    """A target that gives the true labels far less probability reads `worse` on skill, loss
    (lower is better) and accuracy; far more, `better`; the same model, within noise."""
    text, headline_text = verdict_section(
        graded_predictions(base_edge), graded_predictions(target_edge), SETTINGS, "base", "t"
    )
    words = verdicts_of(text)
    assert {name: words[name] for name in ("skill", "loss", "accuracy")} == dict.fromkeys(
        ("skill", "loss", "accuracy"), expected
    )
    assert f"loss {expected}" in headline_text


def test_the_seed_spread_widens_each_side_of_the_interval_in_quadrature():
    """With seeds.*_sd measured in both revisions (3 seeds each), each side of the change's
    interval grows to hypot(side, t x sd of the difference of two 3-seed ensembles), the t
    quantile at the Welch-Satterthwaite degrees of freedom: worked out here by hand from the
    unwidened interval (variances 0.003^2 / 3 and 0.004^2 / 3, 3.709 degrees of freedom)."""
    base, target = graded_predictions(0.02), graded_predictions(0.03)
    plain, _ = verdict_section(base, target, SETTINGS, "base", "t")
    sd = (ensemble(0.003), ensemble(0.004))
    widened, _ = verdict_section(base, target, SETTINGS, "base", "t", sd)

    change, low, high = skill_interval(plain)
    _, wide_low, wide_high = skill_interval(widened)
    variances = (0.003**2 / 3, 0.004**2 / 3)
    freedom = sum(variances) ** 2 / sum(v**2 / 2 for v in variances)
    assert freedom == pytest.approx(3.709, abs=1e-3)
    training = stats.t.ppf(0.975, freedom) * np.sqrt(sum(variances))
    assert wide_low == pytest.approx(change - np.hypot(change - low, training), abs=2e-4)
    assert wide_high == pytest.approx(change + np.hypot(high - change, training), abs=2e-4)
    assert wide_high - wide_low > high - low


def skill_interval(text: str) -> tuple[float, float, float]:
    """The skill row's change and 95% interval from a verdict table."""
    row = next(line for line in text.splitlines() if line.startswith("| skill"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    low, high = (float(x) for x in cells[4].strip("[]").split(","))
    return float(cells[3]), low, high


def ensemble(sd: float, count: int = 3) -> dict:
    """A `seeds` section of a revision judged on its ensemble of `count` seeds."""
    return {"count": count, "skill_sd": sd, "skill_ensemble_sd": sd / count**0.5}


def test_training_noise_uses_the_t_quantile_of_its_few_seeds_and_the_ensembles_sd():
    """Three seeds on each side: the noise of the difference of two 3-seed ensembles. One
    side measured: the other is a single model (variance sd^2, not sd^2 / 3) and that one
    estimate counts once (2 degrees of freedom, t = 4.303). A revision whose headline is
    one seed's (before the ensemble) has variance sd^2. Two seeds per side: Student's t at 1
    to 2 degrees of freedom, never 1.96."""
    both = (ensemble(0.01), ensemble(0.01))
    assert training_noise(both, "skill") == pytest.approx(
        stats.t.ppf(0.975, 4) * 0.01 * np.sqrt(2 / 3)
    )
    one = (None, ensemble(0.01))
    assert training_noise(one, "skill") == pytest.approx(
        4.3027 * 0.01 * np.sqrt(1 + 1 / 3), rel=1e-4
    )
    single_seed_headline = {"count": 3, "skill_sd": 0.01}
    against_old = (single_seed_headline, ensemble(0.01))
    variances = (0.01**2, 0.01**2 / 3)
    freedom = sum(variances) ** 2 / sum(v**2 / 2 for v in variances)
    assert training_noise(against_old, "skill") == pytest.approx(
        stats.t.ppf(0.975, freedom) * np.sqrt(sum(variances))
    )
    pairs = (ensemble(0.01, 2), ensemble(0.01, 2))
    assert training_noise(pairs, "skill") == pytest.approx(4.3027 * 0.01, rel=1e-4)
    assert training_noise((None, None), "skill") == 0.0
    assert training_noise(both, "sharpe") == 0.0  # not measured for that figure
    # Seeds that agreed to the bit add no noise (not 0/0, not a NaN quantile times 0).
    assert training_noise((ensemble(0.0), ensemble(0.0)), "skill") == 0.0
    assert training_noise((None, ensemble(0.0)), "skill") == 0.0
    # A spread without its seed count is not a measured spread.
    assert training_noise(({"skill_sd": 0.01}, None), "skill") == 0.0


def test_a_change_inside_the_old_1_96_rule_but_not_the_t_rule_reads_within_noise():
    """The old rule (1.96 x the single seeds' spread) called a change `better` that the
    honest rule (two 3-seed ensembles, a t quantile) calls `within noise` when the spread
    was measured on 2 seeds only."""
    base, target = graded_predictions(0.02), graded_predictions(0.03)
    plain, _ = verdict_section(base, target, SETTINGS, "base", "t")
    change, low, _ = skill_interval(plain)
    assert low > 0
    # A spread for which 1.96 x hypot(sd, sd) leaves the lower bound above 0 ...
    sd = 0.9 * float(np.sqrt(max(change**2 - (change - low) ** 2, 0.0))) / (1.96 * np.sqrt(2))
    assert change - np.hypot(change - low, 1.96 * np.hypot(sd, sd)) > 0
    # ... but that two seeds per side cannot rule out.
    measured = (ensemble(sd, 2), ensemble(sd, 2))
    text, headline_text = verdict_section(base, target, SETTINGS, "base", "t", measured)
    assert verdicts_of(text)["skill"] == "within noise"
    assert headline_text.startswith("Verdict: skill within noise (primary)")


def test_two_revisions_of_different_windows_are_compared_unpaired():
    """Revisions that scored different windows are each resampled on their own dates, and
    the section says so; a clear difference still reads the right way."""
    base = graded_predictions(-0.1)
    target = graded_predictions(0.1, n_dates=200)
    text, _ = verdict_section(base, target, SETTINGS, "base", "t")
    assert "unpaired" in text
    assert verdicts_of(text)["loss"] == "better"


def move_only_predictions(knows_move: bool, n_dates: int = 250) -> pd.DataFrame:
    """graded_predictions' windows, with the fold's whole prior (1/3 each): a model that
    knows whether each window moves (P(flat) 0.6 on flat windows, 0.2 on the others) but
    splits every move evenly between up and down, or one that knows nothing (1/3 each)."""
    table = graded_predictions(0.0, n_dates=n_dates)
    flat = (table["label"] == 0).to_numpy()
    p_flat = np.where(flat, 0.6, 0.2) if knows_move else np.full(len(table), 1 / 3)
    table["p_flat"] = p_flat
    table["p_up"] = table["p_down"] = (1 - p_flat) / 2
    for column in ("prior_down", "prior_flat", "prior_up"):
        table[column] = 1 / 3
    return table


def test_a_model_that_learns_to_see_moves_reads_better_on_move_skill_and_not_on_direction():
    text, headline_text = verdict_section(
        move_only_predictions(False), move_only_predictions(True), SETTINGS, "base", "t"
    )
    words = verdicts_of(text)
    assert words["move_skill"] == "better"
    assert words["direction_skill"] == "within noise"
    assert "move_skill better" in headline_text
    reverse, _ = verdict_section(
        move_only_predictions(True), move_only_predictions(False), SETTINGS, "base", "t"
    )
    assert verdicts_of(reverse)["move_skill"] == "worse"


def test_a_revision_from_before_the_skill_split_has_its_parts_not_measured():
    """A base table without the prior columns: move and direction are `not measured in
    both`, with the target's value shown; the other figures still get their verdicts."""
    text, headline_text = verdict_section(
        graded_predictions(0.0), move_only_predictions(True), SETTINGS, "base", "t"
    )
    words = verdicts_of(text)
    assert words["skill"] in ("better", "worse", "within noise")
    rows = {
        cells[0]: cells
        for cells in (
            [cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
        )
        if len(cells) == 6
    }
    assert rows["move_skill"][1] == "—" and rows["move_skill"][5] == "not measured in both"
    assert float(rows["move_skill"][2]) > 0
    assert "direction_skill not measured in both" in headline_text


KNOWN_EVAL = {
    "test.skill": {"new": 0.021},
    "test.skill_low": {"new": 0.011},
    "test.skill_high": {"new": 0.032},
    "test.move_skill": {"new": 0.045},
    "test.move_skill_low": {"new": 0.029},
    "test.move_skill_high": {"new": 0.061},
    "test.direction_skill": {"new": -0.006},
    "test.direction_skill_low": {"new": -0.018},
    "test.direction_skill_high": {"new": 0.007},
    "baselines.volatility.skill": {"new": 0.038},
    "baselines.volatility.move_skill": {"new": 0.070},
    "baselines.volatility.direction_skill": {"new": 0.0},
}


@pytest.mark.parametrize(
    ("gain", "words"),
    [
        ((-0.025, -0.042, -0.007), "less than volatility alone knows"),
        ((0.01, -0.005, 0.02), "no more than volatility alone knows"),
        ((0.03, 0.01, 0.05), "more than volatility alone knows"),
    ],
)
def test_what_the_model_knows_says_whether_its_move_skill_beats_volatilitys(gain, words):
    eval_diff = dict(KNOWN_EVAL)
    for end, value in zip(("", "_low", "_high"), gain, strict=True):
        eval_diff[f"baselines.volatility.move_gain{end}"] = {"new": value}
    text = knowledge_section(eval_diff, "t")
    assert f"Its move skill is {words}" in text
    assert f"({gain[0]:+.4f} [{gain[1]:+.4f}, {gain[2]:+.4f}], paired" in text
    rows = {cells[0]: cells[1:] for cells in table_rows(text)}
    assert rows["move: flat or not (volatility)"] == ["+0.0450 [+0.0290, +0.0610]", "+0.0700"]
    assert rows["direction: up or down, given a move"][1] == "+0.0000"


def test_what_the_model_knows_says_what_its_table_holds_and_compares_nothing_unmeasured():
    """Without the paired move gain, the section states what it shows and adds no
    comparison; a bound missing on one side shows the figure alone."""
    eval_diff = {**KNOWN_EVAL, "baselines.volatility.skill_high": {"new": 0.05}}
    text = knowledge_section(eval_diff, "t")
    assert text.split("\n\n")[:2] == [
        "## What the model knows",
        "Test skill of the target split into its two parts, each against its own part of the "
        "fold's class prior, with 95% block-bootstrap intervals. The volatility baseline "
        "predicts P(flat) from volatility features alone and splits the rest by the prior: "
        "its direction skill is 0 by construction.",
    ]
    assert header_cells(text) == ["skill", "`t`", "volatility baseline"]
    rows = {cells[0]: cells[1:] for cells in table_rows(text)}
    assert rows["whole: all three classes"] == ["+0.0210 [+0.0110, +0.0320]", "+0.0380"]
    with_gain = dict(KNOWN_EVAL)
    for end, value in zip(("", "_low", "_high"), (0.03, 0.01, 0.05), strict=True):
        with_gain[f"baselines.volatility.move_gain{end}"] = {"new": value}
    assert (
        knowledge_section(with_gain, "t")
        .split("\n\n")[1]
        .endswith(
            "its direction skill is 0 by construction. Its move skill is more than volatility "
            "alone knows (+0.0300 [+0.0100, +0.0500], paired over the same windows)."
        )
    )


def test_what_the_model_knows_is_left_out_for_a_target_without_the_split():
    assert knowledge_section({"test.skill": {"new": 0.02}}, "t") == ""


# --- the command on a git history of files, with dvc's tables faked ---------------------

PARAMS_TABLE = (
    "| Path | Param | main | t |\n|---|---|---|---|\n"
    "| z.yaml | b | 1 | 2 |\n| params.yaml | model.type | lstm | gru |\n"
)
METRICS_TABLE = "| Path | Metric | main | t | Change |\n|---|---|---|---|---|\n"


def commit_revision(repo, files: dict[str, str], message: str) -> str:
    """Writes `files` (path → text) into `repo`, commits them, returns the commit."""
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def git(repo, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def revision_files(edge: float, skill: float, val_loss: float, seeds: dict | None) -> dict:
    """What the report reads of a revision: eval.json, the train summary, both DVCLive loss
    curves and the predictions file."""
    eval_json = {
        "test": {"skill": skill, "loss": 1.0 - skill, "move_skill": skill / 2},
        "folds": {"f1": {"skill": skill, "first_date": "2021-01-04", "last_date": "2021-12-31"}},
    }
    if seeds is not None:
        eval_json["seeds"] = seeds
    return {
        "metrics/eval.json": json.dumps(eval_json),
        "metrics/train/metrics.json": json.dumps({"best_epoch": 2, "val": {"loss": val_loss}}),
        "metrics/train/plots/metrics/train/loss.tsv": f"step\tloss\n1\t1.5\n2\t{val_loss + 0.25}\n",
        "metrics/train/plots/metrics/val/loss.tsv": f"step\tloss\n1\t1.75\n2\t{val_loss}\n",
        "metrics/predictions.csv": graded_predictions(edge).to_csv(index=False),
    }


@pytest.fixture
def git_history(tmp_path, monkeypatch):
    """A git repository whose main scores the labels well and whose `worse` branch, also
    recorded as the `dvc exp` experiment `worse-exp`, scores them badly; dvc's tables are
    faked (each call recorded). Returns (the calls, main's commit, worse's commit)."""
    from finseq import report

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    # The tiny params: 200 bootstrap resamples, not 2,000.
    params = yaml.safe_dump(tiny_params_dict())
    commit_revision(repo, {"params.yaml": params}, "before any run")
    git(repo, "tag", "bare")
    spread = {"count": 3, "skill_sd": 0.001, "skill_ensemble_sd": 0.0006}
    main = commit_revision(
        repo, {"params.yaml": params, **revision_files(0.1, 0.05, 0.9875, spread)}, "main"
    )
    git(repo, "checkout", "-q", "-b", "worse")
    worse = commit_revision(repo, revision_files(-0.1, -0.04, 1.0625, spread), "worse")
    git(repo, "update-ref", "refs/exps/ab/cdef/worse-exp", worse)
    git(repo, "checkout", "-q", "main")
    monkeypatch.chdir(repo)
    calls = []

    def fake_dvc(*args: str):
        if args[0] == "status":  # the workspace is up to date unless a test says otherwise
            stale = os.environ.get("FAKE_DVC_STATUS", "{}")
            return subprocess.CompletedProcess(["dvc", *args], 0, stdout=stale, stderr="")
        calls.append(args)
        table = PARAMS_TABLE if args[0] == "params" else METRICS_TABLE
        return subprocess.CompletedProcess(["dvc", *args], 0, stdout=table, stderr="")

    monkeypatch.setattr(report, "run_dvc", fake_dvc)
    return calls, main, worse


def test_the_command_reports_an_experiment_against_a_branch_from_what_git_keeps(git_history):
    """--target an experiment's name: dvc gets the names as given, git the experiment's
    commit; each revision's own files make the verdicts, the training rows and the curves,
    and the report goes to --out with the plots page named."""
    from finseq import report

    calls, _, _ = git_history
    report.main(["--target", "worse-exp", "--out", "report.md", "--plots-dir", "plots"])
    assert calls == [
        ("params", "diff", "main", "worse-exp", "--md"),
        ("metrics", "diff", "main", "worse-exp", "--all", "--md"),
        ("plots", "diff", "main", "worse-exp", "-o", "plots"),
    ]
    text = Path("report.md").read_text()
    assert text.startswith("# Model report: `worse-exp` against `main`\n")
    assert {figure: row[5] for figure, row in verdict_rows(text).items()}["skill"] == ("**worse**")
    assert "Training noise is included" in text
    assert "test.skill 0.0500 → -0.0400 (-0.0900)" in text
    # DVC's params table, its rows in path order.
    assert "| params.yaml | model.type | lstm | gru |\n| z.yaml | b | 1 | 2 |" in text
    knows = text[text.index("## What the model knows") :]
    assert header_cells(knows) == ["skill", "`worse-exp`", "volatility baseline"]
    assert header_cells(text[text.index("## Walk-forward folds") :]) == [
        "fold",
        "test block",
        "main skill",
        "worse-exp skill",
        "change",
    ]
    assert header_cells(text[text.index("## Training") :])[1:3] == ["main", "worse-exp"]
    assert header_cells(text[text.index("## Verdicts") :])[1:3] == ["main", "worse-exp"]
    assert header_cells(text[text.index("Loss per epoch") :])[1:] == [
        "main train",
        "main val",
        "worse-exp train",
        "worse-exp val",
    ]
    training = table_rows(text[text.index("## Training") :])
    assert training[3][:3] == ["val loss at best epoch", "0.9875", "1.0625"]
    curves = table_rows(text[text.index("Loss per epoch") :])
    assert curves[:2] == [
        ["1", "1.5000", "1.7500", "1.5000", "1.7500"],
        ["2", "1.2375", "**0.9875**", "1.3125", "**1.0625**"],
    ]
    assert "`plots/index.html`" in text


def test_the_command_reports_the_workspace_to_stdout_against_the_base(git_history, capsys):
    """No --target: dvc compares the base with the workspace, whose files are read from
    disk, uncommitted; no --out: stdout; no --plots-dir: no plots."""
    from finseq import report

    calls, _, _ = git_history
    for path, text in revision_files(-0.1, -0.02, 1.125, None).items():
        Path(path).write_text(text)
    report.main(["--base", "main"])
    assert calls == [
        ("params", "diff", "main", "--md"),
        ("metrics", "diff", "main", "--all", "--md"),
    ]
    text = capsys.readouterr().out
    assert text.startswith("# Model report: `workspace` against `main`\n")
    assert "test.skill 0.0500 → -0.0200 (-0.0700)" in text
    assert "**1.1250**" in text and "dvc plots diff" not in text


def test_a_stale_workspace_is_reported_as_such(git_history, capsys, monkeypatch):
    """params.yaml changed without `dvc repro`: the workspace's metrics are an earlier
    run's, and the report says so first, naming the stages dvc status names."""
    from finseq import report

    monkeypatch.setenv("FAKE_DVC_STATUS", '{"train": [{"changed deps": {}}], "evaluate": []}')
    report.main(["--base", "main"])
    captured = capsys.readouterr()
    warning = (
        "the workspace does not match its dvc.lock: `dvc status` reports changes for train, "
        "evaluate, so its metrics may not be those of its params, code and data; run "
        "`dvc repro` (or `dvc checkout`) first"
    )
    assert captured.out.startswith(f"> **Warning:** {warning}.\n\n# Model report:")
    assert captured.err == f"note: {warning}\n"
    report.main(["--base", "bare", "--target", "main"])  # a commit: no status asked
    assert "Warning" not in capsys.readouterr().out


@pytest.mark.parametrize("where", ["a-folder", "missing/r.md"])
def test_a_report_path_that_cannot_be_written_is_refused_first(git_history, where):
    from finseq import report

    Path("a-folder").mkdir()
    with pytest.raises(DataError, match=r"^--out "):
        report.main(["--base", "main", "--out", where])
    assert not Path("missing").exists() and git_history[0] == []


def test_a_base_from_before_any_run_reports_what_it_lacks(git_history, capsys):
    """A base revision without metrics, curves or predictions (the workspace has them all):
    no verdicts, its columns empty, nothing of the workspace's read in its place."""
    from finseq import report

    report.main(["--base", "bare", "--target", "main"])
    text = capsys.readouterr().out
    assert "## Verdicts\n\n`bare` has no metrics/predictions.csv" in text
    assert "**No verdicts: `bare` has no metrics/predictions.csv.**" in text
    curves = table_rows(text[text.index("Loss per epoch") :])
    assert curves[1] == ["2", "—", "—", "1.2375", "**0.9875**"]
    assert table_rows(text[text.index("## Walk-forward folds") :])[0][2:4] == ["—", "0.0500"]


def test_the_help_says_what_each_argument_takes(capsys, monkeypatch):
    """`python -m finseq.report --help` word for word (at 100 columns)."""
    from finseq import report

    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exited:
        report.main(["--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == (
        "usage: python -m finseq.report [-h] [--base BASE] [--target TARGET] [--out OUT]\n"
        "                               [--plots-dir PLOTS_DIR]\n"
        "\n"
        "Markdown report of verdicts, params, folds and metrics against a base revision.\n"
        "\n"
        "options:\n"
        "  -h, --help            show this help message and exit\n"
        "  --base BASE           revision to compare with (default: main)\n"
        "  --target TARGET       revision to report on, or 'workspace' for the working tree "
        "(default)\n"
        "  --out OUT             write the report to this file instead of stdout\n"
        "  --plots-dir PLOTS_DIR\n"
        "                        also write `dvc plots diff` of both revisions to this "
        "directory\n"
    )


def test_a_revision_is_a_commit_an_experiment_or_left_to_dvc(git_history):
    """A branch resolves to its commit, a `dvc exp` name to its experiment's commit; a name
    of two experiments or of none is passed on as given (dvc then names it in its error)."""
    from finseq import report

    _, main, worse = git_history
    assert report.resolve_revision(None) is None
    assert report.resolve_revision("main") == main
    assert report.resolve_revision("worse-exp") == worse
    assert report.resolve_revision("nothing") == "nothing"
    git(".", "update-ref", "refs/exps/cd/efab/worse-exp", main)
    assert report.resolve_revision("worse-exp") == "worse-exp"


def test_a_revision_lacking_a_file_reads_as_without_it(git_history):
    """read_metrics leaves out a file the revision lacks; read_curves gives empty curves."""
    from finseq import report

    _, main, _ = git_history
    git(".", "rm", "-q", "metrics/train/metrics.json", "metrics/train/plots/metrics/val/loss.tsv")
    git(".", "commit", "-q", "-m", "no summary")
    head = report.resolve_revision("main")
    assert list(report.read_metrics(head)) == ["metrics/eval.json"]
    assert set(report.read_metrics(main)) == {"metrics/eval.json", "metrics/train/metrics.json"}
    curves = report.read_curves(head)
    assert curves.val == {} and curves.train == {1: 1.5, 2: 1.2375}


@pytest.mark.parametrize(
    ("returncode", "stderr", "message"),
    [
        (1, "ERROR: unknown Git revision 'nope'\n", "dvc params diff: unknown Git revision 'nope'"),
        (3, "", "dvc params diff: exit 3"),
    ],
)
def test_a_failing_dvc_command_is_one_line_naming_it(monkeypatch, returncode, stderr, message):
    """run_dvc runs this interpreter's dvc and turns a failure into one ConfigError line."""
    from finseq import report
    from finseq.errors import ConfigError

    seen = []

    def fake_run(argv, **kwargs):
        seen.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, returncode, stdout="", stderr=stderr)

    monkeypatch.setattr(report.subprocess, "run", fake_run)
    with pytest.raises(ConfigError) as raised:
        report.run_dvc("params", "diff", "nope")
    assert str(raised.value) == message
    assert seen[0][0] == [sys.executable, "-m", "dvc", "params", "diff", "nope"]
    assert seen[0][1] == {"capture_output": True, "text": True, "check": False}


def test_a_dvc_command_that_succeeds_hands_back_its_output(monkeypatch):
    from finseq import report

    def fake_run(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 0, stdout="| a |\n|---|\n", stderr="warn")

    monkeypatch.setattr(report.subprocess, "run", fake_run)
    assert report.run_dvc("metrics", "diff").stdout == "| a |\n|---|\n"
    assert report.run_dvc_md("metrics", "diff") == "| a |\n|---|\n"


@pytest.mark.parametrize(
    ("cut", "problem"),
    [
        ("truncated", "truncated (its last line is cut); run `dvc repro` or restore it"),
        ("no column", "no column(s) next_return; run `dvc repro`"),
        ("not a number", "line 3 has a probability or return that is no number"),
    ],
)
def test_a_cut_or_edited_predictions_table_is_refused_not_judged(
    tmp_path, monkeypatch, cut, problem
):
    """Half a row would read as a window of unknown label, and the verdicts would be those
    of the rows left."""
    from finseq.revisions import read_predictions

    monkeypatch.chdir(tmp_path)
    text = (ROOT / "metrics" / "predictions.csv").read_text()
    lines = text.splitlines(keepends=True)[:4]
    if cut == "truncated":
        written = "".join(lines)[:-30]
    elif cut == "no column":
        written = "".join(line.rsplit(",", 1)[0] + "\n" for line in lines)
    else:
        written = "".join(lines).replace(lines[2].split(",")[4], "nan", 1)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "predictions.csv").write_text(written)
    with pytest.raises(DataError) as raised:
        read_predictions(None)
    assert str(raised.value) == f"metrics/predictions.csv in the workspace: {problem}"
    (tmp_path / "metrics" / "predictions.csv").write_text("".join(lines))
    assert len(read_predictions(None)) == 3
