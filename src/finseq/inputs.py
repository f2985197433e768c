"""data.files (or predict's arguments) → the files read → the series they hold.

An entry is a file, a directory (its *.csv and *.parquet files) or a glob, expanded in
sorted order. A file holds one series (named after its stem), or is a long-format panel
with a symbol column (Symbol, Ticker, Code or Instrument, any case) holding one series per
symbol, named after the symbol and keyed `file::SYMBOL`. CSV and Parquet files are read
here; every series, of either, goes through the same finseq.load.validate_series.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from finseq.errors import ConfigError, DataError
from finseq.load import (
    DATE_COLUMN_NAMES,
    SYMBOL_COLUMN_NAMES,
    line_of,
    normalise,
    read_csv,
    validate_series,
)

TABLE_SUFFIXES = (".csv", ".parquet")
# A panel's series is keyed by its file and symbol: 'data/universe/prices.csv::AAPL'.
SYMBOL_SEPARATOR = "::"


def series_name(key: str) -> str:
    """A one-series file's series is named after its stem, a panel's after its symbol."""
    if SYMBOL_SEPARATOR in key:
        return key.rsplit(SYMBOL_SEPARATOR, 1)[1]
    return Path(key).stem


def source_file(key: str) -> str:
    """The file a series key was read from."""
    return key.rsplit(SYMBOL_SEPARATOR, 1)[0] if SYMBOL_SEPARATOR in key else key


def expand_entries(
    entries: Sequence[str], root: Path = Path(), listed_in: str = "data.files"
) -> list[str]:
    """Each entry's files, in entry order, each entry's own in sorted order; paths as the
    entry spells them, relative to `root`. A file is kept as given (a missing one is
    load's error); a directory or glob matching no file, or a file matched twice, is a
    ConfigError naming the entries."""
    files: list[str] = []
    matched_by: dict[str, str] = {}
    for entry in entries:
        if glob.has_magic(entry):
            found = [
                path
                for path in sorted(glob.glob(entry, root_dir=root, recursive=True))
                if (root / path).is_file()
            ]
        elif (root / entry).is_dir():
            found = sorted(
                str(Path(entry) / path.name)
                for path in (root / entry).iterdir()
                if path.suffix.lower() in TABLE_SUFFIXES and path.is_file()
            )
        else:
            found = [entry]
        if not found:
            what = "files" if glob.has_magic(entry) else "*.csv or *.parquet files"
            raise ConfigError(f"{listed_in}: {entry!r} matches no {what}")
        for path in found:
            normal = os.path.normpath(path)
            if normal in matched_by:
                raise ConfigError(
                    f"{listed_in}: {path!r} is matched by both {matched_by[normal]!r} and "
                    f"{entry!r}; list each file once"
                )
            matched_by[normal] = entry
            files.append(path)
    return files


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or (by its suffix) Parquet file's rows, as read, its attrs naming the file."""
    if path.suffix.lower() == ".parquet":
        frame = _read_parquet(path)
        frame.attrs["parquet"] = True
    else:
        frame = read_csv(path)
    frame.attrs["path"] = str(path)
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow
    import pyarrow.parquet

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pyarrow.parquet.read_table(path).to_pandas()
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{path}: not a readable Parquet file ({reason})") from None
    if any(name is not None for name in frame.index.names) or isinstance(
        frame.index, pd.DatetimeIndex
    ):
        frame = frame.reset_index()  # pandas wrote its (Date, Symbol) index as the index
    # Numbers in a date column are text, as read_csv keeps them: 20000103 is a date.
    for column in frame.columns:
        if normalise(column) in DATE_COLUMN_NAMES and pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype(str)
    return frame


def read_sources(path: str, root: Path = Path(), adjust_volume: bool = True) -> dict:
    """The validated series of one file (`path` under `root`), keyed by `path` for a
    one-series file and `path::SYMBOL` for each symbol of a panel (symbols in sorted
    order). A panel's symbol's rows, in file order, are validated as a file of their own."""
    frame = read_table(root / path)
    symbol_columns = [
        column for column in frame.columns if normalise(column) in SYMBOL_COLUMN_NAMES
    ]
    if not symbol_columns or not len(frame):
        return {path: validate_series(root / path, frame, adjust_volume)}
    column = symbol_columns[0]
    symbols = frame[column].astype(str).str.strip().to_numpy()
    missing = frame[column].isna().to_numpy() | (symbols == "")
    if missing.any():
        position = int(np.argmax(missing))
        raise DataError(f"{root / path}: {line_of(frame, position)}, column {column!r}: no symbol")
    series = {}
    for symbol in sorted(set(symbols)):
        rows = np.flatnonzero(symbols == symbol)
        part = frame.iloc[rows].drop(columns=column).reset_index(drop=True)
        part.attrs = {**frame.attrs, "rows": rows, "file_rows": len(frame)}
        key = f"{path}{SYMBOL_SEPARATOR}{symbol}"
        series[key] = validate_series(root / key, part, adjust_volume)
    return series
