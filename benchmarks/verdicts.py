"""How often the report's verdicts are wrong: its false-positive rate on pairs of runs that
differ only in their seeds, and its power on a change with a real effect.

    python benchmarks/verdicts.py                        # 20 pairs of each kind (about 7 min)
    python benchmarks/verdicts.py --pairs 2 --bars 1500  # smoke run

The panel is generated (finseq.synthetic): series whose volatility switches between two
hidden regimes (`volatility_ratio`), so the size of the next moves can be learnt from the
recent bars, their direction cannot. Every run is the repository's params.yaml on one
holdout split, with a smaller model and train.seeds seeds, trained and scored by the
pipeline's own functions (finseq.folds.train_models, finseq.scoring.evaluate_folds); each
pair is then judged by the report's own verdict_section, training noise included.

- Seed-only pairs: run k at train.seed = 1000 + 10 k against the same run at 1005 + 10 k
  (no seed shared). Any `better` or `worse` is a false positive; the share per figure is
  given with its 95% Clopper-Pearson interval.
- Planted pairs: the same model, trained once on labels shuffled among its training
  windows (it can learn nothing from the features: the change's base) and once on the true
  labels (the target), at the same seeds. The share reading `better` on skill is the power.

Runs are trained side by side in --workers processes of one thread each.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

from finseq import evaluate, pipeline
from finseq.artifacts import PreparedData, WindowSets
from finseq.folds import train_models
from finseq.params import Params
from finseq.paths import FOLD_MODELS_DIR
from finseq.runtime import set_numerics
from finseq.scoring import evaluate_folds
from finseq.split import TRAIN
from finseq.synthetic import write_panel
from finseq.verdicts import VERDICT_ROWS, EvidenceSettings, verdict_section

CPU = torch.device("cpu")
FIGURES = [name for name, _ in VERDICT_ROWS]
# A smaller model than the default, so that 60 runs of three seeds fit in minutes.
MODEL = {"hidden_dim": 16, "num_layers": 1, "dropout": 0.1}
TRAIN_SETTINGS = {"epochs": 8, "patience": 3, "threads": 1, "fold_workers": 1, "device": "cpu"}


@dataclasses.dataclass(frozen=True)
class Run:
    """One run's out-of-sample predictions table (as recorded) and its seeds.* spread."""

    predictions: pd.DataFrame
    seeds: dict


def run_params(files: list[Path], seeds: int, seq_len: int) -> Params:
    """params.yaml on one holdout split with the benchmark's smaller model and training."""
    return benchlib.default_params(
        data={"files": [str(path) for path in files], "workers": 1},
        split={"lockbox": None},
        window={"seq_len": seq_len},
        model=MODEL,
        train={**TRAIN_SETTINGS, "seeds": seeds},
    )


def shuffled_training_labels(data: PreparedData, seed: int) -> PreparedData:
    """The holdout fold's training labels permuted among its training samples; val and
    test labels untouched: a model that can learn nothing from its features."""
    index = data.fold_index(data.meta["model_fold"])
    train_samples = np.flatnonzero(data.samples[index] & (data.parts[index] == TRAIN))
    labels = data.labels.copy()
    labels[train_samples] = np.random.default_rng(seed).permutation(labels[train_samples])
    return dataclasses.replace(data, labels=labels)


_shared: tuple[Params, PreparedData, WindowSets] | None = None


def _start_worker(shared: tuple[Params, PreparedData, WindowSets]) -> None:
    global _shared
    torch.set_num_threads(1)
    set_numerics(CPU)
    _shared = shared


def run_once(job: tuple[int, bool]) -> tuple[tuple[int, bool], Run]:
    """Trains and scores one run at train.seed `seed`, on shuffled training labels if asked."""
    seed, shuffled = job
    assert _shared is not None
    params, data, windows = _shared
    if shuffled:
        data = shuffled_training_labels(data, seed)
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, seed=seed))
    with tempfile.TemporaryDirectory() as root:
        train_models(params, data, windows, CPU, root=Path(root))
        evaluation = evaluate_folds(
            params,
            data,
            windows,
            CPU,
            Path(root) / FOLD_MODELS_DIR,
            prepared_dir="(in memory)",
            windows_dir="(in memory)",
        )
    table = evaluate.read_predictions(evaluation.predictions_csv)
    return job, Run(table, evaluation.metrics["seeds"])


