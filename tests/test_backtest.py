"""The backtest: hand-computed risk figures, timing that never earns the decision bar, costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_params_dict

from finseq.backtest import (
    annual_return,
    backtest_metrics,
    bars_per_year,
    hit_rate,
    information_coefficient,
    max_drawdown,
    portfolio_returns,
    positions,
    sharpe_ratio,
    strategy_returns,
    traded_windows,
)
from finseq.errors import ConfigError
from finseq.params import parse_params
from finseq.prepare import outcome_returns
from finseq.synthetic import synthetic_ohlcv


def test_sharpe_annual_return_and_drawdown_by_hand():
    returns = np.array([0.01, -0.02, 0.03])
    # mean 0.02 / 3, sample std sqrt(((1/3)^2 + (8/3)^2 + (7/3)^2) / 2) / 100
    std = np.sqrt(((1 / 3) ** 2 + (8 / 3) ** 2 + (7 / 3) ** 2) / 2) / 100
    assert sharpe_ratio(returns, 252) == pytest.approx(0.02 / 3 / std * np.sqrt(252))
    assert annual_return(returns, 252) == pytest.approx((1.01 * 0.98 * 1.03) ** (252 / 3) - 1)
    # Equity 1.1, 0.55, 0.66: the fall from the 1.1 peak to 0.55 is -50%.
    assert max_drawdown(np.array([0.1, -0.5, 0.2])) == pytest.approx(-0.5)
    assert max_drawdown(np.array([0.01, 0.02])) == 0.0


def test_turnover_and_costs_by_hand():
    dates = np.array(["2001-01-01", "2001-01-01", "2001-01-02", "2001-01-02", "2001-01-03"])
    dates = dates.astype("datetime64[ns]")
    series = np.array(["a", "b", "a", "b", "a"])
    held = np.array([1.0, 1.0, -1.0, 1.0, -1.0])
    next_return = np.log(1 + np.array([0.01, 0.03, 0.02, -0.01, 0.05]))
    result = portfolio_returns(dates, series, held, next_return, cost_bps=10)
    # Weights 1/2 each on days 1-2; on day 3 only a trades, with weight 1.
    # Exposure a: 0.5, -0.5, -1; b: 0.5, 0.5, 0. Turnover: 1, 1, 0.5 + 0.5 = 1.
    np.testing.assert_allclose(result.turnover, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(result.gross, [0.02, -0.015, -0.05])
    np.testing.assert_allclose(result.net, result.gross - 0.001 * result.turnover)


def test_information_coefficient_and_hit_rate_by_hand():
    score = np.array([0.1, 0.2, 0.3, 0.4])
    forward = np.array([0.01, 0.02, 0.04, 0.03])
    # Ranks 1 2 4 3 against 1 2 3 4: 1 - 6 * 2 / (4 * 15) = 0.8.
    assert information_coefficient(score, forward) == pytest.approx(0.8)
    held = positions(np.array([0.5, -0.5, 0.0, 0.5]), 0.1, long_only=False, sizing="sign")
    assert held.tolist() == [1, -1, 0, 1]
    forward = np.array([0.02, 0.01, -0.03, 0.01])
    assert hit_rate(np.array([0.5, -0.5, 0.0, 0.5]), forward, held) == pytest.approx(2 / 3)
    assert positions(np.array([0.5, -0.5]), 0.1, long_only=True, sizing="sign").tolist() == [1, 0]


def predictions_from(score: np.ndarray, forward: np.ndarray, next_return: np.ndarray, dates):
    """A predictions table whose P(up) - P(down) is `score` (|score| <= 1)."""
    p_up = (1 + score) / 2 * 0.9
    p_down = p_up - score * 0.9
    return pd.DataFrame(
        {
            "timestamp": dates,
            "series": "s",
            "p_down": p_down,
            "p_flat": 1 - p_up - p_down,
            "p_up": p_up,
            "forward_return": forward,
            "next_return": next_return,
        }
    )


DATES = pd.bdate_range("2001-01-01", periods=2000).strftime("%Y-%m-%d")


def test_perfect_foresight_hits_every_trade_and_earns_a_large_sharpe():
    returns = np.random.default_rng(0).normal(0, 0.01, len(DATES))
    frame = predictions_from(np.sign(returns), returns, returns, DATES)
    metrics, equity = backtest_metrics(
        frame, threshold=0.0, long_only=False, cost_bps=5, hold=1, sizing="sign"
    )
    assert metrics["traded_hit_rate"] == metrics["label_hit_rate"] == 1.0
    assert metrics["sharpe"] > 10
    assert metrics["traded_ic"] > 0.8 and metrics["label_ic"] > 0.8
    assert equity["strategy"].iloc[-1] > equity["buy_hold"].iloc[-1]


def test_a_shuffled_score_earns_nothing_before_costs_and_loses_exactly_cost_times_turnover():
    rng = np.random.default_rng(1)
    returns = rng.normal(0, 0.01, len(DATES))
    score = rng.permutation(np.sign(returns))
    frame = predictions_from(score, returns, returns, DATES)
    dates = pd.to_datetime(frame["timestamp"]).to_numpy()
    held = positions(score, 0.0, long_only=False, sizing="sign")
    result = portfolio_returns(dates, frame["series"].to_numpy(), held, returns, cost_bps=5)
    assert abs(sharpe_ratio(result.gross, 252)) < 0.8
    np.testing.assert_allclose(
        result.gross - result.net, 5e-4 * result.turnover, rtol=0, atol=1e-15
    )
    assert result.turnover.mean() > 0.5


def test_a_position_never_earns_the_move_into_its_own_decision_bar():
    """The score of bar t may use close_t: here, the sign of bar t's own return. On a random
    walk that earns nothing, unless the return credited to the position already contains
    the move into close_t (a one-bar look-ahead)."""
    frame = synthetic_ohlcv(4000, seed=3)
    bars = frame.rename(columns=str.lower).set_index("date")
    forward, next_return = outcome_returns(bars, horizon=5)
    closes = bars["close"].to_numpy()
    own_move = np.concatenate([[0.0], np.diff(np.log(closes))])
    keep = np.isfinite(next_return)
    dates = bars.index.strftime("%Y-%m-%d")[keep]
    predictions = predictions_from(np.sign(own_move[keep]), forward[keep], next_return[keep], dates)
    metrics, _ = backtest_metrics(
        predictions, threshold=0.0, long_only=False, cost_bps=0, hold=1, sizing="sign"
    )
    assert abs(metrics["sharpe"]) < 1.0
    opens = bars["open"].to_numpy()
    np.testing.assert_allclose(next_return[:-2], np.log(opens[2:] / opens[1:-1]))


def test_backtest_metrics_by_hand_for_one_series_over_a_year():
    """One series, 4 dates spanning 365.25 days: 3 bars a year. Scores +0.5, exactly +0.25,
    -0.5 and exactly -0.25 (binary-exact) at threshold 0.25: long, flat (not above it),
    short, flat (not below it). Every figure, and both equity curves, worked out by hand."""
    days = ["2001-01-01", "2001-05-02", "2001-08-31", "2002-01-01 06:00"]
    dates = pd.DatetimeIndex([pd.Timestamp(day) for day in days])
    simple = np.array([0.10, -0.05, -0.20, 0.04])
    predictions = pd.DataFrame(
        {
            "timestamp": dates.strftime("%Y-%m-%dT%H:%M:%S"),
            "series": "a",
            "p_up": [0.75, 0.5, 0.25, 0.375],
            "p_down": [0.25, 0.25, 0.75, 0.625],
            "forward_return": np.array([0.05, -0.01, -0.02, 0.03]),
            "next_return": np.log1p(simple),
        }
    )
    metrics, equity = backtest_metrics(
        predictions, threshold=0.25, long_only=False, cost_bps=100, hold=1, sizing="sign"
    )
    assert bars_per_year(dates.to_numpy()) == pytest.approx(3.0)
    # Positions 1, 0, -1, 0: turnover 1, 1, 1, 1; costs 1% each.
    net = np.array([0.10, 0.0, 0.20, 0.0]) - 0.01
    hold = simple - np.array([0.01, 0.0, 0.0, 0.0])
    assert metrics["turnover"] == pytest.approx(1.0)
    assert metrics["bars_per_year"] == pytest.approx(3.0)
    assert metrics["sharpe"] == pytest.approx(np.mean(net) / np.std(net, ddof=1) * np.sqrt(3))
    assert metrics["annual_volatility"] == pytest.approx(np.std(net, ddof=1) * np.sqrt(3))
    assert metrics["annual_return"] == pytest.approx(np.prod(1 + net) ** (3 / 4) - 1)
    assert metrics["max_drawdown"] == pytest.approx(0.99 * 1.09 * 0.99 / (0.99 * 1.09) - 1)
    assert metrics["buy_hold_sharpe"] == pytest.approx(
        np.mean(hold) / np.std(hold, ddof=1) * np.sqrt(3)
    )
    assert metrics["buy_hold_max_drawdown"] == pytest.approx(1.09 * 0.95 * 0.8 / 1.09 - 1)
    # Traded: bars 0 and 2; the score has the forward return's sign on both, and the
    # next-bar return's (+10%, -20%) too.
    assert metrics["label_hit_rate"] == metrics["traded_hit_rate"] == 1.0
    assert equity["date"].tolist() == ["2001-01-01", "2001-05-02", "2001-08-31", "2002-01-01"]
    np.testing.assert_allclose(equity["strategy"], np.cumprod(1 + net))
    np.testing.assert_allclose(equity["buy_hold"], np.cumprod(1 + hold))
    with pytest.raises(ValueError, match="at least two dates"):
        bars_per_year(dates.to_numpy()[:1])


def test_bars_per_year_of_two_dates_two_years_apart_is_one_half():
    dates = np.array(["2001-01-01", "2003-01-01T12:00"], dtype="datetime64[ns]")
    assert bars_per_year(dates) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"^bars per year need at least two dates$"):
        bars_per_year(dates[:1])


def test_returns_that_never_vary_have_a_sharpe_of_zero():
    assert sharpe_ratio(np.full(5, 0.01), 252) == 0.0


def test_no_returns_have_no_drawdown_and_no_trades_no_hit_rate():
    assert max_drawdown(np.array([])) == 0.0
    assert np.isnan(hit_rate(np.array([0.05, -0.05]), np.array([0.1, 0.1]), np.zeros(2)))


def test_backtest_metrics_by_hand_for_two_series_long_only():
    """Two series on 3 dates over 365.25 days (2 bars a year), long only at threshold 0.1:
    a holds on dates 1-2, b on dates 2-3 (their -0.5 scores stay flat), half the book each.
    Turnover 0.5 every date, 1% costs; buy and hold turns over 1 on the first date only."""
    days = np.repeat(["2001-01-01T00:00:00", "2001-07-02T00:00:00", "2002-01-01T06:00:00"], 2)
    simple = np.array([0.02, 0.03, 0.04, -0.02, -0.01, 0.05])
    predictions = pd.DataFrame(
        {
            "timestamp": days,
            "series": ["a", "b"] * 3,
            "p_up": [0.75, 0.25, 0.75, 0.75, 0.25, 0.75],
            "p_down": [0.25, 0.75, 0.25, 0.25, 0.75, 0.25],
            "forward_return": np.log1p(simple),
            "next_return": np.log1p(simple),
        }
    )
    metrics, equity = backtest_metrics(
        predictions, threshold=0.1, long_only=True, cost_bps=100, hold=1, sizing="sign"
    )
    net = np.array([0.01, 0.01, 0.025]) - 0.005
    hold = np.array([0.025, 0.01, 0.02]) - np.array([0.01, 0.0, 0.0])
    assert metrics["bars_per_year"] == pytest.approx(2.0)
    assert metrics["turnover"] == pytest.approx(0.5)
    assert metrics["sharpe"] == pytest.approx(np.mean(net) / np.std(net, ddof=1) * np.sqrt(2))
    assert metrics["annual_return"] == pytest.approx(np.prod(1 + net) ** (2 / 3) - 1)
    assert metrics["buy_hold_annual_return"] == pytest.approx(np.prod(1 + hold) ** (2 / 3) - 1)
    # Traded: a on dates 1-2 and b on 2-3, all scored +0.5; b's date-2 return is negative.
    assert metrics["label_hit_rate"] == metrics["traded_hit_rate"] == pytest.approx(3 / 4)
    np.testing.assert_allclose(equity["strategy"], np.cumprod(1 + net))
    np.testing.assert_allclose(equity["buy_hold"], np.cumprod(1 + hold))


def test_a_panel_whose_series_enter_and_leave_by_hand():
    """Three series over four dates: c enters on the 2nd, b leaves after the 2nd, a after the
    3rd. Each date's weights are 1 / (series present that date); turnover counts the
    weight a leaving series gives up. Every figure is worked out by hand below."""
    rows = [  # date, series, position, simple next-bar return
        ("2024-01-01", "a", 1, 0.02),
        ("2024-01-01", "b", -1, 0.01),
        ("2024-01-02", "a", 1, -0.01),
        ("2024-01-02", "b", -1, 0.03),
        ("2024-01-02", "c", 1, 0.04),
        ("2024-01-03", "a", 0, 0.05),
        ("2024-01-03", "c", 1, -0.02),
        ("2024-01-04", "c", -1, 0.01),
    ]
    probabilities = {1: (0.2, 0.2, 0.6), -1: (0.6, 0.2, 0.2), 0: (0.3, 0.4, 0.3)}
    predictions = pd.DataFrame(
        {
            "timestamp": [row[0] for row in rows],
            "series": [row[1] for row in rows],
            "p_down": [probabilities[row[2]][0] for row in rows],
            "p_flat": [probabilities[row[2]][1] for row in rows],
            "p_up": [probabilities[row[2]][2] for row in rows],
            "forward_return": [row[3] for row in rows],
            "next_return": np.log1p([row[3] for row in rows]),
        }
    )
    cost = 10 / 1e4
    # Gross, turnover and net per date, by hand:
    #   01-01: a +1/2, b -1/2:  0.5*0.02 - 0.5*0.01 = 0.005;  turnover 1/2 + 1/2 = 1
    #   01-02: a, b, c 1/3:     (-0.01 - 0.03 + 0.04) / 3 = 0; turnover 1/6 + 1/6 + 1/3
    #   01-03: a 0, c +1/2:     0.5 * -0.02 = -0.01;          turnover 1/3 + 1/3 + 1/6
    #   01-04: c -1:            -0.01;                        turnover 1.5
    gross = np.array([0.005, 0.0, -0.01, -0.01])
    turnover = np.array([1.0, 2 / 3, 5 / 6, 1.5])
    net = gross - cost * turnover
    portfolio = portfolio_returns(
        pd.to_datetime(predictions["timestamp"]).to_numpy(),
        predictions["series"].to_numpy(),
        np.array([row[2] for row in rows], dtype=float),
        predictions["next_return"].to_numpy(),
        cost_bps=10,
    )
    np.testing.assert_allclose(portfolio.gross, gross, atol=1e-15)
    np.testing.assert_allclose(portfolio.turnover, turnover, rtol=1e-12)
    np.testing.assert_allclose(portfolio.net, net, rtol=1e-12)

    figures, equity = backtest_metrics(
        predictions, threshold=0.0, long_only=False, cost_bps=10, hold=1, sizing="sign"
    )
    per_year = 3 / (3 / 365.25)  # three steps between four daily dates
    mean = net.sum() / 4
    sd = np.sqrt(((net - mean) ** 2).sum() / 3)
    assert figures["sharpe"] == pytest.approx(mean / sd * np.sqrt(per_year), rel=1e-12)
    growth = (1 + net[0]) * (1 + net[1]) * (1 + net[2]) * (1 + net[3])
    assert figures["annual_return"] == pytest.approx(growth ** (per_year / 4) - 1, rel=1e-9)
    # Equity 1.004, then lower every day: the drawdown runs from the first day's peak.
    trough = (1 + net[1]) * (1 + net[2]) * (1 + net[3])
    assert figures["max_drawdown"] == pytest.approx(trough - 1, rel=1e-12)
    assert figures["turnover"] == pytest.approx(turnover.mean(), rel=1e-12)
    np.testing.assert_allclose(equity["strategy"], np.cumprod(1 + net), rtol=1e-12)


# Two series over eight consecutive daily bars, for the traded hit rate and IC. Log next-bar
# returns and scores, all distinct; rows given out of order (b first, then a backwards).
EIGHT_DATES = pd.date_range("2024-01-01", periods=8).strftime("%Y-%m-%d")
NEXT = {
    "a": [0.010, -0.020, 0.030, 0.012, -0.009, 0.021, -0.031, 0.013],
    "b": [-0.014, 0.022, 0.018, -0.023, 0.032, -0.016, 0.024, 0.017],
}
SCORE = {
    "a": [0.30, -0.20, 0.10, 0.40, -0.50, 0.20, 0.00, -0.10],
    "b": [-0.30, 0.50, -0.40, 0.15, 0.25, -0.25, 0.35, 0.05],
}


def two_series_table() -> pd.DataFrame:
    """The label's forward return is minus the next-bar return: label and traded figures
    must then differ."""
    rows = [
        (EIGHT_DATES[bar], name, SCORE[name][bar], NEXT[name][bar])
        for name, bars in (("b", range(8)), ("a", range(7, -1, -1)))
        for bar in bars
    ]
    score = np.array([row[2] for row in rows])
    next_return = np.array([row[3] for row in rows])
    return pd.DataFrame(
        {
            "timestamp": [row[0] for row in rows],
            "series": [row[1] for row in rows],
            "p_down": (1 - score) / 2,
            "p_flat": 0.0,
            "p_up": (1 + score) / 2,
            "forward_return": -next_return,
            "next_return": next_return,
        }
    )


def spearman_without_ties(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of the ranks (no ties here): Spearman's rho by another route."""
    return float(np.corrcoef(np.argsort(np.argsort(x)), np.argsort(np.argsort(y)))[0, 1])


