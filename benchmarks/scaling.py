"""Scaling of prepare, window and one training epoch with the number of bars, and their memory.

    python benchmarks/scaling.py                              # 50x5000 and 500x5000 bars
    python benchmarks/scaling.py --sizes 5x2000 10x2000       # smoke run

For each size (series x bars per series) it writes a synthetic panel
(finseq.synthetic.write_panel, the raw CSV format) into a temporary copy of the
pipeline whose params.yaml is the repository's with data.files pointed at the
panel and train.epochs = 1, train.patience = 1. It then runs the real stage entry
points of finseq.stages.prepare, .window and .train, each in its own
subprocess, so that each stage's wall time and peak RSS (os.wait4's rusage of that
child alone) are its own. A stage's wall time includes starting Python and importing
its modules; a three-line driver around the stage's own `run_stage(main)` also times
the import and the work apart, and time per bar is the work's.
Targets (issue 5): window outputs <= 1.1x the feature matrix bytes + 8 bytes per
window; time per bar flat within 20% between the sizes; every stage's peak RSS
under 4 GB at the largest size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from benchlib import (
    MB,
    copy_pipeline,
    default_params_dict,
    machine_line,
    markdown_table,
    subprocess_environment,
    write_json,
)

from finseq.synthetic import write_panel

STAGES = ("prepare", "window", "train")
RSS_LIMIT_BYTES = 4 * 10**9
FLAT_TOLERANCE = 0.2
WINDOW_BYTES_TARGET = 1.1


# Runs a stage as `python -m finseq.stages.<stage>` does (run_stage(main)), timing the
# import of its modules apart from its work; argv: stage name, timings file.
DRIVER = """\
import importlib, json, sys, time
start = time.perf_counter()
stage = importlib.import_module("finseq.stages." + sys.argv[1])
imported = time.perf_counter()
stage.run_stage(stage.main)
done = time.perf_counter()
with open(sys.argv[2], "w") as timings:
    json.dump({"import_s": imported - start, "work_s": done - imported}, timings)
"""


@dataclass(frozen=True)
class StageRun:
    stage: str
    wall_s: float  # the whole subprocess, Python start-up included
    import_s: float
    work_s: float
    peak_rss_bytes: int


def parse_size(text: str) -> tuple[int, int]:
    """'50x5000' -> (50 series, 5000 bars each)."""
    try:
        series, bars = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SERIESxBARS, e.g. 50x5000") from None
    return series, bars


def run_stage_measured(stage: str, cwd: Path, env: dict[str, str]) -> StageRun:
    """Runs one stage to completion in a fresh Python; the peak RSS is that child's alone."""
    log, timings = cwd / f"{stage}.log", cwd / f"{stage}.timings.json"
    command = [sys.executable, "-c", DRIVER, stage, str(timings)]
    with log.open("w") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"stage {stage} exited {process.returncode}:\n{log.read_text()}")
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return StageRun(stage, wall, **json.loads(timings.read_text()), peak_rss_bytes=peak)


def window_bytes(project: Path) -> dict[str, int]:
    """Feature matrix bytes, window output bytes on disk (data/windows) and the window count."""
    features = np.load(project / "data" / "prepared" / "features.npy", mmap_mode="r")
    outputs = project / "data" / "windows"
    meta = json.loads((outputs / "meta.json").read_text())
    return {
        "rows": int(features.shape[0]),
        "feature_matrix": int(features.nbytes),
        "window_outputs": sum(path.stat().st_size for path in outputs.iterdir()),
        "windows": sum(meta["windows"].values()),
        "train_windows": int(meta["windows"]["train"]),
    }


def run_size(workdir: Path, n_series: int, n_bars: int, overrides: dict) -> dict:
    project = workdir / f"{n_series}x{n_bars}"
    start = time.perf_counter()
    files = write_panel(project / "data" / "raw", n_series, n_bars, seed=0)
    panel_s = time.perf_counter() - start
    params = default_params_dict()
    for section, values in overrides.items():
        params[section].update(values)
    copy_pipeline(project, params, files)
    env = subprocess_environment(workdir / "home")
    runs = []
    for stage in STAGES:
        print(f"  {n_series}x{n_bars}: {stage} ...", file=sys.stderr)
        runs.append(run_stage_measured(stage, project, env))
    return {
        "series": n_series,
        "bars_per_series": n_bars,
        "bars": n_series * n_bars,
        "panel_write_s": panel_s,
        "stages": [asdict(run) for run in runs],
        "bytes": window_bytes(project),
    }


