"""Out-of-sample probabilities → positions, portfolio returns before and after costs, risk
figures.

Conventions (as empyrical and quantstats compute them):
- Score: P(up) - P(down). The position decided at a window's bar (`sizing`): `sign`, +1
  above `threshold` and -1 below -threshold; `score`, the score itself beyond the threshold;
  else 0. `long_only` clips it at 0.
- Timing: a position is decided with the bars up to t, its close included, and entered at
  the next open, so it never earns the move into close_t. Held `hold` bars, it earns
  log(o[t+hold+1] / o[t+1]), its traded return; one bar: `next_return` = log(o[t+2] / o[t+1]).
- Holding: positions overlap, as in Jegadeesh and Titman's (1993) portfolios: on each bar a
  series' exposure is the mean of the positions decided at that bar and the hold - 1 bars
  before it (one decided before the series' first window counts 0), and it earns that bar's
  next_return. Hold 1 rebalances every bar.
- Portfolio: equal weight across the series that have a window on a date; its gross return
  is the weighted sum of the exposures' simple returns; net of costs, less `cost_bps` per
  unit of turnover (the sum of |change in weight x exposure| across series).
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

from finseq.errors import note

DAYS_PER_YEAR = 365.25
SIZINGS = ("sign", "score")


def positions(score: np.ndarray, threshold: float, long_only: bool, sizing: str) -> np.ndarray:
    """The position decided from each score P(up) - P(down): its sign (`sign`) or the score
    itself (`score`) where |score| > threshold, else 0; never short when long_only."""
    if sizing not in SIZINGS:
        raise ValueError(f"sizing {sizing!r} is none of {', '.join(SIZINGS)}")
    size = np.sign(score) if sizing == "sign" else score
    position = np.where(np.abs(score) > threshold, size, 0.0)
    return np.maximum(position, 0.0) if long_only else position


def held_exposure(position: np.ndarray, series: np.ndarray, hold: int) -> np.ndarray:
    """Each row's exposure when every position is held `hold` bars and they overlap: the
    mean of the positions of the row and of the hold - 1 rows before it in its series, a
    row before the series' first counting 0. A series' rows must be its consecutive bars,
    in time order."""
    by_series = pd.Series(position).groupby(series, sort=False)
    total = np.zeros(len(position))
    for lag in range(min(hold, len(position))):
        total += by_series.shift(lag, fill_value=0.0).to_numpy()
    return total / hold


def held_return(next_return: np.ndarray, series: np.ndarray, hold: int) -> np.ndarray:
    """Each row's traded return over `hold` bars: the next_return of the row and of the
    hold - 1 rows after it in its series, summed (log returns), so log(o[t+hold+1] /
    o[t+1]); NaN where the series' rows end first. Rows as for held_exposure."""
    if hold > len(next_return):
        return np.full(len(next_return), np.nan)
    by_series = pd.Series(next_return).groupby(series, sort=False)
    total = np.zeros(len(next_return))
    for lag in range(hold):
        total += by_series.shift(-lag).to_numpy()
    return total


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


def hit_rate(score: np.ndarray, outcome: np.ndarray, position: np.ndarray) -> float:
    """Share of traded windows (position not 0) whose score has the sign of `outcome`."""
    traded = position != 0
    if not traded.any():
        return float("nan")
    return float(np.mean(np.sign(score[traded]) == np.sign(outcome[traded])))


def information_coefficient(score: np.ndarray, outcome: np.ndarray) -> float:
    """Spearman rank correlation of score and a return, pooled over windows."""
    return float(stats.spearmanr(score, outcome).statistic)


def risk_figures(returns: np.ndarray, per_year: float, prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}annual_return": annual_return(returns, per_year),
        f"{prefix}annual_volatility": annual_volatility(returns, per_year),
        f"{prefix}sharpe": sharpe_ratio(returns, per_year),
        f"{prefix}max_drawdown": max_drawdown(returns),
    }


