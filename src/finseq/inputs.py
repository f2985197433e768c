"""data.files (or predict's arguments) → the files read → the series they hold.

An entry is a file, a directory (its *.csv and *.parquet files) or a glob, expanded in
sorted order. A file holds one series (named after its stem), or is a long-format panel
with a symbol column (Symbol, Ticker, Code or Instrument, any case) holding one series per
symbol, named after the symbol and keyed `file::SYMBOL`. CSV and Parquet files are read
here; every series, of either, goes through the same finseq.load.validate_series.
"""

from __future__ import annotations

import csv
import glob
import multiprocessing
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES as PANDAS_MISSING_SPELLINGS

from finseq.errors import ConfigError, DataError
from finseq.load import (
    DATE_COLUMN_NAMES,
    SYMBOL_COLUMN_NAMES,
    line_of,
    normalise,
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
                # Hidden files are skipped, as a glob skips them (macOS's ._x.csv).
                if path.suffix.lower() in TABLE_SUFFIXES
                and not path.name.startswith(".")
                and path.is_file()
            )
        else:
            found = [entry]
        if not found:
            what = "files" if glob.has_magic(entry) else "*.csv or *.parquet files"
            raise ConfigError(f"{listed_in}: {entry!r} matches no {what}")
        for path in found:
            if SYMBOL_SEPARATOR in path:
                raise ConfigError(
                    f"{listed_in}: {path!r}: a file name may not hold {SYMBOL_SEPARATOR!r}, "
                    "which separates a panel's file from its symbol; rename the file"
                )
            normal = os.path.normpath(path)
            if normal in matched_by:
                raise ConfigError(
                    f"{listed_in}: {path!r} is matched by both {matched_by[normal]!r} and "
                    f"{entry!r}; list each file once"
                )
            matched_by[normal] = entry
            files.append(path)
    return files


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV file's rows as pandas reads them (skipinitialspace, pandas' missing-value
    spellings but in a symbol column, dates and symbols as text), every number correctly
    rounded, once _check_layout has found nothing pandas would misread.

    A plain numeric OHLCV file is parsed by pyarrow, three times faster than pandas' C
    parser; anything it would read differently (see _read_csv_arrow) goes to pandas with
    float_precision="round_trip", which rounds as pyarrow does, so both give the same bits.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    with path.open("rb") as handle:
        head = handle.read(8192)
    _check_layout(path, head)
    frame = _read_csv_arrow(path, head)
    return frame if frame is not None else _read_csv_pandas(path)


