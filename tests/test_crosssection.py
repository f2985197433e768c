"""The cross-sectional figures (finseq.crosssection): daily rank IC across series and the
top-minus-bottom quantile portfolio, on generated predictions tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from finseq.crosssection import (
    MIN_SERIES,
    cross_section_figures,
    cross_section_table,
    daily_ic,
    long_short_returns,
    long_short_weights,
    not_enough_series,
)
from finseq.params import BacktestConfig, EvaluateConfig

BACKTEST = BacktestConfig(
    threshold=0.0, long_only=False, cost_bps=5, hold=1, sizing="sign", quantile=0.2
)
EVALUATE = EvaluateConfig(batch_size=1, resamples=500, bootstrap_seed=0, calibration="none")


def panel(
    n_series: int, n_dates: int, signal: float, seed: int = 0, volatility: float = 0.01
) -> pd.DataFrame:
    """A predictions table of `n_series` x `n_dates` business days: scores drawn at random,
    next returns of correlation `signal` with them across series on each date."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-02", periods=n_dates)
    score = rng.uniform(-0.5, 0.5, (n_dates, n_series))
    standard = (score - score.mean()) / score.std()
    noise = rng.standard_normal((n_dates, n_series))
    next_return = volatility * (signal * standard + np.sqrt(1 - signal**2) * noise)
    p_flat = 0.4
    p_up = (1 - p_flat + score) / 2
    return pd.DataFrame(
        {
            "timestamp": np.repeat(dates.strftime("%Y-%m-%d"), n_series),
            "series": np.tile([f"s{i:03d}" for i in range(n_series)], n_dates),
            "p_down": (1 - p_flat - p_up).ravel(),
            "p_flat": p_flat,
            "p_up": p_up.ravel(),
            "next_return": next_return.ravel(),
        }
    )


def test_a_planted_cross_sectional_signal_gives_a_positive_ic_and_long_short_sharpe():
    figures = cross_section_figures(panel(50, 500, signal=0.1), BACKTEST, EVALUATE, horizon=5)
    assert "cs_status" not in figures
    assert figures["cs_ic_low"] > 0 and figures["cs_ic"] == pytest.approx(0.1, abs=0.03)
    assert figures["cs_sharpe"] > 0 and figures["cs_sharpe_low"] > 0
    assert figures["cs_gross_sharpe"] > figures["cs_sharpe"]
    assert figures["cs_ic_t"] > 3 and figures["cs_icir"] > 0
    assert figures["cs_dates"] == 500 and figures["cs_min_series"] == MIN_SERIES
    assert figures["cs_ic_low"] < figures["cs_ic"] < figures["cs_ic_high"]
    assert all(type(value) in (float, int) for value in figures.values())


def test_no_signal_gives_an_ic_interval_around_zero():
    for seed in range(3):
        figures = cross_section_figures(
            panel(50, 500, signal=0.0, seed=seed), BACKTEST, EVALUATE, horizon=5
        )
        assert figures["cs_ic_low"] < 0 < figures["cs_ic_high"], seed
        assert figures["cs_sharpe_low"] < 0, seed


def test_two_series_say_not_enough_series_and_give_no_number():
    figures = cross_section_figures(panel(2, 300, signal=0.5), BACKTEST, EVALUATE, horizon=5)
    assert figures == {"cs_status": not_enough_series()}
    assert figures["cs_status"] == f"not enough series (fewer than {MIN_SERIES} on every date)"


def test_dates_with_too_few_series_with_a_next_return_are_left_out():
    table = panel(12, 100, signal=0.2)
    dates = table["timestamp"].unique()
    # Three series lose their next return on the first 40 dates: 9 < 10 series remain there.
    gone = table["timestamp"].isin(dates[:40]) & table["series"].isin(["s000", "s001", "s002"])
    table.loc[gone, "next_return"] = np.nan
    kept = cross_section_table(table)
    assert sorted(kept["date"].dt.strftime("%Y-%m-%d").unique()) == sorted(dates[40:])
    figures = cross_section_figures(table, BACKTEST, EVALUATE, horizon=5)
    assert figures["cs_dates"] == 60


