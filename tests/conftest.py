"""Shared fixtures: tiny params built from the real params.yaml, generated series, DVC projects.

Tests exercise the real code paths on tiny settings (few epochs, short windows,
small models, a few hundred generated bars) so the suite stays fast on 2 cores.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
# The benchmarks' helpers build the temporary git + DVC copies of the pipeline for both.
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchlib import (  # noqa: E402
    PROJECT_FILES,  # noqa: F401  (tests import it from conftest)
    VENV_BIN,  # noqa: F401  (tests import it from conftest)
    copy_pipeline_files,
    default_params_dict,
    dvc_environment,
    merge,
)

from finseq.params import Params, SplitConfig, parse_params, parse_section  # noqa: E402
from finseq.synthetic import write_panel  # noqa: E402

TINY_OVERRIDES = {
    "label": {"horizon": 3, "vol_window": 10},
    # Three walk-forward folds, not eight: every fold path runs, in half the training time.
    # Generated series start in 2000 and end long before the default data's lockbox date
    # (which would seal nothing, an error): tiny runs have no lockbox unless a test sets one.
    "split": {"embargo": 2, "folds": 3, "lockbox": None},
    "window": {"seq_len": 8},
    "model": {"hidden_dim": 8, "num_layers": 1},
    # On the CPU wherever the suite runs: the byte-identity checks compare CPU runs.
    "train": {
        "epochs": 2,
        "batch_size": 64,
        "patience": 2,
        "threads": 1,
        "seeds": 1,
        "device": "cpu",
    },
    "evaluate": {"batch_size": 512, "resamples": 200},
}


# The dvc.yaml stages, in the order `dvc repro` runs them.
PIPELINE_STAGES = ("prepare", "window", "train", "evaluate", "lockbox")

# Files every default (walk-forward) run writes, one of each kind.
PIPELINE_OUTPUTS = (
    "data/prepared/features.npy",
    "data/windows/f1_train.npy",
    "data/windows/final_val.npy",
    "models/model.pth",
    "models/folds/f1.pth",
    "models/folds/final.pth",
    "metrics/data.json",
    "metrics/eval.json",
    "metrics/predictions.csv",
    "metrics/equity.csv",
    "metrics/confusion_test.csv",
    "metrics/train/metrics.json",
    "metrics/train/plots/metrics/train/loss.tsv",
    "metrics/train/plots/metrics/val/loss.tsv",
    "metrics/train/folds/curves.tsv",
    "metrics/train/folds/f1/plots/metrics/val/loss.tsv",
    "metrics/lockbox.json",
)


def prepare_error_line(directory: Path) -> str:
    """Runs the prepare stage in `directory` (params.yaml and data there, no git or DVC)
    and returns its one stderr line, after checking exit 2 and that nothing was written."""
    result = subprocess.run(
        [sys.executable, "-m", "finseq.stages.prepare"],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert not (directory / "data" / "prepared").exists()
    assert not (directory / "metrics").exists()
    return lines[0]


def stage_imports(
    directory: Path, stage: str, modules: Sequence[str]
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Runs `stage` in a fresh Python process in `directory` (through run_stage, as
    `python -m finseq.stages.<stage>` does) and returns the run and which of `modules` it
    had imported when it ended, succeeded or not."""
    script = (
        "import sys\n"
        "from finseq.command import run_stage\n"
        f"from finseq.stages.{stage} import main\n"
        "try:\n"
        "    run_stage(main)\n"
        "finally:\n"
        f"    print(sorted(m for m in {tuple(modules)!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=directory, capture_output=True, text=True, check=False
    )
    lines = result.stdout.strip().splitlines()
    assert lines, f"the stage process printed nothing:\n{result.stderr}"
    return result, ast.literal_eval(lines[-1])


def tiny_params_dict(**overrides: dict) -> dict:
    """The repository's params.yaml with the tiny overrides, then `overrides`, applied."""
    return merge(merge(default_params_dict(), TINY_OVERRIDES), overrides)


def tiny_params(**overrides: dict) -> Params:
    return parse_params(tiny_params_dict(**overrides))


