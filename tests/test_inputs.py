"""data.files as researchers keep a universe: globs, directories, long-format panels (CSV and
Parquet) prepare the very series the equivalent one-file-per-series list does, bit for bit;
a panel's bad rows are one line naming the file, the symbol and the row; volume is
split-adjusted at a split-like step of Adj Close / Close (data.adjust_volume)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import make_project, prepare_error_line, tiny_params, tiny_params_dict

from finseq import pipeline
from finseq.artifacts import ARRAYS, PreparedData
from finseq.errors import ConfigError, DataError
from finseq.features import WARMUP_BARS
from finseq.inputs import (
    _read_csv_arrow,
    _read_csv_pandas,
    expand_entries,
    load_series,
    read_csv,
    read_sources,
    split_sources,
)
from finseq.paths import DATA_METRICS, PREPARED_DIR
from finseq.synthetic import synthetic_ohlcv

SYMBOLS = ("AAA", "BBB", "CCC")
N_BARS = 400


def series_frames(as_text: bool = True) -> dict[str, pd.DataFrame]:
    """Three generated series, each cell as its CSV text, or (as_text=False) parsed to the
    nearest float (as finseq's CSV reader parses it), dates as datetimes: a Parquet file
    written from those holds the very floats the text means, so the two must prepare the
    same bytes."""
    frames = {}
    for seed, symbol in enumerate(SYMBOLS, start=11):
        # Different starts and lengths: a panel's symbols need not share a calendar.
        start = f"2000-01-{3 + seed - 11:02d}"
        text = synthetic_ohlcv(N_BARS - 10 * (seed - 11), seed, start=start).to_csv(index=False)
        options = (
            {"dtype": str}
            if as_text
            else {"parse_dates": ["Date"], "float_precision": "round_trip"}
        )
        frames[symbol] = pd.read_csv(io.StringIO(text), **options)
    return frames


def long_panel(frames: dict[str, pd.DataFrame], column: str = "Symbol") -> pd.DataFrame:
    """The series as one long table, rows interleaved by date (not sorted by symbol)."""
    stacked = pd.concat([frame.assign(**{column: symbol}) for symbol, frame in frames.items()])
    stacked = stacked.sort_values(["Date", column], kind="stable", ascending=[True, False])
    return stacked[[column, *frames[SYMBOLS[0]].columns]].reset_index(drop=True)


@pytest.fixture
def universe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the working directory: one/<symbol>.csv, panel.csv, panel.parquet."""
    monkeypatch.chdir(tmp_path)
    frames = series_frames()
    (tmp_path / "one").mkdir()
    for symbol, frame in frames.items():
        frame.to_csv(tmp_path / "one" / f"{symbol}.csv", index=False)
    (tmp_path / "panels").mkdir()
    long_panel(frames).to_csv(tmp_path / "panels" / "panel.csv", index=False)
    long_panel(series_frames(as_text=False), "ticker").to_parquet("panels/panel.parquet")
    return tmp_path


def prepared(files: list[str], **data: object) -> PreparedData:
    return pipeline.prepare(tiny_params(data={"files": files, "workers": 1, **data}))


def assert_same_series(got: PreparedData, expected: PreparedData) -> None:
    assert got.meta["series_names"] == expected.meta["series_names"]
    assert got.meta["series_bars"] == expected.meta["series_bars"]
    for name in ARRAYS:
        actual, wanted = np.asarray(getattr(got, name)), np.asarray(getattr(expected, name))
        assert actual.dtype == wanted.dtype and actual.shape == wanted.shape, name
        assert actual.tobytes() == wanted.tobytes(), name


@pytest.mark.parametrize(
    "entries",
    [
        ["one/*.csv"],
        ["one"],
        ["one/"],
        ["panels/panel.csv"],
        ["panels/panel.parquet"],
    ],
    ids=["glob", "directory", "directory/", "csv panel", "parquet panel"],
)
def test_each_layout_prepares_the_series_of_the_one_file_per_series_list(universe, entries):
    expected = prepared([f"one/{symbol}.csv" for symbol in SYMBOLS])
    assert expected.meta["series_names"] == list(SYMBOLS)
    assert_same_series(prepared(entries), expected)


def test_the_files_read_are_recorded_in_data_json(universe):
    params = tiny_params(data={"files": ["one", "panels/panel.parquet"], "workers": 2})
    # Series names must be unique across inputs: the panel repeats the directory's.
    with pytest.raises(ConfigError) as raised:
        pipeline.run_prepare(params, universe)
    assert str(raised.value) == (
        "data.files lists 'one/AAA.csv' and 'panels/panel.parquet::AAA': two series named "
        "'AAA'; give each file or symbol a distinct name"
    )
    assert not (universe / PREPARED_DIR).exists()
    params = tiny_params(data={"files": ["one/B*.csv", "panels/../one/A*"], "workers": 2})
    pipeline.run_prepare(params, universe)
    recorded = json.loads((universe / DATA_METRICS).read_text())
    assert recorded["files"] == ["one/BBB.csv", "panels/../one/AAA.csv"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["one/*.txt"], "data.files: 'one/*.txt' matches no files"),
        (["nowhere/*.csv"], "data.files: 'nowhere/*.csv' matches no files"),
        (["empty"], "data.files: 'empty' matches no *.csv or *.parquet files"),
        (
            ["one", "one/AAA.csv"],
            "data.files: 'one/AAA.csv' is matched by both 'one' and 'one/AAA.csv'; "
            "list each file once",
        ),
    ],
)
def test_an_entry_matching_nothing_or_a_file_twice_is_one_line_naming_it(
    universe, entries, message
):
    (universe / "empty").mkdir()
    (universe / "empty" / "notes.txt").write_text("not data")
    with pytest.raises(ConfigError) as raised:
        expand_entries(entries)
    assert str(raised.value) == message
    with pytest.raises(ConfigError) as raised:
        prepared(entries)
    assert str(raised.value) == message


