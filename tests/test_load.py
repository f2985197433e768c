"""Raw CSVs: each rejected problem names the file, the column and the first offending line;
the accepted variants load; the documented repairs happen and are announced."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, Project, tiny_params

from finseq.errors import DataError
from finseq.features import WARMUP_BARS, compute_features
from finseq.inputs import load_series
from finseq.panel import prepare_dataset
from finseq.params import WindowConfig
from finseq.synthetic import synthetic_ohlcv
from finseq.window_sets import make_window_sets

HEADER = ["Date", "Open", "High", "Low", "Close", "Volume"]
COLUMN_INDEX = {name: index for index, name in enumerate(HEADER)}


def good_rows() -> list[list[str]]:
    """Six valid bars; row i of this list is line i + 2 of the file."""
    return [[f"2020-01-0{day}", "10", "11", "9", "10.5", "1000"] for day in (2, 3, 6, 7, 8, 9)]


def write_csv(directory: Path, rows: list[list[str]], header=HEADER, name="prices.csv") -> Path:
    path = directory / name
    path.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")
    return path


def with_cell(row: int, column: str, value: str) -> list[list[str]]:
    rows = good_rows()
    rows[row][COLUMN_INDEX[column]] = value
    return rows


def swapped_dates(first: int) -> list[list[str]]:
    rows = good_rows()
    rows[first][0], rows[first + 1][0] = rows[first + 1][0], rows[first][0]
    return rows


def repeated_date(row: int) -> list[list[str]]:
    rows = good_rows()
    rows[row][0] = rows[row - 1][0]
    return rows


def high_below_low(row: int) -> list[list[str]]:
    rows = good_rows()
    rows[row][1:5] = ["10", "8", "9", "8.5"]
    return rows


REJECTED_CELLS = [
    pytest.param(
        with_cell(3, "High", "abc"), "line 5, column 'High': 'abc' is not a number", id="text"
    ),
    pytest.param(with_cell(2, "Low", ""), "line 4, column 'Low': missing value", id="empty-cell"),
    pytest.param(with_cell(2, "Close", "NaN"), "line 4, column 'Close': missing value", id="nan"),
    pytest.param(with_cell(1, "High", "inf"), "line 3, column 'High': inf is not finite", id="inf"),
    pytest.param(
        with_cell(4, "Open", "-inf"), "line 6, column 'Open': -inf is not finite", id="minus-inf"
    ),
    pytest.param(
        with_cell(2, "Volume", ""), "line 4, column 'Volume': missing value", id="empty-volume"
    ),
    pytest.param(
        with_cell(2, "Close", "0"), "line 4, column 'Close': 0 is not a positive price", id="zero"
    ),
    pytest.param(
        with_cell(0, "Open", "-3"),
        "line 2, column 'Open': -3 is not a positive price",
        id="negative-price",
    ),
    pytest.param(
        with_cell(5, "Volume", "-5"),
        "line 7, column 'Volume': -5 is a negative volume",
        id="negative-volume",
    ),
    pytest.param(
        high_below_low(4),
        "line 6, column 'High': 8 is below the Low of the same bar",
        id="high<low",
    ),
    pytest.param(
        swapped_dates(2),
        "line 5, column 'Date': timestamps are not in ascending order "
        "('2020-01-06' comes after '2020-01-07')",
        id="unsorted",
    ),
    pytest.param(
        repeated_date(3),
        "line 5, column 'Date': duplicate timestamp '2020-01-06' (also on line 4)",
        id="duplicate",
    ),
    pytest.param(
        with_cell(3, "Date", "yesterday"),
        "line 5, column 'Date': 'yesterday' is not a date",
        id="not-a-date",
    ),
    pytest.param(with_cell(1, "Date", ""), "line 3, column 'Date': missing date", id="no-date"),
]


@pytest.mark.parametrize(("rows", "expected"), REJECTED_CELLS)
def test_a_bad_cell_is_named_by_file_line_and_column(tmp_path: Path, rows, expected):
    path = write_csv(tmp_path, rows)
    with pytest.raises(DataError) as raised:
        load_series(path)
    assert str(raised.value).startswith(f"{path}: {expected}")


def test_line_numbers_count_blank_lines_that_pandas_skips(tmp_path: Path):
    path = tmp_path / "prices.csv"
    rows = with_cell(3, "High", "abc")
    lines = [
        ",".join(HEADER),
        *(",".join(row) for row in rows[:2]),
        "",
        "  ",
        "\n".join(",".join(row) for row in rows[2:]),
    ]
    path.write_text("\n".join(lines) + "\n\n")
    with pytest.raises(DataError, match=r"line 7, column 'High': 'abc' is not a number"):
        load_series(path)


def write_bytes(directory: Path, content: bytes) -> Path:
    path = directory / "prices.csv"
    path.write_bytes(content)
    return path


def test_a_missing_file_is_named(tmp_path: Path):
    path = tmp_path / "absent.csv"
    with pytest.raises(DataError, match=rf"^{path}: file not found$"):
        load_series(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"", "file is empty", id="empty"),
        pytest.param(b"\n\n", "file is empty", id="blank-lines"),
        pytest.param(
            (",".join(HEADER) + "\n").encode(), "has a header but no data rows", id="header-only"
        ),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "not a CSV file (it contains binary data)",
            id="binary",
        ),
        pytest.param(
            b"Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10\xff,1\n",
            "not a readable CSV file ('utf-8' codec can't decode",
            id="not-utf8",
        ),
        pytest.param(
            b"Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10,1,7\n",
            "not a readable CSV file (a row has more fields than the header)",
            id="surplus-fields-in-every-row",
        ),
        pytest.param(
            b"Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10,1\n2020-01-03,10,11,9,10,1,7,8\n",
            "not a readable CSV file (Error tokenizing data. C error: Expected 6 fields in line 3",
            id="surplus-fields-in-a-later-row",
        ),
    ],
)
def test_an_unreadable_file_is_named_with_the_reason(tmp_path: Path, content, expected):
    path = write_bytes(tmp_path, content)
    with pytest.raises(DataError) as raised:
        load_series(path)
    assert str(raised.value).startswith(f"{path}: {expected}")


def test_no_date_column_lists_the_names_looked_for_and_the_columns_found(tmp_path: Path):
    path = write_csv(tmp_path, good_rows(), header=["Day", *HEADER[1:]])
    with pytest.raises(DataError) as raised:
        load_series(path)
    assert str(raised.value) == (
        f"{path}: no date column (looked for Date, Datetime, Timestamp or Time); "
        "columns are: Day, Open, High, Low, Close, Volume"
    )


def test_missing_ohlcv_columns_are_each_named(tmp_path: Path):
    rows = [[row[0], row[1], row[2], row[4]] for row in good_rows()]
    path = write_csv(tmp_path, rows, header=["Date", "Open", "High", "Close"])
    with pytest.raises(DataError) as raised:
        load_series(path)
    assert str(raised.value) == (
        f"{path}: missing column(s) Low, Volume; columns are: Date, Open, High, Close"
    )


def test_two_columns_that_mean_the_same_thing_are_refused(tmp_path: Path):
    rows = [[*row, row[4]] for row in good_rows()]
    path = write_csv(tmp_path, rows, header=[*HEADER, "close"])
    with pytest.raises(DataError, match=r"columns 'Close' and 'close' mean the same thing"):
        load_series(path)


def test_a_plain_file_loads_to_float_ohlcv_indexed_by_time(tmp_path: Path, capsys):
    frame = load_series(write_csv(tmp_path, good_rows()))
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert (frame.dtypes == np.float64).all()
    assert frame.index.name == "timestamp"
    assert frame.loc["2020-01-06"].tolist() == [10.0, 11.0, 9.0, 10.5, 1000.0]
    assert capsys.readouterr().err == ""


def test_column_names_match_ignoring_case_spaces_and_underscores(tmp_path: Path):
    header = ["date", " OPEN", "high", "Low ", "close", "adj_close", "VOLUME"]
    rows = [[*row[:5], row[4], row[5]] for row in good_rows()]
    frame = load_series(write_csv(tmp_path, rows, header=header))
    assert frame.loc["2020-01-02"].tolist() == [10.0, 11.0, 9.0, 10.5, 1000.0]


def test_a_trailing_comma_on_every_line_does_not_shift_the_columns(tmp_path: Path):
    path = tmp_path / "prices.csv"
    path.write_text("\n".join(",".join(row) + "," for row in [HEADER, *good_rows()]) + "\n")
    frame = load_series(path)
    assert frame.loc["2020-01-02"].tolist() == [10.0, 11.0, 9.0, 10.5, 1000.0]


def test_intraday_timestamps_with_time_zones_become_naive_utc(tmp_path: Path):
    stamps = ["2020-03-02 09:30:00-05:00", "2020-03-02 09:31:00-05:00", "2020-03-02 15:32:00+01:00"]
    rows = [[stamp, "10", "11", "9", "10.5", "5"] for stamp in stamps]
    frame = load_series(write_csv(tmp_path, rows, header=["Datetime", *HEADER[1:]]))
    assert frame.index.tz is None
    assert list(frame.index) == [
        pd.Timestamp("2020-03-02 14:30"),
        pd.Timestamp("2020-03-02 14:31"),
        pd.Timestamp("2020-03-02 14:32"),
    ]


def test_separate_date_and_time_columns_are_joined(tmp_path: Path):
    rows = [["2020-03-02", f"09:3{minute}", "10", "11", "9", "10.5", "5"] for minute in range(3)]
    frame = load_series(write_csv(tmp_path, rows, header=["Date", "Time", *HEADER[1:]]))
    assert list(frame.index) == [pd.Timestamp(f"2020-03-02 09:3{minute}") for minute in range(3)]


def test_a_time_without_a_date_is_refused_rather_than_dated_today(tmp_path: Path):
    rows = [[f"09:3{minute}", "10", "11", "9", "10.5", "5"] for minute in range(3)]
    with pytest.raises(DataError) as raised:
        load_series(write_csv(tmp_path, rows, header=["Time", *HEADER[1:]]))
    assert str(raised.value).endswith("line 2, column 'Time': '09:30' has a time but no date")


def test_unparseable_stamps_give_one_error_and_no_pandas_warning(tmp_path: Path, recwarn):
    rows = [[str(1577836800 + 86400 * day), "10", "11", "9", "10.5", "5"] for day in range(3)]
    with pytest.raises(DataError, match=r"line 2, column 'Date': '1577836800' is not a date"):
        load_series(write_csv(tmp_path, rows))
    assert not [warning for warning in recwarn if issubclass(warning.category, UserWarning)]


def test_gaps_in_dates_are_kept_as_they_are(tmp_path: Path):
    rows = good_rows()
    rows[3][0], rows[4][0], rows[5][0] = "2020-02-03", "2020-02-10", "2021-01-04"
    frame = load_series(write_csv(tmp_path, rows))
    assert [str(day.date()) for day in frame.index[2:]] == [
        "2020-01-06",
        "2020-02-03",
        "2020-02-10",
        "2021-01-04",
    ]


def test_adj_close_scales_open_high_low_close_and_volume_only_at_a_split(tmp_path: Path):
    adjusted = ["5.25", "5.25", "2.1", "2.1", "2.1", "2.1"]  # Close is 10.5: factors 0.5, 0.2
    rows = [[*row[:5], adj, row[5]] for row, adj in zip(good_rows(), adjusted, strict=True)]
    path = write_csv(tmp_path, rows, header=[*HEADER[:5], "Adj Close", "Volume"])
    frame = load_series(path)
    np.testing.assert_allclose(frame.iloc[0][["open", "high", "low", "close"]], [5, 5.5, 4.5, 5.25])
    np.testing.assert_allclose(frame.iloc[2][["open", "high", "low", "close"]], [2, 2.2, 1.8, 2.1])
    # The factor steps by 2:5 at the third bar, as at a reverse split: the volume from it on
    # is in the first bar's shares (data.adjust_volume), or as reported without it.
    assert frame["volume"].tolist() == [1000.0, 1000.0, 2500.0, 2500.0, 2500.0, 2500.0]
    assert (load_series(path, adjust_volume=False)["volume"] == 1000).all()


def test_high_and_low_inside_the_open_close_range_are_widened_with_a_note(tmp_path: Path, capsys):
    rows = good_rows()
    rows[1][1:5] = ["10", "10.2", "9", "10.5"]  # High below Close
    rows[4][1:5] = ["10", "11", "10.1", "10.1"]  # Low above Open
    path = write_csv(tmp_path, rows)
    frame = load_series(path)
    assert frame.iloc[1]["high"] == 10.5
    assert frame.iloc[4]["low"] == 10.0
    assert frame.iloc[0][["high", "low"]].tolist() == [11.0, 9.0]
    assert capsys.readouterr().err == (
        f"note: {path}: 2 bar(s) had High/Low inside the Open-Close range; widened to cover it\n"
    )


def synthetic_file(directory: Path, name: str, n_bars: int, seed: int) -> Path:
    path = directory / name
    synthetic_ohlcv(n_bars, seed).to_csv(path, index=False)
    return path


def test_a_series_too_short_to_label_after_warm_up_is_named(tmp_path: Path):
    config = tiny_params()
    horizon = config.label.horizon
    long = synthetic_file(tmp_path, "long.csv", 300, seed=1)
    short = synthetic_file(tmp_path, "short.csv", WARMUP_BARS + horizon, seed=2)
    frames = {str(path): load_series(path) for path in (long, short)}
    with pytest.raises(DataError) as raised:
        prepare_dataset(frames, config.label, config.split)
    assert str(raised.value) == (
        f"{short}: only {WARMUP_BARS + horizon} bars; at least {WARMUP_BARS + horizon + 1} are "
        f"needed (warm-up {WARMUP_BARS} + label.horizon {horizon} + 1)"
    )


def test_a_series_too_short_for_warm_up_seq_len_and_horizon_is_named(tmp_path: Path):
    config = tiny_params()
    horizon = config.label.horizon
    long = synthetic_file(tmp_path, "long.csv", 300, seed=1)
    short = synthetic_file(tmp_path, "short.csv", WARMUP_BARS + 20, seed=2)
    frames = {str(path): load_series(path) for path in (long, short)}
    data = prepare_dataset(frames, config.label, config.split)
    assert make_window_sets(data, WindowConfig(seq_len=8, stride=1)).seq_len == 8
    with pytest.raises(DataError) as raised:
        make_window_sets(data, WindowConfig(seq_len=30, stride=1))
    assert str(raised.value) == (
        f"{short}: only {WARMUP_BARS + 20} bars; too short for warm-up ({WARMUP_BARS}) "
        f"+ window.seq_len (30) + label.horizon ({horizon}) = {WARMUP_BARS + 30 + horizon}"
    )


def run_stage(project: Project, stage: str) -> subprocess.CompletedProcess:
    return project.run("python", "-m", f"finseq.stages.{stage}", check=False)


def only_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
def test_prepare_stops_on_a_bad_row_with_one_line_and_writes_nothing(project: Project):
    path = project.path / "data" / "raw" / "series_001.csv"
    frame = pd.read_csv(path)
    frame.loc[123, "High"] = frame.loc[123, "Low"] / 2
    frame.to_csv(path, index=False)
    line = only_error_line(run_stage(project, "prepare"))
    assert line.startswith(
        "error: data/raw/series_001.csv: line 125, column 'High': "
    ) and line.endswith("is below the Low of the same bar")
    assert not (project.path / "data" / "prepared").exists()
    assert not (project.path / "metrics" / "data.json").exists()


@pytest.mark.slow
def test_window_names_the_series_too_short_for_seq_len(project: Project):
    path = project.path / "data" / "raw" / "series_001.csv"
    synthetic_ohlcv(WARMUP_BARS + 20, seed=3).to_csv(path, index=False)
    prepared = run_stage(project, "prepare")
    assert prepared.returncode == 0, prepared.stderr
    params = project.read_params()
    params["window"]["seq_len"] = 30
    project.write_params(params)
    line = only_error_line(run_stage(project, "window"))
    assert line.startswith(
        f"error: data/raw/series_001.csv: only {WARMUP_BARS + 20} bars; too short for warm-up"
    )
    assert "window.seq_len (30)" in line
    assert not (project.path / "data" / "windows").exists()


# --- plausibility: a one-bar move beyond 10x is named, real extremes pass untouched ----------


def quiet_series_with(tmp_path: Path, bar: int, close: float | None, name: str) -> Path:
    """A 400-bar series (1% daily moves) whose bar `bar` closes (and highs) at `close`."""
    frame = synthetic_ohlcv(400, seed=5)
    if close is not None:
        frame.loc[bar, ["Close", "High"]] = close
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("close", [1e10, 1e30])
def test_an_implausible_close_gets_a_note_naming_file_line_and_value(tmp_path, capsys, close):
    path = quiet_series_with(tmp_path, 200, close, "spiky.csv")
    load_series(path)
    notes = capsys.readouterr().err.splitlines()
    assert notes[0] == (
        f"note: {path}: line 202, column 'High': {close} is a one-bar move of more than 10x "
        "from the previous close; check that bar"
    )
    # The bar after it falls back by as much: named too, and nothing else.
    assert len(notes) == 2 and "line 203" in notes[1]


def test_a_close_of_1e308_is_noted_at_load_and_prepare_names_its_line(tmp_path, capsys):
    path = quiet_series_with(tmp_path, 200, 1e308, "overflow.csv")
    frame = load_series(path)
    assert "line 202" in capsys.readouterr().err
    params = tiny_params()
    with pytest.raises(DataError) as raised:
        prepare_dataset({str(path): frame}, params.label, params.split)
    message = str(raised.value)
    assert message.startswith(f"{path}: feature ")
    assert "is line 202 (High 1e+308); check that bar" in message


def test_a_genuine_crash_day_passes_untouched(tmp_path, capsys):
    """1987-10-19: a log return of -0.229. No note, and the values are the file's."""
    frame = synthetic_ohlcv(400, seed=5)
    crash = frame.loc[199, "Close"] * np.exp(-0.229)
    frame.loc[200, ["Open", "Low", "Close"]] = [frame.loc[199, "Close"], crash, crash]
    path = tmp_path / "crash.csv"
    frame.to_csv(path, index=False)
    loaded = load_series(path)
    assert capsys.readouterr().err == ""
    assert loaded["close"].iloc[200] == pytest.approx(crash, rel=1e-15)