def split_config(**overrides: object) -> SplitConfig:
    """params.yaml's split section with `overrides` (e.g. method="holdout", train=0.6), and no
    lockbox unless `overrides` sets one (as tiny_params)."""
    values = {**default_params_dict()["split"], "lockbox": None, **overrides}
    return parse_section(SplitConfig, values, "split")


def holdout_split(train: float, val: float, embargo: int) -> SplitConfig:
    return split_config(method="holdout", train=train, val=val, embargo=embargo)


@dataclass
class Project:
    """A temporary git + DVC copy of this repository with tiny params and generated data."""

    path: Path
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            args, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def write_params(self, params: dict) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def read_params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)


def make_project(
    directory: Path, params: dict | None = None, n_series: int = 2, n_bars: int = 400
) -> Project:
    """Copies the pipeline into `directory`, writes tiny data and params, and commits."""
    copy_pipeline_files(directory)
    files = write_panel(directory / "data" / "raw", n_series=n_series, n_bars=n_bars, seed=7)
    params = params or tiny_params_dict()
    params["data"]["files"] = [str(path.relative_to(directory)) for path in files]
    project = project_at(directory)
    project.write_params(params)
    project.run("git", "init", "-q", "-b", "main")
    project.commit("tiny project")
    return project


def project_at(directory: Path) -> Project:
    """A Project for an existing copy at `directory`, with its own DVC home and package."""
    env = dvc_environment(directory.parent / f"{directory.name}-home")
    # Stages import the copy's own package, so a test can change the code under test.
    env["PYTHONPATH"] = str(directory / "src")
    return Project(path=directory, env=env)


@pytest.fixture(scope="session")
def reproduced_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project whose pipeline ran once per test run: the first test process (pytest-
    xdist worker) to ask builds it under a file lock, in the run's temporary directory that
    the workers share, and the others wait for it. Tests get copies of it
    (`reproduced_project`), so the tiny pipeline runs once, not once per module or worker;
    nothing runs in the template itself."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's directory, above each worker's own
    template = root / "template" / "repo"
    with FileLock(root / "template.lock"):
        if not (template.parent / REPRO_OUTPUT).exists():
            shutil.rmtree(template.parent, ignore_errors=True)  # a build that failed
            template.parent.mkdir()
            project = make_project(template)
            dvc_yaml_before = (project.path / "dvc.yaml").read_bytes()
            output = project.run("dvc", "repro").stdout
            assert (project.path / "dvc.yaml").read_bytes() == dvc_yaml_before, (
                "dvc.yaml was rewritten"
            )
            project.commit("reproduced")
            (template.parent / REPRO_OUTPUT).write_text(output)  # last: the template is done
    return template


# Beside the template: what its `dvc repro` printed (tests/test_pipeline.py reads the stages run).
REPRO_OUTPUT = "repro-output.txt"


def template_repro_output(template: Path) -> str:
    return (template.parent / REPRO_OUTPUT).read_text()


def reproduced_project(template: Path, directory: Path) -> Project:
    """A copy at `directory` of the reproduced tiny project: every output is in git or the
    DVC cache (copied with it), so a test can break things and restore them."""
    shutil.copytree(template, directory)
    return project_at(directory)


@pytest.fixture(scope="session")
def shared_reproduced(
    reproduced_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    """One reproduced tiny project for the session, for tests that only read its outputs
    (the wiring checks, the offline plots page); a test that changes a project works on its
    own copy (`reproduced_project`)."""
    return reproduced_project(reproduced_template, tmp_path_factory.mktemp("shared") / "repo")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "repo")


