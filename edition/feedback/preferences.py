"""What a customer (or the CRM) tells the preference center: checked, stored, logged.

`choices_from_form` turns the POSTed fields of the preference page (design.md, "When
customers answer") into `Choices`, refusing anything the page does not offer (an unknown
topic, frequency, format or language is a `BadChoice`: the web answers 400 and nothing
is recorded). `record` stores the new choices and appends one consent record with what
changed from what to what, in ONE transaction: there is never a preference without the
consent that explains it. A change to nothing new records nothing.

The page's own form carries `form=preferences`: then it is the whole state (a topic or
large type left unticked is "no"); a POST without it (an API client) changes only the
fields it names.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edition.audience.preferred_time import WEEKDAYS
from edition.errors import EditionError
from edition.locales import NotALanguageTag, language_tag
from edition.store.consent import ConsentLog, ConsentRecord
from edition.store.database import Database, StoreError, first_line
from edition.store.preferences import (
    FORMATS,
    FREQUENCIES,
    Choices,
    PreferenceStore,
    Stored,
    now_text,
)

PAGE_FORM = "preferences"
ATTEMPTS = 5   # a record raced by another answer of the same customer is redone
_ON = {"on", "yes", "true", "1"}
_OFF = {"off", "no", "false", "0", ""}


class BadChoice(EditionError):
    """A field the preference center does not offer, or a value it does not take."""


@dataclass(frozen=True)
class Offer:
    """What one campaign's preference center offers."""

    topics: tuple[str, ...] = ()
    languages: tuple[str, ...] = ("en", "es")
    time: bool = False   # a preferred day and hour (preferences.time)
    # how often (and a pause): not for a transactional campaign, whose bill must come
    frequency: bool = True


def client_hash(ip: str | None, user_agent: str | None) -> str:
    """The consent record's fingerprint of the client: proves, never profiles."""
    if not ip and not user_agent:
        return ""
    return hashlib.sha256(f"{ip or ''}\0{user_agent or ''}".encode()).hexdigest()


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _ON:
        return True
    if lowered in _OFF:
        return False
    raise BadChoice(f"{name} must be on or off")


def _day(value: str) -> str:
    """"" (any day), "1".."28" (of the month), or a weekday's first three letters."""
    day = value.strip().lower()
    if day in ("",) or day in WEEKDAYS or (day.isdigit() and 1 <= int(day) <= 28):
        return day
    raise BadChoice("day must be a day of the month from 1 to 28, or mon to sun")


def _hour(value: str) -> int:
    text = value.strip()
    if text.isdigit() and 0 <= int(text) <= 23:
        return int(text)
    raise BadChoice("hour must be a whole hour from 0 to 23")


def choices_from_form(fields: Iterable[tuple[str, str]], offer: Offer) -> Choices:
    """The choices a POST makes (BadChoice for anything not offered)."""
    pairs = list(fields)
    names = {name for name, _ in pairs}
    whole = any(name == "form" and value == PAGE_FORM for name, value in pairs)
    single: dict[str, str] = {}
    topics: list[str] = []
    for name, value in pairs:
        if name == "topics":
            if value not in offer.topics:
                raise BadChoice(f"topic {value[:40]!r} is not offered")
            if value not in topics:
                topics.append(value)
        elif name in {"format", "large_type", "locale", "tracking"} or (
                offer.frequency and name in {"frequency", "paused_until"}) or (
                offer.time and name in {"day", "hour"}):
            single.setdefault(name, value)
        elif name not in {"form", "token"}:
            raise BadChoice(f"{name[:40]!r} is not a field of the preference page")
    values: dict[str, Any] = {}
    if "topics" in names or (whole and offer.topics):
        values["topics"] = tuple(t for t in offer.topics if t in topics)   # the offer's order
    if single.get("frequency"):
        if single["frequency"] not in FREQUENCIES:
            raise BadChoice(f"frequency must be one of {', '.join(FREQUENCIES)}")
        values["frequency"] = single["frequency"]
    if whole and offer.frequency and not single.get("paused_until"):
        values["paused_until"] = ""   # the page's date left empty: no end (record clears it)
    if single.get("paused_until"):
        import datetime as dt

        try:
            values["paused_until"] = dt.date.fromisoformat(single["paused_until"]).isoformat()
        except ValueError:
            raise BadChoice("paused_until must be a date (YYYY-MM-DD)") from None
    if single.get("format"):
        if single["format"] not in FORMATS:
            raise BadChoice(f"format must be one of {', '.join(FORMATS)}")
        values["format"] = single["format"]
    if "large_type" in single:
        values["large_type"] = _flag("large_type", single["large_type"])
    elif whole:
        values["large_type"] = False
    if "tracking" in single:
        values["tracking"] = _flag("tracking", single["tracking"])
    if "day" in single:
        values["day"] = _day(single["day"])
    if "hour" in single:
        values["hour"] = _hour(single["hour"])
    if single.get("locale"):
        try:
            tag = language_tag(single["locale"])
        except NotALanguageTag:
            raise BadChoice("locale must be a language tag") from None
        if offer.languages and tag.split("-")[0] not in offer.languages:
            raise BadChoice(f"locale must be one of {', '.join(offer.languages)}")
        values["locale"] = tag
    return Choices(**values)


