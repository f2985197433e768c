"""What a change did to the model, as Markdown: parameters, metrics and loss curves against a base.

A reviewer of a pull request sees which parameters moved, which metrics rose or fell against
main, and whether each change is beyond noise (`better`, `worse` or `within noise`, from a
paired block bootstrap over the out-of-sample windows both revisions scored). Everything is
read from what git keeps (params.yaml, the metrics JSON files, the predictions file, the
DVCLive curves), so the report needs no network and no DVC remote. `--base` and `--target`
take git revisions or `dvc exp` names.

    python -m finseq.report [--base main] [--target workspace|REV] [--out report.md]
                            [--plots-dir DIR]

The formatting functions take the dicts that `dvc params diff --json` and
`dvc metrics diff --json` print and return Markdown; only `main` runs git and dvc.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.atomic import write_text
from finseq.errors import ConfigError
from finseq.evidence import (
    change_intervals,
    daily_totals,
    figure_of,
    verdict,
)
from finseq.params import load_params
from finseq.stages import EVAL_METRICS, PREDICTIONS_FILE, TRAIN_LIVE_DIR, run_stage

WORKSPACE = "workspace"
TRAIN_SUMMARY = f"{TRAIN_LIVE_DIR}/metrics.json"
LOSS_CURVES = {
    "train": f"{TRAIN_LIVE_DIR}/plots/metrics/train/loss.tsv",
    "val": f"{TRAIN_LIVE_DIR}/plots/metrics/val/loss.tsv",
}
SPLITS = ("test", "val")
# Skill first: it says at once whether the model beats the class prior. Each baseline sits
# right after the model metric it is a baseline for.
EVAL_ORDER = (
    "skill",
    "loss",
    "prior_loss",
    "accuracy",
    "majority_accuracy",
    "balanced_accuracy",
    "macro_f1",
    "samples",
)
BASELINES = {"prior_loss", "majority_accuracy"}
TRAINING_ROWS = (
    ("best_epoch", "best epoch (restored)"),
    ("epochs_run", "epochs run"),
    ("stopped_early", "stop reason"),
    ("val.loss", "val loss at best epoch"),
    ("train.loss", "train loss at best epoch"),
)
MISSING = "—"


@dataclass(frozen=True)
class LossCurves:
    """Per-epoch loss of one revision: epoch → value, for train and val."""

    train: dict[int, float] = field(default_factory=dict)
    val: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportInputs:
    base: str
    target: str
    params_diff: Mapping
    metrics_diff: Mapping
    base_curves: LossCurves
    target_curves: LossCurves
    plots_page: str | None = None
    verdicts: tuple[str, str] | None = None


# Each row of the verdict table: the figure, and whether a higher value is better.
VERDICT_ROWS = (("skill", True), ("loss", False), ("accuracy", True), ("sharpe", True))
WINDOW_KEY = ["timestamp", "series"]


@dataclass(frozen=True)
class EvidenceSettings:
    """What the verdicts are computed with: the workspace's backtest and bootstrap params."""

    threshold: float
    long_only: bool
    cost_bps: float
    horizon: int
    resamples: int
    seed: int


