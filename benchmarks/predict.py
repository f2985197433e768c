"""finseq predict: the last bar of 1 and of many synthetic series, inside one warm process and
as a fresh `finseq predict` command; and how much history a prediction needs.

    python benchmarks/predict.py [--model models/model.pth] [--series 500] [--bars 5000]

The universe is --series generated series of --bars bars written at full float precision
(17 significant digits, the slowest to parse), once as one CSV file per series and once as
one long-format Parquet panel of the same series. The fresh command runs after a first,
untimed one, with Python's bytecode cache on, as on a user's machine (this environment
sets PYTHONDONTWRITEBYTECODE, which the command is run without).

The history table predicts the last bar of the default raw files from only their last H
bars and reports the largest difference from the whole file's probabilities.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from benchlib import ROOT, machine_line, reference_seconds, write_json

from finseq.features import feature_matrix
from finseq.inputs import split_sources
from finseq.load import validate_series
from finseq.markdown import markdown_table
from finseq.predict import Selection, predict
from finseq.synthetic import write_long_panel, write_panel

HISTORIES = (120, 150, 200, 250, 300, 400)
RAW_FILES = ("data/raw/sp500.csv", "data/raw/nasdaq.csv")
# End bars per raw file at which the history table compares (every 97th of the last 3,000).
HISTORY_ENDS = range(-3000, 0, 97)


def seconds_in_process(files: Sequence[str], model: Path, rounds: int) -> float:
    """Median wall time of predict() on the last bar of every file, after one warm-up call."""
    predict(files[:1], model, Selection())
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        predict(files, model, Selection())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def seconds_with_startup(files: Sequence[str], model: Path, rounds: int) -> float:
    """Median wall time of the whole `finseq predict` command, interpreter start included,
    after one untimed run."""
    command = [str(Path(sys.executable).parent / "finseq"), "predict", "--model", str(model)]
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for round_index in range(rounds + 1):
        start = time.perf_counter()
        subprocess.run([*command, *files], check=True, capture_output=True, env=environment)
        if round_index:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_file_steps(files: Sequence[str]) -> dict[str, float]:
    """Median milliseconds per file of each step finseq predict takes for it, in this one
    process: reading the file (pyarrow), validating its rows, computing its features."""
    steps: dict[str, list[float]] = {"read": [], "validate": [], "features": []}
    for path in files:
        start = time.perf_counter()
        rows = split_sources(path)[path]
        read = time.perf_counter()
        frame = validate_series(Path(path), rows)
        validated = time.perf_counter()
        feature_matrix(frame)
        done = time.perf_counter()
        steps["read"].append(read - start)
        steps["validate"].append(validated - read)
        steps["features"].append(done - validated)
    return {step: 1000 * statistics.median(times) for step, times in steps.items()}


def history_gaps(model: Path, histories: Sequence[int], workdir: Path) -> dict[int, float]:
    """Largest |p - p_whole_file| over HISTORY_ENDS bars of each raw file, per history length."""
    gaps = {}
    for bars in histories:
        worst = 0.0
        for raw in RAW_FILES:
            lines = (ROOT / raw).read_text().splitlines(keepends=True)
            whole = predict([str(ROOT / raw)], model, Selection(last=None))
            whole_p = whole.set_index("timestamp")[["p_down", "p_flat", "p_up"]]
            for end in HISTORY_ENDS:
                stop = len(lines) + end + 1
                tail = workdir / Path(raw).name
                tail.write_text(lines[0] + "".join(lines[stop - bars : stop]))
                last = predict([str(tail)], model, Selection())
                expected = whole_p.loc[last["timestamp"].iloc[0]].to_numpy()
                gap = np.abs(last[["p_down", "p_flat", "p_up"]].to_numpy()[0] - expected).max()
                worst = max(worst, float(gap))
        gaps[bars] = worst
    return gaps


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models/model.pth")
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--bars", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--histories", type=int, nargs="*", default=list(HISTORIES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        files = [str(p) for p in write_panel(workdir / "raw", args.series, args.bars, seed=1)]
        panel = str(write_long_panel(workdir / "panel.parquet", args.series, args.bars, seed=1))
        rows, payload = [], {"machine": machine_line(), "inputs": {}, "history": {}}
        payload["reference_s"] = [reference_seconds()]
        inputs = {
            f"1 x {args.bars:,} bars, one CSV file": files[:1],
            f"{args.series} x {args.bars:,} bars, one CSV file each": files,
            f"{args.series} x {args.bars:,} bars, one Parquet panel": [panel],
        }
        for name, paths in inputs.items():
            warm = seconds_in_process(paths, args.model, args.rounds)
            cold = seconds_with_startup(paths, args.model, args.rounds)
            payload["inputs"][name] = {"in_process_s": warm, "with_startup_s": cold}
            rows.append([name, f"{warm:.2f} s", f"{cold:.2f} s"])
        payload["steps_ms"] = per_file_steps(files[:100])
        payload["reference_s"].append(reference_seconds())
        gaps = history_gaps(args.model, args.histories, workdir)
        payload["history"] = gaps
    print(f"Machine: {payload['machine']}")
    before, after = payload["reference_s"]
    print(
        f"Speed reference (benchlib.reference_seconds, 1.4 s when quiet): {before:.2f} s "
        f"before the timings, {after:.2f} s after\n"
    )
    print("Last bar of every series (median of rounds):\n")
    print(markdown_table(["input", "in one warm process", "finseq predict command"], rows))
    print("\nEach step of one CSV file, in one process (median ms over 100 files):\n")
    steps = payload["steps_ms"]
    print(markdown_table(list(steps), [[f"{value:.2f}" for value in steps.values()]]))
    print("\nHistory up to the predicted bar against the whole file's prediction:\n")
    print(
        markdown_table(
            ["bars of history", "largest probability difference"],
            [[bars, f"{gap:.1e}"] for bars, gap in gaps.items()],
        )
    )
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
