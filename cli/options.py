"""What several verbs share: parsing dates, the customers option's help."""

from __future__ import annotations

import datetime as dt

from edition.errors import UsageError

# Every source edition/audience/customers.py and sources.py read, in the words of --help.
CUSTOMERS_HELP = ("Customers instead of the campaign's: a CSV, JSONL or Parquet file, or a "
                  "postgresql:// URL (postgresql://host/db?table=customers)")


def parse_date(value: str | None, flag: str = "--as-of") -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a date (use YYYY-MM-DD)") from None