def verdict_section(
    base: pd.DataFrame | None,
    target: pd.DataFrame | None,
    settings: EvidenceSettings,
    base_name: str,
    target_name: str,
    seed_sd: tuple[Mapping | None, Mapping | None] = (None, None),
) -> tuple[str, str]:
    """The verdict table and its one-line headline, from both revisions' predictions files.

    Window by window (a paired block bootstrap) when both scored the same windows; else
    each revision's own dates are resampled (unpaired), and the section says so. Where a
    revision measured its seed-to-seed spread (train.seeds > 1, `seeds.*_sd` in its
    eval.json), 1.96 x the spread of the difference, sqrt(sd_base^2 + sd_target^2), is added
    in quadrature to each side of the interval; a revision that did not measure it borrows
    the other's.
    """
    if base is None or target is None:
        missing = base_name if base is None else target_name
        text = (
            f"## Verdicts\n\n`{missing}` has no {PREDICTIONS_FILE} (a revision from before "
            "walk-forward evaluation, or not reproduced): no verdicts; the metrics below are "
            "point values only."
        )
        return text, f"No verdicts: `{missing}` has no {PREDICTIONS_FILE}."
    base = base.sort_values(WINDOW_KEY, kind="stable").reset_index(drop=True)
    target = target.sort_values(WINDOW_KEY, kind="stable").reset_index(drop=True)
    paired = base[WINDOW_KEY].equals(target[WINDOW_KEY])
    totals = [
        daily_totals(frame, settings.threshold, settings.long_only, settings.cost_bps)
        for frame in (base, target)
    ]
    changes = change_intervals(
        *totals,
        {name: figure_of(name) for name, _ in VERDICT_ROWS},
        settings.horizon,
        settings.resamples,
        settings.seed,
        paired=paired,
    )
    rows, words = [], []
    for name, higher_is_better in VERDICT_ROWS:
        figure = figure_of(name)
        change, low, high = changes[name]
        training = training_noise(seed_sd, name)
        if training:
            low = change - float(np.hypot(change - low, training))
            high = change + float(np.hypot(high - change, training))
        word = verdict(low, high, higher_is_better)
        words.append(f"{name} {word}")
        rows.append(
            [
                name,
                format_value(figure(totals[0])),
                format_value(figure(totals[1])),
                format_change(figure(totals[0]), figure(totals[1])),
                f"[{low:+.4f}, {high:+.4f}]",
                f"**{word}**",
            ]
        )
    if paired:
        how = f"Paired window by window over the {len(base):,} out-of-sample windows both predicted"
        known = int(base["label"].notna().sum())
        if known < len(base):
            how += f" ({known:,} of them with a known label, on which the class figures are)"
    else:
        how = (
            f"The two revisions scored different windows ({len(base):,} and {len(target):,}): "
            "each is resampled on its own dates (unpaired), so the intervals are wider"
        )
    note_text = (
        f"{how}; 95% interval of the change from {settings.resamples} block-bootstrap "
        "resamples of dates. `better` / `worse` when the interval excludes 0, else "
        f"`within noise`. Sharpe after {settings.cost_bps:g} bps per unit of turnover, "
        "with both revisions' positions from the workspace's `backtest` params. "
        + (
            "Training noise is included: the intervals are widened by the measured "
            "seed-to-seed spread (`seeds.*_sd`)."
            if any(seed_sd)
            else "The intervals measure test-sample noise only (neither revision measured its "
            "seed-to-seed spread: `train.seeds` = 1): a change of seed alone can read "
            "`better` or `worse`."
        )
    )
    header = ["figure", base_name, target_name, "change", "95% interval", "verdict"]
    text = f"## Verdicts\n\n{note_text}\n\n" + markdown_table(header, rows)
    return text, "Verdict: " + ", ".join(words) + "."


def format_value(value: object) -> str:
    """A metric or parameter as a table cell: floats to 4 decimals, lists joined, None as —."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ", ".join(format_value(item) for item in value)
    return str(value)


def format_change(old: object, new: object) -> str:
    """new - old with its sign, or — where either side is missing or not a number."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new))
    if not numbers:
        return MISSING
    change = new - old
    if change == 0:
        return "0"
    if isinstance(change, int):
        return f"{change:+d}"
    return f"{change:+.4f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    align = ["---"] + ["--:"] * (len(header) - 1)
    return "\n".join([line(header), "| " + " | ".join(align) + " |", *map(line, rows)])


def params_section(params_diff: Mapping, base: str, target: str) -> str:
    """The parameters that differ; those of params.yaml by their dotted name alone."""
    rows = []
    for path, changes in sorted(params_diff.items()):
        for name, values in sorted(changes.items()):
            label = name if path == "params.yaml" else f"{path}:{name}"
            rows.append(
                [f"`{label}`", format_value(values.get("old")), format_value(values.get("new"))]
            )
    if not rows:
        return "## Parameters\n\nNo parameter changed."
    return "## Parameters\n\n" + markdown_table(["parameter", base, target], rows)


def ordered_eval_keys(keys: Iterable[str]) -> list[str]:
    """Test before val, each in EVAL_ORDER; any metric not listed there follows, sorted."""
    keys = set(keys)
    known = [f"{split}.{name}" for split in SPLITS for name in EVAL_ORDER]
    return [key for key in known if key in keys] + sorted(keys - set(known))