def test_the_default_data_give_no_plausibility_note(capsys):
    for name in ("sp500.csv", "nasdaq.csv"):
        load_series(ROOT / "data" / "raw" / name)
    assert "more than 10x" not in capsys.readouterr().err


# --- Adj Close and volume: a split the Close column is not adjusted for is named ------------


def with_unadjusted_split(tmp_path: Path, ratio: float, name: str = "split.csv") -> Path:
    """A 300-bar series whose Close (and Open/High/Low, Volume) are as traded, with a split
    of `ratio` new shares per old one at bar 150, and an Adj Close adjusted for it."""
    frame = synthetic_ohlcv(300, seed=4)
    before = frame.index < 150
    for column in ("Open", "High", "Low", "Close"):
        frame.loc[before, column] *= ratio
    frame.loc[before, "Volume"] /= ratio
    frame["Adj Close"] = frame["Close"] / np.where(before, ratio, 1.0)
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("ratio", "shown"), [(2.0, "2:1"), (1.5, "3:2"), (0.1, "1:10")])
def test_a_split_like_step_of_adj_close_over_close_is_noted_with_its_date(
    tmp_path, capsys, ratio, shown
):
    path = with_unadjusted_split(tmp_path, ratio)
    frame = load_series(path)
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 1
    assert notes[0].startswith(f"note: {path}: line 152 (")
    assert f"Adj Close / Close steps by {shown}, as at a split" in notes[0]
    assert str(frame.index[150].date()) in notes[0]


