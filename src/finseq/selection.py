"""Choosing among many experiments without fooling oneself, pure: which of them are in the
Model Confidence Set of out-of-sample loss, and the deflated Sharpe ratio of the best one.

The Model Confidence Set (Hansen, Lunde and Nason 2011; arch.bootstrap.MCS) is the set of
experiments that contains the one of lowest expected out-of-sample loss with probability
1 - size (90% here). Its losses are each date's mean log loss per scored window, over the
dates every compared experiment scored, resampled in blocks of consecutive dates by arch's
stationary bootstrap: the block length is the report's (evidence.block_length, Politis-White,
never shorter than the label horizon), the resamples and seed are `evaluate.resamples` and
`evaluate.bootstrap_seed`. Experiments that the data cannot tell apart all stay in the set;
one whose loss is beyond noise worse than the others' is eliminated.

The deflated Sharpe ratio (Bailey and López de Prado 2014) is the probability that the best
of N tried strategies has a true Sharpe ratio above 0, once the maximum that N strategies
without skill would reach by luck, given how much their Sharpe ratios vary, is taken off,
with the skewness and kurtosis of its returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from arch.bootstrap import MCS
from scipy.stats import kurtosis, norm, skew

from finseq.evidence import MINIMUM_DATES, DailyTotals, block_length
from finseq.verdicts import EvidenceSettings

MCS_SIZE = 0.10


@dataclass(frozen=True)
class ConfidenceSet:
    """The experiments compared, each one's MCS p-value, and those in the set (p > size);
    `members` is None when the common dates are too few for a block bootstrap."""

    compared: tuple[str, ...]
    members: frozenset[str] | None
    pvalues: dict[str, float]
    dates: int  # the dates every compared experiment scored
    all_dates: int  # the dates any of them scored
    block: int  # bootstrap block length, in dates; 0 when nothing was resampled


def per_date_losses(totals: Mapping[str, DailyTotals]) -> pd.DataFrame:
    """Dates x experiments: each date's mean log loss per window of known label, over the
    dates on which every experiment scored at least one window, in date order."""
    columns = []
    for name, day in totals.items():
        scored = day.windows > 0
        columns.append(
            pd.Series(day.loss[scored] / day.windows[scored], index=day.dates[scored], name=name)
        )
    return pd.concat(columns, axis=1, join="inner").sort_index()


def confidence_set(
    totals: Mapping[str, DailyTotals],
    horizon: int,
    resamples: int,
    seed: int,
    size: float = MCS_SIZE,
) -> ConfidenceSet:
    """The (1 - size) Model Confidence Set of per-date loss (arch's MCS, method R, stationary
    bootstrap), from each experiment's daily totals. One experiment is its own set."""
    names = tuple(totals)
    if not names:
        return ConfidenceSet((), frozenset(), {}, 0, 0, 0)
    losses = per_date_losses(totals)
    all_dates = len(
        np.unique(np.concatenate([day.dates[day.windows > 0] for day in totals.values()]))
    )
    if len(names) == 1:
        return ConfidenceSet(names, frozenset(names), {names[0]: 1.0}, len(losses), all_dates, 0)
    if len(losses) < max(MINIMUM_DATES, 3 * horizon):
        return ConfidenceSet(names, None, {}, len(losses), all_dates, 0)
    common = losses.index.to_numpy()
    block = max(
        block_length(day.take(np.flatnonzero(np.isin(day.dates, common))), horizon)
        for day in totals.values()
    )
    # Experiments of the very same losses (the workspace and the commit it is on, say) are
    # one model to the MCS: arch's would divide their zero difference by a zero variance.
    twin = {name: next(n for n in names if losses[n].equals(losses[name])) for name in names}
    distinct = list(dict.fromkeys(twin.values()))
    pvalues = dict.fromkeys(distinct, 1.0)
    if len(distinct) > 1:
        mcs = MCS(
            losses[distinct].to_numpy(),
            size=size,
            reps=resamples,
            block_size=block,
            method="R",
            bootstrap="stationary",
            seed=seed,
        )
        mcs.compute()
        pvalues = {distinct[int(i)]: float(p) for i, p in mcs.pvalues["Pvalue"].items()}
    pvalues = {name: pvalues[twin[name]] for name in names}
    members = frozenset(name for name in names if pvalues[name] > size)
    return ConfidenceSet(names, members, pvalues, len(losses), all_dates, block)


