"""The cross-sectional figures (test.cs_*) of a generated universe, through the pipeline's own
functions: one universe whose series each carry a hidden drift regime (so on a date the
series in an up regime earn more than those in a down one), and one whose series carry
volatility regimes only (nothing to rank). Generated data, not market data.

    python benchmarks/universe.py                        # 50 series x 2,000 bars each
    python benchmarks/universe.py --series 12 --bars 800 # smoke run

Each run is the repository's params.yaml on one holdout split, no lockbox (the generated
bars are not the default data), `model.type` linear (logistic regression on the last bar,
fast and seed-free), one seed. The Markdown table it prints is quoted in docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

from finseq import pipeline
from finseq.folds import train_models
from finseq.markdown import markdown_table
from finseq.paths import FOLD_MODELS_DIR
from finseq.runtime import set_numerics
from finseq.scoring import evaluate_folds
from finseq.synthetic import write_panel

CPU = torch.device("cpu")
# A weaker drift than the controls' planted signal (0.005), so the figures are not trivial.
UNIVERSES = {
    "drift regimes (planted)": {"drift": 0.002, "persistence": 0.98},
    "volatility regimes only (none)": {"volatility_ratio": 3.0, "persistence": 0.98},
}


def run_universe(directory: Path, n_series: int, n_bars: int, panel: dict) -> dict:
    """metrics/eval.json's `test` section of one generated universe's run."""
    files = write_panel(directory / "raw", n_series, n_bars, seed=21, **panel)
    params = benchlib.default_params(
        data={"files": [str(path) for path in files], "workers": 1},
        split={"lockbox": None},
        model={"type": "linear"},
        train={"seeds": 1, "threads": 1, "fold_workers": 1, "device": "cpu"},
    )
    data = pipeline.prepare(params)
    windows = pipeline.window(params, data)
    train_models(params, data, windows, CPU, root=directory)
    evaluation = evaluate_folds(
        params,
        data,
        windows,
        CPU,
        directory / FOLD_MODELS_DIR,
        prepared_dir="(in memory)",
        windows_dir="(in memory)",
    )
    return evaluation.metrics["test"]


def interval(test: dict, name: str, spec: str) -> str:
    low, high = test[f"{name}_low"], test[f"{name}_high"]
    return f"{format(test[name], spec)} [{format(low, spec)}, {format(high, spec)}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--bars", type=int, default=2000, help="bars per series")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    set_numerics(CPU)
    started = time.perf_counter()
    rows = []
    for name, panel in UNIVERSES.items():
        with tempfile.TemporaryDirectory() as directory:
            test = run_universe(Path(directory), args.series, args.bars, panel)
        if "cs_status" in test:
            rows.append([name, test["cs_status"], *["-"] * 6])
            continue
        rows.append(
            [
                name,
                str(test["cs_dates"]),
                interval(test, "cs_ic", "+.3f"),
                f"{test['cs_icir']:+.2f}",
                f"{test['cs_ic_t']:+.1f}",
                interval(test, "cs_sharpe", "+.2f"),
                f"{test['skill']:+.3f}",
                f"{test['direction_skill']:+.3f}",
            ]
        )
    header = [
        "generated universe",
        "test dates",
        "rank IC [95%]",
        "ICIR",
        "t",
        "long-short Sharpe after costs [95%]",
        "skill",
        "direction_skill",
    ]
    print(
        f"{benchlib.machine_line()}; {time.perf_counter() - started:.0f} s; "
        f"{args.series} series x {args.bars} bars, holdout, model.type linear"
    )
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