def per_bar_us(size: dict, stage: dict) -> float:
    """Microseconds of the stage's work (imports excluded) per bar of the panel."""
    return stage["work_s"] / size["bars"] * 1e6


def report(sizes: list[dict], model: dict) -> str:
    lines = [
        "## Scaling (benchmarks/scaling.py)",
        "",
        f"- machine: {machine_line()}",
        f"- model: {model['type']}, hidden {model['hidden_dim']}, {model['num_layers']} layers; "
        "one training epoch over every train window; each stage its own fresh Python process",
        "- wall s: the whole process; import s: importing the stage's modules; work s: the "
        "stage itself (reading inputs, computing, writing outputs); us/bar: work s per bar",
        "",
    ]
    rows = []
    for size in sizes:
        for stage in size["stages"]:
            rows.append(
                [
                    f"{size['series']}x{size['bars_per_series']}",
                    f"{size['bars']:,}",
                    stage["stage"],
                    f"{stage['wall_s']:.1f}",
                    f"{stage['import_s']:.1f}",
                    f"{stage['work_s']:.1f}",
                    f"{per_bar_us(size, stage):.2f}",
                    f"{stage['peak_rss_bytes'] / MB:,.0f}",
                ]
            )
    headers = ["size", "bars", "stage", "wall s", "import s", "work s", "us/bar", "peak RSS MB"]
    lines.append(markdown_table(headers, rows))

    lines += ["", "Window outputs against the feature matrix:", ""]
    rows = []
    for size in sizes:
        b = size["bytes"]
        ideal = b["feature_matrix"] + 8 * b["windows"]
        ratio = (b["feature_matrix"] + b["window_outputs"]) / ideal
        rows.append(
            [
                f"{size['series']}x{size['bars_per_series']}",
                f"{b['windows']:,}",
                f"{b['feature_matrix'] / MB:,.1f}",
                f"{b['window_outputs'] / MB:,.2f}",
                f"{ratio:.4f}",
                "yes" if ratio <= WINDOW_BYTES_TARGET else "no",
            ]
        )
    headers = [
        "size",
        "windows",
        "feature matrix MB",
        "window outputs MB",
        "(features + outputs) / (features + 8 B x windows)",
        f"<= {WINDOW_BYTES_TARGET}",
    ]
    lines.append(markdown_table(headers, rows))

    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        lines += [
            "",
            f"Time per bar, {large['series']}x{large['bars_per_series']} against "
            f"{small['series']}x{small['bars_per_series']} (flat: within "
            f"{FLAT_TOLERANCE:.0%}):",
            "",
        ]
        rows = []
        for small_stage, large_stage in zip(small["stages"], large["stages"], strict=True):
            ratio = per_bar_us(large, large_stage) / per_bar_us(small, small_stage)
            rows.append(
                [
                    small_stage["stage"],
                    f"{per_bar_us(small, small_stage):.2f}",
                    f"{per_bar_us(large, large_stage):.2f}",
                    f"{ratio:.2f}",
                    "yes" if abs(ratio - 1) <= FLAT_TOLERANCE else "no",
                ]
            )
        small_name = f"{small['series']}x{small['bars_per_series']}"
        large_name = f"{large['series']}x{large['bars_per_series']}"
        headers = ["stage", f"us/bar {small_name}", f"us/bar {large_name}", "ratio", "flat"]
        lines.append(markdown_table(headers, rows))
    largest = sizes[-1]
    worst = max(largest["stages"], key=lambda stage: stage["peak_rss_bytes"])
    lines += [
        "",
        f"Largest peak RSS at {largest['bars']:,} bars: {worst['stage']}, "
        f"{worst['peak_rss_bytes'] / MB:,.0f} MB "
        f"({'under' if worst['peak_rss_bytes'] < RSS_LIMIT_BYTES else 'NOT under'} "
        f"{RSS_LIMIT_BYTES / 1e9:.0f} GB).",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[(50, 5000), (500, 5000)],
        help="SERIESxBARS, smallest first (default: 50x5000 500x5000)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {"train": {"epochs": 1, "patience": 1}}
    workdir = Path(tempfile.mkdtemp(prefix="finseq-scaling-"))
    sizes = []
    try:
        for n_series, n_bars in args.sizes:
            sizes.append(run_size(workdir, n_series, n_bars, overrides))
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    model = default_params_dict()["model"]
    print(report(sizes, model))
    write_json(args.json, {"overrides": overrides, "model": model, "sizes": sizes})


if __name__ == "__main__":
    main()
