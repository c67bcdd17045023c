"""The CRM's side of the preference center: choices in and out as CSV.

Export: one row per (campaign, customer) with the current choices — `campaign`, `id`,
`topics` (`;`-separated, like the customer file's interests), `frequency`,
`paused_until`, `format`, `large_type`, `locale`, `tracking`, `day`, `hour`,
`updated_at`, `source`, and the customer's current state: `subscribed` (`no` while an
unsubscribe, a pause or every topic off holds, else `yes`) and `subscribed_at` (the time
of that last change), for every customer with choices, an unsubscribe or a
resubscription, so that an export imported again is a no-op.

Import: the same columns (`campaign`, `updated_at` and `source` are ignored: the
campaign is named on the command line and the source is `crm`); `id` (or `customer_id`)
is required, every other column optional, an empty cell leaves that choice as it is.
`day` (1..28 or mon..sun) and `hour` (0..23) only for a campaign with
`preferences.time: true`. `subscribed`: `yes` subscribes a customer who unsubscribed
again (feedback/resubscribe.py), `no` unsubscribes them from the campaign (nothing when
they are out already: unsubscribed, paused, every topic off); with
`subscribed_at` (an ISO date or time, UTC unless it says otherwise) the CRM's own time
of that answer: the later of it and an unsubscribe already stored wins, so a CRM file
older than the customer's click does not undo it.
CRM files come as they come: UTF-8 with or without BOM, else Windows-1252; comma,
semicolon or tab. Each row is checked like the page's form (feedback/preferences.py); a
bad row is reported with its line and reason and the rest go in, each change with its
consent record (form `crm-import`, version: a digest of the file, source `crm`).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edition.feedback.preferences import (
    BadChoice,
    Offer,
    choices_from_form,
    log_unsubscribe,
    record,
)
from edition.feedback.resubscribe import is_out, resubscribe
from edition.store.database import Database
from edition.store.preferences import PreferenceStore, Stored, now_text
from edition.store.resubscriptions import Resubscribed, ResubscriptionStore, lifting
from edition.store.suppressions import ALL_MARKETING, Entry, SuppressionStore

COLUMNS = ("campaign", "id", "topics", "frequency", "paused_until", "format", "large_type",
           "locale", "tracking", "day", "hour", "updated_at", "source", "subscribed",
           "subscribed_at")
_CHOICE_COLUMNS = ("frequency", "paused_until", "format", "large_type", "locale", "tracking",
                   "day", "hour")
_TIME_COLUMNS = ("day", "hour")
_YES = {"yes", "y", "true", "1", "on", "subscribed"}
_NO = {"no", "n", "false", "0", "off", "unsubscribed"}
_SKEW = dt.timedelta(minutes=5)   # a CRM clock a little ahead is not "the future"
_ID_COLUMNS = ("id", "customer_id")
_MAX_ID = 1024


def export_csv(database: Database, campaign: str | None = None,
               topics: Callable[[str], tuple[str, ...]] | None = None) -> str:
    """Every stored choice (of one campaign, or all) as CSV text, with the customer's
    current subscription (see `_subscriptions`); `topics`: a campaign's offered topics,
    to tell "every topic switched off"."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    stored = {(s.campaign, s.customer_id): s for s in PreferenceStore(database).all(campaign)}
    states = _subscriptions(database, campaign, stored, topics or (lambda name: ()))
    flag = {True: "on", False: "off", None: ""}
    for key in sorted(stored.keys() | states.keys()):
        subscribed, at = states.get(key, ("yes", ""))
        found = stored.get(key)
        if found is None:
            writer.writerow([*key, *[""] * (len(COLUMNS) - 4), subscribed, at])
            continue
        c = found.choices
        writer.writerow([
            found.campaign, found.customer_id,
            "" if c.topics is None else ";".join(c.topics),
            c.frequency or "", c.paused_until or "", c.format or "", flag[c.large_type],
            c.locale or "", flag[c.tracking], c.day or "",
            "" if c.hour is None else str(c.hour), found.updated_at, found.source,
            subscribed, at])
    return buffer.getvalue()


