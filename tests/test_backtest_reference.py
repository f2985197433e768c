"""finseq's risk figures against empyrical's, computed on the same returns.

tests/test_backtest.py checks the Sharpe ratio, annual return, annual volatility and max
drawdown against sums worked out by hand, which a misreading shared by the hand sum and the
code would pass. Here the reference is an independent implementation, empyrical-reloaded
(pinned in requirements.txt; tests only), whose conventions finseq.backtest's docstring says
it follows: simple per-bar returns; Sharpe = mean / std (ddof 1) x sqrt(bars per year),
risk-free 0; annual return compounded; max drawdown on compounded equity, from a peak that
starts at 1. The series are generated: daily, weekly (52 bars a year), monthly and short,
fat-tailed, one with a deep drawdown that opens with a loss, and one with bars per year
counted from business-day dates as the backtest counts them.

Not compared, because finseq defines them on purpose where empyrical gives no number:
returns that never vary (Sharpe 0, not inf or NaN) and no returns (drawdown 0, not NaN);
see tests/test_backtest.py and the last test here.
"""

from __future__ import annotations

import empyrical
import numpy as np
import pandas as pd
import pytest

from finseq.backtest import (
    bars_per_year,
    max_drawdown,
    portfolio_returns,
    risk_figures,
    sharpe_ratio,
)

# Relative tolerance. The two implementations round differently: empyrical sums with
# bottleneck's sequential loop and compounds by prod(1 + r) ** (per_year / n), finseq sums
# pairwise (numpy) and compounds by expm1(sum(log1p(r)) * per_year / n). On these series they
# differ by 2e-14 at most (the annual return; a few ulps elsewhere). The rounding error does
# not shrink with the figure, so a series whose Sharpe ratio or annual return is near 0 can
# need a looser one (1.3e-12 seen on random series); the slips below move a figure by 1e-4
# or more.
TOLERANCE = 1e-12


def crash_returns(rng: np.random.Generator) -> np.ndarray:
    """A fall of about 80% that starts with a 20% loss on the first bar, so that its peak is
    the starting equity of 1 and not any equity after a bar, then a partial recovery and a
    calm year."""
    fall = rng.normal(-0.006, 0.02, 250)
    recovery = rng.normal(0.002, 0.012, 400)
    calm = rng.normal(0.0005, 0.01, 300)
    return np.concatenate([[-0.2], fall, recovery, calm])


def business_day_returns(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    dates = pd.bdate_range("2003-01-01", periods=1500).to_numpy()
    return rng.normal(0.0003, 0.012, len(dates)), bars_per_year(dates)


def generated_case(name: str) -> tuple[np.ndarray, float]:
    """(simple returns, bars per year) of one named series, the same on every run."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "daily_10y":
        return rng.normal(0.0004, 0.011, 2520), 252
    if name == "weekly_10y":
        return rng.normal(0.0015, 0.022, 520), 52
    if name == "monthly_3y":
        return rng.normal(0.006, 0.04, 36), 12
    if name == "fat_tailed_daily":
        return 0.006 * rng.standard_t(3, 5000) + 0.0002, 252
    if name == "crash":
        return crash_returns(rng), 252
    if name == "business_days":
        return business_day_returns(rng)
    raise ValueError(name)


CASES = [
    "daily_10y",
    "weekly_10y",
    "monthly_3y",
    "fat_tailed_daily",
    "crash",
    "business_days",
]


def empyrical_figures(returns: np.ndarray, per_year: float) -> dict[str, float]:
    return {
        "annual_return": empyrical.annual_return(returns, annualization=per_year),
        "annual_volatility": empyrical.annual_volatility(returns, annualization=per_year),
        "sharpe": empyrical.sharpe_ratio(returns, annualization=per_year),
        "max_drawdown": empyrical.max_drawdown(returns),
    }


def close(value: float, reference: float) -> bool:
    return bool(np.isclose(value, reference, rtol=TOLERANCE, atol=0.0))


def disagreements(figures: dict[str, float], reference: dict[str, float]) -> dict:
    assert figures.keys() == reference.keys()
    return {
        name: (figures[name], reference[name])
        for name in figures
        if not close(figures[name], reference[name])
    }


@pytest.mark.parametrize("case", CASES)
def test_each_risk_figure_matches_empyrical_on_the_same_simple_returns(case):
    """risk_figures, what backtest_metrics reports, against empyrical's four functions."""
    returns, per_year = generated_case(case)
    assert (
        disagreements(risk_figures(returns, per_year), empyrical_figures(returns, per_year)) == {}
    )


def test_the_cases_cover_a_deep_drawdown_and_bars_per_year_that_are_not_252():
    """The cases exercise what they are named for (else the cross-check could pass on tame
    series alone)."""
    assert max_drawdown(generated_case("crash")[0]) < -0.7
    per_year = {case: generated_case(case)[1] for case in CASES}
    assert per_year["weekly_10y"] == 52 and per_year["monthly_3y"] == 12
    assert per_year["business_days"] == pytest.approx(260.8, abs=0.1)
    assert len({len(generated_case(case)[0]) for case in CASES}) == len(CASES)


def test_a_long_position_in_one_series_matches_empyrical_on_its_prices():
    """The backtest takes log next-bar returns and turns them into simple ones
    (portfolio_returns, np.expm1); empyrical takes the same prices through its own
    simple_returns. The two conversions and the figures agree."""
    rng = np.random.default_rng(28)
    prices = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, 1001)))
    dates = pd.bdate_range("2010-01-04", periods=1000).to_numpy()
    portfolio = portfolio_returns(
        dates,
        series=np.full(1000, "a"),
        position=np.ones(1000),
        next_return=np.log(prices[1:] / prices[:-1]),
        cost_bps=0.0,
    )
    per_year = bars_per_year(dates)
    reference = empyrical_figures(empyrical.simple_returns(prices), per_year)
    assert disagreements(risk_figures(portfolio.gross, per_year), reference) == {}


