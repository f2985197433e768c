"""Block-bootstrap intervals: they cover known true values, reproduce, and refuse too few dates."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from arch.bootstrap import optimal_block_length

from finseq import evidence
from finseq.backtest import backtest_metrics
from finseq.errors import ConfigError
from finseq.evaluate import FoldScores, predictions_frame, recorded_predictions
from finseq.evidence import (
    HEADLINE,
    PART_SUMS,
    DailyTotals,
    block_length,
    change_intervals,
    check_enough_dates,
    daily_totals,
    figure_of,
    headline_figures,
    intervals,
    out_of_sample_evidence,
    percentile_interval,
    resampled_dates,
    verdict,
)
from finseq.labels import UNKNOWN_LABEL
from finseq.params import BacktestConfig, EvaluateConfig
from finseq.seeds import figures_of_seed, seed_spread

N_DATES, SERIES = 1000, ("a", "b")
DATES = pd.bdate_range("2001-01-01", periods=N_DATES).strftime("%Y-%m-%d")
PRIOR = np.array([0.35, 0.25, 0.40])


def correlated_noise(rng, rho_time: float, rho_series: float) -> np.ndarray:
    """(dates, series) standard normals, AR(1) in time and correlated across series."""
    shocks = rng.standard_normal((N_DATES, len(SERIES)))
    common = rng.standard_normal(N_DATES)
    shocks = np.sqrt(1 - rho_series) * shocks + np.sqrt(rho_series) * common[:, None]
    out = np.empty_like(shocks)
    out[0] = shocks[0]
    for t in range(1, N_DATES):
        out[t] = rho_time * out[t - 1] + np.sqrt(1 - rho_time**2) * shocks[t]
    return out


def uninformed_panel(seed: int) -> pd.DataFrame:
    """Labels of marginal PRIOR, persistent in time and shared across series through a
    latent factor; probabilities drawn independently of the labels; zero-drift returns with
    the same dependence. True values: Sharpe 0 (no costs), skill TRUE_SKILL below."""
    rng = np.random.default_rng(seed)
    latent = correlated_noise(rng, 0.6, 0.5)
    uniform = pd.Series(latent.ravel()).rank(pct=True).to_numpy().reshape(latent.shape)
    labels = np.searchsorted(np.cumsum(PRIOR), uniform.ravel(), side="right").clip(0, 2) - 1
    returns = 0.01 * correlated_noise(rng, 0.3, 0.5).ravel()
    probabilities = rng.dirichlet(30 * PRIOR, size=labels.size)
    return pd.DataFrame(
        {
            "timestamp": np.repeat(DATES, len(SERIES)),
            "series": np.tile(SERIES, N_DATES),
            "label": labels,
            "p_down": probabilities[:, 0],
            "p_flat": probabilities[:, 1],
            "p_up": probabilities[:, 2],
            "prior_p": PRIOR[labels + 1],
            "majority": 1,
            "forward_return": returns,
            "next_return": returns,
        }
    )


def true_skill() -> float:
    """1 - E[-log q_y] / E[-log prior_y] with q independent of y ~ PRIOR: a large sample."""
    q = np.random.default_rng(123).dirichlet(30 * PRIOR, size=2_000_000)
    expected_loss = -(np.log(q) * PRIOR).sum(axis=1).mean()
    return 1 - expected_loss / -(PRIOR * np.log(PRIOR)).sum()


def test_intervals_contain_their_point_values_and_reproduce_with_the_seed():
    totals = daily_totals(uninformed_panel(0), 0.0, False, 5, hold=1, sizing="sign")
    first = intervals(totals, horizon=5, resamples=200, seed=7)
    assert first == intervals(totals, horizon=5, resamples=200, seed=7)
    assert first != intervals(totals, horizon=5, resamples=200, seed=8)
    for name in ("skill", "accuracy_gain", "balanced_accuracy", "sharpe", "annual_return"):
        assert first[f"{name}_low"] <= first[name] <= first[f"{name}_high"], name
    assert first["bootstrap_block"] >= 5
    # No skill here (the point is below 0): nearly every centred draw reaches it.
    assert first["skill"] < 0 and first["skill_p"] > 0.9


def test_the_block_is_never_shorter_than_the_label_horizon():
    totals = daily_totals(uninformed_panel(1), 0.0, False, 0, hold=1, sizing="sign")
    assert intervals(totals, horizon=40, resamples=100, seed=0)["bootstrap_block"] >= 40


def test_too_few_out_of_sample_dates_for_a_bootstrap_is_a_config_error():
    few = uninformed_panel(2).iloc[: 2 * 20]
    totals = daily_totals(few, 0.0, False, 5, hold=1, sizing="sign")
    with pytest.raises(ConfigError, match="only 20 out-of-sample dates: a block bootstrap needs"):
        intervals(totals, horizon=5, resamples=100, seed=0)


def test_verdict_reads_the_interval_of_the_change():
    assert verdict(0.01, 0.03, higher_is_better=True) == "better"
    assert verdict(0.01, 0.03, higher_is_better=False) == "worse"
    assert verdict(-0.03, -0.01, higher_is_better=False) == "better"
    assert verdict(-0.01, 0.02, higher_is_better=True) == "within noise"


@pytest.mark.slow
def test_95_percent_intervals_cover_the_true_skill_and_sharpe_at_least_90_percent_of_the_time():
    """200 seeded panels with labels and returns autocorrelated (0.6, 0.3) and correlated
    across series (0.5), probabilities and positions independent of both, 1,000 dates each.
    Measured: skill 0.945, Sharpe 0.92 (true skill -0.0315, mean estimate -0.0316)."""
    truth = true_skill()
    covered = {"skill": 0, "sharpe": 0}
    panels = 200
    for seed in range(panels):
        totals = daily_totals(uninformed_panel(seed), 0.0, False, 0, hold=1, sizing="sign")
        result = intervals(totals, horizon=5, resamples=200, seed=seed)
        covered["skill"] += result["skill_low"] <= truth <= result["skill_high"]
        covered["sharpe"] += result["sharpe_low"] <= 0 <= result["sharpe_high"]
    rates = {name: count / panels for name, count in covered.items()}
    assert min(rates.values()) >= 0.90, rates


def test_a_date_of_only_unknown_labels_does_not_hide_the_loss_from_the_block_length():
    """Unknown labels (undecided ties) on every window of some dates: those dates have no
    scored window. The loss difference's block length must still count, as it does with
    those dates' labels known; a NaN per-date loss once dropped it (block 21 -> 5)."""
    panel = uninformed_panel(3)
    # Right for 50 dates, wrong for the next 50: a per-date loss of long memory.
    date_index = np.repeat(np.arange(N_DATES), len(SERIES))
    right = np.sin(2 * np.pi * date_index / 100) > 0
    aimed = np.where(right, panel["label"] + 1, (panel["label"] + 2) % 3)
    probabilities = np.full((len(panel), 3), 0.1)
    probabilities[np.arange(len(panel)), aimed] = 0.8
    panel[["p_down", "p_flat", "p_up"]] = probabilities
    unknown = panel["timestamp"].isin(DATES[::50])
    blanked = panel.copy()
    blanked["label"] = blanked["label"].astype("Int64").mask(unknown)
    blanked["prior_p"] = blanked["prior_p"].mask(unknown)
    known_block = block_length(
        daily_totals(panel[~unknown], 0.0, False, 0, hold=1, sizing="sign"), horizon=1
    )
    blanked_block = block_length(
        daily_totals(blanked, 0.0, False, 0, hold=1, sizing="sign"), horizon=1
    )
    strategy_only = block_length(
        dataclasses.replace(
            daily_totals(panel, 0.0, False, 0, hold=1, sizing="sign"), loss=np.zeros(N_DATES)
        ),
        horizon=1,
    )
    assert known_block > strategy_only
    assert abs(blanked_block - known_block) <= 1