def _subscriptions(database: Database, campaign: str | None,
                   stored: Mapping[tuple[str, str], Stored],
                   topics: Callable[[str], tuple[str, ...]]
                   ) -> dict[tuple[str, str], tuple[str, str]]:
    """(campaign, customer) -> (`yes`|`no`, the time of the last change), read once from
    the suppression store and the resubscriptions, for every customer with choices, an
    unsubscribe or a resubscription: `no` since the unsubscribe in force (the campaign's
    own or "all marketing", not lifted by a later resubscription), or since the choices
    that pause them or switch every topic off (feedback/resubscribe.py `is_out`); else
    `yes`, since their resubscription if any. What `import_csv` reads back as a no-op."""
    if not database.exists():
        return {}
    unsubscribes = [e for e in SuppressionStore(database).entries()
                    if e.kind == "unsubscribed"]
    campaigns = ({campaign} if campaign is not None else
                 {c for c, _ in stored} | {e.scope for e in unsubscribes
                                            if e.scope != ALL_MARKETING})
    resubscriptions = ResubscriptionStore(database)
    resubscriptions.table  # noqa: B018 (created before reading: an older store lacks it)
    back: dict[str, dict[str, Resubscribed]] = {}
    with database.engine().connect() as connection:
        for name in campaigns:
            back[name] = resubscriptions.of_campaign(connection, name)[0]
    everywhere: dict[str, list[Entry]] = {}   # "all marketing": any campaign it meets
    keys = set(stored) | {(name, ident) for name in campaigns for ident in back[name]}
    for entry in unsubscribes:
        if entry.scope == ALL_MARKETING:
            everywhere.setdefault(entry.customer_id, []).append(entry)
            if campaign is not None:
                keys.add((campaign, entry.customer_id))
        elif entry.scope in campaigns:
            keys.add((entry.scope, entry.customer_id))
    own: dict[tuple[str, str], list[Entry]] = {}
    for entry in unsubscribes:
        own.setdefault((entry.scope, entry.customer_id), []).append(entry)
    today = now_text()[:10]
    states: dict[tuple[str, str], tuple[str, str]] = {}
    for name, ident in keys:
        lifted = back.get(name, {})
        in_force = [e for e in (*own.get((name, ident), ()), *everywhere.get(ident, ()))
                    if lifting(lifted, ident, e.recorded_at) is None]
        if in_force:
            states[name, ident] = ("no", min(e.recorded_at for e in in_force))
            continue
        found = stored.get((name, ident))
        if found is not None:
            c, offered = found.choices, topics(name)
            if ((c.frequency == "paused" and (not c.paused_until or c.paused_until > today))
                    or (c.topics is not None and offered
                    and not set(c.topics) & set(offered))):
                states[name, ident] = ("no", found.updated_at)
                continue
        again = lifted.get(ident)
        states[name, ident] = ("yes", again.recorded_at if again is not None else "")
    return states


@dataclass
class ImportResult:
    changed: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)   # (line, reason)
    # (line, why): a resubscribe older than an unsubscribe stored since; it stays out
    kept_out: list[tuple[int, str]] = field(default_factory=list)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _rows(text: str) -> Iterable[tuple[int, dict[str, str]]]:
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if reader.fieldnames is None:
        return
    reader.fieldnames = [(name or "").strip().lower() for name in reader.fieldnames]
    if not set(reader.fieldnames) & set(_ID_COLUMNS):
        raise BadChoice(f"the file has no id column (found: {', '.join(reader.fieldnames)})")
    for row in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items()
                                if isinstance(k, str)}


def import_csv(database: Database, path: Path, *, campaign: str, offer: Offer
               ) -> ImportResult:
    """Import a CRM file's choices into `campaign` (see the module docstring)."""
    data = path.read_bytes()
    version = "sha256:" + hashlib.sha256(data).hexdigest()[:16]
    result = ImportResult()
    for line, row in _rows(_text(data)):
        customer_id = next((row[c] for c in _ID_COLUMNS if row.get(c)), "")
        if not customer_id:
            result.rejected.append((line, "no id"))
            continue
        if len(customer_id) > _MAX_ID:
            result.rejected.append((line, f"an id over {_MAX_ID} characters"))
            continue
        fields = [(name, row[name]) for name in _CHOICE_COLUMNS if row.get(name)]
        if row.get("topics"):
            fields += [("topics", t.strip()) for t in row["topics"].split(";") if t.strip()]
        try:
            if not offer.time and any(row.get(name) for name in _TIME_COLUMNS):
                raise BadChoice(f"day and hour: campaign {campaign} does not offer a "
                                f"preferred day and hour (preferences.time)")
            choices = choices_from_form(fields, offer)
            subscribed = _subscribed(row.get("subscribed", ""))
            at = _time(row.get("subscribed_at", ""))
        except BadChoice as exc:
            result.rejected.append((line, str(exc)))
            continue
        changed = bool(record(database, campaign=campaign, customer_id=customer_id,
                              choices=choices, source="crm", form="crm-import",
                              form_version=version))
        if subscribed is True:
            done = resubscribe(database, campaign=campaign, customer_id=customer_id,
                               source="crm", form="crm-import", form_version=version,
                               topics=offer.topics, at=at)
            changed = changed or bool(done.change)
            if done.later is not None:
                result.kept_out.append((line, (
                    f"subscribed at {at} but unsubscribed later, on "
                    f"{done.later.recorded_at} (via {done.later.source}): stays out")))
        elif subscribed is False and is_out(database, campaign, customer_id,
                                            offer.topics) is None:
            # already out (unsubscribed, paused, every topic off: what the export says
            # "no" for): nothing to record, so an export goes back in as a no-op
            when = dt.datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None
            if SuppressionStore(database).record(campaign, customer_id, "", "crm",
                                                 scope=campaign, at=when):
                log_unsubscribe(database, campaign=campaign, customer_id=customer_id,
                                scope=campaign, source="crm", form_version=version)
                changed = True
        if changed:
            result.changed += 1
        else:
            result.unchanged += 1
    return result


def _subscribed(value: str) -> bool | None:
    """The `subscribed` cell: yes, no, or empty (leave it)."""
    lowered = value.strip().lower()
    if not lowered:
        return None
    if lowered in _YES:
        return True
    if lowered in _NO:
        return False
    raise BadChoice(f"subscribed must be yes or no, not {value[:40]!r}")


def _time(value: str) -> str | None:
    """The `subscribed_at` cell as the store's UTC text, None when empty."""
    text = value.strip()
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise BadChoice(f"subscribed_at must be an ISO date or time, not {text[:40]!r}"
                        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when > dt.datetime.now(dt.UTC) + _SKEW:
        # a time ahead would beat every unsubscribe until then
        raise BadChoice(f"subscribed_at {text[:40]} is in the future")
    return now_text(when)


__all__ = ["COLUMNS", "ImportResult", "export_csv", "import_csv"]