def test_traded_hit_rate_and_ic_held_one_bar_by_hand():
    """Hold 1: the traded return is the next-bar return. a6 scores 0 and is not traded.
    Sign right: a0-a5 (6 of 7, a7 wrong), b0 b1 b4 b5 b6 b7 (6 of 8, b2 b3 wrong): 12 / 15.
    The label's return is the opposite here: 3 / 15, and the opposite IC."""
    metrics, _ = backtest_metrics(
        two_series_table(), threshold=0.0, long_only=False, cost_bps=0, hold=1, sizing="sign"
    )
    score = np.array(SCORE["a"] + SCORE["b"])
    traded = np.array(NEXT["a"] + NEXT["b"])
    assert metrics["traded_hit_rate"] == pytest.approx(12 / 15)
    assert metrics["label_hit_rate"] == pytest.approx(3 / 15)
    assert metrics["traded_ic"] == pytest.approx(spearman_without_ties(score, traded))
    assert metrics["label_ic"] == pytest.approx(-metrics["traded_ic"])


def test_traded_hit_rate_and_ic_held_three_bars_by_hand():
    """Hold 3: the traded return of bar t is the sum of its series' next-bar log returns
    at t, t+1 and t+2; bars 6 and 7 of each series close after the table and are left out.
    Sign right: a0 a2 a3 a4 a5 (5 of 6, a1 wrong), b1 b4 (2 of 6): 7 / 12."""
    traded = {
        "a": [
            0.010 - 0.020 + 0.030,  # 0.020
            -0.020 + 0.030 + 0.012,  # 0.022
            0.030 + 0.012 - 0.009,  # 0.033
            0.012 - 0.009 + 0.021,  # 0.024
            -0.009 + 0.021 - 0.031,  # -0.019
            0.021 - 0.031 + 0.013,  # 0.003
        ],
        "b": [
            -0.014 + 0.022 + 0.018,  # 0.026
            0.022 + 0.018 - 0.023,  # 0.017
            0.018 - 0.023 + 0.032,  # 0.027
            -0.023 + 0.032 - 0.016,  # -0.007
            0.032 - 0.016 + 0.024,  # 0.040
            -0.016 + 0.024 + 0.017,  # 0.025
        ],
    }
    table = two_series_table()
    metrics, _ = backtest_metrics(table, 0.0, long_only=False, cost_bps=0, hold=3, sizing="sign")
    score = np.array(SCORE["a"][:6] + SCORE["b"][:6])
    assert metrics["traded_hit_rate"] == pytest.approx(7 / 12)
    assert metrics["traded_ic"] == pytest.approx(
        spearman_without_ties(score, np.array(traded["a"] + traded["b"]))
    )
    windows = traded_windows(table, 0.0, long_only=False, hold=3, sizing="sign")
    for name in ("a", "b"):
        rows = windows[windows["series"] == name]
        np.testing.assert_allclose(rows["traded_return"].to_numpy()[:6], traded[name])
        assert np.isnan(rows["traded_return"].to_numpy()[6:]).all()
    # The label's figures do not depend on the hold.
    assert metrics["label_hit_rate"] == pytest.approx(3 / 15)
    held_one, _ = backtest_metrics(table, 0.0, long_only=False, cost_bps=0, hold=1, sizing="sign")
    assert metrics["label_ic"] == held_one["label_ic"]
    # Held longer than the table: no position closes inside it.
    longest, _ = backtest_metrics(table, 0.0, long_only=False, cost_bps=0, hold=9, sizing="sign")
    assert np.isnan(longest["traded_hit_rate"]) and np.isnan(longest["traded_ic"])


