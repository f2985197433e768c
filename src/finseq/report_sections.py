"""The report's Markdown sections: pure functions of what finseq.report read of two revisions.

finseq writes what is its own: the verdicts (a paired block bootstrap from finseq.evidence),
the headline, one row per walk-forward fold, the training summary and the loss per epoch.
The parameters and the full metrics tables are DVC's: the text of `dvc params diff --md` and
`dvc metrics diff --all --md`, placed as DVC printed it. Nothing here runs git or dvc.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from finseq.evidence import change_intervals, daily_totals, figure_of, verdict
from finseq.markdown import markdown_table
from finseq.paths import EVAL_METRICS, PREDICTIONS_FILE, TRAIN_LIVE_DIR

TRAIN_SUMMARY = f"{TRAIN_LIVE_DIR}/metrics.json"
TRAINING_ROWS = (
    ("best_epoch", "best epoch (restored)"),
    ("epochs_run", "epochs run"),
    ("stopped_early", "stop reason"),
    ("val.loss", "val loss at best epoch"),
    ("train.loss", "train loss at best epoch"),
)
MISSING = "—"
# Each row of the verdict table: the figure, and whether a higher value is better.
VERDICT_ROWS = (("skill", True), ("loss", False), ("accuracy", True), ("sharpe", True))
WINDOW_KEY = ["timestamp", "series"]


@dataclass(frozen=True)
class LossCurves:
    """Per-epoch loss of one revision: epoch → value, for train and val."""

    train: dict[int, float] = field(default_factory=dict)
    val: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportInputs:
    """What the report is made of. `params_table` and `metrics_table` are DVC's Markdown;
    `metrics_diff` is {file: {dotted key: {"old": …, "new": …}}} (finseq.report.paired_metrics)."""

    base: str
    target: str
    params_table: str
    metrics_table: str
    metrics_diff: Mapping
    base_curves: LossCurves
    target_curves: LossCurves
    plots_page: str | None = None
    verdicts: tuple[str, str] | None = None


@dataclass(frozen=True)
class EvidenceSettings:
    """What the verdicts are computed with: the workspace's backtest and bootstrap params."""

    threshold: float
    long_only: bool
    cost_bps: float
    hold: int  # bars, backtest.hold resolved
    sizing: str
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
        daily_totals(
            frame,
            settings.threshold,
            settings.long_only,
            settings.cost_bps,
            hold=settings.hold,
            sizing=settings.sizing,
        )
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
        f"positions sized by {settings.sizing} and held {settings.hold} bars, for both "
        "revisions from the workspace's `backtest` params. "
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


def training_noise(seed_sd: tuple[Mapping | None, Mapping | None], name: str) -> float:
    """1.96 x the seed-to-seed spread of the difference of `name`, or 0 if not measured."""
    spreads = [sd[f"{name}_sd"] for sd in seed_sd if sd and f"{name}_sd" in sd]
    if not spreads:
        return 0.0
    base, target = (spreads * 2)[:2]
    return 1.96 * float(np.hypot(base, target))


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


def dvc_table_rows(table: str) -> int:
    """How many rows a table of `dvc … diff --md` has below its header (0 if none)."""
    return max(sum(line.startswith("|") for line in table.splitlines()) - 2, 0)


def params_section(params_table: str) -> str:
    """The parameters that differ: DVC's own table (`dvc params diff --md`)."""
    if not dvc_table_rows(params_table):
        return "## Parameters\n\nNo parameter changed."
    return "## Parameters\n\n" + params_table.strip()


def all_metrics_section(metrics_table: str) -> str:
    """Every metric of both revisions, DVC's table (`dvc metrics diff --all --md`), folded
    away: GitHub shows the summary line and opens the table on a click."""
    if not dvc_table_rows(metrics_table):
        return "No metrics in either revision (`dvc metrics diff`)."
    return (
        "<details><summary>All metrics (dvc metrics diff)</summary>\n\n"
        + metrics_table.strip()
        + "\n\n</details>"
    )


