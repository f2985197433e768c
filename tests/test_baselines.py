"""finseq.baselines: the volatility baseline and the volatility regime, fit per fold on its
training windows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from finseq.baselines import (
    REGIME_FEATURE,
    VOLATILITY_FEATURES,
    fit_volatility_baseline,
    regime_cuts,
    regimes,
    volatility_p_flat,
)
from finseq.evaluate import table_metrics, volatility_baseline_table
from finseq.features import FEATURE_NAMES

NAMES = list(FEATURE_NAMES)


def volatile_rows(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of which only the volatility ones matter: the flat class is likelier when
    vol_20 is low. Returns (features, classes 0..2)."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, len(NAMES)))
    vol = features[:, NAMES.index("vol_20")]
    p_flat = 1 / (1 + np.exp(-(-0.5 - 1.5 * vol)))
    flat = rng.random(rows) < p_flat
    classes = np.where(flat, 1, np.where(rng.random(rows) < 0.5, 0, 2))
    return features, classes


def test_the_baseline_is_the_logistic_regression_of_flat_on_the_volatility_features():
    """The coefficients statsmodels' Logit finds on the same design, by Newton's method."""
    features, classes = volatile_rows(3000, 0)
    train = np.arange(0, 3000, 2)
    coefficients = fit_volatility_baseline(features, NAMES, train, classes[train])
    design = sm.add_constant(features[train][:, [NAMES.index(n) for n in VOLATILITY_FEATURES]])
    reference = sm.Logit((classes[train] == 1).astype(float), design).fit(disp=0).params
    np.testing.assert_allclose(coefficients, reference, rtol=1e-6, atol=1e-8)
    assert coefficients[1 + VOLATILITY_FEATURES.index("vol_20")] == pytest.approx(-1.5, abs=0.2)
    test = np.arange(1, 3000, 2)
    p_flat = volatility_p_flat(coefficients, features, NAMES, test)
    expected = 1 / (1 + np.exp(-(design_of(features, test) @ coefficients)))
    np.testing.assert_allclose(p_flat, expected, rtol=1e-12)


def design_of(features: np.ndarray, ends: np.ndarray) -> np.ndarray:
    columns = [NAMES.index(name) for name in VOLATILITY_FEATURES]
    return np.column_stack([np.ones(len(ends)), features[ends][:, columns]])


def test_the_baseline_reads_only_its_training_windows_and_volatility_features():
    """Changing a test window's features, or a non-volatility feature anywhere, changes
    nothing it fits."""
    features, classes = volatile_rows(2000, 1)
    train = np.arange(1500)
    fitted = fit_volatility_baseline(features, NAMES, train, classes[train])
    planted = features.copy()
    planted[1500:] += 10.0
    planted[:, NAMES.index("rsi_14")] = 0.0
    np.testing.assert_array_equal(
        fit_volatility_baseline(planted, NAMES, train, classes[train]), fitted
    )


def test_the_regime_terciles_are_cut_on_the_training_windows():
    """Training vol_20 values 1..9: cuts at 11/3 and 19/3; later windows of 0.5, 4, 7, 100
    fall low, mid, high, high whatever the test values' own terciles."""
    features = np.zeros((13, len(NAMES)))
    column = NAMES.index(REGIME_FEATURE)
    features[:9, column] = np.arange(1, 10)
    features[9:, column] = [0.5, 4.0, 7.0, 100.0]
    cuts = regime_cuts(features, NAMES, np.arange(9))
    np.testing.assert_allclose(cuts, [11 / 3, 19 / 3])
    assert regimes(cuts, features, NAMES, np.arange(9, 13)).tolist() == [
        "low",
        "mid",
        "high",
        "high",
    ]
    assert (
        regimes(cuts, features, NAMES, np.arange(9)).tolist()
        == ["low"] * 3 + ["mid"] * 3 + ["high"] * 3
    )


def test_the_baseline_table_splits_the_move_by_the_prior_and_so_knows_no_direction():
    """P(flat) 0.4 and a prior of 0.2 down / 0.3 flat / 0.5 up: P(up) = 0.6 x 5/7 and
    P(down) = 0.6 x 2/7. Its direction skill is 0 exactly; its move skill is that of 0.4."""
    table = pd.DataFrame(
        {
            "label": [1, -1, 0, 1],
            "p_down": 0.1,
            "p_flat": 0.1,
            "p_up": 0.8,
            "prior_p": [0.5, 0.2, 0.3, 0.5],
            "majority": 1,
            "prior_down": 0.2,
            "prior_flat": 0.3,
            "prior_up": 0.5,
            "volatility_p_flat": 0.4,
        }
    )
    baseline = volatility_baseline_table(table)
    np.testing.assert_allclose(baseline["p_up"], 0.6 * 5 / 7)
    np.testing.assert_allclose(baseline["p_down"], 0.6 * 2 / 7)
    figures = table_metrics(baseline)
    assert figures["direction_skill"] == pytest.approx(0.0, abs=1e-15)
    move = -(3 * np.log(0.6) + np.log(0.4)) / 4
    move_prior = -(3 * np.log(0.7) + np.log(0.3)) / 4
    assert figures["move_skill"] == pytest.approx(1 - move / move_prior)