def entering_panel() -> pd.DataFrame:
    """Series a on five dates, b entering on the second. Scores at threshold 0.15:
    sign positions a 1, 1, -1, 0, 1 and b -1, -1, 1, 1."""
    rows = [  # date index, series, score, simple next-bar return
        (0, "a", 0.6, 0.01),
        (1, "a", 0.2, 0.02),
        (1, "b", -0.5, 0.01),
        (2, "a", -0.4, -0.01),
        (2, "b", -0.3, -0.02),
        (3, "a", 0.0, 0.03),
        (3, "b", 0.2, 0.01),
        (4, "a", 0.3, 0.02),
        (4, "b", 0.8, 0.04),
    ]
    dates = pd.date_range("2024-01-01", periods=5).strftime("%Y-%m-%d")
    score = np.array([row[2] for row in rows])
    return pd.DataFrame(
        {
            "timestamp": [dates[row[0]] for row in rows],
            "series": [row[1] for row in rows],
            "p_down": (1 - score) / 2,
            "p_flat": 0.0,
            "p_up": (1 + score) / 2,
            "forward_return": np.log1p([row[3] for row in rows]),
            "next_return": np.log1p([row[3] for row in rows]),
        }
    )


def test_overlapping_holds_average_the_last_positions_and_turn_over_by_the_average():
    """Hold 3, sign sizing. Each bar's exposure is the mean of the positions decided at the
    last 3 bars, those before a series' first bar counting 0 (b enters at -1/3, not -1):
        a: 1/3, 2/3, 1/3, 0, 0        b:  -, -1/3, -2/3, -1/3, 1/3
    Weights 1 (a alone) then 1/2: weighted exposure
        a: 1/3, 1/3, 1/6, 0, 0        b:  0, -1/6, -1/3, -1/6, 1/6
    Turnover: 1/3, 0 + 1/6, 1/6 + 1/6, 1/6 + 1/6, 0 + 1/3.
    Gross: 0.01/3; 0.02/3 - 0.01/6; -0.01/6 + 0.02/3; -0.01/6; 0.04/6."""
    panel = entering_panel()
    windows = traded_windows(panel, 0.15, long_only=False, hold=3, sizing="sign")
    exposure = {name: rows["exposure"].tolist() for name, rows in windows.groupby("series")}
    assert exposure["a"] == pytest.approx([1 / 3, 2 / 3, 1 / 3, 0, 0])
    assert exposure["b"] == pytest.approx([-1 / 3, -2 / 3, -1 / 3, 1 / 3])
    turnover = np.array([1 / 3, 1 / 6, 1 / 3, 1 / 3, 1 / 3])
    gross = np.array([0.01 / 3, 0.02 / 3 - 0.01 / 6, -0.01 / 6 + 0.02 / 3, -0.01 / 6, 0.04 / 6])
    portfolio = strategy_returns(windows, cost_bps=10)
    np.testing.assert_allclose(portfolio.turnover, turnover)
    np.testing.assert_allclose(portfolio.gross, gross)
    np.testing.assert_allclose(portfolio.net, gross - 0.001 * turnover)

    metrics, equity = backtest_metrics(
        panel, 0.15, long_only=False, cost_bps=10, hold=3, sizing="sign"
    )
    net = gross - 0.001 * turnover
    per_year = 4 / (4 / 365.25)
    assert metrics["turnover"] == pytest.approx(0.3)
    assert metrics["sharpe"] == pytest.approx(
        np.mean(net) / np.std(net, ddof=1) * np.sqrt(per_year)
    )
    assert metrics["gross_sharpe"] == pytest.approx(
        np.mean(gross) / np.std(gross, ddof=1) * np.sqrt(per_year)
    )
    assert metrics["annual_return"] == pytest.approx(np.prod(1 + net) ** (per_year / 5) - 1)
    assert metrics["gross_annual_return"] == pytest.approx(np.prod(1 + gross) ** (per_year / 5) - 1)
    assert metrics["gross_sharpe"] > metrics["sharpe"]
    np.testing.assert_allclose(equity["strategy"], np.cumprod(1 + net))
    # Buy and hold is held in full from the first bar, whatever the hold.
    held_one, equity_one = backtest_metrics(panel, 0.15, False, 10, hold=1, sizing="sign")
    assert metrics["buy_hold_sharpe"] == held_one["buy_hold_sharpe"]
    pd.testing.assert_series_equal(equity["buy_hold"], equity_one["buy_hold"])


