"""The calendar split: no window crosses a series or split, no label reaches the next split.

Property tests draw panels of series on different calendars (late starts, early
ends, gaps, a seven-day calendar beside business days) and check, across all
series, the rules that keep validation and test free of anything training saw.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from conftest import holdout_split, split_config
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from finseq.artifacts import PreparedData, WindowSets
from finseq.errors import ConfigError
from finseq.panel import prepare_dataset
from finseq.params import LabelConfig, SplitConfig, WindowConfig
from finseq.split import (
    OUTSIDE,
    SPLIT_NAMES,
    TEST,
    TRAIN,
    VAL,
    Fold,
    assign_parts,
    bar_length,
    distinct_timestamps,
    fold_plan,
    holdout_fold,
    purge_mask,
    sample_mask,
)
from finseq.synthetic import synthetic_ohlcv
from finseq.window_sets import make_window_sets

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
def split_configs(draw) -> SplitConfig:
    """Holdout, or walk-forward with expanding or rolling history and 1-5 folds."""
    embargo = draw(st.integers(0, 6))
    if draw(st.booleans()):
        return split_config(
            method="holdout",
            train=draw(st.sampled_from([0.5, 0.6, 0.7])),
            val=draw(st.sampled_from([0.15, 0.2])),
            embargo=embargo,
        )
    return split_config(
        method="walk_forward",
        oos_start=draw(st.sampled_from([0.4, 0.5, 0.6])),
        folds=draw(st.integers(1, 5)),
        history=draw(st.sampled_from(["expanding", 250, 400])),
        val_share=draw(st.sampled_from([0.15, 0.25])),
        embargo=embargo,
    )


@st.composite
def pipeline_configs(draw) -> tuple[LabelConfig, SplitConfig, WindowConfig]:
    label = LabelConfig(
        method=draw(st.sampled_from(["fixed_horizon", "triple_barrier"])),
        horizon=draw(st.integers(1, 8)),
        threshold=0.5,
        vol_window=draw(st.integers(2, 20)),
    )
    window = WindowConfig(seq_len=draw(st.integers(1, 20)), stride=draw(st.integers(1, 3)))
    return label, draw(split_configs()), window


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


def fold_dates(data: PreparedData, fold: str) -> dict[str, np.datetime64 | None]:
    return {
        key: None if value is None else np.datetime64(value)
        for key, value in data.meta["folds"][fold].items()
        if not key.startswith("scaler")
    }


PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)

# Always tried first: neighbours that share a split where one series ends and the next
# begins (early ends in train where full starts; full ends in test where late starts).
NEIGHBOURS_IN_ONE_SPLIT = {
    "early.csv": frame_on(CALENDAR[:250], seed=0),
    "full.csv": frame_on(CALENDAR, seed=1),
    "late.csv": frame_on(CALENDAR[600:], seed=2),
}
DEFAULT_LABEL = LabelConfig(method="triple_barrier", horizon=5, threshold=0.8, vol_window=20)
DEFAULT_WINDOW = WindowConfig(seq_len=20, stride=1)
on_neighbours_in_one_split = example(
    frames=NEIGHBOURS_IN_ONE_SPLIT,
    configs=(DEFAULT_LABEL, holdout_split(train=0.7, val=0.15, embargo=5), DEFAULT_WINDOW),
)
on_neighbours_walking_forward = example(
    frames=NEIGHBOURS_IN_ONE_SPLIT,
    configs=(DEFAULT_LABEL, split_config(oos_start=0.4, folds=4), DEFAULT_WINDOW),
)


@PROPERTY_SETTINGS
@given(frames=calendar_panels(), configs=pipeline_configs())
@on_neighbours_in_one_split
@on_neighbours_walking_forward
def test_every_window_lies_inside_one_series_and_ends_on_a_sample_of_its_part(frames, configs):
    """Holdout windows also lie inside one part; walk-forward windows may reach back across
    a cut, into the past."""
    data, windows = prepared_panel(frames, *configs)
    offsets = np.arange(-windows.seq_len + 1, 1)
    for fold in data.fold_names:
        parts, samples = data.parts[data.fold_index(fold)], data.samples[data.fold_index(fold)]
        for split_name, ends in windows.ends[fold].items():
            split_code = SPLIT_NAMES.index(split_name)
            rows = ends[:, None] + offsets
            assert (rows >= 0).all()
            assert (data.series[rows] == data.series[ends][:, None]).all()
            assert (np.diff(data.timestamps[rows], axis=1) > np.timedelta64(0)).all()
            assert (parts[ends] == split_code).all()
            assert samples[ends].all()
            if data.meta["split_method"] == "holdout":
                assert (parts[rows] == split_code).all()


@PROPERTY_SETTINGS
@given(frames=calendar_panels(), configs=pipeline_configs())
@on_neighbours_in_one_split
@on_neighbours_walking_forward
def test_every_series_is_cut_at_the_same_calendar_dates(frames, configs):
    """In every fold, one series' test period can never overlap another series' training."""
    data, _ = prepared_panel(frames, *configs)
    for fold in data.fold_names:
        dates = fold_dates(data, fold)
        stamps = data.timestamps
        expected = np.full(len(stamps), TRAIN, dtype=np.int8)
        expected[stamps >= dates["val_start"]] = VAL
        if dates["test_start"] is not None:
            expected[stamps >= dates["test_start"]] = TEST
        if dates["train_start"] is not None:
            expected[stamps < dates["train_start"]] = OUTSIDE
        if dates["test_end"] is not None:
            expected[stamps >= dates["test_end"]] = OUTSIDE
        parts = data.parts[data.fold_index(fold)]
        np.testing.assert_array_equal(parts, expected)
        assert stamps[parts == TRAIN].max() < stamps[parts == VAL].min()
        if (parts == TEST).any():
            assert stamps[parts == VAL].max() < stamps[parts == TEST].min()


@PROPERTY_SETTINGS
@given(frames=calendar_panels(), configs=pipeline_configs())
@on_neighbours_in_one_split
@on_neighbours_walking_forward
def test_no_sample_label_or_embargo_reaches_into_the_next_part_of_any_series(frames, configs):
    """AFML purge + embargo at every cut of every fold, checked with the raw bars of each series.

    For a train (val) sample at bar p of its series, bars p .. p + horizon + embargo
    that exist must all come before the fold's val (test) cut, which is the first
    validation (test) bar of every series. Test samples have no later part to protect.
    """
    label, split, window = configs
    data, _ = prepared_panel(frames, label, split, window)
    positions = series_positions(data, frames)
    reach = label.horizon + split.embargo
    for fold in data.fold_names:
        dates = fold_dates(data, fold)
        next_cut = {TRAIN: dates["val_start"], VAL: dates["test_start"]}
        if next_cut[VAL] is None:
            del next_cut[VAL]
        first_bar_after = {
            code: min(
                frame.index[frame.index >= cut][0]
                for frame in frames.values()
                if (frame.index >= cut).any()
            )
            for code, cut in next_cut.items()
        }
        assert first_bar_after == {code: pd.Timestamp(cut) for code, cut in next_cut.items()}
        parts, samples = data.parts[data.fold_index(fold)], data.samples[data.fold_index(fold)]
        for code, frame in enumerate(frames.values()):
            stamps = frame.index.to_numpy()
            for split_code, cut in next_cut.items():
                kept = (data.series == code) & (parts == split_code) & samples
                label_end = positions[kept] + label.horizon
                assert (label_end < len(stamps)).all()
                assert (stamps[label_end] < cut).all()
                assert (stamps[np.minimum(positions[kept] + reach, len(stamps) - 1)] < cut).all()


@PROPERTY_SETTINGS
@given(frames=calendar_panels(), configs=pipeline_configs())
@on_neighbours_walking_forward
def test_every_out_of_sample_window_is_scored_once_by_a_model_of_only_earlier_bars(frames, configs):
    """Walk-forward: the test blocks tile the out-of-sample period; each test window belongs
    to exactly one fold, and everything that fold trains or early-stops on (windows, their
    context and their labels plus embargo) lies before its test block."""
    label, split, window = configs
    assume(split.method == "walk_forward")
    data, windows = prepared_panel(frames, label, split, window)
    positions = series_positions(data, frames)
    evaluated = data.meta["evaluated_folds"]
    assert data.meta["model_fold"] not in evaluated
    assert len(evaluated) == split.folds
    scored = np.concatenate([windows.ends[fold]["test"] for fold in evaluated])
    assert len(np.unique(scored)) == len(scored)
    # Every labelled bar from the first block on is a test sample of exactly one fold.
    first_block = np.datetime64(data.meta["folds"][evaluated[0]]["test_start"])
    test_samples = np.zeros(len(data.series), dtype=np.int64)
    for fold in evaluated:
        index = data.fold_index(fold)
        test_samples += data.samples[index] & (data.parts[index] == TEST)
    labelled = data.samples.any(axis=0) | (test_samples > 0)
    assert (
        test_samples[data.timestamps >= first_block][labelled[data.timestamps >= first_block]] == 1
    ).all()
    assert (test_samples[data.timestamps < first_block] == 0).all()
    offsets = np.arange(-windows.seq_len + 1, 1)
    for fold in evaluated:
        test_start = np.datetime64(data.meta["folds"][fold]["test_start"])
        for part in ("train", "val"):
            ends = windows.ends[fold][part]
            assert (data.timestamps[ends[:, None] + offsets] < test_start).all()
            for code, frame in enumerate(frames.values()):
                mine = ends[data.series[ends] == code]
                reach = positions[mine] + label.horizon + split.embargo
                stamps = frame.index.to_numpy()
                assert (stamps[np.minimum(reach, len(stamps) - 1)] < test_start).all()


def test_purge_keeps_a_sample_only_if_its_horizon_and_embargo_stay_in_its_split():
    split = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    keep = purge_mask(split, horizon=2, embargo=1)
    # Train bars 3..5 reach bar 6 (val) within 3 bars; val bars 7..9 reach bar 10 (test).
    assert keep.tolist() == [1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1]


def test_purge_does_not_drop_bars_whose_reach_runs_past_the_series_end():
    """No later bar exists, so nothing can leak; the label mask removes undefined labels."""
    split = np.array([0, 0, 0, 0])
    assert purge_mask(split, horizon=3, embargo=5).all()


def test_holdout_cuts_fall_at_the_split_fractions_of_all_distinct_timestamps():
    early = np.array(["2001-01-01", "2001-01-02", "2001-01-03"], dtype="datetime64[ns]")
    late = np.array(["2001-01-03", "2001-01-04", "2001-01-05"], dtype="datetime64[ns]")
    fold = holdout_fold(distinct_timestamps([early, late]), holdout_split(0.6, 0.2, 0))
    # 5 distinct dates: train = first floor(0.6 * 5) = 3, val = the next one.
    assert fold.val_start == np.datetime64("2001-01-04")
    assert fold.test_start == np.datetime64("2001-01-05")
    assert assign_parts(late, fold).tolist() == [TRAIN, VAL, TEST]


def test_split_fractions_that_leave_a_split_empty_are_a_config_error():
    stamps = np.array(["2001-01-01", "2001-01-02", "2001-01-03"], dtype="datetime64[ns]")
    with pytest.raises(ConfigError, match="leave a split empty"):
        holdout_fold(stamps, holdout_split(0.5, 0.1, 0))


DAYS = np.arange(np.datetime64("2001-01-01"), np.datetime64("2001-04-11")).astype("datetime64[ns]")


def test_walk_forward_blocks_have_equal_calendar_length_and_history_before_them():
    """100 days, out-of-sample from day 40 to day 99: 4 blocks that start every 59 / 4 days."""
    plan = fold_plan([DAYS], split_config(oos_start=0.4, folds=4, val_share=0.25))
    assert plan.evaluated == ("f1", "f2", "f3", "f4")
    assert plan.model_fold == "final"
    day = {fold.name: fold for fold in plan.folds}
    starts = [int(np.searchsorted(DAYS, day[f].test_start)) for f in plan.evaluated]
    # The first day at or after first + i * 59 / 4 days: 40, 54.75, 69.5, 84.25.
    assert starts == [40, 55, 70, 85]
    assert [day[f].test_end for f in ("f1", "f2", "f3")] == [DAYS[55], DAYS[70], DAYS[85]]
    assert day["f4"].test_end is None
    # Expanding history from the first bar; its last quarter is the fold's val part.
    assert day["f1"].train_start is None
    assert day["f1"].val_start == DAYS[30]
    assert day["f3"].val_start == DAYS[52]  # floor(0.75 * 70)
    assert day["final"].val_start == DAYS[75] and day["final"].test_start is None


def test_rolling_history_keeps_the_last_n_timestamps_before_each_block():
    plan = fold_plan([DAYS], split_config(oos_start=0.4, folds=4, history=20, val_share=0.25))
    fold = plan.by_name("f3")  # test block: days 70 .. 84
    assert fold.train_start == DAYS[70 - 20]
    assert fold.val_start == DAYS[70 - 5]
    parts = assign_parts(DAYS, fold)
    assert (parts[:50] == OUTSIDE).all() and (parts[85:] == OUTSIDE).all()
    assert (parts[50:65] == TRAIN).all() and (parts[65:70] == VAL).all()
    assert (parts[70:85] == TEST).all()


def test_test_samples_are_kept_to_the_end_of_their_block_and_others_are_purged():
    parts = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, -1, -1])
    kept = sample_mask(parts, np.ones(12, dtype=bool), horizon=1, embargo=1)
    assert kept.tolist() == [1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"folds": 100, "oos_start": 0.9}, "split.folds = 100 over the 10 out-of-sample"),
        ({"val_share": 0.99}, "split.val_share = 0.99 of the 40 timestamps of fold f1"),
        ({"history": 2, "val_share": 0.6}, "split.val_share = 0.6 of the 2 timestamps"),
        ({"oos_start": 0.001}, "split.oos_start = 0.001 over 100 distinct timestamps"),
    ],
)
def test_fold_settings_that_leave_a_part_empty_are_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        fold_plan([DAYS], split_config(**{"oos_start": 0.4, "folds": 4, **overrides}))


def _mixed_frequency_panel() -> dict[str, pd.DataFrame]:
    """A daily series (bars stamped 00:00) and an hourly one (09:00 .. 16:00) on the same
    business days: 8 of every 9 distinct timestamps are hours, so cuts land mid-day."""
    days = pd.bdate_range("2001-01-01", periods=260)
    hours = pd.DatetimeIndex([day + pd.Timedelta(hours=h) for day in days for h in range(9, 17)])

    def series(index: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
        frame = synthetic_ohlcv(len(index), seed=seed).rename(columns=str.lower)
        return frame.drop(columns="date").set_index(index).astype(np.float64)

    return {"daily.csv": series(days, 1), "hourly.csv": series(hours, 2)}


@pytest.mark.parametrize(
    "split",
    [
        holdout_split(train=0.61, val=0.2, embargo=0),
        split_config(oos_start=0.5, folds=3, val_share=0.2, embargo=0),
    ],
    ids=["holdout", "walk_forward"],
)
def test_a_bar_that_closes_after_a_cut_lies_after_it_in_a_mixed_frequency_panel(split):
    """A daily bar stamped 00:00 on the day the hourly series puts a cut at 13:00 forms its
    High, Low and Close after the cut: it is no train (or val) bar, and with embargo 0 no
    train sample's label may read it."""
    frames = _mixed_frequency_panel()
    label = LabelConfig(method="fixed_horizon", horizon=1, threshold=0.0, vol_window=5)
    data = prepare_dataset(frames, label, split)
    lengths = {"daily": np.timedelta64(1, "D"), "hourly": np.timedelta64(1, "h")}
    names = data.meta["series_names"]
    mid_day_cuts = 0
    for index, fold in enumerate(data.fold_names):
        cuts = data.meta["folds"][fold]
        parts, samples = data.parts[index], data.samples[index]
        for part, next_cut in ((TRAIN, cuts["val_start"]), (VAL, cuts["test_start"])):
            if next_cut is None:
                continue
            cut = np.datetime64(next_cut)
            mid_day_cuts += pd.Timestamp(cut).hour != 0
            for code, name in enumerate(names):
                rows = np.flatnonzero(data.series == code)
                ends = data.timestamps[rows] + lengths[name]
                # Every bar of the part closes by the cut, and so does the bar each of its
                # samples' labels reads (horizon 1).
                in_part = rows[parts[rows] == part]
                assert (data.timestamps[in_part] + lengths[name] <= cut).all(), (fold, name)
                kept = np.flatnonzero(samples[rows] & (parts[rows] == part))
                assert (ends[kept + 1] <= cut).all(), (fold, name)
    assert mid_day_cuts > 0