def train_tiny_model(raw: Sequence[Path], model_file: Path, seeds: int = 1):
    """Prepares, windows and trains the final fold of `raw` in process with the tiny params,
    once per seed (train.seed, train.seed + 1, ...), and saves its checkpoint (the seeds'
    ensemble, as the train stage assembles it) to `model_file`; returns the prepared data
    and window sets."""
    import dataclasses

    import torch

    from finseq import pipeline
    from finseq.checkpoint import save_checkpoint, with_further_seeds
    from finseq.saving import fold_checkpoint

    params = tiny_params(data={"files": [str(path) for path in raw], "workers": 1})
    data = pipeline.prepare(params)
    windows = pipeline.window(params, data)
    cached = _model_of_unmutated_training(raw, seeds)
    if cached is not None and cached.exists():
        shutil.copyfile(cached, model_file)
        return data, windows
    fold = data.meta["model_fold"]
    checkpoints = []
    for offset in range(seeds):
        train = dataclasses.replace(params.train, seed=params.train.seed + offset)
        seeded = dataclasses.replace(params, train=train)
        model, result = pipeline.train_fold(seeded, data, windows, fold, torch.device("cpu"))
        checkpoints.append(fold_checkpoint(model, result, data, windows, fold, seeded))
    save_checkpoint(with_further_seeds(checkpoints[0], checkpoints[1:]), model_file)
    if cached is not None:
        # Each mutmut child writes its own partial file: two may train at once.
        partial = cached.with_suffix(f".{os.getpid()}.partial")
        shutil.copyfile(model_file, partial)
        partial.replace(cached)
    return data, windows


# Under `mutmut run`, a mutant of one of these modules or functions cannot change what
# training does (training calls none of them: the version checks and file hashes run when a
# checkpoint is read or scored), and training is reproducible to the byte, so their mutants'
# tests share one tiny model instead of training it again for each mutant.
CODE_TRAINING_NEVER_CALLS = (
    "finseq.predict.",
    "finseq.predict_inputs.",
    "finseq.versions.",
    "finseq.provenance.x_file_md5_",
    "finseq.provenance.x_short_",
)


def _model_of_unmutated_training(raw: Sequence[Path], seeds: int) -> Path | None:
    """Where a mutant outside training keeps the model that train_tiny_model(raw, ..., seeds)
    trains, keyed by every finseq source file, the raw files and the seeds; None otherwise
    (outside mutmut, or a mutant that training could call)."""
    import hashlib
    import tempfile

    import finseq

    if not os.environ.get("MUTANT_UNDER_TEST", "").startswith(CODE_TRAINING_NEVER_CALLS):
        return None
    digest = hashlib.sha256(f"{seeds}".encode())
    package = Path(finseq.__file__).parent
    for path in [*sorted(package.rglob("*.py")), *raw]:
        digest.update(path.read_bytes())
    return Path(tempfile.gettempdir()) / f"finseq-mutmut-model-{digest.hexdigest()[:16]}.pth"


# Under `mutmut run`, a mutant's tests that have not finished after this many seconds of wall
# time end with mutmut's "timeout" status (36): a mutant that loops forever or deadlocks a
# pool. mutmut's own wall-clock limit does not run in its fork server, and its CPU-time limit
# never fires on a process that waits.
MUTANT_WALL_LIMIT_S = 360
MUTMUT_TIMEOUT_STATUS = 36


def pytest_configure(config) -> None:
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    import signal

    def timed_out(signum, frame) -> None:
        os._exit(MUTMUT_TIMEOUT_STATUS)

    signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(MUTANT_WALL_LIMIT_S)


# An unmarked test should not take this long: the `slow` marker's definition (it runs real
# dvc commands or trains models) is kept by this report, not by a timed test.
UNMARKED_LIMIT_S = 5.0
_unmarked_over_limit: list[tuple[float, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remembers each unmarked test whose setup or call ran past UNMARKED_LIMIT_S (under
    pytest-xdist this runs in the controller, which gets every worker's reports)."""
    unmarked = report.when in ("setup", "call") and "slow" not in report.keywords
    if unmarked and report.duration > UNMARKED_LIMIT_S:
        _unmarked_over_limit.append((report.duration, f"{report.nodeid} ({report.when})"))


def pytest_terminal_summary(terminalreporter) -> None:
    if not _unmarked_over_limit:
        return
    terminalreporter.section(f"tests not marked slow that took over {UNMARKED_LIMIT_S:g} s")
    for duration, nodeid in sorted(_unmarked_over_limit, reverse=True):
        terminalreporter.write_line(f"{duration:6.1f} s  {nodeid}")