def test_gross_and_net_figures_are_equal_without_costs():
    metrics, _ = backtest_metrics(entering_panel(), 0.15, False, 0, hold=3, sizing="sign")
    assert metrics["gross_sharpe"] == metrics["sharpe"]
    assert metrics["gross_annual_return"] == metrics["annual_return"]


def test_score_sizing_holds_the_score_beyond_the_threshold_and_long_only_clips_it():
    score = np.array([0.3, -0.2, 0.05, -0.15, 0.0, 0.15])
    np.testing.assert_array_equal(
        positions(score, 0.1, long_only=False, sizing="score"), [0.3, -0.2, 0, -0.15, 0, 0.15]
    )
    np.testing.assert_array_equal(
        positions(score, 0.1, long_only=True, sizing="score"), [0.3, 0, 0, 0, 0, 0.15]
    )
    np.testing.assert_array_equal(
        positions(score, 0.15, long_only=False, sizing="sign"), [1, -1, 0, 0, 0, 0]
    )
    with pytest.raises(ValueError, match="sizing 'kelly' is none of sign, score"):
        positions(score, 0.1, long_only=False, sizing="kelly")


def test_score_sizing_long_only_held_three_bars_by_hand():
    """entering_panel's scores, long only at 0.15: a holds 0.6, 0.2, 0, 0, 0.3 and b
    0, 0, 0.2, 0.8. Exposures (means of 3): a 0.2, 0.8/3, 0.8/3, 0.2/3, 0.1;
    b 0, 0, 0.2/3, 1/3. Weighted (1, then 1/2) times the simple returns:
    0.2 * 0.01; 0.4/3 * 0.02; 0.4/3 * -0.01; 0.1/3 * (0.03 + 0.01); 0.05 * 0.02 + 0.04/6."""
    windows = traded_windows(entering_panel(), 0.15, long_only=True, hold=3, sizing="score")
    exposure = {name: rows["exposure"].tolist() for name, rows in windows.groupby("series")}
    assert exposure["a"] == pytest.approx([0.2, 0.8 / 3, 0.8 / 3, 0.2 / 3, 0.1])
    assert exposure["b"] == pytest.approx([0, 0, 0.2 / 3, 1 / 3])
    gross = [0.002, 0.4 / 3 * 0.02, -0.4 / 3 * 0.01, 0.1 / 3 * 0.04, 0.001 + 0.04 / 6]
    np.testing.assert_allclose(strategy_returns(windows, cost_bps=0).gross, gross)


