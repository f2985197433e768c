"""Series on different calendars: late starts, early ends and gaps are handled, said, and leak-free.

Every series is cut at the same calendar dates. A series that does not cover a
split gets a `note:` line and no rows there, never a crash; a split that no series
can fill with one window stops the window stage with a ConfigError.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import holdout_split, split_config

from finseq.errors import ConfigError, DataError
from finseq.features import WARMUP_BARS
from finseq.panel import prepare_dataset
from finseq.params import LabelConfig, WindowConfig
from finseq.split import SPLIT_NAMES, TEST, TRAIN, VAL
from finseq.synthetic import synthetic_ohlcv
from finseq.window_sets import make_window_sets

CALENDAR = pd.bdate_range("2000-01-03", periods=800)
LABEL = LabelConfig(method="triple_barrier", horizon=5, threshold=0.8, vol_window=20)
SPLIT = holdout_split(train=0.7, val=0.15, embargo=5)  # cuts at CALENDAR[560] and CALENDAR[680]
WINDOW = WindowConfig(seq_len=20, stride=1)


def frame_on(dates: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    """A generated series on the given dates, in the shape load.load_series returns."""
    raw = synthetic_ohlcv(len(dates), seed).rename(columns=str.lower)
    raw["date"] = dates
    return raw.set_index("date").rename_axis("timestamp").astype(np.float64)


def mixed_calendars() -> dict[str, pd.DataFrame]:
    """Listed so that under a window stage blind to series, two neighbours would merge:
    early_end ends in train where gappy starts, gappy ends in test where late_start starts.
    """
    gappy = CALENDAR.delete(np.r_[200:260, 550:580])  # the second gap straddles the val cut
    return {
        "full.csv": frame_on(CALENDAR, seed=1),
        "early_end.csv": frame_on(CALENDAR[:300], seed=2),
        "gappy.csv": frame_on(gappy, seed=3),
        "late_start.csv": frame_on(CALENDAR[640:], seed=4),
    }


@pytest.fixture
def prepared(capsys):
    data = prepare_dataset(mixed_calendars(), LABEL, SPLIT)
    windows = make_window_sets(data, WINDOW)
    return data, windows, capsys.readouterr().err


def test_uncovered_splits_are_noted_per_series_and_nothing_else_is(prepared):
    _, _, stderr = prepared
    # The synthetic bars are wide enough for triple-barrier ties (tested in test_labels.py).
    notes = sorted(
        line
        for line in stderr.splitlines()
        if line.startswith("note: ") and "triple-barrier labels" not in line
    )
    expected = [
        "note: series 'early_end' has no test bars: it does not cover that period",
        "note: series 'early_end' has no test windows of window.seq_len = 20",
        "note: series 'early_end' has no val bars: it does not cover that period",
        "note: series 'early_end' has no val windows of window.seq_len = 20",
        "note: series 'late_start' has no train bars: it does not cover that period",
        "note: series 'late_start' has no train windows of window.seq_len = 20",
        "note: series 'late_start' has no val bars: it does not cover that period",
        "note: series 'late_start' has no val windows of window.seq_len = 20",
    ]
    assert notes == expected
    assert "Traceback" not in stderr


def test_each_series_has_windows_exactly_in_the_splits_it_covers(prepared):
    data, windows, _ = prepared
    covered = {
        "full": {"train", "val", "test"},
        "early_end": {"train"},
        "gappy": {"train", "val", "test"},
        "late_start": {"test"},
    }
    for code, name in enumerate(data.meta["series_names"]):
        with_windows = {
            split
            for split in SPLIT_NAMES
            if (data.series[windows.ends["holdout"][split]] == code).any()
        }
        assert with_windows == covered[name]


def test_no_window_spans_two_series_or_two_splits(prepared):
    data, windows, _ = prepared
    offsets = np.arange(-WINDOW.seq_len + 1, 1)
    for split_code, split_name in enumerate(SPLIT_NAMES):
        ends = windows.ends["holdout"][split_name]
        rows = ends[:, None] + offsets
        assert (data.series[rows] == data.series[ends][:, None]).all()
        assert (data.parts[0][rows] == split_code).all()


def test_rows_are_split_by_calendar_date_whatever_the_series_covers(prepared):
    data, _, _ = prepared
    assert data.meta["folds"]["holdout"]["val_start"] == CALENDAR[560].isoformat()
    assert data.meta["folds"]["holdout"]["test_start"] == CALENDAR[680].isoformat()
    expected = np.where(
        data.timestamps < CALENDAR[560].to_datetime64(),
        TRAIN,
        np.where(data.timestamps < CALENDAR[680].to_datetime64(), VAL, TEST),
    )
    np.testing.assert_array_equal(data.parts[0], expected)


def last_sample(data, name: str, split_code: int) -> pd.Timestamp:
    code = data.meta["series_names"].index(name)
    rows = (data.series == code) & (data.parts[0] == split_code) & data.samples[0]
    return pd.Timestamp(data.timestamps[rows].max())


def test_purge_counts_bars_of_the_series_across_a_gap_at_the_cut(prepared):
    """gappy has no bars 550-579, so its last train bar is CALENDAR[549] and its first val
    bar CALENDAR[580]. A train sample needs horizon + embargo = 10 of its own bars after
    it inside train: the last one kept is CALENDAR[539], whose label ends at CALENDAR[544].
    """
    data, _, _ = prepared
    assert last_sample(data, "gappy", TRAIN) == CALENDAR[539]
    assert last_sample(data, "full", TRAIN) == CALENDAR[549]
    assert last_sample(data, "full", VAL) == CALENDAR[669]
    assert last_sample(data, "early_end", TRAIN) == CALENDAR[294]


def test_a_split_no_series_can_fill_with_one_window_is_a_config_error_naming_seq_len():
    frames = {"full.csv": frame_on(CALENDAR, seed=1)}
    narrow_val = holdout_split(train=0.7, val=0.03, embargo=5)  # val: CALENDAR[560:584]
    data = prepare_dataset(frames, LABEL, narrow_val)
    with pytest.raises(ConfigError) as raised:
        make_window_sets(data, WindowConfig(seq_len=30, stride=1))
    assert str(raised.value) == (
        "window.seq_len = 30 (window.stride = 1) leaves no val windows: the longest val stretch "
        "of any series has 24 rows after warm-up; lower window.seq_len or widen the split"
    )


def test_a_split_whose_every_sample_is_purged_names_horizon_embargo_and_vol_window():
    frames = {"full.csv": frame_on(CALENDAR, seed=1)}
    narrow_val = holdout_split(train=0.7, val=0.03, embargo=30)  # val: 24 rows < horizon + 30
    with pytest.raises(ConfigError) as raised:
        prepare_dataset(frames, LABEL, narrow_val)
    message = str(raised.value)
    assert message.startswith("no val samples are left of 24 val rows")
    assert f"label.horizon ({LABEL.horizon}) + split.embargo (30)" in message
    assert f"label.vol_window ({LABEL.vol_window})" in message


def test_walk_forward_messages_name_the_walk_forward_keys():
    """A fold with no training rows names split.val_share, not the holdout's split.train;
    a purge that empties a part names the keys that widen it; a stride that places no
    window names window.stride."""
    frames = {"full.csv": frame_on(CALENDAR, seed=1)}
    all_val = split_config(method="walk_forward", folds=2, oos_start=0.5, val_share=0.9)
    with pytest.raises(ConfigError) as raised:
        prepare_dataset(frames, LABEL, all_val)
    assert str(raised.value).endswith(
        "give it more history (split.oos_start or split.history) or a smaller split.val_share (0.9)"
    )
    purged = split_config(method="walk_forward", folds=2, oos_start=0.5, history=40, embargo=5)
    with pytest.raises(ConfigError) as raised:
        prepare_dataset(frames, LABEL, purged)
    assert str(raised.value).endswith(
        "lower those or widen the split (split.history, split.val_share, split.folds)"
    )
    data = prepare_dataset(frames, LABEL, split_config(method="walk_forward", folds=2))
    with pytest.raises(ConfigError) as raised:
        make_window_sets(data, WindowConfig(seq_len=20, stride=1000))
    assert str(raised.value).endswith(
        "after warm-up where window.stride places one; lower window.seq_len or window.stride, "
        "or raise split.oos_start"
    )


def test_a_split_of_flat_prices_names_its_undecided_labels_not_the_purge(capsys):
    """Flat prices give barriers of width 0 that every next bar touches both of: every
    label is undecided, and the message says so rather than blaming horizon and embargo."""
    flat = frame_on(CALENDAR, seed=1)
    flat[["open", "high", "low", "close"]] = 100.0
    with pytest.raises(ConfigError) as raised:
        prepare_dataset({"flat.csv": flat}, LABEL, holdout_split(train=0.7, val=0.15, embargo=5))
    rows = 560 - WARMUP_BARS  # the train cut at CALENDAR[560]
    assert str(raised.value) == (
        f"no train samples are left of {rows} train rows: {rows} of them "
        "have an undecided label (a bar touched both triple-barrier barriers): flat prices, "
        "or label.threshold too small"
    )
    assert "flat.csv: 100.0% of its triple-barrier labels are undecided" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_a_feature_that_is_not_finite_names_the_series_file_and_the_first_bad_bar():
    frames = {"full.csv": frame_on(CALENDAR, seed=1), "late.csv": frame_on(CALENDAR[100:], seed=2)}
    frames["late.csv"].loc[CALENDAR[400], "close"] = np.inf
    with pytest.raises(DataError) as raised:
        prepare_dataset(frames, LABEL, SPLIT)
    message = str(raised.value)
    assert message.startswith("late.csv: feature ")
    assert f"is not finite at {CALENDAR[400]}; " in message
    assert message.endswith(f"is the bar of {CALENDAR[400]} (Close inf); check that bar"), message


def test_a_class_no_training_sample_holds_is_noted(capsys):
    frames = {"full.csv": frame_on(CALENDAR, seed=1)}
    prepare_dataset(frames, LABEL, SPLIT)
    assert "the model cannot learn" not in capsys.readouterr().err
    wide = LabelConfig(method="triple_barrier", horizon=5, threshold=1e6, vol_window=20)
    prepare_dataset(frames, wide, SPLIT)
    assert (
        "note: no training sample of any fold is labelled -1, 1: the model cannot learn those "
        "classes; check label.threshold (1000000.0) against the returns' scale"
    ) in capsys.readouterr().err
