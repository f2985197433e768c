"""The report's verdicts and what the model knows: pure functions of two revisions'
predictions tables and of the target's metrics.

A verdict compares one figure of two revisions by a paired block bootstrap over dates
(finseq.evidence), widened by the training noise of two seed ensembles where it was
measured. Skill is the primary figure; the other rows describe the change. What the model
knows splits the target's skill into its move and direction parts, beside the volatility
baseline on the same windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from finseq.evidence import DailyTotals, change_intervals, daily_totals, figure_of, verdict
from finseq.markdown import MISSING, format_change, format_value, markdown_table
from finseq.params import Params
from finseq.paths import PREDICTIONS_FILE

# Each row of the verdict table: the figure, and whether a higher value is better.
VERDICT_ROWS = (
    ("skill", True),
    ("move_skill", True),
    ("direction_skill", True),
    ("loss", False),
    ("accuracy", True),
    ("sharpe", True),
)
WINDOW_KEY = ["timestamp", "series"]
# The figure a verdict is decided on; the other rows describe the change (see verdict_section).
PRIMARY_FIGURE = VERDICT_ROWS[0][0]


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

    @classmethod
    def of(cls, params: Params) -> EvidenceSettings:
        """The settings a run's params give: its backtest and its bootstrap."""
        return cls(
            threshold=params.backtest.threshold,
            long_only=params.backtest.long_only,
            cost_bps=params.backtest.cost_bps,
            hold=params.backtest.hold_bars(params.label.horizon),
            sizing=params.backtest.sizing,
            horizon=params.label.horizon,
            resamples=params.evaluate.resamples,
            seed=params.evaluate.bootstrap_seed,
        )

    def totals(self, predictions: pd.DataFrame) -> DailyTotals:
        """daily_totals of a predictions table with these backtest settings."""
        return daily_totals(
            predictions,
            self.threshold,
            self.long_only,
            self.cost_bps,
            hold=self.hold,
            sizing=self.sizing,
        )


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
    eval.json), the training noise of the difference of the two seed ensembles
    (training_noise: a t quantile times its sd) is added in quadrature to each side of the
    interval.
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
    totals = [settings.totals(frame) for frame in (base, target)]
    # A table from before skill was split has no move or direction parts to compare.
    measured = {
        name: figure_of(name)
        for name, _ in VERDICT_ROWS
        if not any(np.isnan(figure_of(name)(side)) for side in totals)
    }
    changes = change_intervals(
        *totals,
        measured,
        settings.horizon,
        settings.resamples,
        settings.seed,
        paired=paired,
    )
    rows, words = [], []
    for name, higher_is_better in VERDICT_ROWS:
        figure = figure_of(name)
        if name not in changes:
            words.append(f"{name} not measured in both")
            cells = [
                MISSING if np.isnan(figure(side)) else format_value(figure(side)) for side in totals
            ]
            rows.append([name, *cells, MISSING, MISSING, "not measured in both"])
            continue
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
            "Training noise is included: each revision is its seed ensemble, and each "
            "interval is widened by the noise of the difference of two ensembles (the "
            "seeds' spread `seeds.*_sd` over the square root of their number, with a t "
            "quantile at the Welch degrees of freedom; docs/reviewing.md)."
            if any(seed_sd)
            else "The intervals measure test-sample noise only (neither revision measured its "
            "seed-to-seed spread: `train.seeds` = 1): a change of seed alone can read "
            "`better` or `worse`."
        )
    )
    rule = (
        f"**{PRIMARY_FIGURE} is the primary figure: the change is judged on it alone.** The "
        "other rows describe the change, each with a 95% interval of its own, not corrected "
        "for the number of rows: together they read `better` or `worse` by chance more "
        "often than one time in twenty."
    )
    header = ["figure", base_name, target_name, "change", "95% interval", "verdict"]
    text = f"## Verdicts\n\n{rule}\n\n{note_text}\n\n" + markdown_table(header, rows)
    primary, *secondary = words
    headline = f"Verdict: {primary} (primary)"
    if secondary:
        headline += "; also " + ", ".join(secondary)
    return text, headline + "."