def test_a_panel_accepts_each_symbol_column_spelling(universe):
    expected = read_sources("one/AAA.csv")["one/AAA.csv"]
    for column in ("SYMBOL", "Ticker", "code", "Instrument"):
        path = f"panels/{column}.csv"
        long_panel(series_frames(), column).to_csv(path, index=False)
        series = read_sources(path)
        assert list(series) == [f"{path}::{symbol}" for symbol in SYMBOLS]
        got = series[f"{path}::AAA"]
        assert got.index.equals(expected.index) and got.columns.equals(expected.columns)
        assert got.to_numpy().tobytes() == expected.to_numpy().tobytes()


def test_a_parquet_panel_indexed_by_date_and_symbol_reads_as_its_columns(universe):
    """`frame.set_index(["Date", "Symbol"]).to_parquet(...)`, a common way to keep a long
    panel: the index comes back as columns, and the series are the panel's."""
    panel = long_panel(series_frames(as_text=False))
    panel.set_index(["Date", "Symbol"]).to_parquet("panels/indexed.parquet")
    assert_same_series(prepared(["panels/indexed.parquet"]), prepared(["panels/panel.parquet"]))


def test_a_one_series_parquet_file_reads_as_its_csv(universe):
    frame = series_frames(as_text=False)["BBB"]
    frame.to_parquet("BBB.parquet")
    frame.set_index("Date").to_parquet("indexed.parquet")  # pandas keeps Date as the index
    expected = read_sources("one/BBB.csv")["one/BBB.csv"]
    for path in ("BBB.parquet", "indexed.parquet"):
        got = read_sources(path)[path]
        assert got.index.equals(expected.index)
        assert got.to_numpy().tobytes() == expected.to_numpy().tobytes()


# --- a panel's bad rows: one line, exit 2, nothing written -------------------------------