def hand_panel() -> pd.DataFrame:
    """Three dates of two series, rows out of date order. 2024-01-01: two known labels;
    01-02: one known, one unknown; 01-03: only unknown labels."""
    return pd.DataFrame(
        {
            "timestamp": [
                "2024-01-02",
                "2024-01-01",
                "2024-01-01",
                "2024-01-02",
                "2024-01-03",
                "2024-01-03",
            ],
            "series": ["a", "a", "b", "b", "a", "b"],
            "label": pd.array([1, -1, 0, None, None, None], dtype="Int64"),
            "p_down": [0.2, 0.5, 0.6, 0.1, 0.3, 0.25],
            "p_flat": [0.2, 0.3, 0.3, 0.7, 0.3, 0.5],
            "p_up": [0.6, 0.2, 0.1, 0.2, 0.4, 0.25],
            "prior_p": [0.4, 0.3, 0.5, np.nan, np.nan, np.nan],
            "majority": [0, 0, 0, 0, 1, -1],
            "prior_down": [0.3, 0.3, 0.25, 0.3, 0.3, 0.3],
            "prior_flat": [0.3, 0.3, 0.5, 0.3, 0.3, 0.3],
            "prior_up": [0.4, 0.4, 0.25, 0.4, 0.4, 0.4],
            "forward_return": 0.0,
            "next_return": np.log1p([0.03, 0.02, -0.01, -0.02, 0.01, 0.05]),
        }
    )


