"""Block-bootstrap intervals: they cover known true values, reproduce, and refuse too few dates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from finseq.errors import ConfigError
from finseq.evidence import block_length, daily_totals, intervals, verdict

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
    totals = daily_totals(uninformed_panel(0), 0.0, False, 5)
    first = intervals(totals, horizon=5, resamples=200, seed=7)
    assert first == intervals(totals, horizon=5, resamples=200, seed=7)
    assert first != intervals(totals, horizon=5, resamples=200, seed=8)
    for name in ("skill", "accuracy_gain", "balanced_accuracy", "sharpe", "annual_return"):
        assert first[f"{name}_low"] <= first[name] <= first[f"{name}_high"], name
    assert first["bootstrap_block"] >= 5
    assert 0 < first["skill_p"] <= 1


def test_the_block_is_never_shorter_than_the_label_horizon():
    totals = daily_totals(uninformed_panel(1), 0.0, False, 0)
    assert intervals(totals, horizon=40, resamples=100, seed=0)["bootstrap_block"] >= 40


def test_too_few_out_of_sample_dates_for_a_bootstrap_is_a_config_error():
    few = uninformed_panel(2).iloc[: 2 * 20]
    totals = daily_totals(few, 0.0, False, 5)
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
        totals = daily_totals(uninformed_panel(seed), 0.0, False, 0)
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
    known_block = block_length(daily_totals(panel[~unknown], 0.0, False, 0), horizon=1)
    blanked_block = block_length(daily_totals(blanked, 0.0, False, 0), horizon=1)
    strategy_only = block_length(
        dataclasses.replace(daily_totals(panel, 0.0, False, 0), loss=np.zeros(N_DATES)),
        horizon=1,
    )
    assert known_block > strategy_only
    assert abs(blanked_block - known_block) <= 1
