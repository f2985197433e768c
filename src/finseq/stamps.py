"""A date or date-time column → one naive UTC datetime64[ns] per bar, strictly ascending.

Text is parsed as pandas parses it, with the guards pandas lacks, each a one-line DataError:
a time with no date (pandas gives it today's date), dates that read both month first and
day first (pandas silently takes month first), and stamps of which some carry a time-zone
offset and others none (pandas silently takes the bare ones as UTC). 'YYYY-MM-DD' text
and stored date-times (Parquet) take faster paths that give the same instants.

`where(position)` names a 0-based data row in messages ('line 5', 'row 5'):
finseq.load.line_of for the frame the column comes from.
"""

from __future__ import annotations

import datetime
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from finseq.errors import DataError

Where = Callable[[int], str]

TIME_WITHOUT_DATE = r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d*)?)?\s*([AaPp][Mm])?\s*$"
# A time followed by a zone offset: '09:30Z', '00:00:00-05:00', '09:30:00.5+0530'.
ZONE_OFFSET = r"\d:\d{2}(?::\d{2}(?:\.\d*)?)?\s*(?:Z|[+-]\d{2}:?\d{2})\s*$"

# The dates datetime64[ns] can hold, as pandas parses them (it refuses the others).
NANOSECOND_DATES = (np.datetime64("1677-09-22"), np.datetime64("2262-04-10"))


def parse_stamps(raw: pd.Series, **options: object) -> pd.Series:
    with warnings.catch_warnings():
        # pandas warns when it cannot infer one format; the NaT it returns is reported below.
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(raw, utc=True, errors="coerce", **options)


def iso_dates(raw: pd.Series) -> np.ndarray | None:
    """A column of 'YYYY-MM-DD' text, the commonest date column, parsed by NumPy into
    datetime64[ns]: the instants pandas' parse gives, at a third of its cost. None for any
    other column (times, other layouts, missing or out-of-range dates): pandas parses it."""
    values = raw.to_numpy()
    if values.dtype != object or not len(values):
        return None
    text = values.astype("U")
    if text.dtype.itemsize != 40:  # the longest is not 10 characters
        return None
    characters = text.view("U1").reshape(len(text), 10)  # shorter ones end in ""
    shaped = (characters[:, 4] == "-") & (characters[:, 7] == "-") & (characters[:, 9] != "")
    if not shaped.all():
        return None
    try:
        days = values.astype("datetime64[D]")
    except ValueError:
        return None
    if days.min() < NANOSECOND_DATES[0] or days.max() > NANOSECOND_DATES[1]:
        return None
    return days.astype("datetime64[ns]")


def _day_first_format(first: object) -> str | None:
    """The day-first reading of the first stamp's layout, where it differs from the
    month-first one pandas would take: '04/01/1999' → '%d/%m/%Y'. None where the layout
    has one reading: year first (ISO: pandas would read 2000-01-03 as 1 March under
    dayfirst), a month name, a day above 12, or a layout pandas cannot guess."""
    if not isinstance(first, str):
        return None
    month_first = guess_datetime_format(str(first))
    if month_first is None or month_first.startswith("%Y"):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a layout with one reading
        day_first = guess_datetime_format(str(first), dayfirst=True)
    return None if day_first == month_first else day_first


def _read_either_way(path: Path, raw: pd.Series, column: str, where: Where) -> pd.Series:
    """pandas' parse, month first as it infers it; day first where only that reading parses
    every row; refused where both do and they disagree."""
    parsed = parse_stamps(raw)
    if _day_first_format(raw.iloc[0]) is None:
        return parsed
    if not parsed.isna().any() and (parsed.dt.day > 12).any():
        return parsed  # a day above 12: no day-first reading of that row
    day_first = parse_stamps(raw, dayfirst=True)
    if parsed.isna().any() or day_first.isna().any():
        return day_first if parsed.isna().any() and not day_first.isna().any() else parsed
    differ = (parsed != day_first).to_numpy()
    if differ.any():
        position = int(np.argmax(differ))
        month, day = parsed.iloc[position], day_first.iloc[position]
        raise DataError(
            f"{path}: {where(position)}, column {column!r}: {raw.iloc[position]!r} reads as "
            f"{month:%Y-%m-%d} month first and as {day:%Y-%m-%d} day first, and every date of "
            "the column fits both; write the dates as YYYY-MM-DD"
        )
    return parsed


def _check_one_zone_convention(path: Path, raw: pd.Series, column: str, where: Where) -> None:
    """Stamps with a zone offset and stamps without it in one column would be read as
    instants of two conventions (the bare ones as UTC): refused."""
    zoned = raw.astype(str).str.contains(ZONE_OFFSET).to_numpy(dtype=bool)
    if zoned.any() and not zoned.all():
        position = int(np.argmax(zoned != zoned[0]))
        has = "has a time-zone offset" if zoned[position] else "has no time-zone offset"
        had = "has one" if zoned[0] else "has none"
        raise DataError(
            f"{path}: {where(position)}, column {column!r}: {raw.iloc[position]!r} {has} and "
            f"{where(0)} ({raw.iloc[0]!r}) {had}; give every timestamp of a series the same "
            "convention (all with an offset, or all in UTC without one)"
        )


