"""Feature formulas on hand-checkable inputs; causality is proven in test_causality.py."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from finseq import features as features_module
from finseq.features import (
    FEATURE_NAMES,
    WARMUP_BARS,
    StandardScaler,
    _safe_ratio,
    compute_features,
)
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
    assert (features["vol_ratio_10_60"] == 0).all()


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
    with pytest.raises(ValueError, match=r"^cannot fit a scaler on zero rows$"):
        StandardScaler.fit([rows[:0]])


def test_scaler_treats_a_constant_column_that_is_not_exact_in_binary_as_constant():
    # NumPy's std of this column is 2.8e-17, not 0: dividing by it would blow rounding up.
    rows = np.column_stack([np.full(70_001, 0.1), np.arange(70_001.0)])
    scaler = StandardScaler.fit(rows)
    assert scaler.std[0] == 1.0
    assert np.abs(scaler.transform(rows)[:, 0]).max() < 1e-12


def test_the_constant_tolerance_scales_with_a_large_mean():
    """A constant 123456.7 merged over blocks has a rounding std far above 1e-12 (yet far
    below 1e-12 of its mean): it is constant, and scales to rounding error, not noise / std."""
    rows = np.column_stack([np.full(70_001, 123456.7), np.arange(70_001.0)])
    scaler = StandardScaler.fit(rows)
    assert scaler.std[0] == 1.0
    assert np.abs(scaler.transform(rows)[:, 0]).max() < 1e-6


def test_safe_ratio_is_neutral_on_a_zero_denominator_silently_and_keeps_every_nan():
    top = np.array([1.0, 0.0, 6.0, np.nan, np.nan, 1.0])
    bottom = np.array([0.0, 0.0, 3.0, 0.0, 2.0, np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ratio = _safe_ratio(top, bottom, 0.5)
    np.testing.assert_array_equal(ratio, [0.5, 0.5, 2.0, np.nan, np.nan, np.nan])


def _awkward_series(n: int, seed: int) -> np.ndarray:
    """A random walk with what the kernels treat specially: NaN (leading and inside), inf,
    runs of one repeated value, a huge level and a zero stretch."""
    values = np.cumsum(np.random.default_rng(seed).normal(size=n)) + 50.0
    if n > 40:
        values[:3] = np.nan
        values[10] = np.nan
        values[15] = np.inf
        values[20:32] = values[20]
        values[33] = 1e12
        values[35:40] = 0.0
    return values


@pytest.mark.parametrize("n", [0, 1, 5, 59, 300])
def test_each_window_primitive_is_bit_for_bit_the_pandas_call_it_stands_for(n):
    """features.py calls pandas' kernels directly; this pins each call to the public API
    it replaces, NaN bit patterns included, so a pandas upgrade that changed either fails."""
    values = _awkward_series(n, seed=n)
    series = pd.Series(values)

    def same(ours: np.ndarray, theirs: pd.Series) -> None:
        assert ours.dtype == np.float64 and len(ours) == n
        np.testing.assert_array_equal(ours.view(np.int64), theirs.to_numpy().view(np.int64))

    for window in (3, 14, 20):
        same(features_module.rolling_mean(values, window), series.rolling(window, window).mean())
        same(features_module.rolling_std(values, window), series.rolling(window, window).std())
        same(
            features_module.rolling_std(values, window, ddof=0),
            series.rolling(window, window).std(ddof=0),
        )
        same(features_module.rolling_min(values, window), series.rolling(window, window).min())
        same(features_module.rolling_max(values, window), series.rolling(window, window).max())
    for span in (9, 12, 26):
        same(
            features_module._ema(values, span),
            series.ewm(span=span, adjust=False, min_periods=span).mean(),
        )
    same(
        features_module._wilder(values, 14),
        series.ewm(alpha=1 / 14, adjust=False, min_periods=14).mean(),
    )
    for bars in (1, 5, 60):
        same(features_module._difference(values, bars), series.diff(bars))
    same(features_module._previous(values), series.shift(1))


# Every formula of docs/pipeline.md, recomputed bar by bar in plain Python: no pandas rolling
# or ewm, so a wrong span, alpha, ddof or seed in features.py cannot be shared by the check.


def _ema_at(values: list[float], alpha: float, t: int) -> float:
    """y = x at the first finite value, then y = (1 - alpha) * y + alpha * x, up to bar t."""
    level = None
    for x in values[: t + 1]:
        if math.isnan(x):
            continue
        level = x if level is None else (1 - alpha) * level + alpha * x
    return level


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _std(values: list[float], ddof: int) -> float:
    centre = _mean(values)
    return math.sqrt(sum((x - centre) ** 2 for x in values) / (len(values) - ddof))


def _reference_features(frame: pd.DataFrame, t: int) -> dict[str, float]:
    c, o, h, lo, v = (frame[name].tolist() for name in ("close", "open", "high", "low", "volume"))
    r = [math.nan] + [math.log(c[i] / c[i - 1]) for i in range(1, len(c))]
    ref = {f"ret_{n}": math.log(c[t] / c[t - n]) for n in (1, 5, 10, 20, 60)}
    for n in (10, 20, 60):
        ref[f"vol_{n}"] = _std(r[t - n + 1 : t + 1], ddof=1)
    ref["vol_ratio_10_60"] = ref["vol_10"] / ref["vol_60"] - 1
    change = [math.nan] + [c[i] - c[i - 1] for i in range(1, len(c))]
    gains = [x if math.isnan(x) else max(x, 0.0) for x in change]
    losses = [x if math.isnan(x) else max(-x, 0.0) for x in change]
    g, loss = _ema_at(gains, 1 / 14, t), _ema_at(losses, 1 / 14, t)
    ref["rsi_14"] = g / (g + loss) - 0.5
    macd = [(_ema_at(c, 2 / 13, i) - _ema_at(c, 2 / 27, i)) / c[i] for i in range(len(c))]
    # EMA26 is defined from its 26th bar on: the signal line starts there.
    macd = [math.nan] * 25 + macd[25:]
    ref["macd"] = macd[t]
    ref["macd_signal"] = _ema_at(macd, 2 / 10, t)
    ref["macd_hist"] = ref["macd"] - ref["macd_signal"]
    last_20 = c[t - 19 : t + 1]
    band_sd = _std(last_20, ddof=0)
    ref["bb_position_20"] = (c[t] - _mean(last_20)) / (2 * band_sd)
    ref["bb_width_20"] = 4 * band_sd / _mean(last_20)
    true_range = [math.nan] + [
        max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])) for i in range(1, len(c))
    ]
    ref["atr_14"] = _ema_at(true_range, 1 / 14, t) / c[t]

    def stoch_k(i: int) -> float:
        lowest, highest = min(lo[i - 13 : i + 1]), max(h[i - 13 : i + 1])
        return (c[i] - lowest) / (highest - lowest)

    ref["stoch_k_14"] = stoch_k(t)
    ref["stoch_d_3"] = _mean([stoch_k(i) for i in (t - 2, t - 1, t)])
    log_volume = [math.log1p(x) for x in v]
    for n in (20, 60):
        last = log_volume[t - n + 1 : t + 1]
        ref[f"volume_z_{n}"] = (log_volume[t] - _mean(last)) / _std(last, ddof=1)
    ref["range_hl"] = math.log(h[t] / lo[t])
    ref["gap"] = math.log(o[t] / c[t - 1])
    ref["sma_ratio_50"] = c[t] / _mean(c[t - 49 : t + 1]) - 1
    return ref


@pytest.mark.parametrize("t", [WARMUP_BARS, 61, 137, 299])
def test_every_feature_equals_its_formula_recomputed_bar_by_bar(frame, t):
    features = compute_features(frame)
    reference = _reference_features(frame, t)
    assert set(reference) == set(FEATURE_NAMES)
    for name in FEATURE_NAMES:
        assert features[name].iloc[t] == pytest.approx(reference[name], rel=1e-9, abs=1e-12), name


def test_bollinger_bands_use_the_population_std_as_ta_lib_does():
    """Closes 1..20: SMA 10.5, population std sqrt(33.25), two of them above the mean at 20."""
    index = pd.date_range("2001-01-01", periods=80, freq="B")
    close = np.concatenate([np.full(60, 1.0), np.arange(1.0, 21.0)])
    frame = pd.DataFrame(
        {"open": close, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": 1e6},
        index=index,
    )
    last = compute_features(frame).iloc[-1]
    assert last["bb_position_20"] == pytest.approx(9.5 / (2 * math.sqrt(33.25)), rel=1e-12)
    assert last["bb_width_20"] == pytest.approx(4 * math.sqrt(33.25) / 10.5, rel=1e-12)
