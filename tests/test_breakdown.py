"""finseq.breakdown: skill, its parts and Sharpe by series, calendar year and regime."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finseq.breakdown import breakdowns
from finseq.evaluate import table_metrics
from finseq.params import BacktestConfig, EvaluateConfig

BACKTEST = BacktestConfig(
    threshold=0.0, long_only=False, cost_bps=0, hold=1, sizing="sign", quantile=0.2
)
EVALUATE = EvaluateConfig(batch_size=1, resamples=200, bootstrap_seed=0, calibration="none")


def panel() -> pd.DataFrame:
    """Two series over 80 business days across a year end; regimes assigned at random."""
    rng = np.random.default_rng(4)
    dates = pd.bdate_range("2019-10-01", periods=80).strftime("%Y-%m-%dT00:00:00")
    rows = 2 * len(dates)
    probabilities = rng.dirichlet([3, 3, 3], size=rows)
    priors = np.tile([0.3, 0.35, 0.35], (rows, 1))
    labels = rng.integers(-1, 2, size=rows)
    return pd.DataFrame(
        {
            "timestamp": np.repeat(dates, 2),
            "series": np.tile(["a", "b"], len(dates)),
            "fold": "f1",
            "label": labels,
            "p_down": probabilities[:, 0],
            "p_flat": probabilities[:, 1],
            "p_up": probabilities[:, 2],
            "prior_p": priors[np.arange(rows), labels + 1],
            "majority": 0,
            "prior_down": priors[:, 0],
            "prior_flat": priors[:, 1],
            "prior_up": priors[:, 2],
            "regime": rng.choice(["low", "mid", "high"], size=rows),
            "forward_return": 0.0,
            "next_return": rng.normal(0, 0.01, size=rows),
        }
    )


def book_sharpe(table: pd.DataFrame, members: np.ndarray) -> float:
    """By hand: each date's return is the mean over both series of sign(score) x simple
    return, counting a window outside the group as flat; taken over the group's dates."""
    score = np.where(members, table["p_up"] - table["p_down"], 0.0)
    earned = np.sign(score) * np.expm1(table["next_return"])
    daily = pd.Series(earned).groupby(table["timestamp"].to_numpy()).mean()
    daily = daily[daily.index.isin(table["timestamp"][members])]
    return daily.mean() / daily.std(ddof=1) * np.sqrt(days_per_year(table))


def days_per_year(table: pd.DataFrame) -> float:
    dates = pd.to_datetime(table["timestamp"].unique())
    return (len(dates) - 1) / ((dates[-1] - dates[0]).days / 365.25)


def test_each_group_has_the_skills_of_its_own_windows_and_the_sharpe_of_trading_only_them():
    table = panel()
    result = breakdowns(table, BACKTEST, EVALUATE, horizon=1)
    assert list(result) == ["series", "year", "regime"]
    assert list(result["series"]) == ["a", "b"]
    assert list(result["year"]) == ["2019", "2020"]
    assert list(result["regime"]) == ["low", "mid", "high"]
    for kind, column in (("series", "series"), ("year", None), ("regime", "regime")):
        labels = table["timestamp"].str[:4] if column is None else table[column]
        for group, figures in result[kind].items():
            members = (labels == group).to_numpy()
            expected = table_metrics(table[members])
            assert figures["samples"] == members.sum()
            for name in ("skill", "move_skill", "direction_skill"):
                assert figures[name] == pytest.approx(expected[name], rel=1e-12), (kind, name)
            assert figures["sharpe"] == pytest.approx(book_sharpe(table, members), rel=1e-9)
    # A year of 40-odd dates carries a block bootstrap; its interval holds its point value.
    year = result["year"]["2019"]
    assert year["skill_low"] <= year["skill"] <= year["skill_high"]


def test_a_group_of_too_few_dates_has_no_interval():
    table = panel().iloc[: 2 * 20]
    figures = breakdowns(table, BACKTEST, EVALUATE, horizon=1)["series"]["a"]
    assert np.isnan(figures["skill_low"]) and np.isnan(figures["move_skill_high"])
    assert np.isfinite(figures["skill"])


def test_a_year_of_one_date_is_counted_and_left_unmeasured():
    """A test period that touches a year on one date only (it starts on 31 December): that
    year's windows are counted, its figures NaN (one date makes no daily series), and the
    other years are measured as before."""
    dates = pd.bdate_range("2019-12-31", periods=41).strftime("%Y-%m-%dT00:00:00")
    table = panel().iloc[: 2 * len(dates)].assign(timestamp=np.repeat(dates, 2))
    years = breakdowns(table, BACKTEST, EVALUATE, horizon=1)["year"]
    assert years["2019"]["samples"] == 2
    assert all(np.isnan(value) for key, value in years["2019"].items() if key != "samples")
    assert np.isfinite(years["2020"]["skill"]) and np.isfinite(years["2020"]["sharpe"])


def test_a_table_without_regimes_has_no_regime_breakdown():
    table = panel().drop(columns="regime")
    assert list(breakdowns(table, BACKTEST, EVALUATE, horizon=1)) == ["series", "year"]
