"""Parsing shared by several verbs: dates, format lists, customer paths."""

from __future__ import annotations

import datetime as dt

from edition.campaign import FORMATS
from edition.errors import UsageError


def parse_date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--as-of {value!r} is not a date (use YYYY-MM-DD)") from None


def parse_formats(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise UsageError(f"--formats {value!r}: choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in names)