def test_the_tolerance_tells_the_reference_from_the_slips_a_rewrite_could_make():
    """The cross-check can fail: each slip below misses empyrical's figure by far more than
    the tolerance. Planting the first one in finseq.backtest.sharpe_ratio (np.std with
    ddof=0) failed test_each_risk_figure_matches_empyrical_on_the_same_simple_returns for
    every case (relative error sqrt(n / (n - 1)) - 1: 1.4% for 36 bars, 1e-4 for 5,000).
    Planting the last one in max_drawdown (the running peak without the starting 1) failed
    the crash case, which tests/test_backtest.py's hand-worked drawdowns do not catch."""
    returns, per_year = generated_case("weekly_10y")
    mean, n = np.mean(returns), len(returns)
    crash = generated_case("crash")[0]
    log_equity, equity = np.cumsum(np.log1p(crash)), np.cumprod(1 + crash)
    slips = {
        "sharpe with ddof 0": ("sharpe", mean / np.std(returns) * np.sqrt(per_year)),
        "sharpe of weekly bars annualised by 252": ("sharpe", sharpe_ratio(returns, 252)),
        "volatility with ddof 0": ("annual_volatility", np.std(returns) * np.sqrt(per_year)),
        "arithmetic annual return": ("annual_return", mean * per_year),
        "annual return compounded over 252 bars": (
            "annual_return",
            np.prod(1 + returns) ** (252 / n) - 1,
        ),
    }
    reference = empyrical_figures(returns, per_year)
    missed = {name: not close(value, reference[figure]) for name, (figure, value) in slips.items()}
    crash_reference = empyrical.max_drawdown(crash)
    missed["drawdown of log equity"] = not close(
        np.min(log_equity - np.maximum.accumulate(log_equity)), crash_reference
    )
    missed["drawdown from the first bar's equity, not 1"] = not close(
        np.min(equity / np.maximum.accumulate(equity) - 1), crash_reference
    )
    assert all(missed.values()), missed


def test_where_finseq_departs_from_empyrical_by_definition():
    """Returns that never vary have Sharpe 0 in finseq, inf (or NaN, if they are 0) in
    empyrical; no returns have drawdown 0 in finseq, NaN in empyrical. These are left
    out of the cross-check above."""
    constant = np.full(5, 0.01)
    assert sharpe_ratio(constant, 252) == 0.0
    assert np.isinf(empyrical.sharpe_ratio(constant, annualization=252))
    assert max_drawdown(np.array([])) == 0.0
    assert np.isnan(empyrical.max_drawdown(np.array([])))
