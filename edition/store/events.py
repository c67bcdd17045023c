"""Delivery events: the bounces, complaints, deliveries and delays that come back.

One table of the house store (edition.store.database: SQLite by default, or
PostgreSQL). Every event is kept, the ones that suppress and the ones that do not: a
soft bounce suppresses only after N of them within D days, and sender health (the
report, preflight) counts bounces and complaints per mailing.

Idempotent on the provider's event id (SES's feedbackId or SNS MessageId, a DSN's
Message-ID and recipient, a hash of the file otherwise): the same notification
delivered twice by SNS, or the same mailbox ingested twice, is one event.

Addresses are not stored, only their hash (edition.addresses.address_hash), like the
suppression store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from edition.store.database import (
    RecordStore,
    StoreError,
    first_line,
    insert_ignoring_duplicates,
)

TABLE = "events"
KINDS = ("bounce", "complaint", "delivery", "delay")
SEVERITIES = ("hard", "soft", "")   # bounces only; "" for the other kinds
# column widths: what a provider sends is cut to these, never refused
_WIDTHS = {"event_id": 255, "kind": 20, "severity": 10, "status": 20, "diagnostic": 1000,
           "recipient_hash": 64, "customer_id": 1024, "campaign": 255, "mailing": 255,
           "source": 40, "occurred_at": 32, "recorded_at": 32}


@dataclass(frozen=True)
class Event:
    """One delivery event, normalised: what happened to which recipient of which mailing."""

    event_id: str        # the provider's id: the same event twice is recorded once
    kind: str            # bounce | complaint | delivery | delay
    occurred_at: str     # ISO 8601, UTC (when the provider saw it)
    source: str          # smtp | dsn | arf | ses
    recipient_hash: str = ""   # address_hash of the recipient ("" when unknown)
    severity: str = ""   # hard | soft (bounces)
    status: str = ""     # the enhanced status code (5.1.1), or SES's bounce subtype
    diagnostic: str = ""   # the server's words, for people
    customer_id: str = ""  # "" when the message could not be identified
    campaign: str = ""
    mailing: str = ""

    @property
    def day(self) -> str:
        return self.occurred_at[:10]

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        for key, width in _WIDTHS.items():
            if key in row:
                row[key] = str(row[key] or "")[:width]
        return row


def _declare_table() -> Any:
    from sqlalchemy import Column, Index, MetaData, String, Table

    metadata = MetaData()
    return Table(
        TABLE, metadata,
        Column("event_id", String(_WIDTHS["event_id"]), primary_key=True),
        Column("kind", String(_WIDTHS["kind"]), nullable=False),
        Column("severity", String(_WIDTHS["severity"]), nullable=False, server_default=""),
        Column("status", String(_WIDTHS["status"]), nullable=False, server_default=""),
        Column("diagnostic", String(_WIDTHS["diagnostic"]), nullable=False, server_default=""),
        Column("recipient_hash", String(_WIDTHS["recipient_hash"]), nullable=False,
               server_default=""),
        Column("customer_id", String(_WIDTHS["customer_id"]), nullable=False, server_default=""),
        Column("campaign", String(_WIDTHS["campaign"]), nullable=False, server_default=""),
        Column("mailing", String(_WIDTHS["mailing"]), nullable=False, server_default=""),
        Column("source", String(_WIDTHS["source"]), nullable=False),
        Column("occurred_at", String(_WIDTHS["occurred_at"]), nullable=False),
        Column("recorded_at", String(_WIDTHS["recorded_at"]), nullable=False),
        Index("events_by_recipient", "recipient_hash", "kind"),
        Index("events_by_customer", "customer_id", "kind"),
        Index("events_by_mailing", "campaign", "mailing"),
    )


def utc_text(when: dt.datetime | None = None) -> str:
    """An instant as the store writes it: ISO 8601, seconds, `Z`."""
    moment = when or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class MailingCounts:
    """Bounces and complaints recorded for one mailing of a campaign."""

    campaign: str
    mailing: str
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    deliveries: int = 0

    def __add__(self, other: MailingCounts) -> MailingCounts:
        """Both counts together, under this one's names (one mailing spelled two ways:
        as sent, and as its Feedback-ID field)."""
        return MailingCounts(self.campaign, self.mailing,
                             self.hard_bounces + other.hard_bounces,
                             self.soft_bounces + other.soft_bounces,
                             self.complaints + other.complaints,
                             self.deliveries + other.deliveries)


class EventStore(RecordStore):
    """The events of the house store at one location; `with EventStore(url) as s: ...`."""

    declare = staticmethod(_declare_table)

    def __repr__(self) -> str:
        return f"EventStore({self.database.shown!r})"

    def _error(self, doing: str, exc: BaseException) -> StoreError:
        return StoreError(f"cannot {doing} the events in the store {self.database.shown}: "
                          f"{type(exc).__name__}: {first_line(exc)}")

    # -- writing ----------------------------------------------------------------------

    def record(self, event: Event, *, at: dt.datetime | None = None) -> bool:
        """Keep one event; True if new, False if its id was recorded before (idempotent:
        SNS delivers at least once, and a mailbox may be ingested twice)."""
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        if event.kind not in KINDS:
            raise ValueError(f"event kind must be one of {', '.join(KINDS)}")
        if not event.event_id:
            raise ValueError("an event needs its provider's id")
        row = event.row() | {"recorded_at": utc_text(at)}
        engine = self.database.engine()
        table = self.table
        try:
            with engine.begin() as connection:
                statement = insert_ignoring_duplicates(engine.dialect, table, row,
                                                       table.c.event_id)
                if statement is not None:
                    return connection.execute(statement).first() is not None
                connection.execute(table.insert().values(**row))
                return True
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise self._error("write", exc) from None

    # -- reading ----------------------------------------------------------------------

    def _select(self, *conditions: Any) -> list[Event]:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        if not self.database.exists():
            return []
        t = self.table
        columns = [t.c[name] for name in Event.__dataclass_fields__]
        query = select(*columns).where(*conditions).order_by(t.c.occurred_at, t.c.event_id)
        try:
            with self.database.engine().connect() as connection:
                return [Event(*row) for row in connection.execute(query)]
        except SQLAlchemyError as exc:
            raise self._error("read", exc) from None

    def events(self) -> list[Event]:
        """Every event, oldest first (exports and tests)."""
        return self._select()

    def soft_bounces(self, *, customer_id: str, recipient_hash: str, since: str) -> list[Event]:
        """This recipient's soft bounces since `since` (ISO 8601), by id or address hash."""
        from sqlalchemy import or_

        t = self.table
        who = [t.c.customer_id == customer_id] if customer_id else []
        if recipient_hash:
            who.append(t.c.recipient_hash == recipient_hash)
        if not who:
            return []
        return self._select(t.c.kind == "bounce", t.c.severity == "soft",
                            t.c.occurred_at >= since, or_(*who))

    def mailing_counts(self, campaign: str,
                       mailings: Iterable[str] | None = None) -> dict[str, MailingCounts]:
        """Bounces, complaints and deliveries per mailing of `campaign` (mailing -> counts),
        one query; only `mailings` when given."""
        from sqlalchemy import func, select
        from sqlalchemy.exc import SQLAlchemyError

        if not self.database.exists():
            return {}
        t = self.table
        query = (select(t.c.mailing, t.c.kind, t.c.severity, func.count())
                 .where(t.c.campaign == campaign)
                 .group_by(t.c.mailing, t.c.kind, t.c.severity))
        if mailings is not None:
            query = query.where(t.c.mailing.in_(list(mailings)))
        found: dict[str, dict[str, int]] = {}
        try:
            with self.database.engine().connect() as connection:
                for mailing, kind, severity, count in connection.execute(query):
                    key = {"bounce": f"{severity or 'soft'}_bounces", "complaint": "complaints",
                           "delivery": "deliveries"}.get(kind)
                    if key:
                        counts = found.setdefault(mailing, {})
                        counts[key] = counts.get(key, 0) + int(count)
        except SQLAlchemyError as exc:
            raise self._error("read", exc) from None
        return {m: MailingCounts(campaign, m, **c) for m, c in found.items()}


__all__ = ["KINDS", "SEVERITIES", "Event", "EventStore", "MailingCounts", "utc_text"]