def test_too_few_dates_for_a_bootstrap_give_a_status_and_no_number():
    figures = cross_section_figures(panel(20, 20, signal=0.2), BACKTEST, EVALUATE, horizon=5)
    assert list(figures) == ["cs_status"] and "too few dates" in figures["cs_status"]


def test_the_mean_daily_ic_is_scipys_spearman_by_hand_on_three_dates():
    table = panel(10, 3, signal=0.3, seed=7)
    table.loc[3, "p_up"] = table.loc[4, "p_up"]  # a tie in score: average ranks
    table.loc[3, "p_down"] = table.loc[4, "p_down"]
    by_date = [
        stats.spearmanr(rows["p_up"] - rows["p_down"], rows["next_return"]).statistic
        for _, rows in table.groupby("timestamp")
    ]
    ic = daily_ic(cross_section_table(table))
    np.testing.assert_allclose(ic.to_numpy(), by_date, rtol=1e-12)
    assert np.mean(by_date) == pytest.approx(ic.mean(), rel=1e-12)


def test_long_short_weights_returns_and_costs_by_hand():
    # 4 series, quantile 0.25: one series long and one short each date, weight 1 each.
    table = pd.DataFrame(
        {
            "date": pd.to_datetime(["2020-01-01"] * 4 + ["2020-01-02"] * 4),
            "series": ["a", "b", "c", "d"] * 2,
            "score": [0.3, -0.2, 0.1, 0.0, 0.3, 0.1, -0.4, 0.0],
            "next_return": np.log1p([0.01, -0.02, 0.03, 0.0, 0.02, 0.01, -0.01, 0.05]),
        }
    )
    weights = long_short_weights(table, 0.25)
    expected = [[1.0, -1.0, 0.0, 0.0], [1.0, 0.0, -1.0, 0.0]]
    np.testing.assert_array_equal(weights.to_numpy(), expected)
    portfolio = long_short_returns(table, 0.25, cost_bps=10)
    # Day 1: long a (+1%), short b (-2%): +3%; from nothing, turnover 2.
    # Day 2: long a (+2%), short c (-1%): +3%; b closed, c opened: turnover 2.
    np.testing.assert_allclose(portfolio.gross, [0.03, 0.03])
    np.testing.assert_allclose(portfolio.turnover, [2.0, 2.0])
    np.testing.assert_allclose(portfolio.net, [0.03 - 0.002, 0.03 - 0.002])


def test_ten_series_at_quantile_point_two_hold_two_a_side_at_a_half():
    table = cross_section_table(panel(10, 2, signal=0.0, seed=1))
    weights = long_short_weights(table, 0.2)
    for date, row in weights.iterrows():
        scores = table[table["date"] == date].set_index("series")["score"]
        top, bottom = scores.nlargest(2).index, scores.nsmallest(2).index
        assert (row[top] == 0.5).all() and (row[bottom] == -0.5).all()
        assert row.abs().sum() == pytest.approx(2.0) and row.sum() == pytest.approx(0.0)


@pytest.mark.slow
def test_a_universe_of_fifty_generated_series_with_a_planted_regime_gives_a_positive_ic(tmp_path):
    """End to end through the stages: 50 independent series, each with the controls' planted
    drift regime, so on a date the series in an up regime earn more than those in a down
    one, and the model's score tells them apart. Observed (linear model, holdout, 96 test
    dates): IC 0.329 [0.299, 0.356], long-short Sharpe after costs 30.0 [25.8, 35.2]."""
    from test_controls import (
        PLANTED_LABEL,
        PLANTED_SIGNAL,
        control_params,
        run_stages,
        synthetic_csvs,
    )

    csvs = synthetic_csvs(50, 800, seed=0, **PLANTED_SIGNAL)
    params = control_params(label=PLANTED_LABEL, model={"type": "linear"})
    metrics = run_stages(tmp_path, csvs, params)
    assert "cs_status" not in metrics and metrics["cs_min_series"] == MIN_SERIES
    assert metrics["cs_ic_low"] > 0 and metrics["cs_sharpe"] > 0
