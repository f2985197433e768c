"""What volatility alone knows: the `volatility` baseline and the volatility regime of a window.

Both are fit per fold on that fold's training windows only, from the features at each
window's last bar, and applied to its test windows.

- The volatility baseline is a logistic regression (statsmodels' GLM, binomial family, fit
  by IRLS) of "flat" on the volatility features below. It gives P(flat) from volatility and
  splits the rest by the fold's prior share of up among up and down
  (evaluate.volatility_baseline_table), so its direction skill is 0 by construction and its
  move skill is the part of "will the price move" that volatility explains. A model whose
  move skill is no higher has learnt no more than this.
- The regime is low / mid / high trailing volatility (`vol_20`, the 20-bar standard deviation
  of one-bar log returns), cut at the terciles of the fold's training windows.
"""

from __future__ import annotations

import numpy as np
import statsmodels.api as sm

from finseq.evaluate import FLAT

VOLATILITY_FEATURES = ("vol_10", "vol_20", "vol_60", "atr_14", "range_hl", "bb_width_20")
REGIME_FEATURE = "vol_20"
REGIMES = ("low", "mid", "high")


def _columns(feature_names: list[str], wanted: tuple[str, ...]) -> list[int]:
    return [feature_names.index(name) for name in wanted]


def fit_volatility_baseline(
    scaled_features: np.ndarray,
    feature_names: list[str],
    train_ends: np.ndarray,
    train_classes: np.ndarray,
) -> np.ndarray:
    """Coefficients (intercept first) of P(flat) on the volatility features of the training
    windows' last bars; the features scaled with the fold's own scaler."""
    columns = _columns(feature_names, VOLATILITY_FEATURES)
    design = sm.add_constant(scaled_features[train_ends][:, columns].astype(np.float64))
    flat = (train_classes == FLAT).astype(np.float64)
    return np.asarray(sm.GLM(flat, design, family=sm.families.Binomial()).fit().params)


def volatility_p_flat(
    coefficients: np.ndarray,
    scaled_features: np.ndarray,
    feature_names: list[str],
    ends: np.ndarray,
) -> np.ndarray:
    """The baseline's P(flat) of the windows ending at `ends`."""
    columns = _columns(feature_names, VOLATILITY_FEATURES)
    design = scaled_features[ends][:, columns].astype(np.float64)
    linear = coefficients[0] + design @ coefficients[1:]
    return 1.0 / (1.0 + np.exp(-linear))


def regime_cuts(features: np.ndarray, feature_names: list[str], train_ends: np.ndarray):
    """The terciles of trailing volatility over the training windows' last bars."""
    volatility = features[train_ends, feature_names.index(REGIME_FEATURE)]
    return np.quantile(volatility, [1 / 3, 2 / 3])


def regimes(
    cuts: np.ndarray, features: np.ndarray, feature_names: list[str], ends: np.ndarray
) -> np.ndarray:
    """low / mid / high of the windows ending at `ends`, by the training terciles `cuts`."""
    volatility = features[ends, feature_names.index(REGIME_FEATURE)]
    return np.asarray(REGIMES, dtype=object)[np.searchsorted(cuts, volatility, side="right")]
