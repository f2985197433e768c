"""Labels on hand-computed examples: barrier hits, vertical barrier, ties, the unlabelled end.

The examples enter each trade at close 1 with a barrier half-width of log 2, so the
upper barrier is a High of exactly 2 and the lower a Low of exactly 0.5: both are
exact in floating point, which lets "touching counts" be tested at the barrier itself.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import holdout_split

from finseq.features import WARMUP_BARS
from finseq.labels import (
    NO_TIE,
    TIE_DECIDED_BY_OPEN,
    TIE_UNDECIDED,
    UNKNOWN_LABEL,
    fixed_horizon_labels,
    label_outcome,
    make_labels,
    trailing_volatility,
    triple_barrier_outcome,
)
from finseq.panel import prepare_dataset
from finseq.params import LabelConfig, WindowConfig
from finseq.split import SPLIT_NAMES, TEST, purge_mask
from finseq.summary import data_summary
from finseq.synthetic import synthetic_ohlcv
from finseq.window_sets import make_window_sets

WIDTH = math.log(2.0)
NAN = float("nan")


def barrier_label(
    highs: list[float],
    lows: list[float],
    horizon: int,
    opens: list[float] | None = None,
    scale: float = 1.0,
) -> float:
    """Triple-barrier label of bar 0 (close 1, width log 2) followed by the given bars,
    which open at 1 (between the barriers) unless `opens` says otherwise; every price times
    `scale` (the label does not depend on the price level)."""
    high = scale * np.array([1.0, *highs])
    low = scale * np.array([1.0, *lows])
    close = scale * np.ones(len(high))
    open_ = scale * np.array([1.0, *(opens or [1.0] * len(highs))])
    width = np.full(len(high), NAN)
    width[0] = WIDTH
    return float(triple_barrier_outcome(open_, high, low, close, width, horizon)[0][0])


@pytest.mark.parametrize(
    ("highs", "lows", "expected"),
    [
        pytest.param([1.5, 2.5, 1.0], [0.9, 0.9, 0.9], 1.0, id="upper-hit-in-bar-2"),
        pytest.param([1.5, 2.0, 1.0], [0.9, 0.9, 0.9], 1.0, id="high-exactly-at-upper-counts"),
        pytest.param([1.5, 1.2, 1.1], [0.9, 0.4, 0.9], -1.0, id="lower-hit-in-bar-2"),
        pytest.param([1.5, 1.2, 1.1], [0.9, 0.5, 0.9], -1.0, id="low-exactly-at-lower-counts"),
        pytest.param([1.99, 1.5, 1.2], [0.51, 0.6, 0.7], 0.0, id="vertical-barrier"),
        pytest.param([2.5, 1.0, 1.0], [0.4, 1.0, 1.0], NAN, id="both-in-one-bar-is-undefined"),
        pytest.param([2.0, 1.0, 1.0], [0.5, 1.0, 1.0], NAN, id="both-exactly-is-undefined"),
        pytest.param([1.5, 2.5, 1.0], [0.9, 0.4, 1.0], NAN, id="both-in-a-later-bar-too"),
        pytest.param([2.5, 3.0, 1.0], [0.9, 0.1, 1.0], 1.0, id="first-touch-wins-over-later"),
        pytest.param([1.5, 3.0, 1.0], [0.5, 0.1, 1.0], -1.0, id="touch-then-tie-keeps-first"),
    ],
)
def test_triple_barrier_takes_the_first_barrier_a_bar_touches(highs, lows, expected):
    # At a price level of 100 too, but for the cases exactly at a barrier: log(200 / 100)
    # need not round to log 2, as log(2 / 1) does.
    exactly_at_a_barrier = 2.0 in highs or 0.5 in lows
    for scale in (1.0,) if exactly_at_a_barrier else (1.0, 100.0):
        label = barrier_label(highs, lows, horizon=3, scale=scale)
        assert label == expected or (math.isnan(expected) and math.isnan(label)), scale


@pytest.mark.parametrize(
    ("opening", "expected"),
    [
        pytest.param(2.2, 1.0, id="gap-up-beyond-the-upper-barrier-touches-it-first"),
        pytest.param(2.0, 1.0, id="open-exactly-at-the-upper-barrier"),
        pytest.param(0.45, -1.0, id="gap-down-beyond-the-lower-barrier"),
        pytest.param(0.5, -1.0, id="open-exactly-at-the-lower-barrier"),
        pytest.param(1.9, NAN, id="open-between-the-barriers-leaves-it-unknown"),
    ],
)
def test_when_one_bar_touches_both_barriers_its_open_decides_where_it_can(opening, expected):
    label = barrier_label([2.5, 1.0], [0.4, 1.0], horizon=2, opens=[opening, 1.0])
    assert label == expected or (math.isnan(expected) and math.isnan(label))


def test_a_zero_threshold_never_labels_a_volatile_bar_flat():
    """At threshold 0 nearly every next bar touches both barriers: a 0 may only ever come
    from the vertical barrier, never from a tie (it did: 78% of the S&P 500's labels)."""
    frame = synthetic_ohlcv(400, seed=11).rename(columns=str.lower).set_index("date")
    config = LabelConfig(method="triple_barrier", horizon=3, threshold=0.0, vol_window=10)
    labels, ties = label_outcome(frame, config)
    defined = ~np.isnan(labels)
    assert defined[WARMUP_BARS:-3].sum() > 100
    assert not (labels[defined] == 0).any()
    # Every tie the open could not decide is undefined, and every decided one follows the open.
    assert np.isnan(labels[ties == TIE_UNDECIDED]).all()
    entry, opening = frame["close"].to_numpy(), frame["open"].to_numpy()
    decided = np.flatnonzero(ties == TIE_DECIDED_BY_OPEN)
    assert len(decided) > 10
    for t in decided:
        first = next(
            t + k
            for k in range(1, 4)
            if frame["high"].iloc[t + k] >= entry[t] or frame["low"].iloc[t + k] <= entry[t]
        )
        assert labels[t] == np.sign(opening[first] - entry[t])


def test_triple_barrier_ignores_touches_after_the_horizon():
    assert barrier_label([1.5, 1.5, 3.0], [0.9, 0.9, 0.9], horizon=2) == 0.0
    assert barrier_label([1.5, 1.5, 3.0], [0.9, 0.9, 0.9], horizon=3) == 1.0


def fixed_label(closes_after: list[float], horizon: int) -> float:
    """Fixed-horizon label of bar 0 (close 1, width log 2) followed by the given closes."""
    close = np.array([1.0, *closes_after])
    width = np.full(len(close), NAN)
    width[0] = WIDTH
    return float(fixed_horizon_labels(close, width, horizon)[0])


@pytest.mark.parametrize(
    ("closes_after", "expected"),
    [
        pytest.param([1.0, 2.5], 1.0, id="up-beyond-width"),
        pytest.param([1.0, 0.4], -1.0, id="down-beyond-width"),
        pytest.param([1.0, 2.0], 0.0, id="exactly-at-upper-width-is-flat"),
        pytest.param([1.0, 0.5], 0.0, id="exactly-at-lower-width-is-flat"),
        pytest.param([3.0, 1.5], 0.0, id="path-before-the-horizon-is-ignored"),
        pytest.param([1.0, 1.0, 3.0], 0.0, id="bars-after-the-horizon-are-ignored"),
    ],
)
def test_fixed_horizon_needs_the_return_to_exceed_the_width_strictly(closes_after, expected):
    assert fixed_label(closes_after, horizon=2) == expected


def test_make_labels_sets_the_width_from_the_trailing_volatility_known_at_t():
    """vol_window 2, horizon 1: width_t = threshold * std(r_{t-1}, r_t) * 1, by hand."""
    close = np.array([100.0, 101.0, 100.0, 102.0, 100.5, 100.4])
    returns = np.diff(np.log(close))
    by_hand = [NAN, NAN] + [float(np.std(returns[t - 2 : t], ddof=1)) for t in range(2, 6)]
    np.testing.assert_allclose(trailing_volatility(close, 2), by_hand)

    frame = pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0},
        index=pd.bdate_range("2001-01-01", periods=len(close)),
    )
    config = LabelConfig(method="fixed_horizon", horizon=1, threshold=1.0, vol_window=2)
    # Bar 2 (close 100): vol = std(+0.995%, -0.995%) = 1.407%; next return +1.98% > it: up.
    # Bar 3 (close 102): vol = std(-0.995%, +1.98%) = 2.10%; next return -1.48%: flat.
    # Bar 4 (close 100.5): vol = std(+1.98%, -1.48%) = 2.45%; next return -0.10%: flat.
    labels = make_labels(frame, config)
    np.testing.assert_array_equal(labels, [NAN, NAN, 1.0, 0.0, 0.0, NAN])


