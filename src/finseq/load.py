"""Raw OHLCV table → validated frame, one series per file or per symbol of a panel.

Every problem within one series is raised here, as a DataError naming the file (and the
symbol of a panel: `file::SYMBOL`), the column and the first offending line (the header is
line 1; a Parquet file's data rows count from 1). Which files are read, and how a panel is
split into series, is finseq.inputs; problems of a series as a whole (too short for the
windows) are raised by finseq.panel and finseq.window_sets. A few harmless vendor quirks
are repaired instead; see `validate_series`.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.errors import DataError, note
from finseq.splits import split_adjusted_volume, split_like_steps
from finseq.stamps import timestamps

PRICE_COLUMNS = ("open", "high", "low", "close")
OHLCV_COLUMNS = (*PRICE_COLUMNS, "volume")
DATE_COLUMN_NAMES = ("date", "datetime", "timestamp", "time")
# A long-format panel's symbol column (finseq.inputs), read as text like the dates.
SYMBOL_COLUMN_NAMES = ("symbol", "ticker", "code", "instrument")
ADJ_CLOSE = "adjclose"


def normalise(name: str) -> str:
    """'Adj Close', 'adj_close' and ' ADJCLOSE ' all become 'adjclose'."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


# What a frame's attrs say of where its rows come from: the file, and for a panel's symbol
# the file row of each of its rows and the file's row count; a Parquet file has no lines.
WHERE_ATTRS = ("path", "rows", "file_rows", "parquet")


def line_of(frame: pd.DataFrame, position: int) -> str:
    """'line N' of the CSV data row (or bar of a frame from finseq.inputs.load_series) at
    0-based `position`; 'row N' (from 1) in a Parquet file.

    Counted only when a message needs it: a valid file never pays for a second read.
    """
    attrs = frame.attrs
    row = int(attrs["rows"][position]) if "rows" in attrs else position
    if attrs.get("parquet"):
        return f"row {row + 1}"
    n_rows = attrs.get("file_rows", len(frame))
    return f"line {int(_data_line_numbers(Path(attrs['path']), n_rows)[row])}"


def _data_line_numbers(path: Path, n_rows: int) -> np.ndarray:
    """File line of each data row: pandas skips blank lines, so a row's position alone drifts."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        non_blank = [number for number, line in enumerate(handle, start=1) if line.strip()]
    data_lines = non_blank[1:]
    if len(data_lines) != n_rows:  # quoted line breaks: fall back to one line per row
        return np.arange(n_rows) + 2
    return np.asarray(data_lines)


def _find_columns(path: Path, frame: pd.DataFrame) -> dict[str, str]:
    """Maps canonical names (date, open, ..., adjclose) to the file's own column names."""
    by_normalised: dict[str, str] = {}
    for column in frame.columns:
        key = normalise(column)
        if key in by_normalised:
            raise DataError(
                f"{path}: columns {by_normalised[key]!r} and {column!r} mean the same thing"
            )
        by_normalised[key] = column
    date_key = next((name for name in DATE_COLUMN_NAMES if name in by_normalised), None)
    if date_key is None:
        raise DataError(
            f"{path}: no date column (looked for Date, Datetime, Timestamp or Time); "
            f"columns are: {', '.join(map(str, frame.columns))}"
        )
    missing = [name for name in OHLCV_COLUMNS if name not in by_normalised]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(m.capitalize() for m in missing)}; "
            f"columns are: {', '.join(map(str, frame.columns))}"
        )
    columns = {"date": by_normalised[date_key]}
    if date_key == "date" and "time" in by_normalised:
        # Intraday exports often split the stamp into a Date and a Time column.
        columns["time"] = by_normalised["time"]
    for name in (*OHLCV_COLUMNS, ADJ_CLOSE):
        if name in by_normalised:
            columns[name] = by_normalised[name]
    return columns