def verdict_words(base: Run, target: Run, settings: EvidenceSettings) -> dict[str, str]:
    """The report's verdict on each figure, target against base, training noise included."""
    _, headline = verdict_section(
        base.predictions, target.predictions, settings, "base", "target", (base.seeds, target.seeds)
    )
    words = {}
    for name in FIGURES:
        found = re.search(
            rf"(?<![a-z_]){name} (better|worse|within noise|not measured in both)", headline
        )
        words[name] = found.group(1) if found else "missing"
    return words


def share_line(name: str, hits: int, pairs: int) -> str:
    low, high = stats.binomtest(hits, pairs).proportion_ci(0.95, method="exact")
    return f"| {name} | {hits} of {pairs} | {hits / pairs:.0%} | [{low:.0%}, {high:.0%}] |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20, help="pairs of each kind")
    parser.add_argument("--series", type=int, default=2)
    parser.add_argument("--bars", type=int, default=4000, help="bars per series")
    parser.add_argument("--seeds", type=int, default=3, help="train.seeds of every run")
    parser.add_argument("--seq-len", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as raw:
        files = write_panel(
            raw, args.series, args.bars, seed=11, volatility_ratio=3.0, persistence=0.98
        )
        params = run_params(files, args.seeds, args.seq_len)
        data = pipeline.prepare(params)
    windows = pipeline.window(params, data)
    settings = EvidenceSettings.of(params)
    first = [1000 + 10 * k for k in range(args.pairs)]
    jobs = [(seed, False) for seed in first]
    jobs += [(seed + 5, False) for seed in first]
    jobs += [(seed, True) for seed in first]
    context = get_context("fork")
    with context.Pool(args.workers, _start_worker, ((params, data, windows),)) as pool:
        runs = dict(pool.imap_unordered(run_once, jobs))

    false_positives = dict.fromkeys(FIGURES, 0)
    planted = dict.fromkeys(FIGURES, 0)
    for seed in first:
        same = verdict_words(runs[(seed, False)], runs[(seed + 5, False)], settings)
        for name, word in same.items():
            false_positives[name] += word in ("better", "worse")
        real = verdict_words(runs[(seed, True)], runs[(seed, False)], settings)
        for name, word in real.items():
            planted[name] += word == "better"

    test = runs[(first[0], False)].predictions
    lines = [
        f"{benchlib.machine_line()}; {time.perf_counter() - started:.0f} s",
        f"panel: {args.series} series x {args.bars} bars, volatility regimes (ratio 3), no "
        f"drift; holdout test {test['timestamp'].nunique()} dates; {args.seeds} seeds per "
        f"run; model {MODEL}, seq_len {args.seq_len}",
        "",
        f"False positives over {args.pairs} seed-only pairs (`better` or `worse`):",
        "",
        "| figure | pairs | share | 95% interval |",
        "| --- | --- | --- | --- |",
        *(share_line(name, false_positives[name], args.pairs) for name in FIGURES),
        "",
        f"Power over {args.pairs} planted pairs (true labels against shuffled, `better`):",
        "",
        "| figure | pairs | share | 95% interval |",
        "| --- | --- | --- | --- |",
        *(share_line(name, planted[name], args.pairs) for name in FIGURES),
    ]
    print("\n".join(lines))
    benchlib.write_json(
        args.json,
        {
            "pairs": args.pairs,
            "false_positives": false_positives,
            "power": planted,
            "seeds": {
                f"{seed}{'-shuffled' if shuffled else ''}": run.seeds
                for (seed, shuffled), run in sorted(runs.items())
            },
        },
    )


if __name__ == "__main__":
    main()
