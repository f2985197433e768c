"""Experiments per hour: a sweep run one after another on all cores, or by `dvc queue` workers.

    python benchmarks/sweep.py            # 4 experiments: lstm, gru x hidden 16, 32; 5 epochs
    python benchmarks/sweep.py --quick    # smoke run: 2 tiny experiments of 1 epoch

Each way runs in its own temporary git + DVC copy of the repository (real data/raw,
real params.yaml with the sweep's few overrides), where prepare and window have
already run and are committed, so that both ways time the same train + evaluate work:
  sequential: `dvc exp run -S ...` once per experiment in the workspace, where
              train.threads = auto uses every usable core;
  queue:      `dvc exp run --queue -S ...` once per experiment, then
              `dvc queue start -j <workers>`, waiting until every task has finished;
              inside DVC's temporary workspaces train.threads = auto is 1 thread.
The queue's time includes queueing the experiments, as a user would pay it.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    ROOT,
    copy_pipeline,
    default_params_dict,
    machine_line,
    markdown_table,
    merge,
    run_checked,
    subprocess_environment,
    write_json,
)

from finseq.training import usable_cores

FINISHED = ("Success", "Failed")
UNFINISHED = ("Queued", "Running")


@dataclass(frozen=True)
class SweepProject:
    path: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        return run_checked(args, self.path, self.env, timeout)


def experiment_grid(types: list[str], hidden_dims: list[int]) -> list[list[str]]:
    """The -S assignments of each experiment; every key is set each time, because a
    workspace `dvc exp run -S` leaves its values in params.yaml for the next run."""
    return [
        [f"model.type={model_type}", f"model.hidden_dim={hidden}"]
        for model_type, hidden in itertools.product(types, hidden_dims)
    ]


def set_options(assignments: list[str]) -> list[str]:
    return [option for assignment in assignments for option in ("-S", assignment)]


def make_sweep_project(directory: Path, overrides: dict) -> SweepProject:
    """A git + DVC copy with the real raw data, params.yaml + `overrides`, and prepare and
    window already run and committed."""
    raw_files = [ROOT / path for path in default_params_dict()["data"]["files"]]
    copy_pipeline(directory, merge(default_params_dict(), overrides), raw_files)
    project = SweepProject(directory, subprocess_environment(directory.parent / "home"))
    project.run("git", "init", "-q", "-b", "main")
    project.run("dvc", "repro", "window")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "sweep baseline: data prepared and windowed")
    return project


def queue_counts(status_output: str) -> dict[str, int]:
    """Tasks per status in `dvc queue status` output (one task per line, status in a column)."""
    counts = dict.fromkeys((*UNFINISHED, *FINISHED), 0)
    for line in status_output.splitlines():
        words = line.split()
        for status in counts:
            if status in words:
                counts[status] += 1
    return counts


def run_sequential(project: SweepProject, experiments: list[list[str]]) -> float:
    start = time.perf_counter()
    for assignments in experiments:
        project.run("dvc", "exp", "run", *set_options(assignments))
    return time.perf_counter() - start


def saved_experiments(project: SweepProject) -> int:
    """Experiments whose results are saved (refs/exps/<baseline>/<name>); a cheap git call,
    so that polling takes no CPU from the workers being timed."""
    output = project.run("git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout
    names = [ref.split("/")[2:] for ref in output.split()]
    return sum(len(parts) == 3 and len(parts[0]) == 2 and parts[0] != "exec" for parts in names)


def wait_for_queue(
    project: SweepProject, n_tasks: int, poll_s: float, status_every_s: float, timeout_s: float
) -> float:
    """Waits until all `n_tasks` experiments are saved and returns that time (perf_counter).

    Polls the saved-experiment refs every `poll_s`; `dvc queue status` (about 0.4 s of
    CPU per call) only every `status_every_s` to catch a failed task, and afterwards
    until the queue shows every task finished, to confirm that all succeeded.
    """
    deadline = time.monotonic() + timeout_s
    last_status = time.monotonic()
    while saved_experiments(project) < n_tasks:
        if time.monotonic() - last_status > status_every_s:
            queue_status(project)
            last_status = time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the queue did not finish within {timeout_s:.0f} s")
        time.sleep(poll_s)
    finished = time.perf_counter()
    while True:
        counts, output = queue_status(project)
        if not any(counts[status] for status in UNFINISHED):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the queue did not finish within {timeout_s:.0f} s:\n{output}")
        time.sleep(poll_s)
    if counts["Success"] != n_tasks:
        raise RuntimeError(f"expected {n_tasks} successful tasks:\n{output}")
    return finished


def queue_status(project: SweepProject) -> tuple[dict[str, int], str]:
    """`dvc queue status` counted by status; raises with the log of a failed task."""
    output = project.run("dvc", "queue", "status").stdout
    failed = [line.split()[0] for line in output.splitlines() if "Failed" in line.split()]
    if failed:
        logs = project.run("dvc", "queue", "logs", failed[0]).stdout
        raise RuntimeError(f"a queued experiment failed:\n{output}\n{logs}")
    return queue_counts(output), output


def run_queue(
    project: SweepProject, experiments: list[list[str]], workers: int, poll_s: float
) -> dict[str, float]:
    start = time.perf_counter()
    for assignments in experiments:
        project.run("dvc", "exp", "run", "--queue", *set_options(assignments))
    queued = time.perf_counter()
    project.run("dvc", "queue", "start", "-j", str(workers))
    try:
        end = wait_for_queue(project, len(experiments), poll_s, status_every_s=30, timeout_s=3600)
    finally:
        project.run("dvc", "queue", "stop")
    return {"total_s": end - start, "queueing_s": queued - start, "running_s": end - queued}


def experiments_listed(project: SweepProject) -> int:
    """Experiments `dvc exp ls` lists for the baseline: proof that each one ran and was saved."""
    output = project.run("dvc", "exp", "ls", "--name-only").stdout
    return len([line for line in output.splitlines() if line.strip()])


def report(args: argparse.Namespace, experiments: list[list[str]], results: dict) -> str:
    n = len(experiments)
    sequential, queue = results["sequential"], results["queue"]
    per_hour = {name: n / result["total_s"] * 3600 for name, result in results.items()}
    faster = max(per_hour, key=per_hour.get)
    slower = min(per_hour, key=per_hour.get)
    rows = [
        [
            "sequential (`dvc exp run` x n, all cores)",
            n,
            f"{sequential['total_s']:.1f}",
            "-",
            f"{per_hour['sequential']:.0f}",
        ],
        [
            f"queue (`dvc queue start -j {args.workers}`, 1 thread each)",
            n,
            f"{queue['total_s']:.1f}",
            f"{queue['queueing_s']:.1f}",
            f"{per_hour['queue']:.0f}",
        ],
    ]
    headers = ["way", "experiments", "wall s", "of which queueing s", "experiments / hour"]
    return "\n".join(
        [
            "## Sweep: sequential vs dvc queue (benchmarks/sweep.py)",
            "",
            f"- machine: {machine_line()}",
            f"- experiments: {'; '.join(' '.join(a) for a in experiments)}; "
            f"train.epochs={args.epochs}; everything else from params.yaml; "
            "prepare and window cached, so each experiment runs train + evaluate",
            f"- queue finished when the last experiment's result was saved (refs polled every "
            f"{args.poll:g} s; `dvc queue status` confirms every task succeeded)",
            "",
            markdown_table(headers, rows),
            "",
            f"Faster: **{faster}**, {per_hour[faster] / per_hour[slower]:.2f}x the experiments "
            f"per hour of {slower}.",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="+", default=["lstm", "gru"])
    parser.add_argument("--hidden", nargs="+", type=int, default=[16, 32])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="dvc queue workers (-j)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between queue polls")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    parser.add_argument("--quick", action="store_true", help="2 experiments, hidden 4, 1 epoch")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.types, args.hidden, args.epochs = ["lstm", "gru"], [4], 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    experiments = experiment_grid(args.types, args.hidden)
    # Patience above the epoch count: every experiment trains exactly train.epochs epochs.
    overrides = {"train": {"epochs": args.epochs, "patience": args.epochs + 1, "threads": "auto"}}
    workdir = Path(tempfile.mkdtemp(prefix="finseq-sweep-"))
    results = {}
    try:
        for way in ("sequential", "queue"):
            print(f"{way}: building a project copy in {workdir / way} ...", file=sys.stderr)
            project = make_sweep_project(workdir / way / "repo", overrides)
            print(f"{way}: running {len(experiments)} experiments ...", file=sys.stderr)
            if way == "sequential":
                results[way] = {"total_s": run_sequential(project, experiments)}
            else:
                results[way] = run_queue(project, experiments, args.workers, args.poll)
            results[way]["experiments_listed"] = experiments_listed(project)
            if results[way]["experiments_listed"] != len(experiments):
                raise RuntimeError(
                    f"{way}: `dvc exp ls` lists {results[way]['experiments_listed']} "
                    f"experiments, expected {len(experiments)}"
                )
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(args, experiments, results))
    write_json(
        args.json,
        {
            "experiments": experiments,
            "epochs": args.epochs,
            "workers": args.workers,
            "usable_cores": usable_cores(),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
