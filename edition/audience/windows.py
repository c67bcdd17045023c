"""Send windows: a message waits for the customer's daytime instead of arriving at 3 a.m.

The window is a time of day in the customer's `timezone` field (an IANA name such as
Europe/Paris); a customer without a usable one gets the window's own time zone. Outside
the window the customer is deferred until the window next opens (a wall-clock time in
their zone, so a DST change moves it with them); a later run of the same mailing sends
them then, exactly once through the send ledger.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from typing import Any, Protocol

from edition.outcomes import Reason

TIMEZONE_FIELD = "timezone"


class Window(Protocol):
    """`send_window: {start, end, timezone}` (edition.content.house.SendWindow)."""

    start: dt.time
    end: dt.time
    timezone: str


def customer_zone(fields: Mapping[str, Any], fallback: str
                  ) -> tuple[zoneinfo.ZoneInfo, str | None]:
    """The customer's time zone, and a note when their field could not be used."""
    from edition.content.house import known_zone

    value = fields.get(TIMEZONE_FIELD)
    name = str(value).strip() if value is not None else ""
    zone = known_zone(name) if name else None
    if zone is not None:
        return zone, None
    note = f"timezone {name[:40]!r} unknown, {fallback} used" if name else None
    return zoneinfo.ZoneInfo(fallback), note


def inside(window: Window, local: dt.time) -> bool:
    """Is this wall-clock time inside the window (`end` excluded; across midnight when
    `end` comes before `start`)?"""
    if window.start < window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end


def next_opening(window: Window, now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """When the window next opens after `now`, in the customer's zone.

    A start in a DST gap (02:30 on the spring-forward night) is the first moment after
    the gap; a start in a repeated hour is its first occurrence."""
    local = now.astimezone(zone)
    day = local.date()
    for _ in range(3):
        wall = dt.datetime.combine(day, window.start, tzinfo=zone)
        # through UTC and back: a wall time that does not exist becomes one that does
        opening = wall.astimezone(dt.UTC).astimezone(zone)
        if opening > local:
            return opening
        day += dt.timedelta(days=1)
    raise AssertionError("a window opens within two days")  # pragma: no cover


def deferral(window: Window | None, fields: Mapping[str, Any],
             now: dt.datetime) -> tuple[dt.datetime, Reason] | None:
    """(when, why) this customer's message waits, or None when it may go now."""
    if window is None:
        return None
    zone, note = customer_zone(fields, window.timezone)
    local = now.astimezone(zone)
    if inside(window, local.time().replace(tzinfo=None)):
        return None
    until = next_opening(window, now, zone)
    words = f"send window {window.start:%H:%M}-{window.end:%H:%M} {zone.key}"
    return until, Reason("deferred", f"deferred until {until.isoformat()} ({words}"
                                     f"{'; ' + note if note else ''})",
                         "deferred until the send window opens")
