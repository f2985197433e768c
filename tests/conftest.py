"""Shared fixtures: tiny params built from the real params.yaml, generated series, DVC projects.

Tests exercise the real code paths on tiny settings (few epochs, short windows,
small models, a few hundred generated bars) so the suite stays fast on 2 cores.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from finseq.params import Params, SplitConfig, parse_params, parse_section
from finseq.synthetic import write_panel

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

TINY_OVERRIDES = {
    "label": {"horizon": 3, "vol_window": 10},
    # Three walk-forward folds, not eight: every fold path runs, in half the training time.
    "split": {"embargo": 2, "folds": 3},
    "window": {"seq_len": 8},
    "model": {"hidden_dim": 8, "num_layers": 1},
    "train": {"epochs": 2, "batch_size": 64, "patience": 2, "threads": 1, "seeds": 1},
    "evaluate": {"batch_size": 512, "resamples": 200},
}

# Files of the repository that a DVC test project needs, besides generated data.
PROJECT_FILES = (
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    # The offline plots page that .dvc/config names as plots.html_template.
    ".dvc/plots/offline.html",
    # The vega-lite template of the by-fold validation loss chart (dvc.yaml's plots).
    ".dvc/plots/by_fold.json",
    ".dvc/plots/by_date.json",
    ".dvc/plots/learning_rate.json",
)


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
)


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied section by section (a deep copy)."""
    merged = copy.deepcopy(base)
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(copy.deepcopy(values))
    return merged


def default_params_dict() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_params_dict(**overrides: dict) -> dict:
    """The repository's params.yaml with the tiny overrides, then `overrides`, applied."""
    return merge(merge(default_params_dict(), TINY_OVERRIDES), overrides)


def tiny_params(**overrides: dict) -> Params:
    return parse_params(tiny_params_dict(**overrides))


def split_config(**overrides: object) -> SplitConfig:
    """params.yaml's split section with `overrides` (e.g. method="holdout", train=0.6)."""
    values = {**default_params_dict()["split"], **overrides}
    return parse_section(SplitConfig, values, "split")


def holdout_split(train: float, val: float, embargo: int) -> SplitConfig:
    return split_config(method="holdout", train=train, val=val, embargo=embargo)


def dvc_environment(home: Path) -> dict[str, str]:
    """Environment for dvc subprocesses: this venv first on PATH, no analytics, private config."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    for name in ("DVC_SITE_CACHE_DIR", "DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR"):
        directory = home / name.lower()
        directory.mkdir(parents=True, exist_ok=True)
        env[name] = str(directory)
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "finseq tests"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "tests@finseq.invalid"
    env["PYTHONUNBUFFERED"] = "1"
    return env


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


def copy_pipeline_files(directory: Path) -> None:
    """Copies what a project needs besides data and params: dvc.yaml, DVC config, the package."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    shutil.copytree(
        ROOT / "src", directory / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )


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
    """A tiny project whose pipeline ran once, per test process. Tests get copies of it
    (`reproduced_project`), so the tiny pipeline runs once, not once per module."""
    project = make_project(tmp_path_factory.mktemp("template") / "repo")
    project.run("dvc", "repro")
    project.commit("reproduced")
    return project.path


def reproduced_project(template: Path, directory: Path) -> Project:
    """A copy at `directory` of the reproduced tiny project: every output is in git or the
    DVC cache (copied with it), so a test can break things and restore them."""
    shutil.copytree(template, directory)
    return project_at(directory)


@pytest.fixture(scope="session")
def shared_reproduced(
    reproduced_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    """One reproduced tiny project for the session, for tests that read its outputs (the
    offline plots) and then for tests/test_predict.py's, which put back what they change."""
    return reproduced_project(reproduced_template, tmp_path_factory.mktemp("shared") / "repo")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "repo")


def train_tiny_model(raw: Sequence[Path], model_file: Path):
    """Prepares, windows and trains the final fold of `raw` in process with the tiny params,
    and saves its checkpoint to `model_file`; returns the prepared data and window sets."""
    import torch

    from finseq.checkpoint import save_checkpoint
    from finseq.dataset import make_window_sets, prepare_dataset
    from finseq.load import load_series
    from finseq.training import fold_checkpoint, train_fold

    params = tiny_params()
    data = prepare_dataset({str(p): load_series(p) for p in raw}, params.label, params.split)
    windows = make_window_sets(data, params.window)
    fold = data.meta["model_fold"]
    model, result = train_fold(data, windows, fold, params.model, params.train, torch.device("cpu"))
    save_checkpoint(fold_checkpoint(model, result, data, windows, fold, params), model_file)
    return data, windows
