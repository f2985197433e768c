"""The calendar split: no window crosses a series or split, no label reaches the next split.

Property tests draw panels of series on different calendars (late starts, early
ends, gaps, a seven-day calendar beside business days) and check, across all
series, the rules that keep validation and test free of anything training saw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from finseq.dataset import PreparedData, WindowSets, make_window_sets, prepare_dataset
from finseq.errors import ConfigError
from finseq.params import LabelConfig, SplitConfig, WindowConfig
from finseq.split import SPLIT_NAMES, TEST, TRAIN, VAL, assign_split, cut_dates, purge_mask
from finseq.synthetic import synthetic_ohlcv

CALENDAR = pd.bdate_range("2000-01-03", periods=700)


def frame_on(dates: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    """A generated series on the given dates, in the shape load.load_series returns."""
    raw = synthetic_ohlcv(len(dates), seed).rename(columns=str.lower)
    raw["date"] = dates
    return raw.set_index("date").rename_axis("timestamp").astype(np.float64)


@st.composite
def calendar_panels(draw) -> dict[str, pd.DataFrame]:
    """One series over the whole calendar, beside 1-3 that start late, end early or have gaps."""
    frames = {"full.csv": frame_on(CALENDAR, seed=draw(st.integers(0, 10_000)))}
    for index in range(draw(st.integers(1, 3))):
        length = draw(st.integers(160, 400))
        first = draw(st.integers(0, len(CALENDAR) - length))
        if draw(st.booleans()):
            dates = CALENDAR[first : first + length]
        else:
            dates = pd.date_range(CALENDAR[first], periods=length, freq="D")
        gap = draw(st.integers(0, 40))
        gap_start = draw(st.integers(1, length - gap - 1))
        dates = dates.delete(slice(gap_start, gap_start + gap))
        frames[f"other_{index}.csv"] = frame_on(dates, seed=draw(st.integers(0, 10_000)))
    return frames


@st.composite
def pipeline_configs(draw) -> tuple[LabelConfig, SplitConfig, WindowConfig]:
    label = LabelConfig(
        method=draw(st.sampled_from(["fixed_horizon", "triple_barrier"])),
        horizon=draw(st.integers(1, 8)),
        threshold=0.5,
        vol_window=draw(st.integers(2, 20)),
    )
    split = SplitConfig(
        train=draw(st.sampled_from([0.5, 0.6, 0.7])),
        val=draw(st.sampled_from([0.15, 0.2])),
        embargo=draw(st.integers(0, 6)),
    )
    window = WindowConfig(seq_len=draw(st.integers(1, 20)), stride=draw(st.integers(1, 3)))
    return label, split, window


def prepared_panel(frames, label, split, window) -> tuple[PreparedData, WindowSets]:
    data = prepare_dataset(frames, label, split)
    return data, make_window_sets(data, window)


def series_positions(data: PreparedData, frames: dict[str, pd.DataFrame]) -> np.ndarray:
    """Each prepared row's bar position in its own raw series (warm-up rows included)."""
    positions = np.empty(len(data.series), dtype=np.int64)
    for code, frame in enumerate(frames.values()):
        rows = data.series == code
        positions[rows] = frame.index.get_indexer(pd.DatetimeIndex(data.timestamps[rows]))
    return positions


PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)

# Always tried first: neighbours that share a split where one series ends and the next
# begins (early ends in train where full starts; full ends in test where late starts).
NEIGHBOURS_IN_ONE_SPLIT = {
    "early.csv": frame_on(CALENDAR[:250], seed=0),
    "full.csv": frame_on(CALENDAR, seed=1),
    "late.csv": frame_on(CALENDAR[600:], seed=2),
}
DEFAULT_CONFIGS = (
    LabelConfig(method="triple_barrier", horizon=5, threshold=0.8, vol_window=20),
    SplitConfig(train=0.7, val=0.15, embargo=5),
    WindowConfig(seq_len=20, stride=1),
)
on_neighbours_in_one_split = example(frames=NEIGHBOURS_IN_ONE_SPLIT, configs=DEFAULT_CONFIGS)


