"""Nothing the model sees at bar t depends on a bar after t; nothing fit on train sees val or test.

Property tests over random OHLCV series: each draws a series, a bar t and a change
to some bars, then checks that what must not depend on those bars is bit-for-bit
unchanged. A centred rolling window, a label reading too far ahead or a scaler fit
on all rows makes one of them fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from conftest import holdout_split, split_config
from hypothesis import given, settings
from hypothesis import strategies as st

from finseq.features import WARMUP_BARS, compute_features
from finseq.labels import TIE_UNDECIDED, label_outcome, make_labels
from finseq.panel import prepare_dataset
from finseq.params import LabelConfig, WindowConfig
from finseq.split import TRAIN
from finseq.synthetic import synthetic_ohlcv
from finseq.window_sets import make_window_sets
from finseq.windows import gather_windows, window_ends, window_offsets

PRICES = ("open", "high", "low", "close")
COLUMNS = (*PRICES, "volume")
PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)


def frame_from(raw: pd.DataFrame) -> pd.DataFrame:
    """The shape load.load_series returns: timestamp index, lower-case float columns."""
    frame = raw.rename(columns=str.lower).set_index("date").rename_axis("timestamp")
    return frame.astype(np.float64)


@st.composite
def ohlcv_frames(draw, min_bars: int = 80, max_bars: int = 200, start: str = "2000-01-03"):
    """A generated series, sometimes with a flat stretch (a halt: one price, no volume)."""
    n_bars = draw(st.integers(min_bars, max_bars))
    raw = synthetic_ohlcv(
        n_bars,
        seed=draw(st.integers(0, 2**32 - 1)),
        start=start,
        volatility=draw(st.sampled_from([0.002, 0.01, 0.04])),
        drift=draw(st.sampled_from([0.0, 0.004])),
    )
    frame = frame_from(raw)
    if draw(st.booleans()):
        first = draw(st.integers(1, n_bars - 1))
        halted = frame.index[first : first + draw(st.integers(1, 30))]
        frame.loc[halted, list(PRICES)] = frame["close"].iloc[first - 1]
        frame.loc[halted, "volume"] = 0.0
    return frame


def changed_bars(
    frame: pd.DataFrame, rows: np.ndarray, columns: tuple[str, ...], seed: int
) -> pd.DataFrame:
    """`frame` with `columns` of the bars in `rows` (a boolean mask) moved at random.

    High only rises and Low only falls, and both are widened to cover Open and Close
    again, so every change shows and the result is still a frame load_series could
    return; no other bar is touched.
    """
    rng = np.random.default_rng(seed)
    changed = frame.copy()
    count = int(rows.sum())
    for column in columns:
        move = rng.normal(0.0, 0.05, count)
        move = {"high": np.abs(move), "low": -np.abs(move)}.get(column, move)
        factor = np.exp(move)
        extra = rng.integers(1, 1000, count) if column == "volume" else 0.0
        changed.loc[rows, column] = changed.loc[rows, column].to_numpy() * factor + extra
    if set(columns) & set(PRICES):
        body = changed.loc[rows, ["open", "close"]]
        changed.loc[rows, "high"] = np.maximum(changed.loc[rows, "high"], body.max(axis=1))
        changed.loc[rows, "low"] = np.minimum(changed.loc[rows, "low"], body.min(axis=1))
    return changed


@st.composite
def changes_after(draw, frame: pd.DataFrame, t: int) -> pd.DataFrame:
    """Either one price or volume of one bar after t, or every value of every bar after t."""
    positions = np.arange(len(frame))
    if draw(st.booleans()):
        rows = positions == draw(st.integers(t + 1, len(frame) - 1))
        columns = (draw(st.sampled_from(COLUMNS)),)
    else:
        rows, columns = positions > t, COLUMNS
    return changed_bars(frame, rows, columns, draw(st.integers(0, 2**32 - 1)))


@PROPERTY_SETTINGS
@given(data=st.data())
def test_changing_bars_after_t_changes_no_feature_at_or_before_t(data):
    frame = data.draw(ohlcv_frames())
    t = data.draw(st.integers(WARMUP_BARS - 5, len(frame) - 2))
    changed = data.draw(changes_after(frame, t))
    assert not changed.iloc[t + 1 :].equals(frame.iloc[t + 1 :])
    before = compute_features(frame).to_numpy()
    after = compute_features(changed).to_numpy()
    np.testing.assert_array_equal(after[: t + 1], before[: t + 1])


@PROPERTY_SETTINGS
@given(data=st.data())
def test_changing_bars_after_t_changes_no_window_ending_at_or_before_t(data):
    frame = data.draw(ohlcv_frames())
    t = data.draw(st.integers(WARMUP_BARS, len(frame) - 2))
    changed = data.draw(changes_after(frame, t))
    seq_len = data.draw(st.integers(1, 20))
    stride = data.draw(st.integers(1, 3))

    def windows_up_to_t(source: pd.DataFrame) -> torch.Tensor:
        features = torch.as_tensor(compute_features(source).to_numpy()[WARMUP_BARS:])
        rows = len(features)
        ends = window_ends(
            np.zeros(rows), np.zeros(rows), np.ones(rows, dtype=bool), seq_len, stride
        )
        ends = torch.as_tensor(ends[ends + WARMUP_BARS <= t])
        return gather_windows(features, ends, window_offsets(seq_len))

    assert torch.equal(windows_up_to_t(changed), windows_up_to_t(frame))


LABEL_METHODS = ("fixed_horizon", "triple_barrier")


@st.composite
def label_configs(draw) -> LabelConfig:
    return LabelConfig(
        method=draw(st.sampled_from(LABEL_METHODS)),
        horizon=draw(st.integers(1, 10)),
        threshold=draw(st.sampled_from([0.0, 0.5, 0.8, 2.0])),
        vol_window=draw(st.integers(2, 30)),
    )


@PROPERTY_SETTINGS
@given(data=st.data())
def test_changing_bars_after_t_plus_horizon_changes_no_label_at_t(data):
    frame = data.draw(ohlcv_frames())
    config = data.draw(label_configs())
    t = data.draw(st.integers(0, len(frame) - config.horizon - 2))
    changed = data.draw(changes_after(frame, t + config.horizon))
    before, after = make_labels(frame, config), make_labels(changed, config)
    np.testing.assert_array_equal(after[: t + 1], before[: t + 1])


@PROPERTY_SETTINGS
@given(data=st.data())
def test_a_label_reads_only_its_horizon_and_the_closes_behind_its_volatility(data):
    """Label at t: High/Low/Close of bars t+1..t+horizon (and their Open, which decides a
    bar that touches both barriers), and Close of bars t-vol_window..t.

    So Volume of every bar, Open of the bars outside t+1..t+horizon (kept inside their
    High-Low range), High and Low up to t, and every value of the bars before
    t - vol_window can change without changing it.
    """
    frame = data.draw(ohlcv_frames())
    config = data.draw(label_configs())
    t = data.draw(st.integers(0, len(frame) - 1))
    positions = np.arange(len(frame))
    seed = data.draw(st.integers(0, 2**32 - 1))
    changed = changed_bars(frame, positions >= 0, ("volume",), seed)
    inside = np.random.default_rng(seed).random(len(frame))
    outside_horizon = (positions <= t) | (positions > t + config.horizon)
    changed["open"] = changed["open"].where(
        ~outside_horizon, changed["low"] + inside * (changed["high"] - changed["low"])
    )
    changed = changed_bars(changed, positions <= t, ("high", "low"), seed + 1)
    changed = changed_bars(changed, positions < t - config.vol_window, COLUMNS, seed + 2)
    before, after = make_labels(frame, config), make_labels(changed, config)
    np.testing.assert_array_equal(after[t], before[t])


@PROPERTY_SETTINGS
@given(frame=ohlcv_frames(), config=label_configs())
def test_labels_are_nan_where_the_horizon_or_the_volatility_is_missing(frame, config):
    labels, ties = label_outcome(frame, config)
    assert np.isnan(labels[-config.horizon :]).all()
    assert np.isnan(labels[: config.vol_window]).all()
    # In between every label is defined, but for a triple-barrier tie the open cannot decide.
    between = slice(config.vol_window, len(frame) - config.horizon)
    assert (np.isnan(labels[between]) == (ties[between] == TIE_UNDECIDED)).all()
    assert set(np.unique(labels[~np.isnan(labels)])) <= {-1.0, 0.0, 1.0}


SMALL_LABEL = LabelConfig(method="triple_barrier", horizon=5, threshold=0.8, vol_window=20)
# Both ways of cutting: every fold's scaler and windows must ignore what lies past its cut.
SMALL_SPLITS = {
    "holdout": holdout_split(train=0.6, val=0.2, embargo=3),
    "walk_forward": split_config(oos_start=0.6, folds=2, val_share=0.2, embargo=3),
}


@st.composite
def panels(draw) -> dict[str, pd.DataFrame]:
    """Two or three series whose calendars start up to 40 business days apart."""
    frames = {}
    for index in range(draw(st.integers(2, 3))):
        start = pd.Timestamp("2000-01-03") + pd.offsets.BDay(draw(st.integers(0, 40)))
        frame = draw(ohlcv_frames(min_bars=200, max_bars=300, start=start.isoformat()))
        frames[f"series_{index}.csv"] = frame
    return frames


def fold_val_starts(prepared) -> dict[str, pd.Timestamp]:
    """Each fold's validation cut: the first bar its scaler must not see."""
    return {
        fold: pd.Timestamp(prepared.meta["folds"][fold]["val_start"])
        for fold in prepared.fold_names
    }