def model_confidence_set(
    predictions: Mapping[str, pd.DataFrame], settings: EvidenceSettings, size: float = MCS_SIZE
) -> ConfidenceSet:
    """The (1 - size) Model Confidence Set of out-of-sample loss of experiments given as
    {name: predictions table}, resampled with the settings' horizon, resamples and seed."""
    totals = {name: settings.totals(frame) for name, frame in predictions.items()}
    return confidence_set(totals, settings.horizon, settings.resamples, settings.seed, size)


def expected_max_sharpe(trials: int, variance: float) -> float:
    """The expected maximum of `trials` Sharpe ratios of strategies without skill whose
    estimates vary by `variance` (Bailey and López de Prado 2014):
    sqrt(V) ((1 - g) Φ⁻¹(1 - 1/N) + g Φ⁻¹(1 - 1/(N e))), g Euler's constant. 0 for one trial or
    no variance: nothing to deflate."""
    if trials < 2 or not variance > 0:
        return 0.0
    gamma = np.euler_gamma
    return math.sqrt(variance) * (
        (1 - gamma) * norm.ppf(1 - 1 / trials) + gamma * norm.ppf(1 - 1 / (trials * math.e))
    )


def deflated_sharpe(
    sharpe: float, periods: int, skewness: float, kurt: float, trials: int, variance: float
) -> float:
    """Φ(((SR - SR0) sqrt(T - 1)) / sqrt(1 - S SR + (K - 1) / 4 SR²)): the probability that
    the true Sharpe ratio of the best of `trials` strategies is above 0, with SR its Sharpe
    ratio per period over T = `periods` returns of skewness S and kurtosis K (3 for normal
    returns, not the excess), and SR0 = expected_max_sharpe(trials, variance), `variance`
    that of the trials' per-period Sharpe ratios."""
    threshold = expected_max_sharpe(trials, variance)
    spread = 1 - skewness * sharpe + (kurt - 1) / 4 * sharpe**2
    if periods < 2 or not spread > 0:
        return math.nan
    return float(norm.cdf((sharpe - threshold) * math.sqrt(periods - 1) / math.sqrt(spread)))


@dataclass(frozen=True)
class DeflatedSharpe:
    name: str  # the best experiment
    value: float  # its deflated Sharpe ratio
    trials: int
    periods: int
    sharpe: float  # its Sharpe ratio per period, from `returns`
    threshold: float  # SR0: the expected maximum per period of as many trials without skill


def deflated_sharpe_of_best(
    name: str, returns: np.ndarray, trial_sharpes: Mapping[str, float]
) -> DeflatedSharpe:
    """The deflated Sharpe ratio of the best experiment `name`, from its per-period returns,
    against every experiment's per-period Sharpe ratio (`trial_sharpes`, its own among them):
    N is their number, V their sample variance."""
    returns = np.asarray(returns, dtype=float)
    sharpes = np.array([value for value in trial_sharpes.values() if math.isfinite(value)])
    deviation = np.std(returns, ddof=1) if len(returns) > 1 else 0.0
    sharpe = float(np.mean(returns) / deviation) if deviation > 0 else 0.0
    variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
    trials = len(sharpes)
    value = deflated_sharpe(
        sharpe,
        len(returns),
        float(skew(returns)) if deviation > 0 else 0.0,
        float(kurtosis(returns, fisher=False)) if deviation > 0 else 3.0,
        trials,
        variance,
    )
    return DeflatedSharpe(
        name, value, trials, len(returns), sharpe, expected_max_sharpe(trials, variance)
    )
