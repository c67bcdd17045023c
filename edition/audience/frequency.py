"""How often a customer hears from the house: the frequency cap and the customer's own
weekly/monthly choice, over a plain snapshot of their recent marketing sends.

Both count messages from every marketing campaign (edition.send.history reads them from
the send ledgers once per run); a transactional campaign is never held back by either.
A customer held back is `excluded` with the reason, in dry runs too, so preflight and
the report show how many customers the cap takes from a campaign.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from edition.outcomes import Reason

# the preference center's choices (design.md, "When customers answer") -> days between
PREFERENCE_DAYS = {"weekly": 7, "monthly": 30}


class Cap(Protocol):
    """`frequency_cap: {max: N, days: D}` (edition.content.house.FrequencyCap)."""

    max: int
    days: int


def preference_reason(choice: str | None, sends: Sequence[dt.datetime],
                      now: dt.datetime) -> Reason | None:
    """Why a customer who chose `weekly`/`monthly` gets nothing now: a marketing message
    went out to them within the last 7/30 days. `sends`: their send times, newest first."""
    days = PREFERENCE_DAYS.get(str(choice or "").strip().lower())
    if days is None or not sends:
        return None
    last = sends[0]
    if last < now - dt.timedelta(days=days):
        return None
    return Reason("frequency_preference", f"frequency: {choice}, last sent "
                  f"{last.date().isoformat()}", f"frequency: {choice}")


def cap_reason(cap: Cap | None, sends: Sequence[dt.datetime],
               now: dt.datetime, by: str | None = None) -> Reason | None:
    """Why the house's cap holds this customer back: `max` marketing messages already
    went out to them in the last `days` days (this one would be one more); `by`: the
    campaign of the last one, named (the campaign that won the slot)."""
    if cap is None:
        return None
    since = now - dt.timedelta(days=cap.days)
    recent = [at for at in sends if at >= since]
    if len(recent) < cap.max:
        return None
    days = f"{cap.days} day{'s' if cap.days != 1 else ''}"
    last = f", last sent {max(recent).date().isoformat()}" if recent else ""
    if recent and by:
        last += f" by {by}"
    return Reason("frequency_cap", f"frequency cap: {len(recent)} marketing message(s) in "
                  f"the last {days} (max {cap.max}){last}",
                  f"frequency cap: max {cap.max} in {days}")
