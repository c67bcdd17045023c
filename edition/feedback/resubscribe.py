"""A customer who said no comes back: "subscribe again" on the preference page, or the
CRM's `subscribed` column (`edition preferences import`).

One transaction does all of it, so there is never a lifted unsubscribe without the
consent record that explains it:
- the unsubscribes of the customer in this campaign are lifted (store/suppressions.py
  `lift`: the campaign's own rows go, an "all marketing" row is lifted for this campaign
  by the resubscription, bounces and complaints stay);
- a pause ends (`frequency: every`) and, when every topic was switched off, every topic
  is on again;
- one consent record says what changed from what to what ({"subscribed": [null,
  campaign]}, the unsubscribe's record being {"subscribed": [scope, null]}), with the
  form, the version of its text, the source and the client's hash.
Order by time: an unsubscribe recorded after the resubscription's time (a CRM file
older than the click) wins, and nothing changes (`Resubscription.later` says which).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from edition.store.consent import ConsentLog, ConsentRecord
from edition.store.database import Database, StoreError, first_line
from edition.store.preferences import Choices, PreferenceStore, now_text
from edition.store.resubscriptions import ResubscriptionStore
from edition.store.suppressions import Entry, SuppressionStore

ATTEMPTS = 5
FORM = "resubscribe"


@dataclass(frozen=True)
class Resubscription:
    """What a resubscribe did."""

    change: dict[str, list[Any]] = field(default_factory=dict)   # {} : nothing changed
    later: Entry | None = None   # an unsubscribe recorded after it, which still holds


def came_back(choices: Choices, topics: tuple[str, ...]) -> Choices:
    """The choices of a customer who subscribes again: not paused, and not every topic
    off (their other choices stay)."""
    if choices.frequency == "paused":
        choices = replace(choices, frequency="every", paused_until=None)
    if choices.topics is not None and topics and not set(choices.topics) & set(topics):
        choices = replace(choices, topics=None)
    return choices


def resubscribe(database: Database, *, campaign: str, customer_id: str, source: str,
                form: str = FORM, address_hash: str = "", form_version: str = "",
                client: str = "", topics: tuple[str, ...] = (),
                at: str | None = None) -> Resubscription:
    """Subscribe the customer to `campaign` again at `at` (default now); see the
    module docstring."""
    from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

    preferences, consent = PreferenceStore(database), ConsentLog(database)
    suppressions = SuppressionStore(database)
    when = at or now_text()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            # every table exists before the transaction (SQLite: our own write lock)
            for store in (preferences, consent, suppressions, ResubscriptionStore(database)):
                store.table  # noqa: B018
            with database.engine().begin() as connection:
                stored = preferences.get(campaign, customer_id, connection, for_update=True)
                lift = suppressions.lift(connection, campaign, customer_id, address_hash,
                                         source, when)
                if lift.later is not None:
                    return Resubscription(later=lift.later)
                change: dict[str, list[Any]] = {}
                if lift.lifted:
                    change["subscribed"] = [None, campaign]
                if stored is not None:
                    after = came_back(stored.choices, topics)
                    change |= stored.choices.changes(after)
                    if after != stored.choices:
                        preferences.put(connection, campaign, customer_id, after, source,
                                        when)
                if not change:
                    return Resubscription()
                consent.append(connection, ConsentRecord(when, campaign, customer_id, change,
                                                         form, form_version, source, client))
                return Resubscription(change)
        except (IntegrityError, OperationalError) as exc:
            # raced by another answer of the same customer: read again and redo
            if attempt == ATTEMPTS:
                raise StoreError(f"cannot record a resubscribe in {database.shown}: "
                                 f"{type(exc).__name__}: {first_line(exc)}") from None
            time.sleep(0.05 * attempt)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record a resubscribe in {database.shown}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None
    raise AssertionError("unreachable")


def is_out(database: Database, campaign: str, customer_id: str,
           topics: tuple[str, ...] = ()) -> Entry | Choices | None:
    """Why the customer gets nothing of `campaign` now (their unsubscribe, or choices
    that pause them or switch every topic off), else None: the page then offers
    "subscribe again"."""
    for entry in SuppressionStore(database).lookup(campaign, customer_id):
        if entry.kind == "unsubscribed":
            return entry
    stored = PreferenceStore(database).get(campaign, customer_id)
    if stored is None:
        return None
    choices = stored.choices
    if choices.frequency == "paused" and (
            not choices.paused_until or choices.paused_until > now_text()[:10]):
        return choices
    if choices.topics is not None and topics and not set(choices.topics) & set(topics):
        return choices
    return None


__all__ = ["FORM", "Resubscription", "came_back", "is_out", "resubscribe"]