@PROPERTY_SETTINGS
@given(frames=calendar_panels(), configs=pipeline_configs())
@on_neighbours_in_one_split
def test_every_window_lies_inside_one_series_and_one_split(frames, configs):
    data, windows = prepared_panel(frames, *configs)
    offsets = np.arange(-windows.seq_len + 1, 1)
    for split_code, split_name in enumerate(SPLIT_NAMES):
        ends = windows.ends[split_name]
        rows = ends[:, None] + offsets
        assert (rows >= 0).all()
        assert (data.series[rows] == data.series[ends][:, None]).all()
        assert (data.split[rows] == split_code).all()
        assert (np.diff(data.timestamps[rows], axis=1) > np.timedelta64(0)).all()
        assert data.is_sample[ends].all()


@PROPERTY_SETTINGS
@given(frames=calendar_panels(), configs=pipeline_configs())
@on_neighbours_in_one_split
def test_every_series_is_cut_at_the_same_calendar_dates(frames, configs):
    """One series' test period can never overlap another series' training period."""
    data, _ = prepared_panel(frames, *configs)
    val_start = np.datetime64(data.meta["val_start"])
    test_start = np.datetime64(data.meta["test_start"])
    expected = (data.timestamps >= val_start).astype(np.int8) + (data.timestamps >= test_start)
    np.testing.assert_array_equal(data.split, expected)
    assert data.timestamps[data.split == TRAIN].max() < data.timestamps[data.split == VAL].min()
    assert data.timestamps[data.split == VAL].max() < data.timestamps[data.split == TEST].min()


@PROPERTY_SETTINGS
@given(frames=calendar_panels(), configs=pipeline_configs())
@on_neighbours_in_one_split
def test_no_sample_label_or_embargo_reaches_into_the_next_split_of_any_series(frames, configs):
    """AFML purge + embargo, checked with the raw bars of each series.

    For a train (val) sample at bar p of its series, bars p .. p + horizon + embargo
    that exist must all come before the first validation (test) bar of every series,
    which is the shared cut date. Test samples have no later split to protect.
    """
    label, split, window = configs
    data, _ = prepared_panel(frames, label, split, window)
    positions = series_positions(data, frames)
    reach = label.horizon + split.embargo
    next_cut = {
        TRAIN: np.datetime64(data.meta["val_start"]),
        VAL: np.datetime64(data.meta["test_start"]),
    }
    first_bar_after = {
        code: min(
            frame.index[frame.index >= cut][0]
            for frame in frames.values()
            if (frame.index >= cut).any()
        )
        for code, cut in next_cut.items()
    }
    assert first_bar_after == {code: pd.Timestamp(cut) for code, cut in next_cut.items()}
    for code, frame in enumerate(frames.values()):
        stamps = frame.index.to_numpy()
        for split_code, cut in next_cut.items():
            samples = (data.series == code) & (data.split == split_code) & data.is_sample
            label_end = positions[samples] + label.horizon
            assert (label_end < len(stamps)).all()
            assert (stamps[label_end] < cut).all()
            assert (stamps[np.minimum(positions[samples] + reach, len(stamps) - 1)] < cut).all()


def test_purge_keeps_a_sample_only_if_its_horizon_and_embargo_stay_in_its_split():
    split = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    keep = purge_mask(split, horizon=2, embargo=1)
    # Train bars 3..5 reach bar 6 (val) within 3 bars; val bars 7..9 reach bar 10 (test).
    assert keep.tolist() == [1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1]


def test_purge_does_not_drop_bars_whose_reach_runs_past_the_series_end():
    """No later bar exists, so nothing can leak; the label mask removes undefined labels."""
    split = np.array([0, 0, 0, 0])
    assert purge_mask(split, horizon=3, embargo=5).all()


def test_cut_dates_fall_at_the_split_fractions_of_all_distinct_timestamps():
    early = np.array(["2001-01-01", "2001-01-02", "2001-01-03"], dtype="datetime64[ns]")
    late = np.array(["2001-01-03", "2001-01-04", "2001-01-05"], dtype="datetime64[ns]")
    cuts = cut_dates([early, late], SplitConfig(train=0.6, val=0.2, embargo=0))
    # 5 distinct dates: train = first floor(0.6 * 5) = 3, val = the next one.
    assert cuts.val_start == np.datetime64("2001-01-04")
    assert cuts.test_start == np.datetime64("2001-01-05")
    assert assign_split(late, cuts).tolist() == [TRAIN, VAL, TEST]


def test_split_fractions_that_leave_a_split_empty_are_a_config_error():
    stamps = np.array(["2001-01-01", "2001-01-02", "2001-01-03"], dtype="datetime64[ns]")
    with pytest.raises(ConfigError, match="leave a split empty"):
        cut_dates([stamps], SplitConfig(train=0.5, val=0.1, embargo=0))