def fold_names(eval_diff: Mapping) -> list[str]:
    """The walk-forward folds named by `folds.<fold>.*` keys, f2 before f10."""
    names = {key.split(".")[1] for key in eval_diff if key.startswith("folds.")}

    def order(name: str) -> tuple[int, str]:
        number = re.search(r"\d+", name)
        return (int(number.group()) if number else 1 << 30, name)

    return sorted(names, key=order)


def fold_period(eval_diff: Mapping, fold: str) -> str:
    """`first to last` date of the fold's test block; `base → target` where the two differ."""
    spans = []
    for side in ("old", "new"):
        first = eval_diff.get(f"folds.{fold}.first_date", {}).get(side)
        last = eval_diff.get(f"folds.{fold}.last_date", {}).get(side)
        spans.append(f"{first} to {last}" if first and last else None)
    base, target = spans
    if base and target and base != target:
        return f"{base} → {target}"
    return target or base or MISSING


def fold_section(eval_diff: Mapping, base: str, target: str) -> str:
    """One row per walk-forward fold: its test block's dates and test skill in both."""
    if not eval_diff:
        return f"## Walk-forward folds\n\nNo {EVAL_METRICS} in either revision."
    folds = fold_names(eval_diff)
    if not folds:
        return (
            f"## Walk-forward folds\n\nNo `folds.*` in {EVAL_METRICS} of either revision "
            "(a holdout split, or a revision from before walk-forward evaluation)."
        )
    rows = []
    for fold in folds:
        skill = eval_diff.get(f"folds.{fold}.skill", {})
        old, new = skill.get("old"), skill.get("new")
        period = fold_period(eval_diff, fold)
        rows.append([fold, period, format_value(old), format_value(new), format_change(old, new)])
    note = (
        "Test skill of each fold's test block (`skill = 1 - loss / prior_loss`: above 0 only "
        "when the model knows more than its training class balance). Every figure of every "
        "fold is under *All metrics*."
    )
    header = ["fold", "test block", f"{base} skill", f"{target} skill", "change"]
    return f"## Walk-forward folds\n\n{note}\n\n" + markdown_table(header, rows)


def metric_row(label: str, values: Mapping) -> list[str]:
    old, new = values.get("old"), values.get("new")
    return [label, format_value(old), format_value(new), format_change(old, new)]


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
    """Per-epoch train/val loss of both revisions side by side, folded away; each restored
    epoch in bold. `best_epochs` is the `best_epoch` entry of the metrics diff."""
    epochs = sorted(
        {*base_curves.train, *base_curves.val, *target_curves.train, *target_curves.val}
    )
    if not epochs:
        return "No per-epoch loss curves in either revision."
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
        "<details><summary>Loss per epoch (bold: the best epoch, whose weights were kept)"
        "</summary>\n\n" + markdown_table(header, rows) + "\n\n</details>"
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
    """Headline and verdicts, changed params, one row per fold, training, then the loss
    curves and every metric folded away."""
    eval_diff = inputs.metrics_diff.get(EVAL_METRICS, {})
    summary_diff = inputs.metrics_diff.get(TRAIN_SUMMARY, {})
    verdicts, verdict_line = inputs.verdicts or ("", "")
    sections = [
        f"# Model report: `{inputs.target}` against `{inputs.base}`",
        f"**{verdict_line}**" if verdict_line else "",
        headline(eval_diff),
        verdicts,
        params_section(inputs.params_table),
        fold_section(eval_diff, inputs.base, inputs.target),
        training_section(summary_diff, inputs.base, inputs.target),
        curves_section(
            inputs.base_curves,
            inputs.target_curves,
            summary_diff.get("best_epoch", {}),
            inputs.base,
            inputs.target,
        ),
        all_metrics_section(inputs.metrics_table),
    ]
    if inputs.plots_page:
        sections.append(
            f"Charts of both revisions (`dvc plots diff`): `{inputs.plots_page}`; "
            "the page renders without network."
        )
    return "\n\n".join(section for section in sections if section) + "\n"
