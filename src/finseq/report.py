"""What a change did to the model, as Markdown for a pull request: verdicts, parameters, folds,
training and every metric against a base.

A reviewer of a pull request sees whether each change is beyond noise (`better`, `worse` or
`within noise`, from a paired block bootstrap over the out-of-sample windows both revisions
scored), which parameters moved, and each walk-forward fold's test skill in both; the loss
curves and every metric are folded away below. Everything is read from what git keeps
(params.yaml, the metrics JSON files, the predictions file, the DVCLive curves), so the
report needs no network and no DVC remote. `--base` and `--target` take git revisions or
`dvc exp` names.

    python -m finseq.report [--base main] [--target workspace|REV] [--out report.md]
                            [--plots-dir DIR]

This module reads the two revisions (git, and dvc's own `params diff --md` and
`metrics diff --all --md` tables); finseq.report_sections turns what it read into Markdown.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from finseq.atomic import write_text
from finseq.command import OneLineParser, run_stage
from finseq.errors import ConfigError, DataError, note
from finseq.experiments import flatten
from finseq.paths import EVAL_METRICS, TRAIN_LIVE_DIR
from finseq.report_sections import TRAIN_SUMMARY, LossCurves, ReportInputs, build_report
from finseq.revisions import evidence_settings, read_at_revision, read_predictions
from finseq.verdicts import verdict_section

WORKSPACE = "workspace"
LOSS_CURVES = {
    "train": f"{TRAIN_LIVE_DIR}/plots/metrics/train/loss.tsv",
    "val": f"{TRAIN_LIVE_DIR}/plots/metrics/val/loss.tsv",
}


def run_dvc_md(*args: str) -> str:
    """The Markdown table `dvc <args> --md` prints (GitHub-flavoured), files in path order."""
    return in_path_order(run_dvc(*args, "--md").stdout)


def in_path_order(table: str) -> str:
    """A `dvc … diff --md` table with its rows stably sorted on the path column. dvc 3 lists
    the files in no fixed order from one run to the next (treeverse/dvc#5009), the rows of
    each file in a fixed one; sorted, a report rebuilt from the same revisions is the same."""
    lines = table.strip().splitlines()
    rows = sorted(lines[2:], key=lambda line: line.split("|")[1].strip() if "|" in line else "")
    return "\n".join(lines[:2] + rows) + "\n"


def run_dvc(*args: str) -> subprocess.CompletedProcess:
    """`dvc <args>`; a failure (an unknown revision, say) is the user's to fix: one line."""
    # The dvc of this interpreter, so the report works from any venv without PATH set up.
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        message = result.stderr.strip().removeprefix("ERROR: ") or f"exit {result.returncode}"
        raise ConfigError(f"dvc {args[0]} {args[1]}: {message}")
    return result


def resolve_revision(name: str | None) -> str | None:
    """A git revision, or the commit of a `dvc exp` experiment of that name; None: workspace."""
    if name is None:
        return None
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 0:
        return found.stdout.strip()
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    matches = [line.split()[1] for line in refs if line and line.split()[0].endswith(f"/{name}")]
    return matches[0] if len(matches) == 1 else name


def paired_metrics(base: Mapping, target: Mapping) -> dict[str, dict[str, dict]]:
    """Two revisions' metrics files ({file: parsed JSON}) as {file: {dotted key: {"old",
    "new"}}}, every key of either revision, None where one lacks it."""
    paired: dict[str, dict[str, dict]] = {}
    for path in [*base, *(path for path in target if path not in base)]:
        old, new = flatten(base.get(path) or {}), flatten(target.get(path) or {})
        keys = [*old, *(key for key in new if key not in old)]
        paired[path] = {key: {"old": old.get(key), "new": new.get(key)} for key in keys}
    return paired


def parse_curve(tsv: str | None) -> dict[int, float]:
    """A DVCLive TSV (`step<TAB>value` under a header) as epoch → value; empty if absent."""
    if not tsv:
        return {}
    curve = {}
    for line in tsv.splitlines()[1:]:
        if line.strip():
            step, value = line.split("\t")[:2]
            curve[int(step)] = float(value)
    return curve


def read_metrics(revision: str | None) -> dict[str, dict]:
    """metrics/eval.json and the train summary of a resolved revision, by path; a file the
    revision lacks is left out."""
    found = {}
    for path in (EVAL_METRICS, TRAIN_SUMMARY):
        text = read_at_revision(path, revision)
        if text:
            found[path] = json.loads(text)
    return found


def read_curves(revision: str | None) -> LossCurves:
    return LossCurves(
        train=parse_curve(read_at_revision(LOSS_CURVES["train"], revision)),
        val=parse_curve(read_at_revision(LOSS_CURVES["val"], revision)),
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m finseq.report",
        description="Markdown report of verdicts, params, folds and metrics against a base "
        "revision.",
    )
    parser.add_argument("--base", default="main", help="revision to compare with (default: main)")
    parser.add_argument(
        "--target",
        default=WORKSPACE,
        help="revision to report on, or 'workspace' for the working tree (default)",
    )
    parser.add_argument("--out", help="write the report to this file instead of stdout")
    parser.add_argument(
        "--plots-dir", help="also write `dvc plots diff` of both revisions to this directory"
    )
    return parser.parse_args(argv)


def stale_stages() -> list[str]:
    """The stages `dvc status` names in the workspace: params, code or data changed since
    their outputs were produced, or outputs other than dvc.lock's (a branch checked out
    without `dvc checkout`). Its metrics then need not be those of its setup."""
    return list(json.loads(run_dvc("status", "--json").stdout or "{}"))


def check_report_path(out: str | None) -> None:
    if out is None:
        return
    path = Path(out)
    if path.is_dir():
        raise DataError(f"--out {out}: is a directory; give a file name")
    if not path.parent.is_dir():
        raise DataError(f"--out {out}: folder {path.parent} does not exist")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    check_report_path(args.out)
    target_name = None if args.target == WORKSPACE else args.target
    # dvc takes the names as given (branches, commits, `dvc exp` names); git needs commits.
    revisions = [args.base] if target_name is None else [args.base, target_name]
    params_table = run_dvc_md("params", "diff", *revisions)
    metrics_table = run_dvc_md("metrics", "diff", *revisions, "--all")
    plots_page = None
    if args.plots_dir:
        run_dvc("plots", "diff", *revisions, "-o", args.plots_dir)
        plots_page = str(Path(args.plots_dir) / "index.html")
    base, target = resolve_revision(args.base), resolve_revision(target_name)
    base_metrics, target_metrics = read_metrics(base), read_metrics(target)
    seed_spreads = tuple(
        metrics.get(EVAL_METRICS, {}).get("seeds") for metrics in (base_metrics, target_metrics)
    )
    report = build_report(
        ReportInputs(
            base=args.base,
            target=args.target,
            params_table=params_table,
            metrics_table=metrics_table,
            metrics_diff=paired_metrics(base_metrics, target_metrics),
            base_curves=read_curves(base),
            target_curves=read_curves(target),
            plots_page=plots_page,
            verdicts=verdict_section(
                read_predictions(base),
                read_predictions(target),
                evidence_settings(),
                args.base,
                args.target,
                seed_spreads,
            ),
        )
    )
    stale = stale_stages() if target_name is None else []
    if stale:
        warning = (
            f"the workspace does not match its dvc.lock: `dvc status` reports changes for "
            f"{', '.join(stale)}, so its metrics may not be those of its params, code and "
            "data; run `dvc repro` (or `dvc checkout`) first"
        )
        note(warning)
        report = f"> **Warning:** {warning}.\n\n{report}"
    if args.out:
        write_text(args.out, report)
    else:
        sys.stdout.write(report)


if __name__ == "__main__":
    run_stage(main)