def _panel_hint(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    """For a message about repeated or unordered timestamps: a column finseq does not read
    that is not float (text or integers) may be a panel's symbol under another name."""
    if "rows" in frame.attrs:  # a panel's symbol: its symbol column was found
        return ""
    known = set(columns.values())
    others = [
        column
        for column in frame.columns
        if column not in known and not pd.api.types.is_float_dtype(frame[column].dtype)
    ]
    if not others:
        return ""
    return (
        f"; if column {others[0]!r} names each row's series (a long-format panel), call it "
        "Symbol, Ticker, Code or Instrument"
    )


def _numeric(path: Path, frame: pd.DataFrame, column: str) -> np.ndarray:
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        # The parser read every cell as a number (an empty one as NaN): nothing to convert.
        array = raw.to_numpy(dtype=np.float64)
    else:
        values = pd.to_numeric(raw, errors="coerce")
        not_a_number = values.isna() & raw.notna()
        if not_a_number.any():
            position = int(np.argmax(not_a_number.to_numpy()))
            raise DataError(
                f"{path}: {line_of(frame, position)}, column {column!r}: "
                f"{raw.iloc[position]!r} is not a number"
            )
        array = values.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        position = int(np.argmax(bad))
        what = "missing value" if np.isnan(array[position]) else f"{array[position]} is not finite"
        raise DataError(f"{path}: {line_of(frame, position)}, column {column!r}: {what}")
    return array


def _reject_first(
    path: Path, frame: pd.DataFrame, bad: np.ndarray, column: str, values: np.ndarray, problem: str
) -> None:
    """Raises for the first row flagged in `bad`, quoting that row's value."""
    if bad.any():
        position = int(np.argmax(bad))
        raise DataError(
            f"{path}: {line_of(frame, position)}, column {column!r}: {values[position]:g} {problem}"
        )


def validate_series(
    path: str | Path, frame: pd.DataFrame, adjust_volume: bool = True
) -> pd.DataFrame:
    """The rows of one series (`frame`, as read, its attrs saying where they come from;
    `path` names it in messages) as a frame indexed by timestamp.

    Columns of the result: open, high, low, close, volume (float64). Column names are
    matched ignoring case, spaces and underscores; separate Date and Time columns are
    joined. Rejected: see the DataError messages below. Repaired:
      - if an Adj Close column is present, Open/High/Low/Close are multiplied by
        Adj Close / Close so that splits and dividends do not appear as returns; with
        `adjust_volume` (data.adjust_volume), Volume is split-adjusted too (see
        split_adjusted_volume);
      - a High below max(Open, Close) is raised to it, a Low above min(Open, Close)
        is lowered to it, with a note on stderr (a common vendor rounding glitch;
        High < Low is rejected).
    """
    columns = _find_columns(path, frame)
    if len(frame) == 0:
        raise DataError(f"{path}: has a header but no data rows")
    values = {
        name: _numeric(path, frame, columns[name])
        for name in columns
        if name not in ("date", "time")
    }
    for name in (*PRICE_COLUMNS, ADJ_CLOSE):
        if name in values:
            price = values[name]
            _reject_first(path, frame, price <= 0, columns[name], price, "is not a positive price")
    volume = values["volume"]
    _reject_first(path, frame, volume < 0, columns["volume"], volume, "is a negative volume")
    high, low = values["high"], values["low"]
    _reject_first(
        path, frame, high < low, columns["high"], high, "is below the Low of the same bar"
    )
    stamp_text = frame[columns["date"]]
    stamp_column = columns["date"]
    if "time" in columns:
        stamp_text = stamp_text + " " + frame[columns["time"]]
        stamp_column = f"{columns['date']} + {columns['time']}"
    where = partial(line_of, frame)
    stamps = timestamps(path, stamp_text, stamp_column, where, _panel_hint(frame, columns))

    if ADJ_CLOSE in values:
        factor = values[ADJ_CLOSE] / values["close"]
        _note_split_like_steps(path, frame, columns, factor, adjust_volume)
        if adjust_volume:
            values["volume"] = split_adjusted_volume(values["volume"], factor)
        for name in PRICE_COLUMNS:
            values[name] = values[name] * factor
    body_high = np.maximum(values["open"], values["close"])
    body_low = np.minimum(values["open"], values["close"])
    repaired = int(((values["high"] < body_high) | (values["low"] > body_low)).sum())
    if repaired:
        print(
            f"note: {path}: {repaired} bar(s) had High/Low inside the Open-Close range; "
            "widened to cover it",
            file=sys.stderr,
        )
        values["high"] = np.maximum(values["high"], body_high)
        values["low"] = np.minimum(values["low"], body_low)
    _note_implausible_moves(path, frame, columns, values)
    index = pd.DatetimeIndex(stamps, name="timestamp")
    _note_long_gaps(path, frame, index)
    result = pd.DataFrame({name: values[name] for name in OHLCV_COLUMNS}, index=index)
    # Bar i is data row i of the series: line_of names its line in later messages.
    result.attrs.update({key: frame.attrs[key] for key in WHERE_ATTRS if key in frame.attrs})
    return result


# A one-bar move beyond 10x (|log return| > ln 10) is not a market move: single stocks can
# double in a day and the 1987 crash was a log return of -0.229. It is a unit slip, a
# missing decimal point or an unadjusted split, so it is named (the run goes on).
IMPLAUSIBLE_LOG_MOVE = float(np.log(10.0))
IMPLAUSIBLE_SHOWN = 3


def one_bar_moves(values: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per bar, the largest |log(price / previous close)| over Open/High/Low/Close (0 for the
    first bar), and which of those columns it was (an index into PRICE_COLUMNS)."""
    previous = np.concatenate([[values["close"][0]], values["close"][:-1]])
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        moves = np.abs(np.log(np.stack([values[name] for name in PRICE_COLUMNS]) / previous))
    moves = np.nan_to_num(moves, nan=np.inf)
    return moves.max(axis=0), moves.argmax(axis=0)


def _note_implausible_moves(
    path: Path, frame: pd.DataFrame, columns: dict[str, str], values: dict[str, np.ndarray]
) -> None:
    moves, which = one_bar_moves(values)
    flagged = np.flatnonzero(moves > IMPLAUSIBLE_LOG_MOVE)
    for position in flagged[:IMPLAUSIBLE_SHOWN]:
        name = PRICE_COLUMNS[which[position]]
        note(
            f"{path}: {line_of(frame, position)}, column {columns[name]!r}: "
            f"{frame[columns[name]].iloc[position]} is a one-bar move of more than 10x from the "
            "previous close; check that bar"
        )
    if len(flagged) > IMPLAUSIBLE_SHOWN:
        note(f"{path}: {len(flagged) - IMPLAUSIBLE_SHOWN} more bar(s) move more than 10x")


# Features, labels and windows count bars, not days (as TA-Lib does): a weekend, a holiday or a
# night is no bar, and the next bar follows the last one. A hole far longer than the series'
# own longest regular pauses (its 99th-percentile spacing) is more likely missing data.
LONG_GAP_FACTOR = 5
LONG_GAPS_SHOWN = 3


def long_gaps(index: pd.DatetimeIndex) -> np.ndarray:
    """Positions of the bars that follow a gap longer than LONG_GAP_FACTOR times the
    series' 99th-percentile bar spacing."""
    if len(index) < 3:
        return np.array([], dtype=np.int64)
    steps = np.diff(index.asi8)
    longest_regular = np.percentile(steps, 99, method="lower")
    return np.flatnonzero(steps > LONG_GAP_FACTOR * longest_regular) + 1


def _note_long_gaps(path: Path, frame: pd.DataFrame, index: pd.DatetimeIndex) -> None:
    gaps = long_gaps(index)
    for position in gaps[:LONG_GAPS_SHOWN]:
        gap = index[position] - index[position - 1]
        note(
            f"{path}: {line_of(frame, position)}: no bar for {gap} before {index[position]}, "
            f"over {LONG_GAP_FACTOR}x the series' longest regular pause; features, labels and "
            "windows count bars, not days, and run across it. If bars are missing there, "
            "split the file at that line into two series (each gets its own warm-up)"
        )
    if len(gaps) > LONG_GAPS_SHOWN:
        note(f"{path}: {len(gaps) - LONG_GAPS_SHOWN} more such gap(s)")


def _note_split_like_steps(
    path: Path, frame: pd.DataFrame, columns: dict[str, str], factor: np.ndarray, adjusted: bool
) -> None:
    """At a split the prices are adjusted by Adj Close; the volume is too with
    data.adjust_volume, else left as reported, so the volume features jump. Named, for the
    user to check."""
    volume = columns["volume"]
    for position, ratio in split_like_steps(factor):
        done = (
            f"{volume} from it on is divided by {Fraction(ratio.replace(':', '/'))} "
            "(data.adjust_volume)"
            if adjusted
            else f"{volume} is left as reported, so the volume features jump at this bar (set "
            "data.adjust_volume, use split-adjusted volume, or drop Adj Close)"
        )
        note(
            f"{path}: {line_of(frame, position)} ({frame[columns['date']].iloc[position]}): "
            f"{columns[ADJ_CLOSE]} / {columns['close']} steps by {ratio}, as at a split that "
            f"Close is not adjusted for; {done}"
        )