def test_daily_totals_sum_the_move_and_direction_losses_by_hand():
    """01-01: a down (p 0.5/0.3/0.2, prior 0.3/0.3/0.4) and a flat (p_flat 0.3, prior 0.5);
    01-02: an up (p 0.2/0.2/0.6, prior 0.3/0.3/0.4) and an unknown; 01-03: unknowns only.
    Move: -log P(not flat) of a move, -log P(flat) of a flat. Direction, of moves only:
    -log of the share of the true direction in P(up) + P(down)."""
    parts = daily_totals(hand_panel(), 0.05, False, 10, hold=1, sizing="sign").parts
    expected = {
        "move_loss": [-np.log(0.7) - np.log(0.3), -np.log(0.8), 0.0],
        "move_prior_loss": [-np.log(0.7) - np.log(0.5), -np.log(0.7), 0.0],
        "direction_loss": [-np.log(5 / 7), -np.log(0.75), 0.0],
        "direction_prior_loss": [-np.log(3 / 7), -np.log(4 / 7), 0.0],
    }
    assert set(parts) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(parts[name], values, rtol=1e-12, err_msg=name)


def test_daily_totals_by_hand_with_unknown_labels_and_rows_out_of_date_order():
    """Unknown labels add nothing to the class sums (not even as the flat class they are
    filled with) but are traded. Positions at threshold 0.05: 01-01 both short, 01-02 both
    long (score 0.4 and 0.1), 01-03 a long (0.1), b flat (0)."""
    totals = daily_totals(hand_panel(), 0.05, False, 10, hold=1, sizing="sign")
    expected_dates = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).to_numpy()
    np.testing.assert_array_equal(totals.dates, expected_dates)
    np.testing.assert_allclose(totals.loss, [-np.log(0.5) - np.log(0.3), -np.log(0.6), 0.0])
    np.testing.assert_allclose(totals.prior_loss, [-np.log(0.3) - np.log(0.5), -np.log(0.4), 0.0])
    assert totals.loss.dtype == totals.prior_loss.dtype == np.float64
    assert totals.windows.tolist() == [2, 1, 0]
    assert totals.correct.tolist() == [1, 1, 0]
    assert totals.majority_correct.tolist() == [1, 0, 0]
    expected = np.zeros((3, 3, 3), dtype=int)
    expected[0, 0, 0] = expected[0, 1, 0] = expected[1, 2, 2] = 1
    np.testing.assert_array_equal(totals.confusion, expected)
    # Gross -0.005, 0.005, 0.005; turnover 1, 2, 0.5 at 10 bps.
    np.testing.assert_allclose(totals.strategy, [-0.006, 0.003, 0.0045])
    assert totals.per_year == pytest.approx(365.25)


def test_daily_totals_long_only_holds_no_shorts():
    totals = daily_totals(hand_panel(), 0.05, True, 10, hold=1, sizing="sign")
    np.testing.assert_allclose(totals.strategy, [0.0, 0.004, 0.0045])


def test_daily_totals_by_hand_with_score_sizing_held_two_bars():
    """Scores a -0.3, 0.4, 0.1 and b -0.5, 0.1, 0 (threshold 0.05) are the positions; held
    2 bars, the exposures are the means of the last two: a -0.15, 0.05, 0.25 and
    b -0.25, -0.2, 0.05, half the book each. Gross -0.075 * 0.02 - 0.125 * -0.01,
    0.025 * 0.03 - 0.1 * -0.02, 0.125 * 0.01 + 0.025 * 0.05; turnover 0.2, 0.1 + 0.025,
    0.1 + 0.125, at 10 bps."""
    totals = daily_totals(hand_panel(), 0.05, False, 10, hold=2, sizing="score")
    gross = np.array([-0.00025, 0.00275, 0.0025])
    turnover = np.array([0.2, 0.125, 0.225])
    np.testing.assert_allclose(totals.strategy, gross - 0.001 * turnover)


