"""Training samples/s of the project's loop against a per-sample DataLoader and the compute bound.

    python benchmarks/train_throughput.py                    # CPU: lstm, gru x batch 32, 256
    python benchmarks/train_throughput.py --quick            # smoke run, seconds
    python benchmarks/train_throughput.py --device cuda --batches 256 1024

On the default data and model (params.yaml), for each model type, batch size and
thread count it times three ways of feeding the same training step:
  (a) own loop: finseq.fit.fit, each batch one gather over the 2-D feature
      matrix (validation cut to one window);
  (b) reference: a per-sample torch Dataset returning (window slice, label) and a
      DataLoader(batch_size, shuffle=True, num_workers=0) feeding the same step;
  (c) compute bound: the same step repeated on one fixed, pre-gathered batch
      of randomly drawn windows.
Each round trains (a) and (b) for --epochs epochs (1 on CPU, 20 on CUDA, where an
epoch of the default data is only a few milliseconds' work) over --round-windows
train windows (2048 on CPU, a different chunk each round; all on CUDA), and (c)
for as many steps. a/c is the share of the model's own speed the loop keeps.
Each thread count runs in a fresh subprocess (torch.set_num_threads, as
train.threads does), and each round times a, b and c back to back so that the
ratios are paired; many short rounds keep the pairs close in time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from benchlib import (
    MB,
    WindowMemory,
    build_dataset,
    default_params,
    machine_line,
    peak_rss_bytes,
    write_json,
)
from torch import nn
from torch.nn import functional
from torch.utils.data import DataLoader

from finseq.fit import TrainingData, fit
from finseq.markdown import markdown_table
from finseq.models import build_model
from finseq.params import ModelConfig, TrainConfig
from finseq.runtime import autocast, set_numerics, usable_cores
from finseq.windows import gather_windows, window_offsets

GATES = {"lstm": 4, "gru": 3}
FLOP_FORMULA = (
    "FLOPs per training sample = 3 x 2 x seq_len x Σ_layers gates x (input_l + hidden) x hidden "
    "(gates: lstm 4, gru 3; input_l: features for layer 1, hidden above; 2 FLOPs per "
    "multiply-add; x 3 for forward + backward; the head, the gates' elementwise "
    "nonlinearities and the optimiser are not counted)"
)


def training_flops_per_sample(
    model_type: str, n_features: int, hidden: int, layers: int, seq_len: int
) -> float:
    """Analytic FLOPs of one training sample through the recurrent layers (see FLOP_FORMULA)."""
    multiply_adds = sum(
        GATES[model_type] * ((n_features if layer == 0 else hidden) + hidden) * hidden
        for layer in range(layers)
    )
    return 3.0 * 2.0 * seq_len * multiply_adds


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so that the clock measures work done, not work launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], object]) -> float:
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def matmul_peak_gflops(size: int, device: torch.device, repeats: int) -> float:
    """Best fp32 GFLOP/s of a size x size torch.mm: the machine's practical matrix-product peak."""
    left = torch.randn(size, size, device=device)
    right = torch.randn(size, size, device=device)
    for _ in range(2):
        torch.mm(left, right)
    best = min(timed(device, lambda: torch.mm(left, right)) for _ in range(repeats))
    return 2.0 * size**3 / best / 1e9


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    windows: torch.Tensor,
    classes: torch.Tensor,
    config: TrainConfig,
) -> torch.Tensor:
    """One optimiser step, as the body of finseq.fit.fit's batch loop does it."""
    with autocast(windows.device, config.precision):
        logits = model(windows)
    loss = functional.cross_entropy(logits.float(), classes)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return loss.detach()


class WindowDataset(torch.utils.data.Dataset):
    """The reference design: one (window, class) pair per __getitem__, stacked by the DataLoader."""

    def __init__(
        self, features: torch.Tensor, classes: torch.Tensor, ends: np.ndarray, seq_len: int
    ):
        self.features, self.classes, self.ends, self.seq_len = features, classes, ends, seq_len

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        end = int(self.ends[index])
        return self.features[end - self.seq_len + 1 : end + 1], self.classes[end]