@PROPERTY_SETTINGS
@given(data=st.data(), method=st.sampled_from(list(SMALL_SPLITS)))
def test_changing_bars_after_a_val_or_test_time_changes_no_prepared_window_before_it(data, method):
    """The whole prepare → window path, scaler included, over several series at once.

    For every fold whose val cut is at or before the changed time, the train-only scaler is
    the same before and after the change; every window ending at or before that time (whose
    label, if it is a train or val window, reads no bar after it), scaled as the fold scales
    it, must be bit-for-bit equal.
    """
    split = SMALL_SPLITS[method]
    frames = data.draw(panels())
    stamps = np.unique(np.concatenate([frame.index.to_numpy() for frame in frames.values()]))
    val_starts = fold_val_starts(prepare_dataset(frames, SMALL_LABEL, split))
    earliest = min(val_starts.values())
    cut = pd.Timestamp(data.draw(st.sampled_from(list(stamps[stamps >= earliest][:-1]))))
    seed = data.draw(st.integers(0, 2**32 - 1))
    changed = {
        path: changed_bars(frame, frame.index > cut, COLUMNS, seed + index)
        for index, (path, frame) in enumerate(frames.items())
    }
    window_config = WindowConfig(seq_len=data.draw(st.integers(1, 20)), stride=1)

    def windows_up_to_cut(source: dict[str, pd.DataFrame], fold: str) -> torch.Tensor:
        prepared = prepare_dataset(source, SMALL_LABEL, split)
        parts = make_window_sets(prepared, window_config).ends[fold]
        ends = np.concatenate(list(parts.values()))
        # A train or val window is a sample only if its label is decided (an undecided
        # triple-barrier tie is not), which its own part's later bars decide; so one whose
        # label reads bars after the cut may come or go. Test windows never depend on them.
        reach = np.minimum(ends + SMALL_LABEL.horizon, len(prepared.timestamps) - 1)
        decided = (prepared.timestamps[reach] <= cut.to_datetime64()) | np.isin(
            ends, parts.get("test", [])
        )
        ends = torch.as_tensor(ends[(prepared.timestamps[ends] <= cut.to_datetime64()) & decided])
        features = torch.as_tensor(prepared.scaled_features(fold))
        return gather_windows(features, ends, window_offsets(window_config.seq_len))

    checked = [fold for fold, start in val_starts.items() if start <= cut]
    assert checked
    for fold in checked:
        assert torch.equal(windows_up_to_cut(changed, fold), windows_up_to_cut(frames, fold))


@PROPERTY_SETTINGS
@given(data=st.data(), method=st.sampled_from(list(SMALL_SPLITS)))
def test_scaler_statistics_ignore_every_val_and_test_bar(data, method):
    """Each fold's scaler, changed bars from its own val cut on: the statistics stay put."""
    split = SMALL_SPLITS[method]
    frames = data.draw(panels())
    before = prepare_dataset(frames, SMALL_LABEL, split)
    fold = data.draw(st.sampled_from(before.fold_names))
    val_start = fold_val_starts(before)[fold]
    seed = data.draw(st.integers(0, 2**32 - 1))
    changed = {
        path: changed_bars(frame, frame.index >= val_start, COLUMNS, seed + index)
        for index, (path, frame) in enumerate(frames.items())
    }
    after = prepare_dataset(changed, SMALL_LABEL, split)
    held_out = before.parts[before.fold_index(fold)] != TRAIN
    assert not np.array_equal(after.features[held_out], before.features[held_out])
    for key in ("scaler_mean", "scaler_std"):
        assert after.meta["folds"][fold][key] == before.meta["folds"][fold][key]