def metric_row(label: str, values: Mapping) -> list[str]:
    old, new = values.get("old"), values.get("new")
    return [label, format_value(old), format_value(new), format_change(old, new)]


def eval_section(eval_diff: Mapping, base: str, target: str) -> str:
    if not eval_diff:
        return f"## Evaluation\n\nNo {EVAL_METRICS} in either revision."
    rows = []
    for key in ordered_eval_keys(eval_diff):
        is_baseline = key.split(".", 1)[-1] in BASELINES
        rows.append(metric_row(f"{key} (baseline)" if is_baseline else key, eval_diff[key]))
    note = (
        "`skill = 1 - loss / prior_loss`: above 0 only when the model knows more than the "
        "training class balance. `prior_loss` and `majority_accuracy` are the baselines."
    )
    table = markdown_table(["metric", base, target, "change"], rows)
    return f"## Evaluation ({EVAL_METRICS})\n\n{note}\n\n{table}"


def stop_reason(stopped_early: object) -> str:
    if stopped_early is None:
        return MISSING
    return "early stopping" if stopped_early else "epoch limit"


def training_section(summary_diff: Mapping, base: str, target: str) -> str:
    """Best epoch and why training stopped, from the train stage's summary metrics."""
    if not summary_diff:
        return f"## Training\n\nNo {TRAIN_SUMMARY} in either revision."
    rows = []
    for key, label in TRAINING_ROWS:
        values = summary_diff.get(key, {})
        if key == "stopped_early":
            old, new = values.get("old"), values.get("new")
            rows.append([label, stop_reason(old), stop_reason(new), MISSING])
        else:
            rows.append(metric_row(label, values))
    return "## Training\n\n" + markdown_table(["", base, target, "change"], rows)


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


def curve_cells(curves: LossCurves, epoch: int, best_epoch: int | None) -> list[str]:
    val = format_value(curves.val.get(epoch))
    if epoch == best_epoch:
        val = f"**{val}**"
    return [format_value(curves.train.get(epoch)), val]


def curves_section(
    base_curves: LossCurves,
    target_curves: LossCurves,
    best_epochs: Mapping,
    base: str,
    target: str,
) -> str:
    """Per-epoch train/val loss of both revisions side by side; each restored epoch in bold.

    `best_epochs` is the `best_epoch` entry of the metrics diff ({"old": …, "new": …}).
    """
    epochs = sorted(
        {*base_curves.train, *base_curves.val, *target_curves.train, *target_curves.val}
    )
    if not epochs:
        return "## Loss per epoch\n\nNo per-epoch loss curves in either revision."
    base_best, target_best = best_epochs.get("old"), best_epochs.get("new")
    header = ["epoch", f"{base} train", f"{base} val", f"{target} train", f"{target} val"]
    rows = [
        [
            str(epoch),
            *curve_cells(base_curves, epoch, base_best),
            *curve_cells(target_curves, epoch, target_best),
        ]
        for epoch in epochs
    ]
    return (
        "## Loss per epoch\n\nBold: the val loss of the best epoch, whose weights were kept.\n\n"
        + markdown_table(header, rows)
    )


def headline(eval_diff: Mapping) -> str:
    """One line with the change in test skill and loss, for a reader who reads nothing else."""
    parts = []
    for key in ("test.skill", "test.loss"):
        if key in eval_diff:
            values = eval_diff[key]
            old, new = values.get("old"), values.get("new")
            parts.append(
                f"{key} {format_value(old)} → {format_value(new)} ({format_change(old, new)})"
            )
    return "**" + "; ".join(parts) + "**" if parts else ""


def build_report(inputs: ReportInputs) -> str:
    eval_diff = inputs.metrics_diff.get(EVAL_METRICS, {})
    summary_diff = inputs.metrics_diff.get(TRAIN_SUMMARY, {})
    verdicts, verdict_line = inputs.verdicts or ("", "")
    sections = [
        f"# Model report: `{inputs.target}` against `{inputs.base}`",
        f"**{verdict_line}**" if verdict_line else "",
        headline(eval_diff),
        verdicts,
        params_section(inputs.params_diff, inputs.base, inputs.target),
        eval_section(eval_diff, inputs.base, inputs.target),
        training_section(summary_diff, inputs.base, inputs.target),
        curves_section(
            inputs.base_curves,
            inputs.target_curves,
            summary_diff.get("best_epoch", {}),
            inputs.base,
            inputs.target,
        ),
    ]
    if inputs.plots_page:
        sections.append(
            f"Charts of both revisions (`dvc plots diff`): `{inputs.plots_page}`; "
            "the page renders without network."
        )
    return "\n\n".join(section for section in sections if section) + "\n"


