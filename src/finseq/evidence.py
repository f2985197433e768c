"""Per-window out-of-sample results → block-bootstrap intervals and paired verdicts.

Every headline figure is a function of per-date sums (losses, counts, portfolio returns),
so one resample of dates gives every figure at once. Dates are resampled in blocks of
consecutive dates by arch's StationaryBootstrap, every series of a date kept together,
because series move together and consecutive dates overlap through the label horizon.
The block length is Politis and White's (arch.bootstrap.optimal_block_length, as refined by
Patton, Politis and White) for the per-date series that the figures are built from, and never
shorter than the label horizon.

A paired comparison of two runs resamples the same dates for both, so the interval of
the change leaves out the noise both share (which windows happen to be in the test set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from arch.bootstrap import StationaryBootstrap, optimal_block_length

from finseq.backtest import (
    annual_return,
    backtest_metrics,
    bars_per_year,
    sharpe_ratio,
    strategy_returns,
    traded_windows,
)
from finseq.errors import ConfigError
from finseq.evaluate import (
    FLAT,
    PRIOR_COLUMNS,
    direction_losses,
    move_losses,
)
from finseq.labels import NUM_CLASSES, to_classes
from finseq.params import BacktestConfig, EvaluateConfig
from finseq.progress import tracked

LEVEL = 0.95
# Fewer dates than this cannot carry a block bootstrap of blocks at least a horizon long.
MINIMUM_DATES = 30
HEADLINE = (
    "skill",
    "move_skill",
    "direction_skill",
    "accuracy_gain",
    "balanced_accuracy",
    "sharpe",
    "annual_return",
)
# The figures of a part of the table (a fold, a series, a year, a regime): its class figures.
SKILLS = ("skill", "move_skill", "direction_skill")


@dataclass(frozen=True)
class DailyTotals:
    """Per distinct date: the sums that every headline figure is a ratio or function of."""

    dates: np.ndarray
    loss: np.ndarray  # sum of -log p(label)
    prior_loss: np.ndarray  # sum of -log prior(label)
    windows: np.ndarray
    correct: np.ndarray
    majority_correct: np.ndarray
    confusion: np.ndarray  # (dates, 3, 3): counts[true, predicted]
    # The portfolio's return after costs; NaN on a date with no window to trade (every
    # window's next-bar return unknown), which the backtest leaves out too.
    strategy: np.ndarray
    per_year: float  # bars per year of the traded dates, as the backtest counts them
    # Sums of skill's parts (PART_SUMS: evaluate.move_losses, direction_losses, of the model
    # and of the prior); None for a table written before they were (no prior columns).
    parts: dict[str, np.ndarray] | None = None

    def take(self, index: np.ndarray) -> DailyTotals:
        return DailyTotals(
            self.dates[index],
            self.loss[index],
            self.prior_loss[index],
            self.windows[index],
            self.correct[index],
            self.majority_correct[index],
            self.confusion[index],
            self.strategy[index],
            self.per_year,
            None if self.parts is None else {k: v[index] for k, v in self.parts.items()},
        )

    def traded_returns(self) -> np.ndarray:
        """The strategy's returns on the dates it could trade: what Sharpe and annual
        return are computed from, as in the backtest."""
        return self.strategy[np.isfinite(self.strategy)]


PART_SUMS = ("move_loss", "move_prior_loss", "direction_loss", "direction_prior_loss")


def skill_part_losses(
    predictions: pd.DataFrame, probabilities: np.ndarray, classes: np.ndarray, known: np.ndarray
) -> dict[str, np.ndarray]:
    """Per window, the move and direction losses of the model and of its fold's prior; 0
    where a window does not count (unknown label; flat, for direction), NaN everywhere for
    a table without the prior columns."""
    if not set(PRIOR_COLUMNS) <= set(predictions.columns):
        return {name: np.full(len(predictions), np.nan) for name in PART_SUMS}
    priors = predictions[PRIOR_COLUMNS].to_numpy()
    moved = known & (classes != FLAT)
    return {
        "move_loss": np.where(known, move_losses(probabilities, classes), 0.0),
        "move_prior_loss": np.where(known, move_losses(priors, classes), 0.0),
        "direction_loss": np.where(moved, direction_losses(probabilities, classes), 0.0),
        "direction_prior_loss": np.where(moved, direction_losses(priors, classes), 0.0),
    }


def daily_totals(
    predictions: pd.DataFrame,
    threshold: float,
    long_only: bool,
    cost_bps: float,
    *,
    hold: int,
    sizing: str,
):
    """Sums per date of a predictions table (metrics/predictions.csv's columns).

    The portfolio is `backtest_metrics`' own (backtest.traded_windows, strategy_returns):
    the same sizing and overlapping holds, from the windows with a next-bar return only (a
    window without one, a series' last bars, neither holds a share of the equal weight nor
    pays costs)."""
    probabilities = predictions[["p_down", "p_flat", "p_up"]].to_numpy()
    # A window of unknown label (empty `label`) counts in no class figure; it is traded if
    # its next-bar return is known.
    known = predictions["label"].notna().to_numpy()
    classes = to_classes(predictions["label"].fillna(0).to_numpy())
    picked = probabilities[np.arange(len(classes)), classes]
    predicted = probabilities.argmax(axis=1)
    dates = pd.to_datetime(predictions["timestamp"]).to_numpy()
    windows = traded_windows(predictions, threshold, long_only, hold=hold, sizing=sizing)
    portfolio = strategy_returns(windows, cost_bps)
    per_window = pd.DataFrame(
        {
            "date": dates,
            "loss": np.where(known, -np.log(np.clip(picked, 1e-12, None)), 0.0),
            "prior_loss": np.where(
                known, -np.log(np.clip(predictions["prior_p"].fillna(1.0), 1e-12, None)), 0.0
            ),
            **skill_part_losses(predictions, probabilities, classes, known),
            "windows": known.astype(int),
            "correct": (known & (predicted == classes)).astype(int),
            "majority_correct": (
                known & (to_classes(predictions["majority"].to_numpy()) == classes)
            ).astype(int),
            "cell": classes * NUM_CLASSES + predicted,
        }
    )
    grouped = per_window.groupby("date", sort=True)
    sums = grouped[
        ["loss", "prior_loss", *PART_SUMS, "windows", "correct", "majority_correct"]
    ].sum(min_count=1)
    # Each scored window counted in its date's (label, prediction) cell: np.bincount over
    # date position x cell (pd.crosstab's counts, without its cost at every evaluate).
    date_position = np.searchsorted(sums.index.to_numpy(), dates[known])
    cells = np.bincount(
        date_position * NUM_CLASSES**2 + per_window["cell"].to_numpy()[known],
        minlength=len(sums) * NUM_CLASSES**2,
    )
    strategy = pd.Series(portfolio.net, index=portfolio.dates).reindex(sums.index)
    return DailyTotals(
        dates=sums.index.to_numpy(),
        loss=sums["loss"].to_numpy(),
        prior_loss=sums["prior_loss"].to_numpy(),
        windows=sums["windows"].to_numpy(),
        correct=sums["correct"].to_numpy(),
        majority_correct=sums["majority_correct"].to_numpy(),
        confusion=cells.reshape(-1, NUM_CLASSES, NUM_CLASSES),
        strategy=strategy.to_numpy(),
        per_year=bars_per_year(portfolio.dates),
        parts=None
        if sums["move_loss"].isna().all()
        else {name: sums[name].to_numpy() for name in PART_SUMS},
    )


def _ratio_skill(loss: np.ndarray, prior_loss: np.ndarray) -> float:
    return float(1.0 - loss.sum() / prior_loss.sum())


def skill_figures(totals: DailyTotals) -> dict[str, float]:
    """skill and, where the table recorded them, its move and direction parts."""
    return {name: _ratio_skill(*pair) for name, pair in skill_sums(totals).items()}


def skill_sums(totals: DailyTotals) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per date, the model's and the prior's loss behind each skill figure; skill alone for
    a table that did not record the parts."""
    sums = {"skill": (totals.loss, totals.prior_loss)}
    if totals.parts is not None:
        parts = totals.parts
        sums["move_skill"] = (parts["move_loss"], parts["move_prior_loss"])
        sums["direction_skill"] = (parts["direction_loss"], parts["direction_prior_loss"])
    return sums


def headline_figures(totals: DailyTotals) -> dict[str, float]:
    """skill and its parts, accuracy gain over the majority, balanced accuracy, Sharpe,
    annual return."""
    confusion = totals.confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    present = support > 0
    windows = totals.windows.sum()
    return {
        **skill_figures(totals),
        "accuracy_gain": (totals.correct.sum() - totals.majority_correct.sum()) / windows,
        "balanced_accuracy": float(np.mean(np.diag(confusion)[present] / support[present])),
        "sharpe": sharpe_ratio(totals.traded_returns(), totals.per_year),
        "annual_return": annual_return(totals.traded_returns(), totals.per_year),
    }


def block_length(totals: DailyTotals, horizon: int) -> int:
    """Politis-White block length of the per-date loss difference and strategy return.

    The loss difference is taken over the dates with a scored window: a date whose every
    window has an unknown label has none, and a NaN would hide the loss from the estimate."""
    scored = totals.windows > 0
    per_window_loss = (totals.loss - totals.prior_loss)[scored] / totals.windows[scored]
    return series_block_length([per_window_loss, totals.traded_returns()], horizon)


def series_block_length(series: list[np.ndarray], horizon: int) -> int:
    """The longest Politis-White stationary block length of per-date `series` (a constant
    one has none), never shorter than `horizon`."""
    lengths = [optimal_block_length(one)["stationary"].iloc[0] for one in series if np.std(one) > 0]
    return int(max(horizon, np.ceil(max(lengths, default=1.0))))


def resampled_dates(n_dates: int, block: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_dates) date indices, by arch's stationary bootstrap, seeded."""
    bootstrap = StationaryBootstrap(block, np.arange(n_dates), seed=np.random.default_rng(seed))
    return np.stack([data[0] for data, _ in bootstrap.bootstrap(resamples)])


def check_enough_dates(n_dates: int, horizon: int) -> None:
    needed = max(MINIMUM_DATES, 3 * horizon)
    if n_dates < needed:
        raise ConfigError(
            f"only {n_dates} out-of-sample dates: a block bootstrap needs at least {needed} "
            f"(3 x label.horizon, and at least {MINIMUM_DATES}); give the test period more "
            "dates (split.oos_start, split.test) or shorten label.horizon"
        )


def percentile_interval(draws: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def intervals(
    totals: DailyTotals, horizon: int, resamples: int, seed: int
) -> dict[str, float | int]:
    """Each headline figure with its 95% percentile interval (`<name>_low`, `<name>_high`),
    the one-sided p-value that skill <= 0 (`skill_p`), and the block length used."""
    check_enough_dates(len(totals.dates), horizon)
    point = headline_figures(totals)
    names = [name for name in HEADLINE if name in point]
    block = block_length(totals, horizon)
    draws = {name: np.empty(resamples) for name in names}
    indexes = resampled_dates(len(totals.dates), block, resamples, seed)
    for row, index in enumerate(tracked(indexes, resamples, "bootstrap", "resamples")):
        for name, value in headline_figures(totals.take(index)).items():
            draws[name][row] = value
    result: dict[str, float | int] = dict(point)
    for name in names:
        result[f"{name}_low"], result[f"{name}_high"] = percentile_interval(draws[name])
    # Null imposed by centring the draws on 0: how often skill* - skill reaches skill.
    beyond = np.sum(draws["skill"] - point["skill"] >= point["skill"])
    result["skill_p"] = float((1 + beyond) / (1 + resamples))
    result["bootstrap_block"] = block
    return result


def skill_intervals(
    totals: DailyTotals, horizon: int, resamples: int, seed: int
) -> dict[str, float]:
    """skill, move_skill and direction_skill of a part of the out-of-sample windows (a fold,
    a series, a year, a regime), each with its 95% interval, resampled as `intervals` does;
    the intervals are NaN when the part has too few dates for a block bootstrap."""
    result: dict[str, float] = dict(skill_figures(totals))
    if len(totals.dates) < max(MINIMUM_DATES, 3 * horizon):
        return {**result, **{f"{name}_{end}": np.nan for name in result for end in ("low", "high")}}
    indexes = resampled_dates(len(totals.dates), block_length(totals, horizon), resamples, seed)
    for name, (loss, prior_loss) in skill_sums(totals).items():
        # Every resample's sums at once: the same ratio skill_figures takes of one.
        draws = 1.0 - loss[indexes].sum(axis=1) / prior_loss[indexes].sum(axis=1)
        result[f"{name}_low"], result[f"{name}_high"] = percentile_interval(draws)
    return result


Figure = Callable[[DailyTotals], float]


def change_intervals(
    base: DailyTotals,
    target: DailyTotals,
    figures: dict[str, Figure],
    horizon: int,
    resamples: int,
    seed: int,
    *,
    paired: bool,
) -> dict[str, tuple[float, float, float]]:
    """Each figure's change (target - base) and its 95% interval.

    Paired: the two scored the same windows on the same dates, and every resample takes the
    same dates for both. Unpaired: each is resampled on its own dates. The resamples are
    drawn once and serve every figure.
    """
    for totals in (base, target):
        check_enough_dates(len(totals.dates), horizon)
    block = max(block_length(base, horizon), block_length(target, horizon))
    base_index = resampled_dates(len(base.dates), block, resamples, seed)
    target_index = (
        base_index if paired else resampled_dates(len(target.dates), block, resamples, seed + 1)
    )
    draws = {name: np.empty(resamples) for name in figures}
    pairs = zip(base_index, target_index, strict=True)
    for row, (b, t) in enumerate(tracked(pairs, resamples, "bootstrap", "resamples")):
        base_sample, target_sample = base.take(b), target.take(t)
        for name, figure in figures.items():
            draws[name][row] = figure(target_sample) - figure(base_sample)
    return {
        name: (figure(target) - figure(base), *percentile_interval(draws[name]))
        for name, figure in figures.items()
    }


def verdict(low: float, high: float, higher_is_better: bool) -> str:
    """`better` or `worse` when the interval of the change excludes 0, else `within noise`."""
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    return "within noise"


def figure_of(name: str) -> Figure:
    """A headline figure, or `loss` / `accuracy` (per window), as a function of the totals."""
    if name == "loss":
        return lambda totals: float(totals.loss.sum() / totals.windows.sum())
    if name == "accuracy":
        return lambda totals: float(totals.correct.sum() / totals.windows.sum())
    if name in SKILLS:
        return lambda totals: skill_figures(totals).get(name, np.nan)
    if name == "sharpe":
        return lambda totals: sharpe_ratio(totals.traded_returns(), totals.per_year)
    return lambda totals: headline_figures(totals)[name]


def configured_totals(predictions: pd.DataFrame, backtest: BacktestConfig, horizon: int):
    """daily_totals with the run's `backtest` params, its hold resolved against `horizon`."""
    return daily_totals(
        predictions,
        backtest.threshold,
        backtest.long_only,
        backtest.cost_bps,
        hold=backtest.hold_bars(horizon),
        sizing=backtest.sizing,
    )


def configured_backtest(predictions: pd.DataFrame, backtest: BacktestConfig, horizon: int):
    """backtest_metrics with the run's `backtest` params, its hold resolved against `horizon`."""
    return backtest_metrics(
        predictions,
        backtest.threshold,
        backtest.long_only,
        backtest.cost_bps,
        hold=backtest.hold_bars(horizon),
        sizing=backtest.sizing,
    )


def out_of_sample_evidence(
    predictions: pd.DataFrame, backtest: BacktestConfig, evaluate: EvaluateConfig, horizon: int
) -> tuple[dict[str, float | int], pd.DataFrame]:
    """The `test.*` figures of the backtest, the intervals of every headline figure, and the
    equity curves, from the out-of-sample predictions; `horizon` is the label's (for the
    block length, and for `backtest.hold: horizon`)."""
    figures, equity = configured_backtest(predictions, backtest, horizon)
    totals = configured_totals(predictions, backtest, horizon)
    bounds = intervals(totals, horizon, evaluate.resamples, evaluate.bootstrap_seed)
    return {**figures, **bounds}, equity