@dataclasses.dataclass
class Bench:
    """One model type and batch size on one device: data, config and the three loops."""

    features: np.ndarray
    labels: np.ndarray
    train_ends: np.ndarray
    val_ends: np.ndarray
    seq_len: int
    model_config: ModelConfig
    train_config: TrainConfig
    device: torch.device
    epochs: int = 1  # per timed loop: enough steps for a stable time on a fast device
    round_windows: int = 0  # train windows per round and loop; 0: all of them

    def __post_init__(self) -> None:
        # fit validates after its epoch; one val window keeps that out of the timing.
        self.data = TrainingData.from_arrays(
            self.features,
            self.labels,
            self.train_ends,
            self.val_ends[:1],
            self.seq_len,
            self.device,
        )
        # The reference keeps its data on the CPU and copies each batch, as such pipelines do.
        self.cpu_features = torch.as_tensor(self.features)
        self.cpu_classes = torch.as_tensor(self.labels.astype(np.int64) + 1)

    @property
    def n_train(self) -> int:
        return len(self.train_ends)

    def round_ends(self, round_index: int) -> np.ndarray:
        return self.round_ends_of(self.train_ends, self.round_windows, round_index)

    @staticmethod
    def round_ends_of(train_ends: np.ndarray, round_windows: int, round_index: int) -> np.ndarray:
        """The train windows of one round: a chunk that moves on from round to round, so that
        the rounds together cover the train set; every train window when round_windows is 0."""
        if not 0 < round_windows < len(train_ends):
            return train_ends
        start = round_index * round_windows
        return np.take(train_ends, range(start, start + round_windows), mode="wrap")

    def steps(self, n_windows: int, epochs: int) -> int:
        return epochs * math.ceil(n_windows / self.train_config.batch_size)

    def new_model(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(self.train_config.seed)
        model = build_model(self.model_config, self.features.shape[1]).to(self.device)
        optimizer = torch.optim.Adam(
            model.parameters(),
            lr=self.train_config.learning_rate,
            weight_decay=self.train_config.weight_decay,
        )
        return model, optimizer

    def own_loop(self, model: nn.Module, ends: np.ndarray | None = None, epochs: int = 0) -> int:
        """(a) finseq.fit.fit for `epochs` epochs (default: the bench's) over the windows
        ending at `ends` (default: every train window); returns the samples trained on."""
        ends = self.train_ends if ends is None else ends
        epochs = epochs or self.epochs
        data = dataclasses.replace(
            self.data, train_ends=torch.as_tensor(ends, dtype=torch.int64).to(self.device)
        )
        # Patience above the epoch count: fit never stops early on the one val window.
        fit(model, data, dataclasses.replace(self.train_config, epochs=epochs, patience=epochs + 1))
        return epochs * len(ends)

    def reference_loop(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        ends: np.ndarray | None = None,
        epochs: int = 0,
    ) -> int:
        """(b) `epochs` epochs (default: the bench's) over the windows ending at `ends` (default:
        every train window) through a per-sample Dataset and a shuffling DataLoader."""
        ends = self.train_ends if ends is None else ends
        epochs = epochs or self.epochs
        loader = DataLoader(
            WindowDataset(self.cpu_features, self.cpu_classes, ends, self.seq_len),
            batch_size=self.train_config.batch_size,
            shuffle=True,
            num_workers=0,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.train_config.seed),
        )
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        for _ in range(epochs):
            for windows_batch, classes in loader:
                windows_batch = windows_batch.to(self.device, non_blocking=True)
                classes = classes.to(self.device, non_blocking=True)
                loss = train_step(model, optimizer, windows_batch, classes, self.train_config)
                loss_sum += loss * len(classes)
        float(loss_sum)
        return epochs * len(ends)

    def compute_bound(self, model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> int:
        """(c) The same step `steps` times on one fixed batch.

        The batch is drawn as the loops draw theirs (seeded random windows), not the
        first `batch_size` windows, which overlap and all come from one stretch of one series.
        """
        batch = min(self.train_config.batch_size, self.n_train)
        draw = torch.Generator().manual_seed(self.train_config.seed)
        ends = self.data.train_ends[
            torch.randperm(self.n_train, generator=draw)[:batch].to(self.device)
        ]
        offsets = window_offsets(self.seq_len, self.device)
        windows = gather_windows(self.data.features, ends, offsets)
        classes = self.data.classes[ends]
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        for _ in range(steps):
            loss_sum += train_step(model, optimizer, windows, classes, self.train_config) * batch
        float(loss_sum)
        return steps * batch


LOOPS = ["a", "b", "c"]


def run_loop(bench: Bench, models: dict, name: str, ends: np.ndarray) -> int:
    """Runs loop `name` of one round over the windows ending at `ends`; returns its samples."""
    model, optimizer = models[name]
    if name == "a":
        return bench.own_loop(model, ends)
    if name == "b":
        return bench.reference_loop(model, optimizer, ends)
    return bench.compute_bound(model, optimizer, bench.steps(len(ends), bench.epochs))


def measure(bench: Bench, rounds: int) -> dict:
    """Samples/s of (a), (b), (c): median over `rounds`, each round timing all three back to back
    on the same windows (c: as many steps as they take).

    Rounds are short and many so that a and c of one round run seconds apart: a slow spell
    of a shared machine then slows both, and their ratio stays fair. The order rotates from
    round to round so that no loop always runs first; a/c and b/c are taken within each round.
    """
    models = {name: bench.new_model() for name in LOOPS}
    warm_ends = bench.train_ends[: min(bench.n_train, 4 * bench.train_config.batch_size)]
    bench.own_loop(models["a"][0], warm_ends, epochs=1)
    bench.reference_loop(*models["b"], warm_ends, epochs=1)
    bench.compute_bound(*models["c"], steps=4)
    rates: dict[str, list[float]] = {name: [] for name in LOOPS}
    for round_index in range(rounds):
        ends = bench.round_ends(round_index)
        order = LOOPS[round_index % 3 :] + LOOPS[: round_index % 3]
        for name in order:
            synchronize(bench.device)
            start = time.perf_counter()
            samples = run_loop(bench, models, name, ends)
            synchronize(bench.device)
            rates[name].append(samples / (time.perf_counter() - start))
    return {
        "samples_per_s": {name: statistics.median(values) for name, values in rates.items()},
        "rounds": rates,
        "a_over_c": [a / c for a, c in zip(rates["a"], rates["c"], strict=True)],
        "b_over_c": [b / c for b, c in zip(rates["b"], rates["c"], strict=True)],
    }


def run_worker(args: argparse.Namespace) -> dict:
    """All measurements at one thread count, in this (fresh) process."""
    threads = args.threads[0]
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    set_numerics(device)  # as finseq.runtime.configure_torch does for the train stage
    if device.type == "cuda":
        # warn_only reports every nondeterministic CUDA kernel; the train stage accepts them.
        warnings.filterwarnings("ignore", message=".*deterministic.*")
    params = default_params()
    dataset = build_dataset(params)
    prepared, ends = dataset, dataset.ends
    train_ends = ends["train"][: args.max_windows] if args.max_windows else ends["train"]
    peak = matmul_peak_gflops(args.mm_size, device, args.mm_repeats)
    results = []
    for model_type in args.models:
        for batch_size in args.batches:
            print(f"  threads {threads}: {model_type} batch {batch_size}", file=sys.stderr)
            model_config = dataclasses.replace(
                params.model, type=model_type, hidden_dim=args.hidden
            )
            train_config = dataclasses.replace(
                params.train, batch_size=batch_size, precision=args.precision
            )
            bench = Bench(
                prepared.features,
                prepared.labels,
                train_ends,
                ends["val"],
                dataset.windows.seq_len,
                model_config,
                train_config,
                device,
                args.epochs,
                args.round_windows,
            )
            flops = training_flops_per_sample(
                model_type,
                prepared.features.shape[1],
                model_config.hidden_dim,
                model_config.num_layers,
                dataset.windows.seq_len,
            )
            results.append(
                {
                    "model": model_type,
                    "batch_size": batch_size,
                    "threads": threads,
                    "flops_per_sample": flops,
                    **measure(bench, args.rounds),
                }
            )
    rows, n_features = prepared.features.shape
    return {
        "threads": threads,
        "matmul_peak_gflops": peak,
        "results": results,
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
        "data": {
            "files": [str(Path(path).name) for path in params.data.files],
            "rows": rows,
            "n_features": n_features,
            "seq_len": dataset.windows.seq_len,
            "windows": {name: len(split_ends) for name, split_ends in ends.items()},
            "train_windows": len(train_ends),
            "round_windows": len(Bench.round_ends_of(train_ends, args.round_windows, 0)),
        },
        "model": dataclasses.asdict(dataclasses.replace(params.model, hidden_dim=args.hidden)),
        "train": dataclasses.asdict(params.train),
    }


def worker_command(args: argparse.Namespace, threads: int) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    command += ["--models", *args.models, "--batches", *map(str, args.batches)]
    command += ["--threads", str(threads), "--device", args.device, "--precision", args.precision]
    command += ["--hidden", str(args.hidden), "--rounds", str(args.rounds)]
    command += ["--epochs", str(args.epochs), "--round-windows", str(args.round_windows)]
    command += ["--mm-size", str(args.mm_size)]
    command += ["--mm-repeats", str(args.mm_repeats), "--max-windows", str(args.max_windows)]
    return command


def ratio_cell(values: list[float]) -> str:
    """Median, with the range over rounds when there is more than one."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def tf32_note(device: str) -> str:
    """On CUDA, whether fp32 matrix products may run as TF32 (which would inflate the peak)."""
    if device != "cuda":
        return ""
    return (
        f" (TF32 allowed: torch.mm {torch.backends.cuda.matmul.allow_tf32}, "
        f"cuDNN {torch.backends.cudnn.allow_tf32})"
    )


def report(args: argparse.Namespace, workers: list[dict]) -> str:
    first = workers[0]
    data, model, train = first["data"], first["model"], first["train"]
    n_windows = sum(data["windows"].values())
    lines = [
        "## Training throughput (benchmarks/train_throughput.py)",
        "",
        f"- machine: {machine_line(args.device)}; device {args.device}{tf32_note(args.device)}",
        f"- data: {', '.join(data['files'])}: {data['rows']:,} rows x {data['n_features']} "
        f"features; windows of {data['seq_len']} bars: train {data['windows']['train']:,}, "
        f"val {data['windows']['val']:,}, test {data['windows']['test']:,}; "
        f"each round trains every loop for {args.epochs} epoch(s) over "
        + (
            f"{data['round_windows']:,} of the {data['train_windows']:,} train windows, a "
            "different chunk each round"
            if data["round_windows"] < data["train_windows"]
            else f"all {data['train_windows']:,} train windows"
        ),
        f"- model: hidden {model['hidden_dim']}, {model['num_layers']} layers, dropout "
        f"{model['dropout']}; Adam lr {train['learning_rate']}, grad_clip {train['grad_clip']}; "
        f"precision {args.precision}; {args.rounds} round(s)",
        f"- {FLOP_FORMULA}: "
        + ", ".join(
            f"{name} {flops / 1e6:.2f} MFLOP"
            for name, flops in {r["model"]: r["flops_per_sample"] for r in first["results"]}.items()
        ),
        f"- matrix-product peak (fp32 {args.mm_size}x{args.mm_size} torch.mm, best of "
        f"{args.mm_repeats}): "
        + ", ".join(
            f"{w['threads']} thread(s) {w['matmul_peak_gflops']:.0f} GFLOP/s" for w in workers
        ),
        "",
        "(a) own loop = finseq.fit.fit; (b) per-sample Dataset + DataLoader; "
        "(c) same step on one fixed batch. Samples/s are medians over rounds; a/c and b/c "
        "are medians of per-round ratios (range in brackets).",
        "",
    ]
    rows = []
    for worker in workers:
        for r in worker["results"]:
            rate = r["samples_per_s"]
            gflops_a = rate["a"] * r["flops_per_sample"] / 1e9
            gflops_c = rate["c"] * r["flops_per_sample"] / 1e9
            rows.append(
                [
                    r["model"],
                    r["batch_size"],
                    r["threads"],
                    f"{rate['a']:,.0f}",
                    f"{rate['b']:,.0f}",
                    f"{rate['c']:,.0f}",
                    ratio_cell(r["a_over_c"]),
                    ratio_cell(r["b_over_c"]),
                    f"{gflops_a:.1f}",
                    f"{gflops_c:.1f}",
                    f"{gflops_a / worker['matmul_peak_gflops']:.2f}",
                ]
            )
    headers = [
        "model",
        "batch",
        "threads",
        "(a) own loop /s",
        "(b) DataLoader /s",
        "(c) bound /s",
        "a/c",
        "b/c",
        "GFLOP/s (a)",
        "GFLOP/s (c)",
        "(a) / mm peak",
    ]
    lines.append(markdown_table(headers, rows))
    if len(workers) > 1:
        lines += ["", "Own loop (a), samples/s by thread count:", ""]
        thread_counts = [w["threads"] for w in workers]
        by_key = {
            (r["model"], r["batch_size"], w["threads"]): r["samples_per_s"]["a"]
            for w in workers
            for r in w["results"]
        }
        table = []
        for r in first["results"]:
            base = by_key[(r["model"], r["batch_size"], thread_counts[0])]
            cells = [f"{by_key[(r['model'], r['batch_size'], t)]:,.0f}" for t in thread_counts]
            speedups = [
                f"{by_key[(r['model'], r['batch_size'], t)] / base:.2f}" for t in thread_counts[1:]
            ]
            table.append([r["model"], r["batch_size"], *cells, *speedups])
        headers = [
            "model",
            "batch",
            *(f"{t} thread(s)" for t in thread_counts),
            *(f"{t} / {thread_counts[0]}" for t in thread_counts[1:]),
        ]
        lines.append(markdown_table(headers, table))
    memory = WindowMemory.of(data["rows"], data["n_features"], n_windows, data["seq_len"])
    lines += ["", "Memory:", ""]
    lines += [
        f"- peak RSS of the {w['threads']}-thread run (whole process: torch, data, all loops): "
        f"{w['peak_rss_bytes'] / MB:,.0f} MB"
        + (f"; peak GPU memory {w['peak_gpu_bytes'] / MB:,.0f} MB" if w["peak_gpu_bytes"] else "")
        for w in workers
    ]
    lines += memory.lines(data["rows"], data["n_features"], n_windows, data["seq_len"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lstm", "gru"], choices=sorted(GATES))
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 256])
    parser.add_argument(
        "--threads",
        nargs="+",
        type=int,
        default=None,
        help="thread counts, each in a fresh process (default: 1 and every usable core)",
    )
    parser.add_argument(
        "--hidden", type=int, default=64, help="hidden units (default 64, as in issue 5)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed rounds per loop (default 15; cuda 5)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per loop and round (default 1; cuda 20)"
    )
    parser.add_argument("--mm-size", type=int, default=None, help="default 2048; 8192 on cuda")
    parser.add_argument("--mm-repeats", type=int, default=10)
    parser.add_argument(
        "--max-windows", type=int, default=0, help="train windows used (default 0: all)"
    )
    parser.add_argument(
        "--round-windows",
        type=int,
        default=None,
        help="train windows per round and loop (default 2048; cuda 0: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 rounds of 128 of 256 windows"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = sorted({1, usable_cores()})
    if args.rounds is None:
        args.rounds = 5 if args.device == "cuda" else 15
    if args.round_windows is None:
        args.round_windows = 0 if args.device == "cuda" else 2048
    if args.epochs is None:
        args.epochs = 20 if args.device == "cuda" else 1
    if args.mm_size is None:
        args.mm_size = 8192 if args.device == "cuda" else 2048
    if args.quick:
        args.rounds, args.max_windows, args.mm_size, args.mm_repeats = 2, 256, 512, 3
        args.round_windows = 128
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA GPU is visible")
    workers = []
    for threads in args.threads:
        print(f"measuring at {threads} thread(s) in a fresh process ...", file=sys.stderr)
        result = subprocess.run(
            worker_command(args, threads), stdout=subprocess.PIPE, text=True, check=True
        )
        workers.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(report(args, workers))
    write_json(args.json, {"args": vars(args) | {"json": str(args.json)}, "workers": workers})


if __name__ == "__main__":
    main()