COMPRESSED = {b"\x1f\x8b": "gzip", b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ": "xz"}
OTHER_DELIMITERS = (";", "\t", "|")


def _check_layout(path: Path, head: bytes) -> None:
    """What pandas would misread without a word, or refuse with a message that hides the
    cause: a compressed or binary file, a first line that is not the header (a '#'
    comment), another delimiter than the comma, a column named twice (pandas reads the
    second as 'Close.1' and the first is used)."""
    for magic, kind in COMPRESSED.items():
        if head.startswith(magic):
            raise DataError(f"{path}: a {kind}-compressed file; decompress it first")
    if b"\x00" in head:
        raise DataError(f"{path}: not a CSV file (it contains binary data)")
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace")
    first_line = first_line.lstrip("\ufeff")
    try:
        names = [name.strip() for name in next(csv.reader([first_line]))]
    except (StopIteration, csv.Error):
        return
    if first_line.startswith("#") and not _text_columns(names):
        raise DataError(
            f"{path}: line 1 ({first_line[:40]!r}) is not a header naming the columns; "
            "remove the lines above the header"
        )
    if len(names) == 1:
        delimiter = next((one for one in OTHER_DELIMITERS if one in first_line), None)
        if delimiter is not None:
            raise DataError(
                f"{path}: the header's fields are separated by {delimiter!r}, not by commas; "
                "finseq reads comma-separated files: save it with commas"
            )
    seen = set()
    for name in names:
        if name and name in seen:
            raise DataError(f"{path}: column {name!r} appears twice in the header; keep one")
        seen.add(name)


def _text_columns(columns: Iterable[object]) -> list:
    """Date, time and symbol columns: read as text, as their values are not numbers (20000103
    would become a count of nanoseconds, 0930 lose its zero)."""
    return [
        column
        for column in columns
        if normalise(column) in (*DATE_COLUMN_NAMES, *SYMBOL_COLUMN_NAMES)
    ]


def _symbol_columns(columns: Iterable[object]) -> list:
    return [column for column in columns if normalise(column) in SYMBOL_COLUMN_NAMES]


def _missing_spellings(columns: Iterable[object]) -> dict:
    """pandas' missing-value spellings for every column but a symbol's, where only an empty
    cell is missing: NA, NAN and NULL are real tickers."""
    symbols = _symbol_columns(columns)
    return {
        column: [""] if column in symbols else sorted(PANDAS_MISSING_SPELLINGS)
        for column in columns
    }


def _read_csv_arrow(path: Path, head: bytes) -> pd.DataFrame | None:
    """pyarrow's parse, or None where it could differ from pandas': a header pandas would
    rename or strip (blank, duplicated, padded, a byte-order mark), a last line with an
    open quote (pyarrow closes it, pandas refuses a truncated file), a row pyarrow rejects,
    a column that is not all numbers (other than the text columns), a NaN or infinity
    spelled as a number (pandas keeps 'NAN' or '1e400' as text), or a text value that is
    missing (_missing_spellings) or starts with a space."""
    import pyarrow
    import pyarrow.compute
    import pyarrow.csv

    if _last_line(path).count(b'"') % 2:
        return None
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header = next(csv.reader([first_line.decode("utf-8")]))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        return None
    if (
        not header
        or len(set(header)) < len(header)
        or any(not name or name != name.strip() or "\ufeff" in name for name in header)
    ):
        return None
    text_columns = _text_columns(header)
    spellings = _missing_spellings(header)
    try:
        table = pyarrow.csv.read_csv(
            path,
            # Threads only in the main process: in a pool, one thread per worker.
            read_options=pyarrow.csv.ReadOptions(
                use_threads=multiprocessing.parent_process() is None
            ),
            convert_options=pyarrow.csv.ConvertOptions(
                column_types={name: pyarrow.string() for name in text_columns},
                null_values=sorted(PANDAS_MISSING_SPELLINGS),
            ),
        )
    except (pyarrow.ArrowException, OSError, ValueError):
        return None
    if table.column_names != header:
        return None
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in text_columns:
            missing = pyarrow.array(spellings[name])
            if (
                pyarrow.compute.any(pyarrow.compute.is_in(column, missing)).as_py()
                or pyarrow.compute.any(pyarrow.compute.starts_with(column, " ")).as_py()
            ):
                return None
        elif column.type == pyarrow.float64():
            finite = pyarrow.compute.is_finite(column)
            if pyarrow.compute.sum(finite).as_py() != len(column) - column.null_count:
                return None
        elif column.type != pyarrow.int64():
            return None
    # Column by column: the same arrays as table.to_pandas(), without its metadata pass.
    return pd.DataFrame(
        {
            name: column.to_numpy(zero_copy_only=False)
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )


def _last_line(path: Path) -> bytes:
    """The file's last line (its last 64 KiB at most), without its line break."""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 65536))
        tail = handle.read().rstrip(b"\r\n")
    return tail.rsplit(b"\n", 1)[-1]