def record(database: Database, *, campaign: str, customer_id: str, choices: Choices,
           source: str, form: str, form_version: str = "", client: str = "",
           at: str | None = None) -> dict[str, list[Any]]:
    """Store `choices` over the customer's current ones and log the change (one
    transaction); what changed ({} when nothing did: nothing is written)."""
    from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

    preferences, consent = PreferenceStore(database), ConsentLog(database)
    when = at or now_text()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            # both tables exist before the transaction: creating one inside it would wait
            # on our own write lock (SQLite)
            preferences.table  # noqa: B018
            consent.table  # noqa: B018
            with database.engine().begin() as connection:
                # the row locked (PostgreSQL), so two answers of one customer at once
                # log a chain of changes, each "from" the previous "to"
                current = preferences.get(campaign, customer_id, connection, for_update=True)
                before = current.choices if current is not None else Choices()
                after = before.merged(choices)
                if after.paused_until == "" or (after.frequency != "paused"
                                                 and after.paused_until is not None):
                    after = replace(after, paused_until=None)
                change = before.changes(after)
                if not change:
                    return {}
                preferences.put(connection, campaign, customer_id, after, source, when,
                                first=current is None)
                consent.append(connection, ConsentRecord(when, campaign, customer_id, change,
                                                         form, form_version, source, client))
                return change
        except (IntegrityError, OperationalError) as exc:
            # a first answer inserted by another request meanwhile, or SQLite's reader
            # that cannot become a writer: read again and redo
            if attempt == ATTEMPTS:
                raise StoreError(f"cannot record preferences in {database.shown}: "
                                 f"{type(exc).__name__}: {first_line(exc)}") from None
            time.sleep(0.05 * attempt)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record preferences in {database.shown}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None
    raise AssertionError("unreachable")


def current(database: Database, campaign: str, customer_id: str) -> Stored | None:
    """The customer's current choices (for the page), or None."""
    return PreferenceStore(database).get(campaign, customer_id)


def log_unsubscribe(database: Database, *, campaign: str, customer_id: str, scope: str,
                    source: str, form_version: str = "", client: str = "") -> None:
    """An unsubscribe's consent record (the suppression row is the state)."""
    ConsentLog(database).record(ConsentRecord(
        now_text(), campaign, customer_id, {"subscribed": [scope, None]}, "unsubscribe",
        form_version, source, client))


def export(database: Database, customer_id: str) -> list[dict[str, Any]]:
    """A customer's consent records as JSON-ready dicts, oldest first (GDPR access)."""
    return [r.as_dict() for r in ConsentLog(database).of(customer_id)]


def offer_for(root: Path, campaign: str) -> Offer | None:
    """What the campaign called `campaign` under `root` offers (its file's
    `preferences.topics`; any language), None when no campaign file has that name. Read
    from the file alone, like the store's location: a broken template must not stop it."""
    from edition.content.yamlfile import load_yaml

    for file in sorted((root / "campaigns").glob("*.y*ml")):
        try:
            data = load_yaml(file.read_text(encoding="utf-8"), str(file))
        except (OSError, UnicodeDecodeError, EditionError):
            continue
        if not isinstance(data, dict) or (data.get("name") or file.stem) != campaign:
            continue
        block = data.get("preferences")
        topics = block.get("topics") if isinstance(block, dict) else None
        return Offer(tuple(str(k) for k in topics) if isinstance(topics, dict) else (), (),
                     bool(block.get("time")) if isinstance(block, dict) else False,
                     data.get("kind") != "transactional")
    return None


__all__ = ["PAGE_FORM", "WEEKDAYS", "BadChoice", "Offer", "choices_from_form", "client_hash",
           "current", "export", "log_unsubscribe", "offer_for", "record"]
