"""Out-of-sample probabilities → positions, portfolio returns after costs, risk figures.

Conventions (as empyrical and quantstats compute them):
- Score: P(up) - P(down). Position: +1 above `threshold`, -1 below -threshold, else 0
  (`long_only`: +1 or 0).
- Timing: a position is decided with the bars up to t, its close included, and held from
  the next open to the open after it, so it earns `next_return` = log(o[t+2] / o[t+1]) and
  never the move into close_t. Rebalanced every bar.
- Portfolio: equal weight across the series that have a window on a date; its return is the
  weighted sum of the positions' simple returns, less `cost_bps` per unit of turnover
  (the sum of |change in weight x position| across series).
- Sharpe: mean / std (ddof = 1) of the per-bar returns, risk-free 0, times
  sqrt(bars per year); annual return: compounded; max drawdown: on compounded equity.
- Bars per year come from the timestamps: (distinct dates - 1) / years between the first
  and last (about 252 for daily bars).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

DAYS_PER_YEAR = 365.25


def positions(score: np.ndarray, threshold: float, long_only: bool) -> np.ndarray:
    """+1 / -1 / 0 from the score P(up) - P(down)."""
    position = np.where(score > threshold, 1.0, np.where(score < -threshold, -1.0, 0.0))
    return np.maximum(position, 0.0) if long_only else position


def bars_per_year(dates: np.ndarray) -> float:
    distinct = np.unique(dates.astype("datetime64[ns]"))
    if len(distinct) < 2:
        raise ValueError("bars per year need at least two dates")
    span_days = (distinct[-1] - distinct[0]) / np.timedelta64(1, "D")
    return (len(distinct) - 1) / (span_days / DAYS_PER_YEAR)


@dataclass(frozen=True)
class PortfolioReturns:
    """Per date: the equal-weight portfolio's return before and after costs, and its turnover."""

    dates: np.ndarray
    gross: np.ndarray
    net: np.ndarray
    turnover: np.ndarray


def portfolio_returns(
    dates: np.ndarray,
    series: np.ndarray,
    position: np.ndarray,
    next_return: np.ndarray,
    cost_bps: float,
) -> PortfolioReturns:
    """The equal-weight portfolio of every series' position, one row per distinct date."""
    frame = pd.DataFrame(
        {"date": dates, "series": series, "position": position, "simple": np.expm1(next_return)}
    )
    held = frame.pivot(index="date", columns="series", values="position")
    simple = frame.pivot(index="date", columns="series", values="simple")
    weight = held.notna().astype(float).div(held.notna().sum(axis=1), axis=0)
    exposure = (weight * held.fillna(0.0)).to_numpy()
    gross = (exposure * simple.fillna(0.0).to_numpy()).sum(axis=1)
    previous = np.vstack([np.zeros((1, exposure.shape[1])), exposure[:-1]])
    turnover = np.abs(exposure - previous).sum(axis=1)
    net = gross - cost_bps / 1e4 * turnover
    return PortfolioReturns(held.index.to_numpy(), gross, net, turnover)


def sharpe_ratio(returns: np.ndarray, per_year: float) -> float:
    deviation = np.std(returns, ddof=1)
    return float(np.mean(returns) / deviation * np.sqrt(per_year)) if deviation > 0 else 0.0


def annual_return(returns: np.ndarray, per_year: float) -> float:
    """Compounded growth per year: (prod(1 + r)) ** (per_year / bars) - 1."""
    growth = np.sum(np.log1p(returns))
    return float(np.expm1(growth * per_year / len(returns)))


def annual_volatility(returns: np.ndarray, per_year: float) -> float:
    return float(np.std(returns, ddof=1) * np.sqrt(per_year))


def max_drawdown(returns: np.ndarray) -> float:
    """Largest fall of compounded equity from its running peak (a negative number, or 0)."""
    equity = np.cumprod(1 + returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return float(np.min(equity / peak - 1.0, initial=0.0))


def hit_rate(score: np.ndarray, forward_return: np.ndarray, position: np.ndarray) -> float:
    """Share of traded windows whose score has the sign of the h-bar forward return."""
    traded = position != 0
    if not traded.any():
        return float("nan")
    return float(np.mean(np.sign(score[traded]) == np.sign(forward_return[traded])))


def information_coefficient(score: np.ndarray, forward_return: np.ndarray) -> float:
    """Spearman rank correlation of score and h-bar forward return, pooled over windows."""
    return float(stats.spearmanr(score, forward_return).statistic)


def risk_figures(returns: np.ndarray, per_year: float, prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}annual_return": annual_return(returns, per_year),
        f"{prefix}annual_volatility": annual_volatility(returns, per_year),
        f"{prefix}sharpe": sharpe_ratio(returns, per_year),
        f"{prefix}max_drawdown": max_drawdown(returns),
    }


def backtest_metrics(
    predictions: pd.DataFrame, threshold: float, long_only: bool, cost_bps: float
) -> tuple[dict[str, float], pd.DataFrame]:
    """The strategy's and buy-and-hold's figures over the windows of `predictions`, and both
    equity curves by date. Windows without a next-bar return (a series' last bars) are left
    out."""
    traded = predictions[np.isfinite(predictions["next_return"])]
    dates = pd.to_datetime(traded["timestamp"]).to_numpy()
    score = (traded["p_up"] - traded["p_down"]).to_numpy()
    forward = traded["forward_return"].to_numpy()
    held = positions(score, threshold, long_only)
    series = traded["series"].to_numpy()
    next_return = traded["next_return"].to_numpy()
    strategy = portfolio_returns(dates, series, held, next_return, cost_bps)
    hold = portfolio_returns(dates, series, np.ones(len(held)), next_return, cost_bps)
    per_year = bars_per_year(dates)
    metrics = {
        **risk_figures(strategy.net, per_year),
        "turnover": float(np.mean(strategy.turnover)),
        "hit_rate": hit_rate(score, forward, held),
        "ic": information_coefficient(score, forward),
        "bars_per_year": per_year,
        **risk_figures(hold.net, per_year, prefix="buy_hold_"),
    }
    equity = pd.DataFrame(
        {
            "date": pd.DatetimeIndex(strategy.dates).strftime("%Y-%m-%d"),
            "strategy": np.cumprod(1 + strategy.net),
            "buy_hold": np.cumprod(1 + hold.net),
        }
    )
    return metrics, equity
