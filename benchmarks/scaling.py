"""Scaling of prepare, window and one training epoch with the number of bars, and their memory.

    python benchmarks/scaling.py                              # 50x5000 and 500x5000 bars
    python benchmarks/scaling.py --sizes 5x2000 10x2000 --repeats 1   # smoke run
    python benchmarks/scaling.py --layouts-only --sizes 500x5000      # CSV files / panels

For each size (series x bars per series) it writes a synthetic panel
(finseq.synthetic.write_panel, the raw CSV format) into a temporary copy of the
pipeline whose params.yaml is the repository's with data.files pointed at the
panel and train.epochs = 1, train.patience = 1. It then runs the real stage entry
points of finseq.stages.prepare, .window and .train, each in its own
subprocess, so that each stage's wall time and peak RSS (os.wait4's rusage of that
child alone) are its own. A stage's wall time includes starting Python and importing
its modules; a three-line driver around the stage's own `run_stage(main)` also times
the import and the work apart, and time per bar is the work's.

The sizes are run interleaved, not one after the other (see run_sizes), because
this machine's speed drifts over minutes.

A stage's work has a fixed part (reading params.yaml, first calls into NumPy and
torch, creating output files) besides its per-bar part. The same stages on a
minimal panel (--baseline, 2 x 1,000 bars) measure that fixed part, and the net
time per bar, (work - baseline work) / (bars - baseline bars), is what should stay
flat as the panel grows. Prepare and window run --repeats times per size, train
twice (once with --repeats 1) but once at the largest size (median work, largest
peak RSS). Sizes are sorted by bars; the baseline must be smaller than all of them.
With --layouts (or --layouts-only), the largest size is also kept three ways (a CSV file
per series, one long-format CSV panel, one Parquet panel of the same series) and prepare's
time per bar is measured on each, data.workers auto (issue 27).

Targets (issue 5): window outputs <= 1.1x the feature matrix bytes + 8 bytes per
window; time per bar flat within 20% between the sizes; every stage's peak RSS
under 4 GB at the largest size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from benchlib import (
    MB,
    ONE_SPLIT,
    copy_pipeline,
    default_params_dict,
    machine_line,
    subprocess_environment,
    write_json,
)

from finseq.markdown import markdown_table
from finseq.synthetic import write_long_panel, write_panel

STAGES = ("prepare", "window", "train")
RSS_LIMIT_BYTES = 4 * 10**9
FLAT_TOLERANCE = 0.2
WINDOW_BYTES_TARGET = 1.1


# Runs a stage as `python -m finseq.stages.<stage>` does (run_stage(main)), timing the
# import of its modules apart from its work; argv: stage name, timings file.
DRIVER = """\
import importlib, json, sys, time
from finseq.command import run_stage
start = time.perf_counter()
stage = importlib.import_module("finseq.stages." + sys.argv[1])
imported = time.perf_counter()
run_stage(stage.main)
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


def summarise(runs: list[StageRun]) -> dict:
    """Median times and the largest peak RSS over repeated runs of one stage."""
    return {
        "stage": runs[0].stage,
        "wall_s": statistics.median(run.wall_s for run in runs),
        "import_s": statistics.median(run.import_s for run in runs),
        "work_s": statistics.median(run.work_s for run in runs),
        "work_s_runs": [run.work_s for run in runs],
        "peak_rss_bytes": max(run.peak_rss_bytes for run in runs),
    }


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
        # What training gathers from: the float32 matrix a fold's scaler makes of features.npy
        # (stored unscaled in float64, so that every fold can scale it its own way).
        "feature_matrix": int(features.shape[0] * features.shape[1] * 4),
        "window_outputs": sum(path.stat().st_size for path in outputs.iterdir()),
        "windows": sum(sum(parts.values()) for parts in meta["windows"].values()),
        "train_windows": sum(int(parts["train"]) for parts in meta["windows"].values()),
    }