def traded_windows(
    predictions: pd.DataFrame, threshold: float, long_only: bool, *, hold: int, sizing: str
) -> pd.DataFrame:
    """The windows the strategy trades, those with a next-bar return (a series' last bars
    have none), in series and date order: each one's date, series, score, the position
    decided at its close, its series' exposure on its bar (the overlapping positions
    held), next_return, traded_return (its position's return over `hold` bars; NaN where
    the table ends before the position is closed) and forward_return. The rows of a series
    in `predictions` must be consecutive bars (window.stride 1 where hold > 1)."""
    table = predictions.assign(date=pd.to_datetime(predictions["timestamp"]))
    table = table.sort_values(["series", "date"], kind="stable")
    series = table["series"].to_numpy()
    score = (table["p_up"] - table["p_down"]).to_numpy()
    decided = positions(score, threshold, long_only, sizing)
    next_return = table["next_return"].to_numpy()
    windows = pd.DataFrame(
        {
            "date": table["date"].to_numpy(),
            "series": series,
            "score": score,
            "position": decided,
            "exposure": held_exposure(decided, series, hold),
            "next_return": next_return,
            "traded_return": held_return(next_return, series, hold),
            "forward_return": table["forward_return"].to_numpy(),
        }
    )
    return windows[np.isfinite(next_return)].reset_index(drop=True)


def strategy_returns(windows: pd.DataFrame, cost_bps: float) -> PortfolioReturns:
    """The equal-weight portfolio of traded_windows' exposures: what every Sharpe ratio of
    the strategy, and its bootstrap, is computed from."""
    return portfolio_returns(
        windows["date"].to_numpy(),
        windows["series"].to_numpy(),
        windows["exposure"].to_numpy(),
        windows["next_return"].to_numpy(),
        cost_bps,
    )


def backtest_metrics(
    predictions: pd.DataFrame,
    threshold: float,
    long_only: bool,
    cost_bps: float,
    *,
    hold: int,
    sizing: str,
) -> tuple[dict[str, float], pd.DataFrame]:
    """The strategy's figures after costs (and its Sharpe ratio and annual return before
    them, `gross_*`), buy-and-hold's, hit rate and IC on the traded return (`traded_*`) and
    on the label's forward return (`label_*`), and both equity curves by date. Windows
    without a next-bar return (a series' last bars) are left out; the `traded_*` figures
    also leave out the windows whose position outlives the table."""
    windows = traded_windows(predictions, threshold, long_only, hold=hold, sizing=sizing)
    dates = windows["date"].to_numpy()
    strategy = strategy_returns(windows, cost_bps)
    buy_hold = portfolio_returns(
        dates,
        windows["series"].to_numpy(),
        np.ones(len(windows)),
        windows["next_return"].to_numpy(),
        cost_bps,
    )
    per_year = bars_per_year(dates)
    score, decided = windows["score"].to_numpy(), windows["position"].to_numpy()
    traded, forward = windows["traded_return"].to_numpy(), windows["forward_return"].to_numpy()
    closed = np.isfinite(traded)
    metrics = {
        **risk_figures(strategy.net, per_year),
        "gross_annual_return": annual_return(strategy.gross, per_year),
        "gross_sharpe": sharpe_ratio(strategy.gross, per_year),
        "turnover": float(np.mean(strategy.turnover)),
        "traded_hit_rate": hit_rate(score[closed], traded[closed], decided[closed]),
        "traded_ic": information_coefficient(score[closed], traded[closed]),
        "label_hit_rate": hit_rate(score, forward, decided),
        "label_ic": information_coefficient(score, forward),
        "bars_per_year": per_year,
        **risk_figures(buy_hold.net, per_year, prefix="buy_hold_"),
    }
    equity = pd.DataFrame(
        {
            "date": pd.DatetimeIndex(strategy.dates).strftime("%Y-%m-%d"),
            "strategy": np.cumprod(1 + strategy.net),
            "buy_hold": np.cumprod(1 + buy_hold.net),
        }
    )
    return metrics, equity


def stale_open_fill_share(predictions: pd.DataFrame, meta: dict) -> float | None:
    """Share of the traded out-of-sample windows whose series opened at the previous close
    in that period (prepare's stale-open periods): there the backtest's "next open" fill is
    in fact the signal bar's close. Noted when above 0; None for prepared data of an older
    finseq, which did not look."""
    if "stale_opens" not in meta:
        return None
    traded = predictions[np.isfinite(predictions["next_return"])]
    stamps = pd.to_datetime(traded["timestamp"])
    stale = np.zeros(len(traded), dtype=bool)
    periods = []
    for series, spans in meta["stale_opens"].items():
        for span in spans:
            within = (traded["series"] == series) & stamps.between(span["first"], span["last"])
            stale |= within.to_numpy()
            if within.any():
                periods.append(f"{series} {span['first'][:4]}-{span['last'][:4]}")
    share = float(stale.mean()) if len(traded) else 0.0
    if share > 0:
        note(
            f"backtest: {share:.0%} of the traded out-of-sample windows lie in stale-open "
            f"periods ({', '.join(periods)}): there the next-open fill is the signal bar's close"
        )
    return share