def _read_csv_pandas(path: Path) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # index_col=False keeps a trailing comma on every row from shifting the columns
            # one to the right; pandas then drops surplus fields with only a warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            options = {"skipinitialspace": True, "index_col": False}
            frame = pd.read_csv(path, float_precision="round_trip", **options)
            # Text columns read as numbers, or a symbol column: rare, so only such files are
            # read twice.
            dtypes = {
                column: str
                for column in _text_columns(frame.columns)
                if frame[column].dtype != object
            }
            if dtypes or _symbol_columns(frame.columns):
                frame = pd.read_csv(
                    path,
                    dtype=dtypes,
                    float_precision="round_trip",
                    keep_default_na=False,
                    na_values=_missing_spellings(frame.columns),
                    **options,
                )
            return frame
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserWarning:
        raise DataError(
            f"{path}: not a readable CSV file (a row has more fields than the header)"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{path}: not a readable CSV file ({reason})") from None


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
    if isinstance(frame.index, pd.DatetimeIndex) and frame.index.name is None:
        # A date-time index with no name: the bars' stamps, unless a column holds them.
        has_dates = any(normalise(column) in DATE_COLUMN_NAMES for column in frame.columns)
        frame = frame.reset_index(names=None if has_dates else "timestamp")
    elif any(name is not None for name in frame.index.names):
        frame = frame.reset_index()  # pandas wrote its (Date, Symbol) index as the index
    # Numbers in a date column are text, as read_csv keeps them: 20000103 is a date.
    for column in frame.columns:
        if normalise(column) in DATE_COLUMN_NAMES and pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype(str)
    return frame


def split_sources(path: str, root: Path = Path()) -> dict[str, pd.DataFrame]:
    """The rows of each series of one file (`path` under `root`), as read and not yet
    validated, keyed by `path` for a one-series file and `path::SYMBOL` for each symbol of a
    panel (symbols in sorted order, each symbol's rows in file order, its attrs naming their
    file rows). A row with no symbol is refused here."""
    frame = read_table(root / path)
    symbol_columns = _symbol_columns(frame.columns)
    if not symbol_columns or not len(frame):
        return {path: frame}
    column = symbol_columns[0]
    # Factorised first: the few distinct spellings are turned into names (as pandas'
    # astype(str) names them) and stripped, not the many rows; spellings that strip to one
    # name are one symbol.
    codes, spellings = pd.factorize(frame[column], use_na_sentinel=True)
    names = pd.Series(spellings).astype(str).str.strip().tolist()
    symbols = sorted(set(names))
    number = {symbol: index for index, symbol in enumerate(symbols)}
    renumbered = np.array([number[name] for name in names] + [-1], dtype=np.int64)
    codes = renumbered[codes]  # a missing symbol (code -1) stays -1
    blank = np.array([symbol == "" for symbol in symbols] + [True])
    missing = blank[codes]
    if missing.any():
        position = int(np.argmax(missing))
        raise DataError(f"{root / path}: {line_of(frame, position)}, column {column!r}: no symbol")
    for code, symbol in enumerate(symbols):
        if SYMBOL_SEPARATOR in symbol:
            position = int(np.argmax(codes == code))
            raise DataError(
                f"{root / path}: {line_of(frame, position)}, column {column!r}: symbol "
                f"{symbol!r} holds {SYMBOL_SEPARATOR!r}, which separates a panel's file from "
                "its symbol; rename it"
            )
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(symbols)))])
    # Each column reordered once, each symbol's part a slice of it.
    by_symbol = {name: frame[name].array.take(order) for name in frame.columns if name != column}
    parts = {}
    for code, symbol in enumerate(symbols):
        start, stop = int(bounds[code]), int(bounds[code + 1])
        part = pd.DataFrame({name: values[start:stop] for name, values in by_symbol.items()})
        part.attrs = {**frame.attrs, "rows": order[start:stop], "file_rows": len(frame)}
        parts[f"{path}{SYMBOL_SEPARATOR}{symbol}"] = part
    return parts


def read_sources(path: str, root: Path = Path(), adjust_volume: bool = True) -> dict:
    """The validated series of one file, keyed as split_sources keys them: each series'
    rows are validated as a file of their own."""
    return {
        key: validate_series(root / key, part, adjust_volume)
        for key, part in split_sources(path, root).items()
    }


def load_series(path: str | Path, adjust_volume: bool = True) -> pd.DataFrame:
    """One file of one series (CSV or Parquet): validate_series of its rows."""
    path = Path(path)
    frame = read_table(path)
    return validate_series(path, frame, adjust_volume)