def parsed_stamps(path: Path, raw: pd.Series, column: str, where: Where) -> np.ndarray:
    """pandas' parse of any date or date-time text, as naive UTC datetime64[ns].

    A time with no date ('09:30') is rejected: pandas would silently give it today's date.
    """
    parsed = _read_either_way(path, raw, column, where)
    # Parsed with one layout inferred from the first stamp, every stamp has the first's zone
    # convention (one without fails that layout); row by row, each may have its own.
    one_layout = isinstance(raw.iloc[0], str) and bool(guess_datetime_format(str(raw.iloc[0])))
    if parsed.isna().any():
        parsed = parse_stamps(raw, format="mixed")
        one_layout = False
    # A time with no date parses as today: only rows near today (or unparsed) can be one.
    # Compared, not subtracted: a date centuries from today would overflow a difference.
    today = pd.Timestamp.now(tz="UTC").normalize()
    two_days = pd.Timedelta(days=2)
    near_today = (
        parsed.isna() | ((parsed >= today - two_days) & (parsed <= today + two_days))
    ).to_numpy()
    if near_today.any():
        time_only = np.zeros(len(raw), dtype=bool)
        time_only[near_today] = (
            raw[near_today].astype(str).str.match(TIME_WITHOUT_DATE).to_numpy(dtype=bool)
        )
        if time_only.any():
            position = int(np.argmax(time_only))
            raise DataError(
                f"{path}: {where(position)}, column {column!r}: "
                f"{raw.iloc[position]!r} has a time but no date"
            )
    if parsed.isna().any():
        position = int(np.argmax(parsed.isna().to_numpy()))
        value = raw.iloc[position]
        if pd.isna(value):
            what = "missing date"
        elif isinstance(value, datetime.date):  # a Parquet date32 that pandas cannot hold
            what = (
                f"{value} is outside the dates finseq handles "
                f"({NANOSECOND_DATES[0]} to {NANOSECOND_DATES[1]})"
            )
        else:
            what = f"{value!r} is not a date"
            if re.fullmatch(r"\s*\d{9,13}(?:\.\d*)?\s*", str(value)):
                what += (
                    " (a count of seconds or milliseconds since 1970? finseq does not guess "
                    "which; write the stamps as YYYY-MM-DD HH:MM:SS, in UTC or with an offset)"
                )
        raise DataError(f"{path}: {where(position)}, column {column!r}: {what}")
    if not one_layout:
        _check_one_zone_convention(path, raw, column, where)
    return parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def stored_stamps(path: Path, raw: pd.Series, column: str, where: Where) -> np.ndarray | None:
    """A column already holding date-times (Parquet's timestamps) as naive UTC
    datetime64[ns], as pandas' parse gives it; None if one is missing (pandas' parse names
    it). A date datetime64[ns] cannot hold is refused here: converted, it would wrap."""
    if not pd.api.types.is_datetime64_any_dtype(raw.dtype) or raw.isna().any():
        return None
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        raw = raw.dt.tz_convert("UTC").dt.tz_localize(None)
    values = raw.to_numpy()
    outside = (values < NANOSECOND_DATES[0]) | (values > NANOSECOND_DATES[1])
    if outside.any():
        position = int(np.argmax(outside))
        raise DataError(
            f"{path}: {where(position)}, column {column!r}: {values[position]} is "
            f"outside the dates finseq handles ({NANOSECOND_DATES[0]} to {NANOSECOND_DATES[1]})"
        )
    return values.astype("datetime64[ns]")


def timestamps(path: Path, raw: pd.Series, column: str, where: Where, hint: str = "") -> np.ndarray:
    """Parses dates or date-times; zone-aware values are converted to UTC, then made naive.
    Bars must be in strictly ascending time; `hint` ends the message of bars that are not
    (a panel's symbol column under a name finseq does not know)."""
    stamps = stored_stamps(path, raw, column, where)
    if stamps is None:
        stamps = iso_dates(raw)
    if stamps is None:
        stamps = parsed_stamps(path, raw, column, where)
    step = np.diff(stamps.astype(np.int64))
    if (step <= 0).any():
        position = int(np.argmax(step <= 0)) + 1
        if step[position - 1] == 0:
            raise DataError(
                f"{path}: {where(position)}, column {column!r}: duplicate timestamp "
                f"{raw.iloc[position]!r} (also on {where(position - 1)}){hint}"
            )
        raise DataError(
            f"{path}: {where(position)}, column {column!r}: timestamps are not in "
            f"ascending order ({raw.iloc[position]!r} comes after {raw.iloc[position - 1]!r}); "
            f"sort the file by time{hint}"
        )
    return stamps