def run_sizes(
    workdir: Path, sizes: list[tuple[int, int]], overrides: dict, repeats: int = 1
) -> list[dict]:
    """Writes each panel, then runs every stage on every size, the sizes interleaved.

    The pipeline runs on one holdout split (ONE_SPLIT), so that the time per bar is that of
    one model, comparable across sizes and with earlier runs.

    This machine's speed drifts by tens of percent over minutes, so the sizes are not
    run one after the other: prepare and window run `repeats` rounds of every size in
    turn, and train runs every size, then every size but the largest once more, so
    that the smaller sizes' epochs lie on both sides of the largest one's.
    """
    panels = []
    for n_series, n_bars in sizes:
        project = workdir / f"{n_series}x{n_bars}"
        start = time.perf_counter()
        files = write_panel(project / "data" / "raw", n_series, n_bars, seed=0)
        panel_s = time.perf_counter() - start
        params = default_params_dict()
        params["split"]["lockbox"] = None  # generated bars end before the default data's
        for section, values in {**ONE_SPLIT, **overrides}.items():
            params[section].update(values)
        copy_pipeline(project, params, files)
        panels.append((project, n_series, n_bars, panel_s))
    env = subprocess_environment(workdir / "home")
    runs: dict[tuple[int, str], list[StageRun]] = {}
    for stage in STAGES:
        for round_index in range(min(repeats, 2) if stage == "train" else repeats):
            for index, (project, n_series, n_bars, _) in enumerate(panels):
                if stage == "train" and round_index == 1 and index == len(panels) - 1:
                    continue
                print(f"  {n_series}x{n_bars}: {stage} ...", file=sys.stderr)
                runs.setdefault((index, stage), []).append(run_stage_measured(stage, project, env))
    return [
        {
            "series": n_series,
            "bars_per_series": n_bars,
            "bars": n_series * n_bars,
            "panel_write_s": panel_s,
            "stages": [summarise(runs[(index, stage)]) for stage in STAGES],
            "bytes": window_bytes(project),
        }
        for index, (project, n_series, n_bars, panel_s) in enumerate(panels)
    ]


def run_size(workdir: Path, n_series: int, n_bars: int, overrides: dict, repeats: int = 1) -> dict:
    """One size on its own: `run_sizes` for a single panel."""
    return run_sizes(workdir, [(n_series, n_bars)], overrides, repeats)[0]


