"""Validators of single params.yaml values that need more than a type and a range: the
input entries listed once, the lockbox date. finseq.params attaches them to its fields."""

from __future__ import annotations

import datetime
import os
import re
from typing import Any

from pydantic_core import PydanticCustomError


def not_allowed(expected: str) -> PydanticCustomError:
    return PydanticCustomError("not_allowed", "{expected}", {"expected": expected})


def each_file_once(files: tuple[str, ...]) -> tuple[str, ...]:
    """data.files: a non-empty list, no entry twice (files, directories or globs; a file
    matched by two entries is refused when they are expanded, finseq.inputs)."""
    if not files:
        raise not_allowed("a non-empty list of files, directories or globs")
    seen: set[str] = set()
    for path in files:
        if os.path.normpath(path) in seen:
            raise not_allowed(f"each file once ({path!r} is listed twice)")
        seen.add(os.path.normpath(path))
    return files


def lockbox_date(value: Any) -> Any:
    """split.lockbox: an ISO date string or null (YAML reads an unquoted date as a date)."""
    if value is None:
        return None
    text = value.isoformat() if isinstance(value, datetime.date) else value
    # A calendar date first (2018-01-01 or 20180101), then an optional time: Python reads
    # week and ordinal dates (2018-W01, 2018-001) too, which pandas, cutting the bars, does
    # not; and a year the bars' nanosecond timestamps can hold.
    try:
        if not re.match(r"\d{4}-?\d{2}-?\d{2}(?:$|[T ])", text):
            raise ValueError(text)
        year = datetime.datetime.fromisoformat(text).year
    except (TypeError, ValueError):
        raise not_allowed("an ISO date such as '2018-01-01', or null (no lockbox)") from None
    if not 1678 <= year <= 2261:
        raise not_allowed("a date from 1678 to 2261 (what nanosecond timestamps hold)")
    return text
