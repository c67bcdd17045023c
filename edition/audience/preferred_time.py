"""A customer's preferred day and hour (the preference center's "send my invoice on the
1st"): when a send runs on another day, or before that hour on the day, the customer's
message waits, `excluded` with "deferred until T (the customer's preferred …)", and a
later run of the same mailing sends it, exactly once through the ledger.

The day is a day of the month ("1".."28": every month has one) or a weekday ("mon" ..
"sun"); the hour is 0..23 in the customer's `timezone` field (else UTC). A run later on
the preferred day than the hour sends at once: late beats never.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from edition.audience.windows import customer_zone
from edition.outcomes import Reason

DAY_FIELD = "preferred_day"
HOUR_FIELD = "preferred_hour"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LOOK_AHEAD = 62   # days: any day of the month and any weekday comes within two months


def _is_the_day(day: str, date: dt.date) -> bool:
    if not day:
        return True
    if day in WEEKDAYS:
        return WEEKDAYS.index(day) == date.weekday()
    return day.isdigit() and int(day) == date.day


def preferred_time_deferral(fields: Mapping[str, object], now: dt.datetime
                            ) -> Reason | None:
    """Why this customer's message waits for their preferred day and hour, or None."""
    day = str(fields.get(DAY_FIELD) or "").strip().lower()
    hour_value = fields.get(HOUR_FIELD)
    hour = hour_value if isinstance(hour_value, int) and 0 <= hour_value <= 23 else None
    if not day and hour is None:
        return None
    zone, note = customer_zone(fields, "UTC")
    local = now.astimezone(zone)
    if _is_the_day(day, local.date()) and (hour is None or local.hour >= hour):
        return None
    start = local.date() if _is_the_day(day, local.date()) else local.date() + dt.timedelta(1)
    date = next((start + dt.timedelta(n) for n in range(_LOOK_AHEAD)
                 if _is_the_day(day, start + dt.timedelta(n))), start)
    until = dt.datetime.combine(date, dt.time(hour or 0), tzinfo=zone)
    wanted = ", ".join(part for part in (
        f"day {day}" if day else "", f"{hour:02d}:00" if hour is not None else "") if part)
    return Reason("deferred", f"deferred until {until.isoformat()} (the customer's "
                              f"preferred {wanted} {zone.key}{'; ' + note if note else ''})",
                  "deferred until the customer's preferred time")


__all__ = ["DAY_FIELD", "HOUR_FIELD", "WEEKDAYS", "preferred_time_deferral"]
