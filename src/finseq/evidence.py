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
from finseq.evaluate import table_metrics
from finseq.labels import NUM_CLASSES, to_classes
from finseq.params import BacktestConfig, EvaluateConfig
from finseq.progress import tracked

LEVEL = 0.95
# Fewer dates than this cannot carry a block bootstrap of blocks at least a horizon long.
MINIMUM_DATES = 30
HEADLINE = ("skill", "accuracy_gain", "balanced_accuracy", "sharpe", "annual_return")


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
        )

    def traded_returns(self) -> np.ndarray:
        """The strategy's returns on the dates it could trade: what Sharpe and annual
        return are computed from, as in the backtest."""
        return self.strategy[np.isfinite(self.strategy)]


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
            "windows": known.astype(int),
            "correct": (known & (predicted == classes)).astype(int),
            "majority_correct": (
                known & (to_classes(predictions["majority"].to_numpy()) == classes)
            ).astype(int),
            "cell": classes * NUM_CLASSES + predicted,
        }
    )
    grouped = per_window.groupby("date", sort=True)
    sums = grouped[["loss", "prior_loss", "windows", "correct", "majority_correct"]].sum()
    scored = per_window[known]
    cells = pd.crosstab(scored["date"], scored["cell"]).reindex(
        index=sums.index, columns=range(NUM_CLASSES**2), fill_value=0
    )
    strategy = pd.Series(portfolio.net, index=portfolio.dates).reindex(sums.index)
    return DailyTotals(
        dates=sums.index.to_numpy(),
        loss=sums["loss"].to_numpy(),
        prior_loss=sums["prior_loss"].to_numpy(),
        windows=sums["windows"].to_numpy(),
        correct=sums["correct"].to_numpy(),
        majority_correct=sums["majority_correct"].to_numpy(),
        confusion=cells.to_numpy().reshape(-1, NUM_CLASSES, NUM_CLASSES),
        strategy=strategy.to_numpy(),
        per_year=bars_per_year(portfolio.dates),
    )


def headline_figures(totals: DailyTotals) -> dict[str, float]:
    """skill, accuracy gain over the majority, balanced accuracy, Sharpe, annual return."""
    confusion = totals.confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    present = support > 0
    windows = totals.windows.sum()
    return {
        "skill": 1.0 - totals.loss.sum() / totals.prior_loss.sum(),
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
    lengths = [
        optimal_block_length(series)["stationary"].iloc[0]
        for series in (per_window_loss, totals.traded_returns())
        if np.std(series) > 0
    ]
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
    block = block_length(totals, horizon)
    draws = {name: np.empty(resamples) for name in HEADLINE}
    indexes = resampled_dates(len(totals.dates), block, resamples, seed)
    for row, index in enumerate(tracked(indexes, resamples, "bootstrap", "resamples")):
        for name, value in headline_figures(totals.take(index)).items():
            draws[name][row] = value
    result: dict[str, float | int] = dict(point)
    for name in HEADLINE:
        result[f"{name}_low"], result[f"{name}_high"] = percentile_interval(draws[name])
    # Null imposed by centring the draws on 0: how often skill* - skill reaches skill.
    beyond = np.sum(draws["skill"] - point["skill"] >= point["skill"])
    result["skill_p"] = float((1 + beyond) / (1 + resamples))
    result["bootstrap_block"] = block
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
    if name == "skill":
        return lambda totals: float(1.0 - totals.loss.sum() / totals.prior_loss.sum())
    if name == "sharpe":
        return lambda totals: sharpe_ratio(totals.traded_returns(), totals.per_year)
    return lambda totals: headline_figures(totals)[name]


def out_of_sample_evidence(
    predictions: pd.DataFrame, backtest: BacktestConfig, evaluate: EvaluateConfig, horizon: int
) -> tuple[dict[str, float | int], pd.DataFrame]:
    """The `test.*` figures of the backtest, the intervals of every headline figure, and the
    equity curves, from the out-of-sample predictions; `horizon` is the label's (for the
    block length, and for `backtest.hold: horizon`)."""
    rule = (backtest.threshold, backtest.long_only, backtest.cost_bps)
    hold = backtest.hold_bars(horizon)
    figures, equity = backtest_metrics(predictions, *rule, hold=hold, sizing=backtest.sizing)
    totals = daily_totals(predictions, *rule, hold=hold, sizing=backtest.sizing)
    bounds = intervals(totals, horizon, evaluate.resamples, evaluate.bootstrap_seed)
    return {**figures, **bounds}, equity


SEED_FIGURES = ("skill", "loss", "accuracy", "sharpe")


def figures_of_seed(predictions: pd.DataFrame, backtest: BacktestConfig, horizon: int) -> dict:
    """The verdict figures of one seed's fold models, from its out-of-sample predictions
    table (as recorded), as the headline's come from the default seed's."""
    pooled = table_metrics(predictions)
    figures, _ = backtest_metrics(
        predictions,
        backtest.threshold,
        backtest.long_only,
        backtest.cost_bps,
        hold=backtest.hold_bars(horizon),
        sizing=backtest.sizing,
    )
    return {
        "skill": pooled["skill"],
        "loss": pooled["loss"],
        "accuracy": pooled["accuracy"],
        "sharpe": figures["sharpe"],
    }


def seed_spread(per_seed: list[dict], first_seed: int) -> dict:
    """Each seed's figures (`s<seed>.*`) and their standard deviation across seeds (`*_sd`,
    ddof = 1): the training noise that the report adds to its intervals."""
    spread: dict = {"count": len(per_seed)}
    for offset, figures in enumerate(per_seed):
        spread[f"s{first_seed + offset}"] = figures
    for name in SEED_FIGURES:
        spread[f"{name}_sd"] = float(np.std([figures[name] for figures in per_seed], ddof=1))
    return spread