def training_noise(seed_sd: tuple[Mapping | None, Mapping | None], name: str) -> float:
    """The half-width that training noise adds to the 95% interval of the change of `name`,
    or 0 if neither revision measured it.

    A revision that measured its seeds' spread sd (ddof 1, over S seeds) and is judged on
    their ensemble (`*_ensemble_sd` in its eval.json) varies with variance sd^2 / S; one
    judged on a single model (a revision from before the ensemble, or train.seeds = 1) with
    sd^2. The difference has the sum of the two variances, and its quantile is Student's t
    at the Welch-Satterthwaite degrees of freedom: 2 seeds per side give 1-2 degrees of
    freedom and a quantile of 4.3 to 12.7, not 1.96. A revision that did not measure its
    spread is a single model and borrows the other's sd; the one estimate then counts once
    (S - 1 degrees of freedom).
    """
    sides = [_seed_noise(sd, name) for sd in seed_sd]
    measured = [side for side in sides if side is not None]
    if not measured:
        return 0.0
    if len(measured) == 1:
        sd, count, own = measured[0]
        variance, freedom = own + sd**2, float(count - 1)
    else:
        variance = sum(part for _, _, part in measured)
        welch = sum(part**2 / (count - 1) for _, count, part in measured)
        freedom = variance**2 / welch if welch else 0.0
    if variance == 0:
        return 0.0
    return float(stats.t.ppf(0.975, freedom) * np.sqrt(variance))


def _seed_noise(spread: Mapping | None, name: str) -> tuple[float, int, float] | None:
    """(sd, seeds, variance of the revision's figure) from its `seeds` section, or None."""
    if not spread or f"{name}_sd" not in spread or int(spread.get("count", 0)) < 2:
        return None
    sd, count = float(spread[f"{name}_sd"]), int(spread["count"])
    ensemble = f"{name}_ensemble_sd" in spread
    return sd, count, sd**2 / count if ensemble else sd**2


KNOWLEDGE_ROWS = (
    ("skill", "whole: all three classes"),
    ("move_skill", "move: flat or not (volatility)"),
    ("direction_skill", "direction: up or down, given a move"),
)


def _interval(metrics: Mapping, prefix: str, name: str) -> str:
    value = metrics.get(f"{prefix}{name}")
    low, high = metrics.get(f"{prefix}{name}_low"), metrics.get(f"{prefix}{name}_high")
    if not isinstance(value, int | float):
        return MISSING
    if isinstance(low, int | float) and isinstance(high, int | float):
        return f"{value:+.4f} [{low:+.4f}, {high:+.4f}]"
    return f"{value:+.4f}"


def knowledge_section(eval_diff: Mapping, target: str) -> str:
    """What the target's model knows: skill split into move and direction, beside the
    volatility baseline on the same windows, and whether its move skill beats volatility's."""
    metrics = {key: values.get("new") for key, values in eval_diff.items()}
    if not isinstance(metrics.get("test.move_skill"), int | float):
        return ""
    rows = [
        [
            label,
            _interval(metrics, "test.", name),
            _interval(metrics, "baselines.volatility.", name),
        ]
        for name, label in KNOWLEDGE_ROWS
    ]
    table = markdown_table(["skill", f"`{target}`", "volatility baseline"], rows)
    gain = [metrics.get(f"baselines.volatility.move_gain{end}") for end in ("", "_low", "_high")]
    if all(isinstance(value, int | float) for value in gain):
        change, low, high = gain
        word = verdict(low, high, higher_is_better=True)
        judged = {
            "better": "more than volatility alone knows",
            "worse": "less than volatility alone knows: the volatility baseline beats it",
            "within noise": "no more than volatility alone knows",
        }[word]
        comparison = (
            f" Its move skill is {judged} ({change:+.4f} [{low:+.4f}, {high:+.4f}], paired over "
            "the same windows)."
        )
    else:
        comparison = ""
    return (
        "## What the model knows\n\n"
        "Test skill of the target split into its two parts, each against its own part of the "
        "fold's class prior, with 95% block-bootstrap intervals. The volatility baseline "
        "predicts P(flat) from volatility features alone and splits the rest by the prior: "
        "its direction skill is 0 by construction." + comparison + "\n\n" + table
    )