FIVE = np.arange(np.datetime64("2001-01-01"), np.datetime64("2001-01-06")).astype("datetime64[ns]")


def test_holdout_may_give_train_val_and_test_a_single_bar_each():
    fold = holdout_fold(FIVE, holdout_split(0.2, 0.2, 0))
    assert (fold.val_start, fold.test_start) == (FIVE[1], FIVE[2])
    assert fold.train_start is None and fold.test_end is None


@pytest.mark.parametrize(("train", "val"), [(0.1, 0.5), (0.4, 0.1), (0.6, 0.4)])
def test_holdout_fractions_that_leave_train_val_or_test_empty_are_a_config_error(train, val):
    """Over 5 timestamps: train 0.1 leaves train empty, val 0.1 val, train + val = 1 test."""
    message = (
        f"split.train = {train} and split.val = {val} over 5 distinct timestamps leave a "
        "split empty; choose fractions that give each of train, val and test at least one bar"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        holdout_fold(FIVE, holdout_split(train, val, 0))


def test_a_holdout_plan_is_its_one_fold_scored_and_kept_as_the_model():
    plan = fold_plan([FIVE], holdout_split(0.2, 0.2, 0))
    assert [fold.name for fold in plan.folds] == ["holdout"]
    assert plan.evaluated == ("holdout",)
    assert plan.model_fold == "holdout"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"folds": 100, "oos_start": 0.9},
            "split.folds = 100 over the 10 out-of-sample timestamps (split.oos_start = 0.9) "
            "leaves a test block empty; lower split.folds or split.oos_start",
        ),
        (
            {"oos_start": 0.001},
            "split.oos_start = 0.001 over 100 distinct timestamps leaves no history before the "
            "out-of-sample period or no period after it",
        ),
        (
            {"oos_start": 1 - 1e-12},
            f"split.oos_start = {1 - 1e-12} over 100 distinct timestamps leaves no history "
            "before the out-of-sample period or no period after it",
        ),
        (
            {"val_share": 0.99},
            "split.val_share = 0.99 of the 40 timestamps of fold f1's history leaves its train "
            "or val part empty; choose a val_share that gives both at least one bar",
        ),
        (
            {"val_share": 1e-12},
            "split.val_share = 1e-12 of the 40 timestamps of fold f1's history leaves its train "
            "or val part empty; choose a val_share that gives both at least one bar",
        ),
    ],
    ids=["empty-block", "no-history", "no-out-of-sample", "empty-train", "empty-val"],
)
def test_fold_settings_that_leave_a_part_empty_say_which_setting_and_why(overrides, message):
    """Also at the edges the fraction tolerance reaches: oos_start just below 1 cuts at the
    end, a val_share just above 0 gives val no bar."""
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        fold_plan([DAYS], split_config(**{"oos_start": 0.4, "folds": 4, **overrides}))