def test_a_probability_of_zero_costs_the_clipped_loss_not_infinity():
    """Both logs are clipped at 1e-12: the model's probability of the label, and the prior's
    (which add-one smoothing keeps above 0 in a real run)."""
    panel = hand_panel().iloc[1:3].copy()
    panel["p_down"], panel["p_flat"], panel["p_up"] = [0.0, 0.6], [0.5, 0.0], [0.5, 0.4]
    panel["prior_p"] = [0.0, 0.5]
    panel.loc[panel.index[1], "timestamp"] = "2024-01-02"
    totals = daily_totals(panel, 0.05, False, 0, hold=1, sizing="sign")
    clipped = -np.log(1e-12)
    np.testing.assert_allclose(totals.loss, [clipped, clipped])
    np.testing.assert_allclose(totals.prior_loss, [clipped, -np.log(0.5)])


def test_take_resamples_every_per_date_array_and_keeps_bars_per_year():
    totals = daily_totals(hand_panel(), 0.05, False, 10, hold=1, sizing="sign")
    index = np.array([2, 0, 0])
    taken = totals.take(index)
    assert set(totals.parts) == set(PART_SUMS)
    for name, sums in totals.parts.items():
        np.testing.assert_array_equal(taken.parts[name], sums[index])
    for field in dataclasses.fields(totals):
        if field.name == "per_year":
            assert taken.per_year == totals.per_year
        elif field.name != "parts":
            np.testing.assert_array_equal(
                getattr(taken, field.name), getattr(totals, field.name)[index]
            )


def hand_totals() -> DailyTotals:
    """Three dates, 5 scored windows: loss 3.5 against a prior's 8, 4 correct against the
    majority's 2. Summed confusion: true down 3 right of 4, true up 1 of 1, no true flat."""
    confusion = np.zeros((3, 3, 3), dtype=int)
    confusion[0, 0, 0] = confusion[0, 0, 1] = 1
    confusion[1, 0, 0] = confusion[1, 2, 2] = 1
    confusion[2, 0, 0] = 1
    return DailyTotals(
        dates=pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).to_numpy(),
        loss=np.array([1.0, 2.0, 0.5]),
        prior_loss=np.array([2.0, 2.0, 4.0]),
        windows=np.array([2, 2, 1]),
        correct=np.array([1, 2, 1]),
        majority_correct=np.array([1, 1, 0]),
        confusion=confusion,
        strategy=np.array([0.01, -0.02, 0.03]),
        per_year=252.0,
    )


HAND_SHARPE = 0.02 / 3 / np.std([0.01, -0.02, 0.03], ddof=1) * np.sqrt(252)
HAND_ANNUAL_RETURN = np.prod([1.01, 0.98, 1.03]) ** (252 / 3) - 1


def test_headline_figures_by_hand():
    """Balanced accuracy is the mean recall of the classes present (3/4 and 1/1): the absent
    class counts neither as 0 nor as NaN, and a class seen once counts."""
    assert headline_figures(hand_totals()) == pytest.approx(
        {
            "skill": 1 - 3.5 / 8,
            "accuracy_gain": (4 - 2) / 5,
            "balanced_accuracy": (3 / 4 + 1) / 2,
            "sharpe": HAND_SHARPE,
            "annual_return": HAND_ANNUAL_RETURN,
        }
    )


def test_figure_of_each_verdict_figure_by_hand():
    totals = hand_totals()
    expected = {
        "loss": 3.5 / 5,
        "accuracy": 4 / 5,
        "skill": 1 - 3.5 / 8,
        "sharpe": HAND_SHARPE,
        "balanced_accuracy": 0.875,
        "accuracy_gain": 0.4,
        "annual_return": HAND_ANNUAL_RETURN,
    }
    assert {name: figure_of(name)(totals) for name in expected} == pytest.approx(expected)


def synthetic_totals(n_dates: int, loss_difference, strategy, windows=None) -> DailyTotals:
    """Totals of `n_dates` with a given per-window loss difference (loss - prior loss) and
    strategy return; the prior's loss is 1 per window."""
    windows = np.full(n_dates, 2) if windows is None else windows
    return DailyTotals(
        dates=pd.bdate_range("2020-01-01", periods=n_dates).to_numpy(),
        loss=windows * (1.0 + np.asarray(loss_difference)),
        prior_loss=windows * 1.0,
        windows=windows,
        correct=np.ones(n_dates, dtype=int),
        majority_correct=np.zeros(n_dates, dtype=int),
        confusion=np.tile(np.diag([1, 1, 0]), (n_dates, 1, 1)),
        strategy=np.asarray(strategy, dtype=float),
        per_year=252.0,
    )


def persistent(n_dates: int, period: int = 40) -> np.ndarray:
    """A slow square wave plus a little noise: a long Politis-White block."""
    rng = np.random.default_rng(5)
    wave = np.where(np.sin(2 * np.pi * np.arange(n_dates) / period) > 0, 0.3, -0.3)
    return wave + 0.05 * rng.standard_normal(n_dates)