@pytest.mark.parametrize("method", ["fixed_horizon", "triple_barrier"])
def test_the_last_horizon_bars_have_no_label_and_are_never_samples(method):
    frame = synthetic_ohlcv(200, seed=5).rename(columns=str.lower).set_index("date")
    label = LabelConfig(method=method, horizon=4, threshold=0.5, vol_window=10)
    labels, ties = label_outcome(frame, label)
    assert np.isnan(labels[-4:]).all()
    # Before the end, only a triple-barrier tie that the open cannot decide has no label.
    assert (np.isnan(labels[WARMUP_BARS:-4]) == (ties[WARMUP_BARS:-4] == TIE_UNDECIDED)).all()

    data = prepare_dataset({"one.csv": frame}, label, holdout_split(train=0.5, val=0.25, embargo=0))
    assert not data.samples[0][-4:].any()
    assert data.samples[0][-5]
    windows = make_window_sets(data, WindowConfig(seq_len=5, stride=1))
    assert windows.ends["holdout"]["test"].max() == len(data.labels) - 5
    assert set(np.unique(data.labels[data.samples[0]])) <= {-1, 0, 1, UNKNOWN_LABEL}


def test_data_summary_counts_each_parts_both_touch_bars(capsys):
    """metrics/data.json: per part, the bars (kept by the purge) whose first touching bar
    touched both barriers, decided by the open or not. Undecided ones are no train or val
    sample; test keeps them, labelled UNKNOWN_LABEL, for the backtest. A note names the
    file."""
    frame = synthetic_ohlcv(400, seed=11).rename(columns=str.lower).set_index("date")
    label = LabelConfig(method="triple_barrier", horizon=3, threshold=0.3, vol_window=10)
    split = holdout_split(train=0.5, val=0.25, embargo=1)
    data = prepare_dataset({"tied.csv": frame}, label, split)
    summary = data_summary(data)
    _, ties = label_outcome(frame, label)
    parts = data.parts[0]
    rows = slice(WARMUP_BARS, None)
    kept = purge_mask(parts, horizon=3, embargo=1) | (parts == TEST)
    for code, name in enumerate(SPLIT_NAMES):
        in_part = (parts == code) & kept
        expected = {
            "decided_by_open": int((in_part & (ties[rows] == TIE_DECIDED_BY_OPEN)).sum()),
            "undecided": int((in_part & (ties[rows] == TIE_UNDECIDED)).sum()),
        }
        assert summary[name]["both_touch"] == expected
        assert expected["undecided"] > 0
        undecided = in_part & (ties[rows] == TIE_UNDECIDED)
        if name == "test":
            # Kept for the backtest, with a label no classification metric counts.
            assert (data.samples[0] & undecided).sum() == expected["undecided"]
            assert (data.labels[undecided] == UNKNOWN_LABEL).all()
        else:
            assert not (data.samples[0] & undecided).any()
    assert "note: tied.csv:" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["fixed_horizon", "triple_barrier"])