def run_dvc_json(*args: str) -> dict:
    """`dvc <args> --json` parsed; a failure (an unknown revision, say) is the user's to fix."""
    result = run_dvc(*args, "--json")
    return json.loads(result.stdout or "{}")


def run_dvc(*args: str) -> subprocess.CompletedProcess:
    # The dvc of this interpreter, so the report works from any venv without PATH set up.
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        message = result.stderr.strip().removeprefix("ERROR: ") or f"exit {result.returncode}"
        raise ConfigError(f"dvc {args[0]} {args[1]}: {message}")
    return result


def read_at_revision(path: str, revision: str | None) -> str | None:
    """A file's text in `revision` (git show), or in the workspace if None; None if absent."""
    if revision is None:
        file = Path(path)
        return file.read_text() if file.is_file() else None
    result = subprocess.run(
        ["git", "show", f"{revision}:{path}"], capture_output=True, text=True, check=False
    )
    return result.stdout if result.returncode == 0 else None


def training_noise(seed_sd: tuple[Mapping | None, Mapping | None], name: str) -> float:
    """1.96 x the seed-to-seed spread of the difference of `name`, or 0 if not measured."""
    spreads = [sd[f"{name}_sd"] for sd in seed_sd if sd and f"{name}_sd" in sd]
    if not spreads:
        return 0.0
    base, target = (spreads * 2)[:2]
    return 1.96 * float(np.hypot(base, target))


def read_seed_spread(revision: str | None) -> Mapping | None:
    text = read_at_revision(EVAL_METRICS, resolve_revision(revision))
    return json.loads(text).get("seeds") if text else None


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


def read_predictions(revision: str | None) -> pd.DataFrame | None:
    text = read_at_revision(PREDICTIONS_FILE, resolve_revision(revision))
    return None if text is None else pd.read_csv(io.StringIO(text))


def evidence_settings() -> EvidenceSettings:
    params = load_params()
    return EvidenceSettings(
        threshold=params.backtest.threshold,
        long_only=params.backtest.long_only,
        cost_bps=params.backtest.cost_bps,
        horizon=params.label.horizon,
        resamples=params.evaluate.resamples,
        seed=params.evaluate.bootstrap_seed,
    )


def read_curves(revision: str | None) -> LossCurves:
    revision = resolve_revision(revision)
    return LossCurves(
        train=parse_curve(read_at_revision(LOSS_CURVES["train"], revision)),
        val=parse_curve(read_at_revision(LOSS_CURVES["val"], revision)),
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m finseq.report",
        description="Markdown report of params, metrics and loss curves against a base revision.",
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


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    target_revision = None if args.target == WORKSPACE else args.target
    revisions = [args.base] if target_revision is None else [args.base, target_revision]
    plots_page = None
    if args.plots_dir:
        run_dvc("plots", "diff", *revisions, "-o", args.plots_dir)
        plots_page = str(Path(args.plots_dir) / "index.html")
    report = build_report(
        ReportInputs(
            base=args.base,
            target=args.target,
            params_diff=run_dvc_json("params", "diff", *revisions),
            metrics_diff=run_dvc_json("metrics", "diff", *revisions, "--all"),
            base_curves=read_curves(args.base),
            target_curves=read_curves(target_revision),
            plots_page=plots_page,
            verdicts=verdict_section(
                read_predictions(args.base),
                read_predictions(target_revision),
                evidence_settings(),
                args.base,
                args.target,
                (read_seed_spread(args.base), read_seed_spread(target_revision)),
            ),
        )
    )
    if args.out:
        write_text(args.out, report)
    else:
        sys.stdout.write(report)


if __name__ == "__main__":
    run_stage(main)
