"""bf16 autocast against fp32 on the default data: training speed and the change in metrics.

    python benchmarks/precision.py           # default config; seeds 42 43 44; 5 epochs
    python benchmarks/precision.py --quick   # smoke run: 2 seeds, 1 epoch

Speed: finseq.training.fit on every train window (validation cut to one window),
train.precision fp32 and bf16 timed in alternating rounds. Metrics: the default
config trained for a fixed number of epochs with each seed in each precision,
scored on val and test as the evaluate stage does (same precision, split_metrics
against the train class prior). The seed-to-seed spread of fp32 is the run-to-run
noise that a bf16 difference has to stay inside.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import (
    Dataset,
    build_dataset,
    default_params,
    machine_line,
    markdown_table,
    write_json,
)

from finseq.evaluate import class_prior, split_metrics
from finseq.models import build_model
from finseq.params import Params
from finseq.training import TrainingData, configure_torch, fit, predict_logits

PRECISIONS = ("fp32", "bf16")
COMPARED = [
    (split, metric) for split in ("val", "test") for metric in ("loss", "accuracy", "skill")
]


def training_data(dataset: Dataset, val_windows: int | None = None) -> TrainingData:
    prepared, ends = dataset, dataset.ends
    val_ends = ends["val"][:val_windows] if val_windows else ends["val"]
    return TrainingData.from_arrays(
        prepared.features,
        prepared.labels,
        ends["train"],
        val_ends,
        dataset.windows.seq_len,
        torch.device("cpu"),
    )


def first_train_windows(dataset: Dataset, count: int) -> Dataset:
    """The dataset with only its first `count` train windows, for smoke runs."""
    ends = {**dataset.ends, "train": dataset.ends["train"][:count]}
    all_ends = {**dataset.windows.ends, dataset.fold: ends}
    windows = dataclasses.replace(dataset.windows, ends=all_ends)
    return Dataset(dataset.prepared, windows)


def training_speed(
    dataset: Dataset, params: Params, epochs: int, rounds: int
) -> dict[str, list[float]]:
    """Train samples/s per precision and round; rounds alternate fp32 and bf16."""
    data = training_data(dataset, val_windows=1)
    warm = dataclasses.replace(data, train_ends=data.train_ends[: 4 * params.train.batch_size])
    rates: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for round_index in range(rounds + 1):
        for precision in PRECISIONS:
            config = dataclasses.replace(
                params.train, epochs=epochs, patience=epochs + 1, precision=precision
            )
            torch.manual_seed(params.train.seed)
            model = build_model(params.model, data.features.shape[1])
            if round_index == 0:
                fit(model, warm, dataclasses.replace(config, epochs=1))
                continue
            start = time.perf_counter()
            fit(model, data, config)
            rates[precision].append(epochs * len(data.train_ends) / (time.perf_counter() - start))
    return rates


def train_and_score(
    dataset: Dataset, params: Params, precision: str, seed: int, epochs: int
) -> dict:
    """Trains the configured model for `epochs` (best epoch restored) and scores val and test."""
    config = dataclasses.replace(params.train, epochs=epochs, seed=seed, precision=precision)
    data = training_data(dataset)
    torch.manual_seed(seed)
    model = build_model(params.model, data.features.shape[1])
    start = time.perf_counter()
    result = fit(model, data, config)
    seconds = time.perf_counter() - start
    classes = dataset.labels.astype(np.int64) + 1
    prior = class_prior(classes[dataset.ends["train"]])
    scores = {}
    for split in ("val", "test"):
        ends = dataset.ends[split]
        logits = predict_logits(
            model,
            data.features,
            torch.as_tensor(ends),
            data.seq_len,
            params.evaluate.batch_size,
            precision,
        )
        known = classes[ends] >= 0  # test windows of unknown label are not scored
        scores[split] = split_metrics(logits.numpy()[known], classes[ends][known], prior)
    return {
        "precision": precision,
        "seed": seed,
        "best_epoch": result.best_epoch,
        "fit_s": seconds,
        **scores,
    }


def compare(runs: list[dict]) -> dict[str, dict[str, float | bool]]:
    """For each metric: the fp32 seed-to-seed spread (max - min), the mean bf16 - fp32
    difference, and whether that difference lies within the spread."""
    comparison = {}
    for split, metric in COMPARED:
        values = {
            precision: [run[split][metric] for run in runs if run["precision"] == precision]
            for precision in PRECISIONS
        }
        spread = max(values["fp32"]) - min(values["fp32"])
        difference = statistics.mean(values["bf16"]) - statistics.mean(values["fp32"])
        comparison[f"{split}.{metric}"] = {
            "fp32_spread": spread,
            "bf16_minus_fp32": difference,
            "within_noise": abs(difference) <= spread,
        }
    return comparison


def report(args: argparse.Namespace, params: Params, speed: dict, runs: list[dict]) -> str:
    median = {precision: statistics.median(speed[precision]) for precision in PRECISIONS}
    ratios = [b / f for f, b in zip(speed["fp32"], speed["bf16"], strict=True)]
    faster = min(ratios) > 1
    comparison = compare(runs)
    equal = all(entry["within_noise"] for entry in comparison.values())
    model = params.model
    lines = [
        "## bf16 autocast vs fp32 (benchmarks/precision.py)",
        "",
        f"- machine: {machine_line()}; {torch.get_num_threads()} thread(s); bf16 kernels on "
        f"this CPU: {cpu_bf16_support()}",
        f"- model: {model.type}, hidden {model.hidden_dim}, {model.num_layers} layers; batch "
        f"{params.train.batch_size}; lr {params.train.learning_rate}",
        f"- speed: {args.speed_epochs} epoch(s) of {args.train_windows:,} train windows per "
        f"round ({args.speed_epochs * args.steps_per_epoch} steps), {args.rounds} round(s) "
        "alternating fp32 and bf16",
        "",
        markdown_table(
            ["precision", "train samples/s (median)", "rounds"],
            [
                [p, f"{median[p]:,.0f}", ", ".join(f"{r:,.0f}" for r in speed[p])]
                for p in PRECISIONS
            ],
        ),
        "",
        f"bf16 / fp32 speed: {statistics.median(ratios):.2f} (per round: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + ")",
        "",
        f"Metrics after {args.epochs} epoch(s) (best epoch restored), seeds "
        f"{', '.join(map(str, args.seeds))}:",
        "",
    ]
    rows = [
        [
            run["precision"],
            run["seed"],
            run["best_epoch"],
            *(f"{run[split][metric]:.4f}" for split, metric in COMPARED),
        ]
        for run in runs
    ]
    headers = ["precision", "seed", "best epoch", *(f"{s} {m}" for s, m in COMPARED)]
    lines.append(markdown_table(headers, rows))
    lines += ["", "bf16 - fp32 (mean over seeds) against the fp32 seed-to-seed spread:", ""]
    lines.append(
        markdown_table(
            ["metric", "bf16 - fp32", "fp32 spread (max - min)", "within noise"],
            [
                [
                    name,
                    f"{entry['bf16_minus_fp32']:+.4f}",
                    f"{entry['fp32_spread']:.4f}",
                    "yes" if entry["within_noise"] else "no",
                ]
                for name, entry in comparison.items()
            ],
        )
    )
    verdict = (
        "bf16 is faster in every round and equal within noise: it qualifies as the default"
        if faster and equal
        else "keep fp32 as the default: bf16 is "
        + " and ".join(
            part
            for part, failed in (
                ("not faster in every round", not faster),
                ("outside the fp32 noise on some metric", not equal),
            )
            if failed
        )
    )
    lines += ["", f"Verdict: {verdict}."]
    return "\n".join(lines)


def cpu_bf16_support() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    found = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return ", ".join(found) if found else "none (bf16 is emulated)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per metric run")
    parser.add_argument("--speed-epochs", type=int, default=4, help="epochs per speed round")
    parser.add_argument("--rounds", type=int, default=2, help="speed rounds per precision")
    parser.add_argument(
        "--max-windows", type=int, default=0, help="train windows used (default 0: all)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 seeds, 1 epoch, 1 round, 1024 train windows"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.speed_epochs, args.rounds = [42, 43], 1, 1, 1
        args.max_windows = 1024
    if len(args.seeds) < 2:
        parser.error("--seeds needs at least two seeds to estimate the run-to-run noise")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = default_params()
    configure_torch(params.train)
    dataset = build_dataset(params)
    if args.max_windows:
        dataset = first_train_windows(dataset, args.max_windows)
    args.train_windows = len(dataset.ends["train"])
    args.steps_per_epoch = -(-args.train_windows // params.train.batch_size)
    print("timing fp32 and bf16 training ...", file=sys.stderr)
    speed = training_speed(dataset, params, args.speed_epochs, args.rounds)
    runs = []
    for seed in args.seeds:
        for precision in PRECISIONS:
            print(f"training {precision}, seed {seed} ...", file=sys.stderr)
            runs.append(train_and_score(dataset, params, precision, seed, args.epochs))
    print(report(args, params, speed, runs))
    write_json(
        args.json,
        {
            "model": dataclasses.asdict(params.model),
            "train": dataclasses.asdict(params.train),
            "threads": torch.get_num_threads(),
            "speed_samples_per_s": speed,
            "runs": runs,
            "comparison": compare(runs),
        },
    )


if __name__ == "__main__":
    main()