def test_make_labels_runs_the_configured_method_with_the_width_scaled_by_sqrt_horizon(method):
    """make_labels = the method's own function at width threshold * vol * sqrt(horizon): a
    wrong method, or the width divided by sqrt(horizon), gives other labels on this series."""
    frame = synthetic_ohlcv(300, seed=9).rename(columns=str.lower).set_index("date")
    config = LabelConfig(method=method, horizon=4, threshold=0.7, vol_window=10)
    close = frame["close"].to_numpy()
    width = 0.7 * trailing_volatility(close, 10) * 2.0
    by_fixed = fixed_horizon_labels(close, width, 4)
    by_barrier = triple_barrier_outcome(
        *(frame[name].to_numpy() for name in ("open", "high", "low", "close")), width, 4
    )[0]
    expected = by_fixed if method == "fixed_horizon" else by_barrier
    np.testing.assert_array_equal(make_labels(frame, config), expected)
    # The two methods, and the two widths, disagree here: the check can tell them apart.
    assert not np.array_equal(by_fixed, by_barrier, equal_nan=True)
    narrower = fixed_horizon_labels(close, width / 4, 4)
    assert not np.array_equal(by_fixed, narrower, equal_nan=True)


@pytest.mark.parametrize("bars", [1, 2, 3])
def test_a_series_no_longer_than_the_horizon_has_no_label(bars):
    close = np.linspace(1.0, 2.0, bars)
    labels, ties = triple_barrier_outcome(close, close * 1.5, close / 1.5, close, np.zeros(bars), 3)
    assert np.isnan(labels).all() and (ties == NO_TIE).all()