def test_hold_and_sizing_params_are_checked_and_hold_horizon_is_the_labels():
    params = parse_params(tiny_params_dict())
    assert params.backtest.hold == "horizon" and params.backtest.sizing == "sign"
    assert params.backtest.hold_bars(params.label.horizon) == params.label.horizon == 3
    seven = parse_params(tiny_params_dict(backtest={"hold": 7})).backtest
    assert seven.hold_bars(3) == 7
    refused = {
        "hold": (
            0,
            "backtest.hold = 0 is not allowed: expected 'horizon' (label.horizon) or "
            "an integer >= 1 (bars held)",
        ),
        "sizing": (
            "kelly",
            "backtest.sizing = 'kelly' is not allowed: expected one of: sign, score",
        ),
    }
    for key, (value, message) in refused.items():
        with pytest.raises(ConfigError) as raised:
            parse_params(tiny_params_dict(backtest={key: value}))
        assert str(raised.value) == message
    with pytest.raises(ConfigError) as raised:
        parse_params(tiny_params_dict(backtest={"hold": "week"}))
    assert str(raised.value).startswith("backtest.hold = 'week' is not allowed")


def test_a_hold_over_one_bar_with_strided_windows_is_refused_naming_both_keys():
    """Strided windows leave bars without a return to hold a position over."""
    with pytest.raises(ConfigError) as raised:
        parse_params(tiny_params_dict(window={"stride": 2}))
    message = str(raised.value)
    assert message.startswith("backtest.hold = horizon (3 bars) with window.stride = 2:")
    assert "\n" not in message
    parse_params(tiny_params_dict(window={"stride": 2}, backtest={"hold": 1}))
    parse_params(tiny_params_dict(backtest={"hold": 4}))
