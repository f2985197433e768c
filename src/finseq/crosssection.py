"""Out-of-sample predictions → cross-sectional figures: on a date, do the series the model
scores higher earn more than those it scores lower?

The score is the backtest's, P(up) - P(down), and the return the traded one-bar
`next_return`, log(o[t+2] / o[t+1]), the move a position decided at close_t can earn. Only
the dates with at least MIN_SERIES series with a next-bar return count: a rank among fewer
says little. With no such date the figures are one string, `cs_status`, and no number.

- IC: per date, the Spearman rank correlation (average ranks for ties) of the score with
  next_return across series; a date whose scores or returns all tie has none. `cs_ic` is
  its mean over dates, `cs_icir` mean / sd (ddof 1) of the daily ICs, `cs_ic_t` mean /
  (sd / sqrt(dates)), which takes the dates as independent (the interval does not).
- Long-short: per date, long the top `quantile` of the series by score and short the
  bottom, each leg floor(quantile x series) of them (at least 1; ties by series name) at
  equal weight 1 / leg: dollar-neutral, gross 2, earning the mean simple return of the top
  leg minus that of the bottom. Held one bar (rebalanced every bar, whatever backtest.hold),
  less cost_bps per unit of turnover (the sum over series of |weight change| since the
  previous counted date; from 0 on the first). Sharpe and annual return as the backtest's.
- Intervals: 95%, percentiles of arch's stationary bootstrap over the counted dates,
  seeded by evaluate.bootstrap_seed, its block length Politis-White's for the daily IC and
  the long-short return and never shorter than the label horizon (finseq.evidence).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finseq.backtest import PortfolioReturns, annual_return, bars_per_year, sharpe_ratio
from finseq.evidence import (
    MINIMUM_DATES,
    percentile_interval,
    resampled_dates,
    series_block_length,
)
from finseq.params import BacktestConfig, EvaluateConfig

# Fewest series with a next-bar return on a date for the date to count.
MIN_SERIES = 10


def not_enough_series(min_series: int = MIN_SERIES) -> str:
    return f"not enough series (fewer than {min_series} on every date)"


def cross_section_table(predictions: pd.DataFrame, min_series: int = MIN_SERIES) -> pd.DataFrame:
    """date, series, score and next_return of the windows with a next-bar return on the
    dates that have at least `min_series` of them, in date and series order."""
    table = pd.DataFrame(
        {
            "date": pd.to_datetime(predictions["timestamp"]).to_numpy(),
            "series": predictions["series"].to_numpy(),
            "score": (predictions["p_up"] - predictions["p_down"]).to_numpy(),
            "next_return": predictions["next_return"].to_numpy(dtype=float),
        }
    )
    table = table[np.isfinite(table["next_return"].to_numpy())]
    counts = table.groupby("date")["series"].transform("size")
    table = table[counts >= min_series]
    return table.sort_values(["date", "series"], kind="stable").reset_index(drop=True)


def daily_ic(table: pd.DataFrame) -> pd.Series:
    """Per date of a cross_section_table, the Spearman correlation of score and
    next_return across series: the Pearson correlation of their ranks; NaN where either
    is constant."""
    dates = table["date"]
    ranks = table.groupby(dates)[["score", "next_return"]].rank()
    centred = ranks - ranks.groupby(dates).transform("mean")
    x, y = centred["score"], centred["next_return"]
    sums = pd.DataFrame({"xy": x * y, "xx": x * x, "yy": y * y}).groupby(dates).sum()
    denominator = np.sqrt(sums["xx"] * sums["yy"])
    return (sums["xy"] / denominator.where(denominator > 0)).rename("ic")


def long_short_weights(table: pd.DataFrame, quantile: float) -> pd.DataFrame:
    """Per date (rows) and series (columns) of a cross_section_table: 1 / leg for the top
    `quantile` by score, -1 / leg for the bottom, else 0; leg = floor(quantile x series on
    the date), at least 1; ties in order of series name."""
    by_date = table.groupby("date")["score"]
    order = by_date.rank(method="first").to_numpy()
    count = by_date.transform("size").to_numpy()
    leg = np.maximum(1.0, np.floor(quantile * count + 1e-9))
    weight = np.where(order > count - leg, 1.0 / leg, np.where(order <= leg, -1.0 / leg, 0.0))
    frame = table[["date", "series"]].assign(weight=weight)
    return frame.pivot(index="date", columns="series", values="weight").fillna(0.0)


def long_short_returns(table: pd.DataFrame, quantile: float, cost_bps: float) -> PortfolioReturns:
    """The top-minus-bottom portfolio's return per date before and after costs, and its
    turnover, each position held one bar."""
    weights = long_short_weights(table, quantile)
    simple = table.assign(simple=np.expm1(table["next_return"])).pivot(
        index="date", columns="series", values="simple"
    )
    weight = weights.to_numpy()
    gross = (weight * simple.reindex_like(weights).fillna(0.0).to_numpy()).sum(axis=1)
    previous = np.vstack([np.zeros((1, weight.shape[1])), weight[:-1]])
    turnover = np.abs(weight - previous).sum(axis=1)
    net = gross - cost_bps / 1e4 * turnover
    return PortfolioReturns(weights.index.to_numpy(), gross, net, turnover)


def ic_figures(ic: np.ndarray) -> dict[str, float | int]:
    """Mean daily IC, its ICIR and t-statistic, over the dates with an IC."""
    ic = ic[np.isfinite(ic)]
    mean = float(np.mean(ic)) if len(ic) else float("nan")
    deviation = float(np.std(ic, ddof=1)) if len(ic) > 1 else 0.0
    spread = deviation > 0
    return {
        "cs_ic": mean,
        "cs_icir": mean / deviation if spread else float("nan"),
        "cs_ic_t": float(mean / (deviation / np.sqrt(len(ic)))) if spread else float("nan"),
        "cs_ic_dates": len(ic),
    }


def cross_section_figures(
    predictions: pd.DataFrame,
    backtest: BacktestConfig,
    evaluate: EvaluateConfig,
    horizon: int,
    min_series: int = MIN_SERIES,
) -> dict[str, float | int | str]:
    """The `test.cs_*` figures of a predictions table (the module's docstring), or
    `cs_status` alone where no date has `min_series` series, or too few dates do for a
    block bootstrap (`horizon`: the label's, the shortest block)."""
    table = cross_section_table(predictions, min_series)
    if table.empty:
        return {"cs_status": not_enough_series(min_series)}
    ic = daily_ic(table).to_numpy()
    dates = len(ic)
    needed = max(MINIMUM_DATES, 3 * horizon)
    if dates < needed:
        return {
            "cs_status": f"too few dates with {min_series} or more series ({dates}; a block "
            f"bootstrap needs {needed})"
        }
    portfolio = long_short_returns(table, backtest.quantile, backtest.cost_bps)
    per_year = bars_per_year(portfolio.dates)
    block = series_block_length([ic[np.isfinite(ic)], portfolio.net], horizon)
    indexes = resampled_dates(dates, block, evaluate.resamples, evaluate.bootstrap_seed)
    ic_low, ic_high = percentile_interval(np.nanmean(ic[indexes], axis=1))
    sharpe_low, sharpe_high = percentile_interval(
        np.array([sharpe_ratio(portfolio.net[draw], per_year) for draw in indexes])
    )
    return {
        **ic_figures(ic),
        "cs_ic_low": ic_low,
        "cs_ic_high": ic_high,
        "cs_sharpe": sharpe_ratio(portfolio.net, per_year),
        "cs_sharpe_low": sharpe_low,
        "cs_sharpe_high": sharpe_high,
        "cs_gross_sharpe": sharpe_ratio(portfolio.gross, per_year),
        "cs_annual_return": annual_return(portfolio.net, per_year),
        "cs_turnover": float(np.mean(portfolio.turnover)),
        "cs_dates": dates,
        "cs_min_series": min_series,
        "cs_quantile": backtest.quantile,
        "cs_bootstrap_block": block,
    }
