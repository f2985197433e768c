"""Feature formulas on hand-checkable inputs; causality is proven in test_causality.py."""

import numpy as np
import pandas as pd
import pytest

from finseq import features as features_module
from finseq.features import FEATURE_NAMES, WARMUP_BARS, StandardScaler, compute_features
from finseq.synthetic import synthetic_ohlcv


def frame_from(raw: pd.DataFrame) -> pd.DataFrame:
    """The shape load.load_series returns: timestamp index, lower-case float columns."""
    frame = raw.rename(columns=str.lower).set_index("date")
    return frame.astype(np.float64)


@pytest.fixture
def frame() -> pd.DataFrame:
    return frame_from(synthetic_ohlcv(300, seed=3))


def test_there_are_23_named_features_in_a_fixed_order(frame):
    features = compute_features(frame)
    assert len(FEATURE_NAMES) == 23
    assert list(features.columns) == list(FEATURE_NAMES)
    assert features.index.equals(frame.index)


def test_warmup_rows_are_nan_and_every_later_row_is_finite(frame):
    features = compute_features(frame).to_numpy()
    assert np.isnan(features[:WARMUP_BARS]).all()
    assert np.isfinite(features[WARMUP_BARS:]).all()


def test_returns_and_volatility_match_their_formulas(frame):
    features = compute_features(frame)
    log_close = np.log(frame["close"].to_numpy())
    t = 150
    assert features["ret_1"].iloc[t] == pytest.approx(log_close[t] - log_close[t - 1])
    assert features["ret_20"].iloc[t] == pytest.approx(log_close[t] - log_close[t - 20])
    one_bar = np.diff(log_close)[t - 20 : t]
    assert features["vol_20"].iloc[t] == pytest.approx(np.std(one_bar, ddof=1))
    assert features["range_hl"].iloc[t] == pytest.approx(
        np.log(frame["high"].iloc[t] / frame["low"].iloc[t])
    )
    assert features["gap"].iloc[t] == pytest.approx(
        np.log(frame["open"].iloc[t] / frame["close"].iloc[t - 1])
    )


def test_bounded_oscillators_stay_in_their_ranges(frame):
    features = compute_features(frame).iloc[WARMUP_BARS:]
    assert features["rsi_14"].between(-0.5, 0.5).all()
    assert features["stoch_k_14"].between(0, 1).all()
    assert (features["atr_14"] > 0).all()


def test_flat_prices_and_volume_give_neutral_values_not_inf():
    """A halted or illiquid series must not produce inf/NaN that would drop or poison rows."""
    index = pd.date_range("2001-01-01", periods=120, freq="B")
    flat = pd.DataFrame(
        {"open": 10.0, "high": 10.0, "low": 10.0, "close": 10.0, "volume": 0.0}, index=index
    )
    features = compute_features(flat).iloc[WARMUP_BARS:]
    assert np.isfinite(features.to_numpy()).all()
    assert (features["rsi_14"] == 0).all()
    assert (features["stoch_k_14"] == 0.5).all()
    assert (features["volume_z_20"] == 0).all()
    assert (features["bb_position_20"] == 0).all()


def test_scaler_centres_and_scales_its_training_rows_and_keeps_constant_columns_finite():
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.normal(5, 2, 500), np.full(500, 3.0)])
    scaler = StandardScaler.fit(train)
    scaled = scaler.transform(train)
    assert scaled.dtype == np.float32
    assert np.allclose(scaled[:, 0].mean(), 0, atol=1e-5)
    assert np.allclose(scaled[:, 0].std(), 1, atol=1e-4)
    assert (scaled[:, 1] == 0).all()
    assert scaler.std[1] == 1.0


def test_scaler_fit_in_blocks_and_parts_matches_the_whole_array(monkeypatch):
    monkeypatch.setattr(features_module, "SCALER_BLOCK_ROWS", 7)
    rng = np.random.default_rng(1)
    rows = rng.normal([100.0, -3.0, 0.0], [5.0, 0.01, 1e-3], size=(101, 3))
    parts = [rows[:0], rows[:40], rows[40:41], rows[41:]]
    scaler = StandardScaler.fit(iter(parts))
    assert np.allclose(scaler.mean, rows.mean(axis=0), rtol=1e-13, atol=0)
    assert np.allclose(scaler.std, rows.std(axis=0), rtol=1e-10, atol=0)
    whole = StandardScaler.fit(rows)
    assert np.allclose(whole.std, scaler.std, rtol=1e-12, atol=0)
    expected = ((rows - scaler.mean) / scaler.std).astype(np.float32)
    assert np.array_equal(scaler.transform(rows), expected)
    with pytest.raises(ValueError, match="zero rows"):
        StandardScaler.fit([rows[:0]])


def test_scaler_treats_a_constant_column_that_is_not_exact_in_binary_as_constant():
    # NumPy's std of this column is 2.8e-17, not 0: dividing by it would blow rounding up.
    rows = np.column_stack([np.full(70_001, 0.1), np.arange(70_001.0)])
    scaler = StandardScaler.fit(rows)
    assert scaler.std[0] == 1.0
    assert np.abs(scaler.transform(rows)[:, 0]).max() < 1e-12
