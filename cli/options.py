"""Parsing shared by several verbs: dates."""

from __future__ import annotations

import datetime as dt

from edition.errors import UsageError


def parse_date(value: str | None, flag: str = "--as-of") -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a date (use YYYY-MM-DD)") from None
