"""Helpers the benchmark scripts and the tests share: the default data, machine facts, reports,
temporary git + DVC copies of the project.

The scripts run as `python benchmarks/<name>.py` from the repository root, which puts
this directory on sys.path; tests add it themselves.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from finseq import pipeline
from finseq.artifacts import PreparedData, WindowSets
from finseq.params import Params, parse_params
from finseq.runtime import usable_cores

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# Files of the repository that a DVC test project needs, besides generated data.
PROJECT_FILES = (
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    # The offline plots page that .dvc/config names as plots.html_template.
    ".dvc/plots/offline.html",
    # The vega-lite templates of dvc.yaml's plots (by fold, by date, the learning rate's log
    # axis, the reliability diagram).
    ".dvc/plots/by_fold.json",
    ".dvc/plots/by_date.json",
    ".dvc/plots/learning_rate.json",
    ".dvc/plots/reliability.json",
)


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied section by section (a deep copy)."""
    merged = copy.deepcopy(base)
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(copy.deepcopy(values))
    return merged


def default_params_dict() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


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


MB = 1e6


# The speed benchmarks time one model on one split: holdout, whose one fold is today's split.
ONE_SPLIT = {"split": {"method": "holdout"}}


def default_params(**overrides: dict) -> Params:
    """The repository's params.yaml on one holdout split, with data.files made absolute and
    `overrides` applied."""
    raw = merge(merge(default_params_dict(), ONE_SPLIT), overrides)
    raw["data"]["files"] = [str(ROOT / path) for path in raw["data"]["files"]]
    return parse_params(raw)


@dataclass(frozen=True)
class Dataset:
    """The prepare and window stages' outputs, computed in memory."""

    prepared: PreparedData
    windows: WindowSets

    @property
    def fold(self) -> str:
        return self.prepared.meta["model_fold"]

    @property
    def ends(self) -> dict[str, np.ndarray]:
        """Window ends per part of the model's fold (holdout: the one split)."""
        return self.windows.ends[self.fold]

    @property
    def features(self) -> np.ndarray:
        """The feature matrix scaled as the model's fold scales it (float32)."""
        return self.prepared.scaled_features(self.fold)

    @property
    def labels(self) -> np.ndarray:
        return self.prepared.labels

    @property
    def n_windows(self) -> int:
        return sum(len(ends) for ends in self.ends.values())


def build_dataset(params: Params) -> Dataset:
    """Runs prepare and window in memory on `params.data.files`, as the stages do."""
    prepared = pipeline.prepare(params)
    return Dataset(prepared, pipeline.window(params, prepared))


@dataclass(frozen=True)
class WindowMemory:
    """Bytes of the feature matrix, of the window outputs (one int64 end per window), and of
    the N x L x F float32 array that materialising every window would need."""

    feature_matrix: int
    window_outputs: int
    materialised: int

    @classmethod
    def of(cls, rows: int, n_features: int, n_windows: int, seq_len: int) -> WindowMemory:
        return cls(
            feature_matrix=rows * n_features * 4,
            window_outputs=n_windows * 8,
            materialised=n_windows * seq_len * n_features * 4,
        )

    def lines(self, rows: int, n_features: int, n_windows: int, seq_len: int) -> list[str]:
        features = self.feature_matrix
        return [
            f"- feature matrix: {rows:,} rows x {n_features} float32 = {features / MB:.2f} MB",
            f"- window outputs: {n_windows:,} int64 ends x 8 B = {self.window_outputs / MB:.2f} MB "
            f"({self.window_outputs / features:.3f}x the feature matrix)",
            f"- materialising every window (N x L x F float32 = {n_windows:,} x {seq_len} x "
            f"{n_features} x 4 B) would take {self.materialised / MB:.1f} MB "
            f"({self.materialised / features:.1f}x the feature matrix)",
        ]


def peak_rss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    """Peak resident set size; Linux reports ru_maxrss in KiB, macOS in bytes."""
    peak = resource.getrusage(who).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(device: str = "cpu") -> str:
    """One line naming the hardware and software the numbers were measured on."""
    line = (
        f"{cpu_name()}, {usable_cores()} usable cores; Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}"
    )
    if device == "cuda":
        line += f"; GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return line


# A fixed pure-Python workload: this machine's speed drifts by up to 2x over minutes (other
# tenants), so a benchmark quotes this beside its figures to say how fast the machine was.
REFERENCE_STEPS = 20_000_000


def reference_seconds() -> float:
    """Seconds of a REFERENCE_STEPS-step Python loop (1.4 s on a quiet run of this machine)."""
    start = time.perf_counter()
    total = 0
    for step in range(REFERENCE_STEPS):
        total += step * step
    return time.perf_counter() - start


def write_json(path: str | Path | None, payload: dict) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"\n(wrote {path})")


def subprocess_environment(home: Path) -> dict[str, str]:
    """The tests' environment for dvc subprocesses (venv first on PATH, no analytics, private
    DVC config), with each workspace's own `src` first on the import path."""
    env = dvc_environment(home)
    # Relative, so that DVC's temporary experiment workspaces import their own copy.
    env["PYTHONPATH"] = "src"
    return env


def copy_pipeline(directory: Path, params: dict, raw_files: Sequence[Path]) -> None:
    """Copies the pipeline and `raw_files` (into data/raw, unless they are there already) and
    writes `params`, whose data.files are pointed at data/raw."""
    copy_pipeline_files(directory)
    raw_dir = directory / "data" / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    for path in raw_files:
        target = raw_dir / Path(path).name
        if Path(path).resolve() != target.resolve():
            shutil.copy2(path, target)
    params = merge(params, {})
    params["data"]["files"] = [f"data/raw/{Path(path).name}" for path in raw_files]
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_checked(
    args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Runs a command; on failure raises with its output, so a broken run is never timed."""
    result = subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(args)}` in {cwd} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result