def test_a_test_block_of_a_single_timestamp_is_allowed():
    """Out-of-sample from day 98 of 100 in 2 folds: one day each."""
    plan = fold_plan([DAYS], split_config(oos_start=0.98, folds=2, val_share=0.25))
    assert [plan.by_name(name).test_start for name in plan.evaluated] == [DAYS[98], DAYS[99]]
    assert plan.by_name("f1").test_end == DAYS[99]


def test_a_rolling_history_longer_than_the_past_starts_at_the_first_bar():
    plan = fold_plan([DAYS], split_config(oos_start=0.4, folds=4, history=50, val_share=0.25))
    assert plan.by_name("f1").train_start is None  # 40 bars before the block: all of them
    assert plan.by_name("f1").val_start == DAYS[30]
    assert plan.by_name("f2").train_start == DAYS[55 - 50]


def test_the_final_refit_of_a_rolling_history_keeps_only_the_last_n_timestamps():
    plan = fold_plan([DAYS], split_config(oos_start=0.4, folds=4, history=20, val_share=0.25))
    final = plan.by_name("final")
    assert (final.train_start, final.val_start) == (DAYS[80], DAYS[95])
    assert final.test_start is None and final.test_end is None


def test_bar_length_is_the_median_spacing_in_any_datetime_unit_and_0_for_one_bar():
    days = np.array(["2001-01-01", "2001-01-02", "2001-01-05"], dtype="datetime64[D]")
    assert bar_length(days[:2]) == np.timedelta64(1, "D")
    assert bar_length(days) == np.timedelta64(2, "D")
    for short in (days[:1], days[:0]):
        length = bar_length(short)
        assert length == np.timedelta64(0, "ns") and length.dtype == "timedelta64[ns]"


def test_a_bar_whose_last_nanosecond_is_a_cut_lies_after_the_cut():
    """Hourly bars stamped 1 ns past the hour end 1 ns past the next hour, so the last
    instant of bar k is hour k + 1: the bar that ends just past a cut is in the later part."""
    hour = np.timedelta64(1, "h")
    start = np.datetime64("2001-01-01T00:00", "ns")
    stamps = start + np.arange(9) * hour + np.timedelta64(1, "ns")
    cut = {k: start + k * hour for k in (2, 4, 6, 8)}
    fold = Fold("f1", cut[2], cut[4], cut[6], cut[8])
    parts = assign_parts(stamps, fold)
    assert parts.dtype == np.int8
    assert parts.tolist() == [OUTSIDE, TRAIN, TRAIN, VAL, VAL, TEST, TEST, OUTSIDE, OUTSIDE]


def test_purging_a_series_of_no_bars_keeps_nothing():
    assert purge_mask(np.array([], dtype=np.int8), horizon=3, embargo=1).tolist() == []