def test_dividend_steps_of_adj_close_give_no_note(tmp_path, capsys):
    frame = synthetic_ohlcv(300, seed=4)
    # A 2% dividend every 60 bars: Adj Close steps by 2%, far from any split ratio.
    factor = 0.98 ** ((299 - frame.index) // 60)
    frame["Adj Close"] = frame["Close"] * factor
    path = tmp_path / "dividends.csv"
    frame.to_csv(path, index=False)
    load_series(path)
    assert capsys.readouterr().err == ""


# --- Gaps: features, labels and windows count bars, not days --------------------------------


def test_a_hole_of_weeks_is_noted_and_the_features_count_bars_across_it(tmp_path, capsys):
    """docs/pipeline.md's decision: bars, not days. A six-week hole changes no feature (the
    same bars in the same order give the same values) and gets one note naming its line."""
    frame = synthetic_ohlcv(300, seed=6)
    holed = frame.copy()
    holed.loc[150:, "Date"] = pd.to_datetime(holed.loc[150:, "Date"]) + pd.Timedelta(days=42)
    plain_path, holed_path = tmp_path / "plain.csv", tmp_path / "holed.csv"
    frame.to_csv(plain_path, index=False)
    holed.to_csv(holed_path, index=False)
    plain = load_series(plain_path)
    assert capsys.readouterr().err == ""
    loaded = load_series(holed_path)
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 1
    assert notes[0].startswith(f"note: {holed_path}: line 152: no bar for ")
    assert f"before {loaded.index[150]}" in notes[0]
    assert "split the file at that line into two series" in notes[0]
    np.testing.assert_array_equal(
        compute_features(loaded).to_numpy(), compute_features(plain).to_numpy()
    )


def test_nights_weekends_and_holidays_of_intraday_bars_are_no_gap(tmp_path, capsys):
    days = pd.bdate_range("2020-01-01", periods=120).delete([20, 21, 60])  # a long weekend too
    stamps = [day + pd.Timedelta(minutes=30 * k + 570) for day in days for k in range(13)]
    frame = synthetic_ohlcv(len(stamps), seed=7)
    frame["Date"] = [stamp.isoformat(sep=" ") for stamp in stamps]
    path = tmp_path / "half_hourly.csv"
    frame.to_csv(path, index=False)
    load_series(path)
    load_series(ROOT / "data" / "raw" / "sp500.csv")
    assert "no bar for" not in capsys.readouterr().err


def test_iso_dates_parse_to_pandas_instants_and_anything_else_is_left_to_pandas(tmp_path):
    """The NumPy fast path for 'YYYY-MM-DD' gives what pandas' parse gives, and steps aside
    for every other spelling, so the error messages and zone rules stay pandas'."""
    from finseq import stamps

    span = np.arange(np.datetime64("1677-09-22"), np.datetime64("2262-04-11"), 43)
    days = pd.Series([*np.datetime_as_string(span), "2262-04-10", "2000-02-29", "1999-12-31"])
    fast = stamps.iso_dates(days.astype(object))
    reference = stamps.parsed_stamps(tmp_path / "x.csv", days, "Date", str)
    assert fast is not None and fast.dtype == "datetime64[ns]"
    np.testing.assert_array_equal(fast, reference)
    for other in (
        ["12/31/1999"],
        ["2000-01-03 09:30"],
        ["2000-01-03", np.nan],
        ["0000-01-01"],
        ["2262-04-12"],
        ["+002000-01"],
        ["2000-01-3"],
        ["2000-02-30"],
    ):
        assert stamps.iso_dates(pd.Series(other, dtype=object)) is None, other


def test_stored_date_times_are_taken_as_pandas_would_parse_them(tmp_path):
    """Parquet's timestamp columns skip the text parse: naive ones are UTC, zoned ones are
    converted to UTC, any unit; a missing or out-of-range one is left to pandas."""
    from finseq import stamps

    instants = pd.date_range("1999-12-31 22:00", periods=50, freq="37min")
    columns = [
        pd.Series(instants),
        pd.Series(instants.as_unit("us")),
        pd.Series(instants.tz_localize("America/New_York")),
        pd.Series(instants.tz_localize("Asia/Kolkata").as_unit("ms")),
    ]
    for raw in columns:
        reference = stamps.parsed_stamps(tmp_path / "x.parquet", raw, "Date", str)
        stored = stamps.stored_stamps(tmp_path / "x.parquet", raw, "Date", str)
        assert stored is not None and stored.dtype == "datetime64[ns]"
        np.testing.assert_array_equal(stored, reference)
    for raw in (pd.Series([instants[0], pd.NaT]), pd.Series(["2000-01-03"])):
        assert stamps.stored_stamps(tmp_path / "x.parquet", raw, "Date", str) is None


def test_a_stored_date_beyond_what_nanoseconds_hold_is_refused_not_wrapped(tmp_path):
    """A Parquet file's microsecond dates in the year 3000 would wrap round to 1830 if
    converted to nanoseconds; the row is named instead."""
    stamps = np.array(["2000-01-03", "3000-01-01", "3000-01-02"], dtype="datetime64[us]")
    frame = pd.DataFrame(
        {"Date": stamps, "Open": 1.0, "High": 1.0, "Low": 1.0, "Close": 1.0, "Volume": 1.0}
    )
    path = tmp_path / "far.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"far.parquet: row 2, column 'Date': 3000-01-01.* outside"):
        load_series(path)


def dated_csv(directory: Path, stamps: list[str], name: str = "dated.csv") -> Path:
    """Generated bars stamped with `stamps`, written as text."""
    frame = synthetic_ohlcv(len(stamps), seed=8)
    frame["Date"] = stamps
    path = directory / name
    frame.to_csv(path, index=False)
    return path


def load_error(path: Path) -> str:
    """The one-line DataError load_series raises for `path`."""
    with pytest.raises(DataError) as caught:
        load_series(path)
    return str(caught.value)


def test_dates_that_read_both_day_first_and_month_first_are_refused(tmp_path):
    """Day-first bars whose days are all 12 or less would parse month first without a
    word (2 January stamped 1 February): the line is named, with both readings."""
    days = pd.bdate_range("2024-01-01", "2024-01-12")
    minutes = [day + pd.Timedelta(minutes=540 + k) for day in days for k in range(0, 480, 30)]
    path = dated_csv(tmp_path, [stamp.strftime("%d.%m.%Y %H:%M") for stamp in minutes])
    assert load_error(path) == (
        f"{path}: line 18, column 'Date': '02.01.2024 09:00' reads as 2024-02-01 month first "
        "and as 2024-01-02 day first, and every date of the column fits both; write the "
        "dates as YYYY-MM-DD"
    )


def test_day_first_dates_that_only_read_day_first_load_as_their_iso_spelling(tmp_path):
    """From 13 January on only the day-first reading parses, so it is taken for every row,
    including the first twelve days (which pandas alone read month first, then refused
    as out of order); month-first US dates and year-first ISO stamps keep their reading."""
    days = pd.bdate_range("1999-01-04", periods=40)
    iso = load_series(dated_csv(tmp_path, list(days.strftime("%Y-%m-%d")), "iso.csv"))
    for layout in ("%d/%m/%Y", "%m/%d/%Y"):
        other = load_series(dated_csv(tmp_path, list(days.strftime(layout)), "other.csv"))
        np.testing.assert_array_equal(other.index.to_numpy(), iso.index.to_numpy())
    minutes = [day + pd.Timedelta(minutes=570 + k) for day in days[:8] for k in range(0, 390, 30)]
    stamps = [stamp.isoformat(sep=" ") for stamp in minutes]  # days 4 to 12 only: no day > 12
    loaded = load_series(dated_csv(tmp_path, stamps, "intraday.csv"))
    np.testing.assert_array_equal(loaded.index.to_numpy(), pd.DatetimeIndex(minutes).to_numpy())


def test_stamps_with_and_without_a_zone_offset_in_one_column_are_refused(tmp_path):
    """Bare stamps would be taken as UTC beside offset ones: two conventions, refused."""
    days = pd.bdate_range("2008-12-01", periods=12)
    stamps = [f"{day:%Y-%m-%d}T00:00:00" for day in days[:7]]
    stamps += [f"{day:%Y-%m-%d}T00:00:00-05:00" for day in days[7:]]
    path = dated_csv(tmp_path, stamps)
    assert load_error(path) == (
        f"{path}: line 9, column 'Date': '2008-12-10T00:00:00-05:00' has a time-zone offset "
        "and line 2 ('2008-12-01T00:00:00') has none; give every timestamp of a series the "
        "same convention (all with an offset, or all in UTC without one)"
    )
    zoned = [f"{day:%Y-%m-%d}T00:00:00-05:00" for day in days]
    loaded = load_series(dated_csv(tmp_path, zoned, "zoned.csv"))
    np.testing.assert_array_equal(
        loaded.index.to_numpy(), (days + pd.Timedelta(hours=5)).to_numpy()
    )


def test_unordered_timestamps_beside_an_unknown_identifier_column_suggest_a_symbol_column(
    tmp_path,
):
    """A panel whose symbol column has a name finseq does not know reads as one series
    out of order; the message names the column that may be the symbol."""
    first = synthetic_ohlcv(30, seed=1).assign(Sym="AAA")
    second = synthetic_ohlcv(30, seed=2).assign(Sym="BBB", Dividends=0.0)
    path = tmp_path / "panel.csv"
    pd.concat([first, second]).to_csv(path, index=False)
    message = load_error(path)
    assert "line 32, column 'Date': timestamps are not in ascending" in message
    assert message.endswith(
        "sort the file by time; if column 'Sym' names each row's series (a long-format "
        "panel), call it Symbol, Ticker, Code or Instrument"
    )
    plain = tmp_path / "plain.csv"
    pd.concat([first, second]).drop(columns="Sym").to_csv(plain, index=False)
    assert load_error(plain).endswith("sort the file by time")


def test_a_parquet_date_beyond_what_nanoseconds_hold_is_named_as_such(tmp_path):
    frame = synthetic_ohlcv(3, seed=1)
    frame["Date"] = [pd.Timestamp("2000-01-03").date(), pd.Timestamp("2300-01-01").date(), None]
    path = tmp_path / "far.parquet"
    frame.to_parquet(path)
    assert load_error(path) == (
        f"{path}: row 2, column 'Date': 2300-01-01 is outside the dates finseq handles "
        "(1677-09-22 to 2262-04-10)"
    )


def test_epoch_seconds_are_refused_with_a_hint_not_guessed(tmp_path):
    seconds = [str(946857600 + 86400 * day) for day in range(5)]
    path = dated_csv(tmp_path, seconds)
    assert load_error(path) == (
        f"{path}: line 2, column 'Date': '946857600' is not a date (a count of seconds or "
        "milliseconds since 1970? finseq does not guess which; write the stamps as "
        "YYYY-MM-DD HH:MM:SS, in UTC or with an offset)"
    )
