"""Walk-forward folds: one process on every core against one single-threaded process per core.

Trains every fold of the default walk-forward run (params.yaml, the default data) twice,
in rounds that alternate the two ways:
  - sequential: one process, torch on every usable core, the folds one after the other;
  - parallel: one worker process per usable core, one torch thread each, a fold per task
    (as `dvc queue` workers run experiments side by side).
It reports wall time per round, the sum of the fold fits, and whether both ways gave the
same weights. `--stage` also times the whole train stage (`python -m finseq.stages.train`
in a temporary copy of the pipeline), to set the fold fits against what the stage adds.

    python benchmarks/folds.py [--rounds 2] [--stage] [--json PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from benchlib import (
    ROOT,
    Dataset,
    build_dataset,
    copy_pipeline,
    default_params,
    default_params_dict,
    machine_line,
    markdown_table,
    merge,
    subprocess_environment,
    write_json,
)

from finseq.training import set_numerics, train_fold, usable_cores

WALK_FORWARD = {"split": {"method": "walk_forward"}}
_shared: dict = {}


def fit_one(fold: str) -> tuple[str, float, dict[str, torch.Tensor]]:
    """Trains `fold` of the shared dataset; returns its fit time and final weights."""
    dataset, params = _shared["dataset"], _shared["params"]
    start = time.perf_counter()
    model, _ = train_fold(
        dataset.prepared,
        dataset.windows,
        fold,
        params.model,
        params.train,
        torch.device("cpu"),
    )
    return fold, time.perf_counter() - start, model.state_dict()


def _single_threaded_worker() -> None:
    torch.set_num_threads(1)
    set_numerics(torch.device("cpu"))


def sequential(folds: list[str], threads: int) -> tuple[float, dict]:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    results = {fold: fit_one(fold)[1:] for fold in folds}
    return time.perf_counter() - start, results


def parallel(folds: list[str], workers: int) -> tuple[float, dict]:
    """Longest folds first, so that the last task to start is a short one."""
    context = multiprocessing.get_context("fork")
    start = time.perf_counter()
    with ProcessPoolExecutor(workers, context, initializer=_single_threaded_worker) as pool:
        results = {fold: (fit, weights) for fold, fit, weights in pool.map(fit_one, folds[::-1])}
    return time.perf_counter() - start, results


def same_weights(first: dict, second: dict) -> bool:
    return all(
        all(torch.equal(first[fold][1][name], second[fold][1][name]) for name in first[fold][1])
        for fold in first
    )


def time_train_stage(workdir: Path) -> float:
    """Wall time of the train stage alone, on prepared data and windows of the default run."""
    raw = [ROOT / path for path in default_params_dict()["data"]["files"]]
    # One seed: the stage then trains the same nine models as the rounds above.
    params = merge(default_params_dict(), {"train": {"seeds": 1}})
    copy_pipeline(workdir, params, raw)
    env = subprocess_environment(workdir.parent / "home")
    for stage in ("prepare", "window"):
        subprocess.run(["python", "-m", f"finseq.stages.{stage}"], cwd=workdir, env=env, check=True)
    start = time.perf_counter()
    subprocess.run(
        ["python", "-m", "finseq.stages.train"],
        cwd=workdir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stage", action="store_true", help="also time the whole train stage")
    parser.add_argument("--json")
    args = parser.parse_args()

    params = default_params(**WALK_FORWARD)
    dataset: Dataset = build_dataset(params)
    _shared.update(dataset=dataset, params=params)
    set_numerics(torch.device("cpu"))
    folds = dataset.prepared.fold_names
    cores = usable_cores()
    rounds = []
    for number in range(args.rounds):
        seq_wall, seq = sequential(folds, cores)
        par_wall, par = parallel(folds, cores)
        rounds.append(
            {
                "round": number + 1,
                "sequential_s": seq_wall,
                "parallel_s": par_wall,
                "sequential_fit_sum_s": sum(fit for fit, _ in seq.values()),
                "parallel_fit_sum_s": sum(fit for fit, _ in par.values()),
                "same_weights": same_weights(seq, par),
                "fold_fit_s": {fold: seq[fold][0] for fold in folds},
            }
        )
        print(f"round {number + 1}: sequential {seq_wall:.1f} s, parallel {par_wall:.1f} s")
    stage_s = None
    if args.stage:
        workdir = Path(tempfile.mkdtemp(prefix="finseq-folds-"))
        try:
            stage_s = time_train_stage(workdir / "repo")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n### Walk-forward folds: sequential against parallel\n\n{machine_line()}\n")
    print(
        f"{len(folds)} folds ({', '.join(folds)}) of the default run, {params.model.type} "
        f"hidden {params.model.hidden_dim}, {params.train.precision}. Sequential: one process, "
        f"{cores} torch threads. Parallel: {cores} processes, 1 thread each.\n"
    )
    rows = [
        [
            r["round"],
            f"{r['sequential_s']:.1f}",
            f"{r['parallel_s']:.1f}",
            f"{r['sequential_s'] / r['parallel_s']:.2f}x",
            f"{r['sequential_fit_sum_s']:.1f}",
            f"{r['parallel_fit_sum_s']:.1f}",
            "yes" if r["same_weights"] else "no",
        ]
        for r in rounds
    ]
    headers = [
        "round",
        "sequential wall (s)",
        "parallel wall (s)",
        "speed-up",
        "sum of fits, sequential (s)",
        "sum of fits, parallel (s)",
        "same weights",
    ]
    print(markdown_table(headers, rows))
    if stage_s is not None:
        wall = min(r["parallel_s"] for r in rounds)
        print(
            f"\nWhole train stage (`python -m finseq.stages.train`, `train.fold_workers: auto`, "
            f"so {cores} workers of 1 thread): {stage_s:.1f} s, against {wall:.1f} s of parallel "
            "fold fits in the best round above; the rest is start-up, loading, DVCLive and "
            "checkpoints."
        )
    write_json(args.json, {"machine": machine_line(), "rounds": rounds, "train_stage_s": stage_s})


if __name__ == "__main__":
    main()