def stage_project(tmp_path: Path, panel: pd.DataFrame, suffix: str = "csv") -> Path:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    if suffix == "csv":
        panel.to_csv(raw / "panel.csv", index=False)
    else:
        panel.to_parquet(raw / "panel.parquet")
    params = tiny_params_dict()
    params["data"]["files"] = ["data/raw"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def bad_panel(defect: str) -> tuple[pd.DataFrame, str]:
    """A CSV panel with one planted defect, and the one line it must give (the header is
    line 1, so the row at position i is line i + 2)."""
    panel = long_panel(series_frames())
    if defect == "missing symbol":
        panel.loc[40, "Symbol"] = None
        return panel, "error: data/raw/panel.csv: line 42, column 'Symbol': no symbol"
    if defect == "duplicate":
        rows = np.flatnonzero(panel["Symbol"] == "BBB")
        panel.loc[rows[21], "Date"] = panel.loc[rows[20], "Date"]
        return panel, (
            f"error: data/raw/panel.csv::BBB: line {rows[21] + 2}, column 'Date': duplicate "
            f"timestamp '{panel.loc[rows[20], 'Date']}' (also on line {rows[20] + 2})"
        )
    minimum = WARMUP_BARS + 3 + 1  # tiny label.horizon 3
    short = np.flatnonzero(panel["Symbol"] == "CCC")[minimum - 1 :]
    panel = panel.drop(index=short).reset_index(drop=True)
    return panel, (
        f"error: data/raw/panel.csv::CCC: only {minimum - 1} bars; at least {minimum} are "
        f"needed (warm-up {WARMUP_BARS} + label.horizon 3 + 1)"
    )


@pytest.mark.parametrize("defect", ["missing symbol", "duplicate", "too few bars"])
def test_a_bad_panel_row_stops_prepare_with_one_line_naming_file_symbol_and_row(tmp_path, defect):
    panel, expected = bad_panel(defect)
    assert prepare_error_line(stage_project(tmp_path, panel)) == expected


def test_a_parquet_panel_names_its_rows(tmp_path):
    panel = long_panel(series_frames(as_text=False))
    panel.loc[7, "Symbol"] = ""
    line = prepare_error_line(stage_project(tmp_path, panel, "parquet"))
    assert line == "error: data/raw/panel.parquet: row 8, column 'Symbol': no symbol"


# --- data.adjust_volume ------------------------------------------------------------------


def with_a_split(split_at: int) -> pd.DataFrame:
    """A generated series as a vendor reports a 2:1 split at bar `split_at`: before it, the
    raw prices are twice and the volume half the split-adjusted ones, Adj Close adjusted."""
    frame = synthetic_ohlcv(N_BARS, seed=5)
    frame["Adj Close"] = frame["Close"]
    before = frame.index < split_at
    for column in ("Open", "High", "Low", "Close"):
        frame.loc[before, column] *= 2
    frame.loc[before, "Volume"] /= 2
    return frame


def test_adjust_volume_divides_the_volume_from_a_split_on_by_its_ratio(tmp_path, capsys):
    """In the first bar's shares: no bar's volume depends on a later bar (a split in the
    lockbox, or not yet in the file, leaves every earlier volume as it is)."""
    path = tmp_path / "split.csv"
    raw = with_a_split(150)
    raw.to_csv(path, index=False)
    adjusted = load_series(path)
    reported = load_series(path, adjust_volume=False)
    volume = raw["Volume"].to_numpy()
    assert np.array_equal(adjusted["volume"].to_numpy()[:150], volume[:150])
    assert np.array_equal(adjusted["volume"].to_numpy()[150:], volume[150:] / 2)
    assert np.array_equal(reported["volume"].to_numpy(), volume)
    # Prices are adjusted either way; the split is named either way.
    np.testing.assert_allclose(adjusted["close"], synthetic_ohlcv(N_BARS, seed=5)["Close"])
    assert adjusted[["open", "high", "low", "close"]].equals(
        reported[["open", "high", "low", "close"]]
    )
    notes = capsys.readouterr().err
    assert notes.count("steps by 2:1") == 2
    assert "Volume from it on is divided by 2 (data.adjust_volume)" in notes
    assert "Volume is left as reported" in notes


def test_adjust_volume_reaches_prepare_and_is_recorded_only_when_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with_a_split(150).to_csv("split.csv", index=False)
    synthetic_ohlcv(N_BARS, seed=6).to_csv("plain.csv", index=False)
    on, off = (
        prepared(["split.csv", "plain.csv"]),
        prepared(["split.csv", "plain.csv"], adjust_volume=False),
    )
    assert "volume_as_reported" not in on.meta and off.meta["volume_as_reported"] is True
    plain = on.series == 1
    assert np.array_equal(on.features[plain], off.features[plain])
    assert not np.array_equal(on.features[~plain], off.features[~plain])
    assert np.array_equal(on.labels, off.labels)


@pytest.mark.slow
def test_a_file_added_to_a_globbed_directory_reruns_prepare_and_nothing_else_does(tmp_path):
    """data.files as a glob over data/raw (a prepare dependency): `dvc repro -s prepare`
    skips prepare while nothing changed, and reruns it once a file lands in the directory,
    which data.json then lists."""
    params = tiny_params_dict()
    project = make_project(tmp_path / "repo", params)
    params["data"]["files"] = ["data/raw/*.csv"]
    project.write_params(params)
    project.run("dvc", "repro", "-s", "prepare")
    project.commit("prepared from a glob")
    again = project.run("dvc", "repro", "-s", "prepare")
    assert "didn't change, skipping" in again.stdout
    assert "Running stage 'prepare'" not in again.stdout
    synthetic_ohlcv(400, seed=99).to_csv(project.path / "data/raw/added.csv", index=False)
    status = json.loads(project.run("dvc", "status", "--json", "prepare").stdout)
    assert "prepare" in status
    rerun = project.run("dvc", "repro", "-s", "prepare")
    assert "Running stage 'prepare'" in rerun.stdout
    read = json.loads((project.path / DATA_METRICS).read_text())["files"]
    assert read == sorted(
        str(p.relative_to(project.path)) for p in project.path.glob("data/raw/*.csv")
    )
    assert "data/raw/added.csv" in read


PLAIN = "Date,Open,High,Low,Close,Volume\n" + "".join(
    f"2000-01-{day:02d},100.98187237250727,101.5,99.25,{100 + day / 7!r},{1000 + day}\n"
    for day in range(3, 20)
)

# PLAIN with every cell quoted, as some exporters write.
QUOTED = "".join('"' + '","'.join(line.split(",")) + '"\n' for line in PLAIN.splitlines())


@pytest.mark.parametrize(
    ("content", "fast"),
    [
        pytest.param(PLAIN, True, id="plain, 17 digits, integer volume"),
        pytest.param(PLAIN.replace(",1003\n", ",NA\n").replace(",1004\n", ",\n"), True, id="NA"),
        pytest.param(PLAIN.replace("2000-01-", "200001"), True, id="numeric dates"),
        pytest.param(
            PLAIN.replace("Date,", "Date,Time,").replace(",100.9", ",09:30,100.9"),
            True,
            id="date and time",
        ),
        pytest.param(
            PLAIN.replace("Date,", "Ticker,Date,").replace("\n2000", "\nAAA,2000"), True, id="panel"
        ),
        pytest.param(
            "".join(
                f"{line},{'Exchange' if n == 0 else 'NYSE'}\n"
                for n, line in enumerate(PLAIN.splitlines())
            ),
            False,
            id="a text column",
        ),
        pytest.param(PLAIN.replace(",", ", "), False, id="padded"),
        pytest.param(PLAIN.replace("\n", ",\n"), False, id="trailing comma"),
        pytest.param("\ufeff" + PLAIN, False, id="byte-order mark"),
        pytest.param(PLAIN.replace(",101.5,", ',"1,015",', 1), False, id="a quoted comma"),
        pytest.param(PLAIN.replace("2000-01-05", ""), False, id="a missing date"),
        pytest.param(PLAIN.replace(",99.25,", ",99.25,7,", 1), False, id="a long row"),
        pytest.param(PLAIN.replace(",1003\n", ",NAN\n"), False, id="NAN spelled as a number"),
        pytest.param(PLAIN.replace(",101.5,", ",1e400,", 1), False, id="an overflowing number"),
        pytest.param(QUOTED, True, id="every cell quoted"),
        pytest.param(QUOTED.rstrip("\n")[:-3], False, id="cut inside a quote, no last line break"),
    ],
)
def test_the_fast_csv_parse_is_pandas_parse_bit_for_bit_or_steps_aside(tmp_path, content, fast):
    """pyarrow reads plain numeric files; whatever it might read differently goes to pandas.
    Either way the frame is the one pandas' round-trip parse gives, to the bit."""
    path = tmp_path / "prices.csv"
    path.write_text(content, encoding="utf-8")
    quick = _read_csv_arrow(path, path.read_bytes()[:8192])
    assert (quick is not None) == fast
    try:
        reference = _read_csv_pandas(path)
    except DataError:
        assert quick is None  # a file pandas refuses is never read by the fast parse
        return
    read = read_csv(path)
    assert list(read.columns) == list(reference.columns)
    for column in reference.columns:
        got, wanted = read[column], reference[column]
        assert got.dtype == wanted.dtype, column
        if wanted.dtype == np.float64:
            assert got.to_numpy().tobytes() == wanted.to_numpy().tobytes(), column
        else:
            assert got.tolist() == wanted.tolist(), column


def test_a_seventeen_digit_price_is_read_to_the_nearest_float(tmp_path):
    """pandas' default C parser reads 100.98187237250727 one unit in the last place off;
    a file written with repr() floats must read back exactly."""
    path = tmp_path / "prices.csv"
    path.write_text(PLAIN)
    assert pd.read_csv(path)["Open"][0] != 100.98187237250727  # what the default would give
    assert (load_series(path)["open"].to_numpy() == 100.98187237250727).all()


def test_a_panels_symbols_are_named_as_pandas_names_them_whatever_their_type(tmp_path):
    """Symbols stored as bytes or with padding name the series as pandas' astype(str) then
    strip name them; two spellings of one symbol are one series."""
    rows = synthetic_ohlcv(4, seed=1).assign(Date=lambda frame: frame["Date"].astype(str))
    panel = pd.concat([rows.assign(Ticker=b"AAPL"), rows.assign(Ticker=b"MSFT")], ignore_index=True)
    panel.loc[1, "Ticker"] = b" AAPL"
    panel.to_parquet(tmp_path / "bytes.parquet")
    keys = list(split_sources("bytes.parquet", tmp_path))
    assert keys == ["bytes.parquet::AAPL", "bytes.parquet::MSFT"]


def test_a_panels_parts_keep_their_columns_types_zoned_date_times_included(tmp_path):
    """Each symbol's part holds its rows with the file's own column types (a zoned Parquet
    timestamp stays zoned), so it validates as that symbol's rows alone do."""
    rows = synthetic_ohlcv(80, seed=2)
    rows["Date"] = rows["Date"].dt.tz_localize("America/New_York")
    both = pd.concat([rows.assign(Symbol="B"), rows.assign(Symbol="A")]).sort_values(
        ["Date", "Symbol"], kind="stable"
    )
    both.to_parquet(tmp_path / "zoned.parquet", index=False)
    parts = split_sources("zoned.parquet", tmp_path)
    assert list(parts) == ["zoned.parquet::A", "zoned.parquet::B"]
    alone = rows.reset_index(drop=True)
    for part in parts.values():
        assert part["Date"].dtype == alone["Date"].dtype
        pd.testing.assert_frame_equal(part, alone)


# --- layouts users bring that pandas would misread ------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["pyarrow", "pandas"])
def test_tickers_spelled_like_pandas_missing_values_are_symbols(tmp_path, fast):
    """NA (National Bank of Canada), NAN and NULL are tickers, not missing cells; only an
    empty symbol cell is missing. Both CSV parsers read them so."""
    frames = series_frames()
    tickers = dict(zip(SYMBOLS, ("NA", "NAN", "NULL"), strict=True))
    panel = long_panel(frames)
    panel["Symbol"] = panel["Symbol"].map(tickers)
    if not fast:  # a padded header cell sends the file to pandas' parser
        panel = panel.rename(columns={"Volume": " Volume"})
    panel.to_csv(tmp_path / "panel.csv", index=False)
    path = str(tmp_path / "panel.csv")
    assert (_read_csv_arrow(Path(path), Path(path).read_bytes()[:8192]) is not None) == fast
    parts = split_sources(path)
    assert list(parts) == [f"{path}::{ticker}" for ticker in sorted(tickers.values())]
    assert len(parts[f"{path}::NA"]) == len(frames["AAA"])
    panel.loc[5, "Symbol"] = ""
    panel.to_csv(tmp_path / "panel.csv", index=False)
    with pytest.raises(DataError, match=r"panel.csv: line 7, column 'Symbol': no symbol"):
        split_sources(path)


def test_the_symbol_separator_in_a_symbol_or_a_file_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel = long_panel(series_frames())
    panel.loc[panel["Symbol"] == "BBB", "Symbol"] = "A::B"
    panel.to_csv("panel.csv", index=False)
    first = int(np.flatnonzero(panel["Symbol"] == "A::B")[0])
    with pytest.raises(DataError) as raised:
        split_sources("panel.csv")
    assert str(raised.value) == (
        f"panel.csv: line {first + 2}, column 'Symbol': symbol 'A::B' holds '::', which "
        "separates a panel's file from its symbol; rename it"
    )
    (tmp_path / "we::ird.csv").write_text("Date,Open,High,Low,Close,Volume\n")
    for entry in ("we::ird.csv", "*.csv", "."):
        with pytest.raises(ConfigError) as raised:
            expand_entries([entry])
        assert str(raised.value).endswith(
            "'we::ird.csv': a file name may not hold '::', which separates a panel's file "
            "from its symbol; rename the file"
        ), entry


def test_a_directory_skips_hidden_files_as_a_glob_does(universe):
    (universe / "one" / "._AAA.csv").write_bytes(b"\x00\x05\x16\x07 resource fork")
    assert expand_entries(["one"]) == expand_entries(["one/*.csv"])
    assert expand_entries(["one"]) == [f"one/{symbol}.csv" for symbol in SYMBOLS]


def test_a_parquet_file_stamped_by_an_unnamed_date_time_index_reads_as_its_csv(universe):
    frame = series_frames(as_text=False)["AAA"]
    frame.set_index("Date").rename_axis(None).to_parquet("indexed.parquet")
    expected = read_sources("one/AAA.csv")["one/AAA.csv"]
    loaded = read_sources("indexed.parquet")["indexed.parquet"]
    pd.testing.assert_frame_equal(loaded, expected)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x1f\x8b\x08\x00\x00", "a gzip-compressed file; decompress it first"),
        (b"PK\x03\x04\x14\x00", "a zip-compressed file; decompress it first"),
        (
            b"Date;Open;High;Low;Close;Volume\n2000-01-03;1,5;1,6;1,4;1,5;100\n",
            "the header's fields are separated by ';', not by commas; finseq reads "
            "comma-separated files: save it with commas",
        ),
        (
            b"Date\tOpen\tHigh\tLow\tClose\tVolume\n2000-01-03\t1.5\t1.6\t1.4\t1.5\t100\n",
            "the header's fields are separated by '\\t', not by commas; finseq reads "
            "comma-separated files: save it with commas",
        ),
        (
            b"# Source: a vendor, 2020\nDate,Open,High,Low,Close,Volume\n",
            "line 1 ('# Source: a vendor, 2020') is not a header naming the columns; remove "
            "the lines above the header",
        ),
        (
            b"Date,Open,High,Low,Close,Volume,Close\n2000-01-03,1,2,1,1,100,1.5\n",
            "column 'Close' appears twice in the header; keep one",
        ),
    ],
    ids=["gzip", "zip", "semicolons", "tabs", "comment line", "column twice"],
)
def test_a_file_pandas_would_misread_is_one_line_naming_the_cause(tmp_path, content, message):
    path = tmp_path / "prices.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as raised:
        read_csv(path)
    assert str(raised.value) == f"{path}: {message}"


def test_a_header_that_starts_with_a_hash_is_still_a_header(tmp_path):
    frame = synthetic_ohlcv(30, seed=3)
    plain = tmp_path / "plain.csv"
    frame.to_csv(plain, index=False)
    hashed = tmp_path / "hashed.csv"
    hashed.write_text("#" + plain.read_text())
    pd.testing.assert_frame_equal(load_series(hashed), load_series(plain))


def test_a_file_outside_the_project_is_noted_as_untracked(universe, capsys):
    from finseq.panel import note_files_outside

    project = universe / "one"
    note_files_outside(["AAA.csv", "../one/BBB.csv"], project)
    assert capsys.readouterr().err == ""
    note_files_outside(["AAA.csv", "../panels/panel.csv", str(universe / "x.csv")], project)
    assert capsys.readouterr().err == (
        "note: data.files reads '../panels/panel.csv' and 1 more from outside the project: DVC "
        "does not track it, so a change to it will not rerun prepare; copy it under data/raw\n"
    )