def politis_white(series: np.ndarray) -> int:
    return int(np.ceil(optimal_block_length(series)["stationary"].iloc[0]))


def test_with_nothing_that_varies_the_block_is_the_horizon():
    flat = synthetic_totals(40, np.zeros(40), np.zeros(40))
    assert block_length(flat, horizon=1) == 1
    assert block_length(flat, horizon=4) == 4


def test_the_block_is_politis_whites_of_the_per_window_loss_difference():
    """A persistent difference per window on dates of 1 to 4 windows, and prior losses that
    vary a lot from date to date: the block follows the difference per window, not the
    per-date sums, the ratio's inverse or the losses added."""
    n_dates = 300
    difference = persistent(n_dates)
    rng = np.random.default_rng(6)
    windows = rng.integers(1, 5, n_dates)
    prior = rng.uniform(0.5, 3.0, n_dates)
    totals = dataclasses.replace(
        synthetic_totals(n_dates, difference, np.zeros(n_dates), windows),
        loss=windows * (prior + difference),
        prior_loss=windows * prior,
    )
    expected = politis_white(difference)
    assert expected > 5
    assert block_length(totals, horizon=1) == expected


def test_dates_of_one_window_count_in_the_loss_difference_block():
    n_dates = 300
    difference = persistent(n_dates)
    totals = synthetic_totals(n_dates, difference, np.zeros(n_dates), np.ones(n_dates, int))
    assert block_length(totals, horizon=1) == politis_white(difference) > 5


def test_a_persistent_strategy_sets_the_block_when_the_loss_difference_is_constant():
    n_dates = 300
    strategy = 0.01 * persistent(n_dates)
    totals = synthetic_totals(n_dates, np.zeros(n_dates), strategy)
    assert block_length(totals, horizon=1) == politis_white(strategy) > 5


def test_the_longer_of_the_two_blocks_wins():
    n_dates = 300
    difference, strategy = persistent(n_dates, period=20), 0.01 * persistent(n_dates, period=60)
    totals = synthetic_totals(n_dates, difference, strategy)
    blocks = politis_white(difference), politis_white(strategy)
    assert blocks[0] != blocks[1]
    assert block_length(totals, horizon=1) == max(blocks)