def prepared_digest(project: Path) -> str:
    """One sha256 over every file of data/prepared, in name order."""
    digest = hashlib.sha256()
    for path in sorted((project / "data" / "prepared").iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def generated_project(project: Path, raw_files: list[Path]) -> dict:
    """A copy of the pipeline on one holdout split for generated data (whose bars end before
    the default lockbox); its params.yaml, data.files pointed at `raw_files`."""
    params = default_params_dict()
    params["split"]["lockbox"] = None
    for section, values in ONE_SPLIT.items():
        params[section].update(values)
    copy_pipeline(project, params, raw_files)
    return yaml.safe_load((project / "params.yaml").read_text())


def alternating_prepares(
    workdir: Path,
    project: Path,
    params: dict,
    variants: dict,
    repeats: int,
    digest: Callable[[Path], str],
) -> dict:
    """The prepare stage once per variant (its `data` settings written into params.yaml) in
    each round, the variants' order reversed every other round so that drift falls on all;
    each run's output digested, and every variant must give the same."""
    env = subprocess_environment(workdir / "home")
    runs: dict = {name: [] for name in variants}
    digests: dict = {name: set() for name in variants}
    for round_index in range(repeats):
        for name in variants if round_index % 2 == 0 else list(variants)[::-1]:
            params["data"].update(variants[name])
            (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            print(f"  {project.name}: prepare, {name} ...", file=sys.stderr)
            runs[name].append(run_stage_measured("prepare", project, env))
            digests[name].add(digest(project))
    return {
        "runs": {name: summarise(measured) for name, measured in runs.items()},
        "identical": len(set().union(*digests.values())) == 1,
    }


def compare_prepare_workers(
    workdir: Path, n_series: int, n_bars: int, workers: list[int], repeats: int
) -> dict:
    """The prepare stage on one panel with each `data.workers` count, the counts alternating
    within and across rounds (1 2, 2 1, 1 2, ...); every count must give the same bytes."""
    project = workdir / f"workers-{n_series}x{n_bars}"
    params = generated_project(
        project, write_panel(project / "data" / "raw", n_series, n_bars, seed=0)
    )
    variants = {count: {"workers": count} for count in workers}
    measured = alternating_prepares(workdir, project, params, variants, repeats, prepared_digest)
    return {"series": n_series, "bars_per_series": n_bars, "bars": n_series * n_bars, **measured}


def variant_row(name: object, summary: dict, figure: str) -> list:
    """One row of a prepare comparison: runs, median wall and work, each run's work, the
    comparison's own figure, the largest peak RSS."""
    return [
        name,
        len(summary["work_s_runs"]),
        f"{summary['wall_s']:.1f}",
        f"{summary['work_s']:.2f}",
        " ".join(f"{value:.2f}" for value in summary["work_s_runs"]),
        figure,
        f"{summary['peak_rss_bytes'] / MB:,.0f}",
    ]


def workers_lines(compared: dict) -> list[str]:
    """The data.workers table: median work per count, speed-up over the first count."""
    counts = list(compared["runs"])
    first = compared["runs"][counts[0]]["work_s"]
    rows = [
        variant_row(count, summary, f"{first / summary['work_s']:.2f}x")
        for count, summary in compared["runs"].items()
    ]
    headers = [
        "data.workers",
        "runs",
        "wall s",
        "work s",
        "work s per run",
        "speed-up",
        "peak RSS MB",
    ]
    return [
        f"Prepare side by side, {size_name(compared)} ({compared['bars']:,} bars), rounds "
        "alternating the worker counts:",
        "",
        markdown_table(headers, rows),
        "",
        "data/prepared identical for every worker count: "
        + ("yes" if compared["identical"] else "NO"),
    ]


LAYOUTS = ("CSV files", "one CSV panel", "one Parquet panel")


def array_digest(project: Path) -> str:
    """One sha256 over data/prepared's arrays (not meta.json, whose series names differ
    between a file per series and a panel's symbols)."""
    digest = hashlib.sha256()
    for path in sorted((project / "data" / "prepared").glob("*.npy")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def compare_prepare_layouts(workdir: Path, n_series: int, n_bars: int, repeats: int) -> dict:
    """The prepare stage on one universe kept three ways: a CSV file per series, one
    long-format CSV panel and one Parquet panel of the same series (write_panel and
    write_long_panel with one seed), data.workers auto, the layouts alternating within and
    across rounds; every layout must give the same arrays."""
    project = workdir / f"layouts-{n_series}x{n_bars}"
    raw = project / "data" / "raw"
    write_panel(raw / "files", n_series, n_bars, seed=0)
    write_long_panel(raw / "panel.csv", n_series, n_bars, seed=0)
    write_long_panel(raw / "panel.parquet", n_series, n_bars, seed=0)
    files = ["data/raw/files", "data/raw/panel.csv", "data/raw/panel.parquet"]
    variants = {layout: {"files": [entry]} for layout, entry in zip(LAYOUTS, files, strict=True)}
    params = generated_project(project, [])
    measured = alternating_prepares(workdir, project, params, variants, repeats, array_digest)
    return {"series": n_series, "bars_per_series": n_bars, "bars": n_series * n_bars, **measured}


def layouts_lines(compared: dict) -> list[str]:
    """The layouts table: median work and its time per bar for each way of keeping the
    universe."""
    rows = [
        variant_row(layout, summary, f"{per_bar_us(compared, summary):.2f}")
        for layout, summary in compared["runs"].items()
    ]
    headers = ["layout", "runs", "wall s", "work s", "work s per run", "us/bar", "peak RSS MB"]
    return [
        f"Prepare of one universe kept three ways, {size_name(compared)} "
        f"({compared['bars']:,} bars), data.workers auto, rounds alternating the layouts:",
        "",
        markdown_table(headers, rows),
        "",
        "data/prepared arrays identical for every layout: "
        + ("yes" if compared["identical"] else "NO"),
    ]


def per_bar_us(size: dict, stage: dict) -> float:
    """Microseconds of the stage's work (imports excluded) per bar of the panel."""
    return stage["work_s"] / size["bars"] * 1e6


def net_per_bar_us(size: dict, stage: dict, baseline: dict, baseline_stage: dict) -> float:
    """Microseconds per bar of the work beyond the baseline panel's (the fixed cost)."""
    extra_s = stage["work_s"] - baseline_stage["work_s"]
    return extra_s / (size["bars"] - baseline["bars"]) * 1e6


def size_name(size: dict) -> str:
    return f"{size['series']}x{size['bars_per_series']}"


def report(sizes: list[dict], model: dict, baseline: dict | None = None) -> str:
    lines = [
        "## Scaling (benchmarks/scaling.py)",
        "",
        f"- machine: {machine_line()}",
        f"- model: {model['type']}, hidden {model['hidden_dim']}, {model['num_layers']} layers, "
        f"precision {model.get('precision', 'fp32')} (params.yaml); "
        "one training epoch over every train window; each stage its own fresh Python process",
        "- wall s: the whole process; import s: importing the stage's modules; work s: the "
        "stage itself (reading inputs, computing, writing outputs), median over runs; "
        "us/bar: work s per bar",
    ]
    if baseline is not None:
        lines.append(
            f"- baseline {size_name(baseline)}: a minimal panel whose work is the stages' "
            "fixed cost; net us/bar = (work s - baseline work s) / (bars - baseline bars)"
        )
    lines.append("")
    rows = []
    for size in ([baseline] if baseline is not None else []) + sizes:
        for stage in size["stages"]:
            rows.append(
                [
                    size_name(size),
                    f"{size['bars']:,}",
                    stage["stage"],
                    len(stage.get("work_s_runs", [stage["work_s"]])),
                    f"{stage['wall_s']:.1f}",
                    f"{stage['import_s']:.1f}",
                    f"{stage['work_s']:.3f}",
                    f"{per_bar_us(size, stage):.3f}",
                    f"{stage['peak_rss_bytes'] / MB:,.0f}",
                ]
            )
    headers = [
        "size",
        "bars",
        "stage",
        "runs",
        "wall s",
        "import s",
        "work s",
        "us/bar",
        "peak RSS MB",
    ]
    lines.append(markdown_table(headers, rows))

    lines += ["", "Window outputs against the feature matrix:", ""]
    rows = []
    for size in sizes:
        b = size["bytes"]
        ideal = b["feature_matrix"] + 8 * b["windows"]
        ratio = (b["feature_matrix"] + b["window_outputs"]) / ideal
        rows.append(
            [
                size_name(size),
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
        lines += ["", *time_per_bar_lines(sizes[0], sizes[-1], baseline)]
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


def time_per_bar_lines(small: dict, large: dict, baseline: dict | None) -> list[str]:
    """The flatness table: raw us/bar, and net of the fixed cost when a baseline was run."""
    flat_on = "net us/bar" if baseline is not None else "us/bar"
    lines = [
        f"Time per bar, {size_name(large)} against {size_name(small)} (flat: {flat_on} "
        f"within {FLAT_TOLERANCE:.0%}):",
        "",
    ]
    headers = ["stage", f"us/bar {size_name(small)}", f"us/bar {size_name(large)}", "ratio"]
    if baseline is not None:
        headers += [f"net {size_name(small)}", f"net {size_name(large)}", "net ratio"]
    headers.append("flat")
    rows = []
    stages = zip(small["stages"], large["stages"], strict=True)
    for index, (small_stage, large_stage) in enumerate(stages):
        raw = [per_bar_us(small, small_stage), per_bar_us(large, large_stage)]
        row = [small_stage["stage"], f"{raw[0]:.3f}", f"{raw[1]:.3f}", f"{raw[1] / raw[0]:.2f}"]
        ratio = raw[1] / raw[0]
        if baseline is not None:
            fixed = baseline["stages"][index]
            net = [
                net_per_bar_us(small, small_stage, baseline, fixed),
                net_per_bar_us(large, large_stage, baseline, fixed),
            ]
            ratio = net[1] / net[0]
            row += [f"{net[0]:.3f}", f"{net[1]:.3f}", f"{ratio:.2f}"]
        rows.append([*row, "yes" if abs(ratio - 1) <= FLAT_TOLERANCE else "no"])
    return [*lines, markdown_table(headers, rows)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[(50, 5000), (500, 5000)],
        help="SERIESxBARS (default: 50x5000 500x5000)",
    )
    parser.add_argument(
        "--baseline",
        type=parse_size,
        default=(2, 1000),
        help="minimal panel measuring the fixed cost (default 2x1000; 0x0: none)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of prepare and window per size (default 3); train runs at most twice",
    )
    parser.add_argument(
        "--workers",
        nargs="*",
        type=int,
        default=[1, 2],
        help="data.workers counts compared on the largest size's prepare (default 1 2; none: "
        "skip); the per-bar runs above use data.workers = 1",
    )
    parser.add_argument(
        "--workers-only", action="store_true", help="only the data.workers comparison"
    )
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="also prepare the largest size kept as CSV files, one CSV panel and one Parquet panel",
    )
    parser.add_argument("--layouts-only", action="store_true", help="only the layouts table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # One prepare worker: the time per bar is that of the work, not of how it is shared out.
    overrides = {"train": {"epochs": 1, "patience": 1}, "data": {"workers": 1}}
    workdir = Path(tempfile.mkdtemp(prefix="finseq-scaling-"))
    args.sizes.sort(key=lambda size: size[0] * size[1])
    with_baseline = args.baseline[0] > 0
    if with_baseline and args.baseline[0] * args.baseline[1] >= args.sizes[0][0] * args.sizes[0][1]:
        sys.exit("error: --baseline must have fewer bars than the smallest of --sizes")
    sizes = baseline = compared = layouts = None
    try:
        if args.layouts or args.layouts_only:
            layouts = compare_prepare_layouts(workdir, *args.sizes[-1], args.repeats)
        if not (args.workers_only or args.layouts_only):
            measured = run_sizes(
                workdir, [args.baseline] * with_baseline + args.sizes, overrides, args.repeats
            )
            baseline, sizes = (measured[0], measured[1:]) if with_baseline else (None, measured)
        if args.workers and not args.layouts_only:
            compared = compare_prepare_workers(workdir, *args.sizes[-1], args.workers, args.repeats)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    model = default_params_dict()["model"] | {
        "precision": default_params_dict()["train"]["precision"]
    }
    if sizes is not None:
        print(report(sizes, model, baseline))
    if compared is not None:
        print(("\n" if sizes is not None else f"- machine: {machine_line()}\n\n"), end="")
        print("\n".join(workers_lines(compared)))
    if layouts is not None:
        shown = sizes is not None or compared is not None
        print(("\n" if shown else f"- machine: {machine_line()}\n\n"), end="")
        print("\n".join(layouts_lines(layouts)))
    write_json(
        args.json,
        {
            "overrides": overrides,
            "model": model,
            "baseline": baseline,
            "sizes": sizes,
            "prepare_workers": compared,
            "prepare_layouts": layouts,
        },
    )


if __name__ == "__main__":
    main()