@pytest.mark.parametrize(
    ("n_dates", "horizon", "needed"), [(29, 5, 30), (59, 20, 60), (89, 30, 90)]
)
def test_a_bootstrap_needs_30_dates_and_3_horizons(n_dates, horizon, needed):
    message = (
        f"only {n_dates} out-of-sample dates: a block bootstrap needs at least {needed} "
        "(3 x label.horizon, and at least 30); give the test period more dates "
        "(split.oos_start, split.test) or shorten label.horizon"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        check_enough_dates(n_dates, horizon)
    check_enough_dates(n_dates + 1, horizon)


def test_percentile_interval_is_the_central_95_percent_ignoring_nan():
    draws = np.append(np.arange(1001.0), np.nan)
    assert percentile_interval(draws) == pytest.approx((25.0, 975.0))


def constant_totals(n_dates: int, loss: float) -> DailyTotals:
    """Every date the same: each resample gives the point values exactly."""
    return synthetic_totals(n_dates, np.full(n_dates, loss - 1.0), np.full(n_dates, 0.001))


def test_intervals_of_identical_dates_are_the_point_values_and_the_p_value_is_its_floor():
    """With every draw equal to the point skill 0.25 > 0, no centred draw reaches it:
    p = 1 / (1 + resamples)."""
    result = intervals(constant_totals(40, 0.75), horizon=5, resamples=100, seed=0)
    point = headline_figures(constant_totals(40, 0.75))
    assert point["skill"] == pytest.approx(0.25)
    # Totals without the move and direction sums (a table from before they were recorded)
    # have every other headline figure and no part.
    recorded = [name for name in HEADLINE if name not in ("move_skill", "direction_skill")]
    assert set(result) == {
        *recorded,
        *(f"{name}_low" for name in recorded),
        *(f"{name}_high" for name in recorded),
        "skill_p",
        "bootstrap_block",
    }
    for name in recorded:
        assert result[name] == point[name]
        assert result[f"{name}_low"] == result[f"{name}_high"] == pytest.approx(point[name])
    assert result["skill_p"] == 1 / 101
    assert result["bootstrap_block"] == 5


def test_a_skill_of_exactly_zero_has_p_value_one():
    """Every centred draw (0) reaches the point skill (0): the null is not rejected."""
    result = intervals(constant_totals(40, 1.0), horizon=5, resamples=100, seed=0)
    assert result["skill"] == 0.0
    assert result["skill_p"] == 1.0


def test_the_bootstraps_report_their_progress_as_resamples(capsys, monkeypatch):
    monkeypatch.setenv("FINSEQ_PROGRESS", "1")
    totals = constant_totals(40, 0.75)
    intervals(totals, horizon=5, resamples=100, seed=0)
    change_intervals(totals, totals, {"loss": figure_of("loss")}, 5, 100, 0, paired=True)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == 2 * [
        f"bootstrap: {count}/100 resamples" for count in range(10, 101, 10)
    ]


def test_verdict_reads_a_negative_interval_and_zero_at_either_end_as_noise():
    assert verdict(-0.03, -0.01, higher_is_better=True) == "worse"
    assert verdict(0.0, 0.03, higher_is_better=True) == "within noise"
    assert verdict(-0.03, 0.0, higher_is_better=True) == "within noise"


def varying_totals(n_dates: int = 60) -> DailyTotals:
    rng = np.random.default_rng(9)
    totals = synthetic_totals(n_dates, rng.normal(0, 0.2, n_dates), rng.normal(0, 0.01, n_dates))
    return dataclasses.replace(totals, correct=rng.integers(0, 3, n_dates))


VERDICT_FIGURES = {name: figure_of(name) for name in ("skill", "loss", "accuracy", "sharpe")}


def test_a_paired_change_by_a_constant_loss_per_window_has_that_change_as_its_interval():
    """Paired, every resample takes the same dates of both: a loss 0.1 higher per window on
    every date is a change of exactly 0.1 in every draw, and unchanged figures change by 0."""
    base = varying_totals()
    target = dataclasses.replace(base, loss=base.loss + 0.1 * base.windows)
    changes = change_intervals(base, target, VERDICT_FIGURES, 5, 200, 3, paired=True)
    assert set(changes) == set(VERDICT_FIGURES)
    assert changes["loss"] == pytest.approx((0.1, 0.1, 0.1))
    assert changes["accuracy"] == changes["sharpe"] == (0.0, 0.0, 0.0)
    skill_change, low, high = changes["skill"]
    assert skill_change == pytest.approx(figure_of("skill")(target) - figure_of("skill")(base))
    assert skill_change < 0
    assert low < high < 0


def test_an_unpaired_change_resamples_each_side_on_its_own():
    """Unpaired, the dates of the two are drawn apart: the same constant change gets the
    spread of two independent resamples around it."""
    base = varying_totals()
    target = dataclasses.replace(base, loss=base.loss + 0.1 * base.windows)
    changes = change_intervals(base, target, VERDICT_FIGURES, 5, 200, 3, paired=False)
    for name, (change, low, high) in changes.items():
        assert low < change < high, name
    assert changes["loss"][0] == pytest.approx(0.1)
    assert changes["accuracy"][0] == 0.0


def test_change_intervals_draw_once_with_the_longer_block_and_the_next_seed(monkeypatch):
    """Both sides are resampled with the longer of their two blocks; unpaired, the target's
    dates come from seed + 1 (the recorded comparisons depend on these seeds)."""
    n_dates = 300
    base = synthetic_totals(n_dates, persistent(n_dates, period=60), np.zeros(n_dates))
    target = synthetic_totals(n_dates, persistent(n_dates, period=10), np.zeros(n_dates))
    longer = block_length(base, 1)
    assert longer > block_length(target, 1)
    calls = []

    def recorded(n, block, resamples, seed):
        calls.append((n, block, resamples, seed))
        return resampled_dates(n, block, resamples, seed)

    monkeypatch.setattr(evidence, "resampled_dates", recorded)
    change_intervals(base, target, VERDICT_FIGURES, 1, 100, 4, paired=True)
    assert calls == [(n_dates, longer, 100, 4)]
    calls.clear()
    change_intervals(base, target, VERDICT_FIGURES, 1, 100, 4, paired=False)
    assert calls == [(n_dates, longer, 100, 4), (n_dates, longer, 100, 5)]


def test_change_intervals_refuse_too_few_dates_on_either_side():
    enough, few = varying_totals(60), varying_totals(20)
    for base, target in ((few, enough), (enough, few)):
        with pytest.raises(ConfigError, match="only 20 out-of-sample dates"):
            change_intervals(base, target, VERDICT_FIGURES, 5, 100, 0, paired=False)


def test_out_of_sample_evidence_is_the_backtest_with_the_headline_intervals_added():
    """The backtest's figures with intervals() over daily_totals() added, both with the
    configured threshold, long-only rule, costs, sizing, hold (`horizon`: the label's),
    resamples and seed. The Sharpe ratio and annual return of the two routes (per window,
    per date) agree."""
    predictions = uninformed_panel(4).iloc[: 2 * 200]
    backtest = BacktestConfig(
        threshold=0.02, long_only=True, cost_bps=10, hold="horizon", sizing="score", quantile=0.2
    )
    settings = EvaluateConfig(batch_size=1, resamples=100, bootstrap_seed=3, calibration="none")
    figures, equity = out_of_sample_evidence(predictions, backtest, settings, horizon=40)
    rule = {"hold": 40, "sizing": "score"}
    expected_figures, expected_equity = backtest_metrics(predictions, 0.02, True, 10, **rule)
    bounds = intervals(daily_totals(predictions, 0.02, True, 10, **rule), 40, 100, 3)
    assert figures == {**expected_figures, **bounds}
    assert set(figures) == set(expected_figures) | set(bounds)
    assert figures["sharpe"] == pytest.approx(expected_figures["sharpe"])
    assert figures["annual_return"] == pytest.approx(expected_figures["annual_return"])
    assert figures["bootstrap_block"] >= 40
    for other in (
        {"long_only": False},
        {"hold": 1},
        {"hold": 39},
        {"sizing": "sign"},
    ):
        changed = dataclasses.replace(backtest, **other)
        assert (
            out_of_sample_evidence(predictions, changed, settings, 40)[0]["sharpe"]
            != (figures["sharpe"])
        ), other
    pd.testing.assert_frame_equal(equity, expected_equity)


@pytest.mark.parametrize(("hold", "sizing"), [(1, "sign"), (3, "score")])
def test_windows_without_a_next_return_are_left_out_of_the_portfolio_as_the_backtest_does(
    monkeypatch, hold, sizing
):
    """Series a's next return unknown on the last three dates, b's on the very last: the
    per-date Sharpe ratio, annual return and bars per year are the backtest's, and the last
    date, with nothing to trade, is no portfolio date at all, nor in the block length. So
    with positions held over several bars and sized by the score."""
    predictions = uninformed_panel(0).iloc[: 2 * 200].copy()
    blank = (predictions["series"] == "a") & (predictions["timestamp"] >= DATES[197])
    blank |= predictions["timestamp"] == DATES[199]
    predictions.loc[blank, "next_return"] = np.nan
    totals = daily_totals(predictions, 0.0, False, 5, hold=hold, sizing=sizing)
    expected, _ = backtest_metrics(predictions, 0.0, False, 5, hold=hold, sizing=sizing)
    if hold > 1:
        each_bar, _ = backtest_metrics(predictions, 0.0, False, 5, hold=1, sizing=sizing)
        assert expected["sharpe"] != pytest.approx(each_bar["sharpe"])
    figures = headline_figures(totals)
    assert figures["sharpe"] == pytest.approx(expected["sharpe"])
    assert figures["annual_return"] == pytest.approx(expected["annual_return"])
    assert figure_of("sharpe")(totals) == pytest.approx(expected["sharpe"])
    assert totals.per_year == pytest.approx(expected["bars_per_year"])
    assert len(totals.dates) == 200 and len(totals.traded_returns()) == 199
    assert np.isnan(totals.strategy[-1]) and np.isfinite(totals.strategy[:-1]).all()
    bounds = intervals(totals, horizon=5, resamples=50, seed=0)
    assert bounds["sharpe_low"] <= bounds["sharpe"] <= bounds["sharpe_high"]
    estimated = []
    politis_white = evidence.optimal_block_length
    monkeypatch.setattr(
        evidence,
        "optimal_block_length",
        lambda series: estimated.append(np.asarray(series)) or politis_white(series),
    )
    block_length(totals, horizon=1)
    assert [len(series) for series in estimated] == [200, 199]  # loss, then the strategy
    assert all(np.isfinite(series).all() for series in estimated)


def test_figures_of_seed_by_hand_over_two_folds():
    """Two folds of three test windows, one of unknown label; probabilities given as log
    logits so softmax returns them. Known windows: picked 0.5, 0.5, 0.25 | 0.5, 0.25; priors
    (0.5, 0.25, 0.25) for fold 1 and (0.2, 0.3, 0.5) for fold 2. Long only at threshold 0.1
    only the window scored 0.25 is held: half the portfolio on 2024-01-02, out on 01-03."""
    f1 = np.log([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
    f2 = np.log([[0.25, 0.25, 0.5], [0.2, 0.6, 0.2], [0.5, 0.25, 0.25]])
    scores = [
        FoldScores("f1", {"test": np.array([0, 1, 2])}, {"test": f1}, np.array([0.5, 0.25, 0.25])),
        FoldScores("f2", {"test": np.array([3, 4, 5])}, {"test": f2}, np.array([0.2, 0.3, 0.5])),
    ]
    labels = np.array([-1, 0, 1, 1, UNKNOWN_LABEL, 0])
    simple = np.array([0.02, 0.01, -0.01, 0.03, 0.02, -0.02])
    outcomes = (
        labels,
        ["a", "b"],
        np.array([0, 1, 0, 1, 0, 1]),
        pd.to_datetime(["2024-01-01"] * 2 + ["2024-01-02"] * 2 + ["2024-01-03"] * 2).to_numpy(),
        np.log1p(simple),
        np.log1p(simple),
    )
    backtest = BacktestConfig(
        threshold=0.1, long_only=True, cost_bps=10, hold=1, sizing="sign", quantile=0.2
    )
    _, table = recorded_predictions(predictions_frame(scores, *outcomes))
    figures = figures_of_seed(table, backtest, horizon=5)
    loss = 7 * np.log(2) / 5
    prior_loss = (6 * np.log(2) + np.log(10 / 3)) / 5
    net = np.array([0.0, 0.5 * 0.03 - 0.0005, -0.0005])
    sharpe = net.mean() / net.std(ddof=1) * np.sqrt(365.25)
    # Moves: windows 0, 2, 3 (P(not flat) 0.75 each); flats 1 and 5 (P(flat) 0.5, 0.25).
    move = -3 * np.log(0.75) - np.log(0.5) - np.log(0.25)
    move_prior = -2 * np.log(0.75) - np.log(0.25) - np.log(0.7) - np.log(0.3)
    # Up's share of up + down: 1/3 in windows 0 and 2 (a down, an up), 2/3 in window 3 (an
    # up); the priors' 1/3 in fold 1 and 5/7 in fold 2.
    direction = -np.log(2 / 3) - np.log(1 / 3) - np.log(2 / 3)
    direction_prior = -np.log(2 / 3) - np.log(1 / 3) - np.log(5 / 7)
    assert figures == pytest.approx(
        {
            "skill": 1 - loss / prior_loss,
            "move_skill": 1 - move / move_prior,
            "direction_skill": 1 - direction / direction_prior,
            "loss": loss,
            "accuracy": 3 / 5,
            "sharpe": sharpe,
        }
    )


def test_figures_of_seed_hold_horizon_positions_as_long_as_the_labels_horizon():
    table = uninformed_panel(5).iloc[: 2 * 100]
    backtest = BacktestConfig(
        threshold=0.0, long_only=False, cost_bps=5, hold="horizon", sizing="score", quantile=0.2
    )
    for horizon in (1, 4):
        expected, _ = backtest_metrics(table, 0.0, False, 5, hold=horizon, sizing="score")
        assert figures_of_seed(table, backtest, horizon)["sharpe"] == expected["sharpe"]
    assert figures_of_seed(table, backtest, 1) != figures_of_seed(table, backtest, 4)


def test_seed_spread_lists_each_seed_and_the_sample_deviation_of_each_figure():
    per_seed = [
        {"skill": 0.1, "loss": 1.0, "accuracy": 0.5, "sharpe": 1.0},
        {"skill": 0.3, "loss": 1.2, "accuracy": 0.4, "sharpe": -1.0},
        {"skill": 0.2, "loss": 1.1, "accuracy": 0.6, "sharpe": 0.0},
    ]
    spread = seed_spread(per_seed, first_seed=7)  # tables without the parts: no part spread
    assert {key: spread.pop(key) for key in ("s7", "s8", "s9")} == dict(
        zip(("s7", "s8", "s9"), per_seed, strict=True)
    )
    assert spread == pytest.approx(
        {
            "count": 3,
            "skill_sd": 0.1,
            "loss_sd": 0.1,
            "accuracy_sd": 0.1,
            "sharpe_sd": 1.0,
            # The ensemble of the three: sd / sqrt(3).
            "skill_ensemble_sd": 0.1 / 3**0.5,
            "loss_ensemble_sd": 0.1 / 3**0.5,
            "accuracy_ensemble_sd": 0.1 / 3**0.5,
            "sharpe_ensemble_sd": 1.0 / 3**0.5,
        }
    )
