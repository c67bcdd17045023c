"""The preference store: what each customer chose in a campaign's preference center.

One table of the house store (edition.store.database: SQLite by default, or
PostgreSQL): one row per (campaign, customer) holding the customer's current choices
as JSON, the time they last changed and where the change came from (web, crm, api).
The history of changes is the consent log (store/consent.py); this table is only the
latest state, which a run reads once (`snapshot`) and audience/preferences.py applies.

Topics are the campaign's own keys (`preferences.topics`), so choices are kept per
campaign; a choice not made is absent (None), never a default, so a run can tell "chose
every topic" from "never answered".
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from edition.databases import masked
from edition.store.database import RecordStore, StoreError, first_line

TABLE = "preferences"
FREQUENCIES = ("every", "weekly", "monthly", "paused")
FORMATS = ("html", "text", "pdf")
SOURCES = ("web", "crm", "api")


@dataclass(frozen=True)
class Choices:
    """One customer's choices; None: not chosen (the campaign's default applies)."""

    topics: tuple[str, ...] | None = None
    frequency: str | None = None        # every | weekly | monthly | paused
    paused_until: str | None = None     # ISO date; paused until then (None: until changed)
    format: str | None = None           # html | text | pdf
    large_type: bool | None = None
    locale: str | None = None
    tracking: bool | None = None
    day: str | None = None              # "1".."28" (of the month) or mon..sun
    hour: int | None = None             # 0..23, in the customer's time zone

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, the unchosen left out."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if "topics" in out:
            out["topics"] = list(out["topics"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Choices:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("topics"), list):
            values["topics"] = tuple(str(t) for t in values["topics"])
        return cls(**values)

    def merged(self, newer: Choices) -> Choices:
        """These choices with what `newer` chose on top (None keeps ours)."""
        return replace(self, **{k: v for k, v in asdict(newer).items() if v is not None})

    def changes(self, newer: Choices) -> dict[str, list[Any]]:
        """What differs, as {field: [from, to]} (the consent record's "change")."""
        old, new = self.as_dict(), newer.as_dict()
        return {key: [old.get(key), new.get(key)]
                for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}


@dataclass(frozen=True)
class Stored:
    """A customer's current choices, when and how they were made."""

    campaign: str
    customer_id: str
    choices: Choices
    updated_at: str     # ISO 8601, UTC
    source: str


def _declare_table() -> Any:
    from sqlalchemy import Column, MetaData, String, Table, Text

    metadata = MetaData()
    return Table(
        TABLE, metadata,
        Column("campaign", String(255), primary_key=True),
        Column("customer_id", String(1024), primary_key=True),
        Column("choices", Text, nullable=False),
        Column("updated_at", String(32), nullable=False),
        Column("source", String(40), nullable=False),
    )


def now_text(at: dt.datetime | None = None) -> str:
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


class PreferenceStore(RecordStore):
    """The preferences of the house store at one location (thread-safe)."""

    declare = staticmethod(_declare_table)

    def _failed(self, verb: str, exc: Exception) -> StoreError:
        return StoreError(f"cannot {verb} the preference store {masked(self.database.url)}: "
                          f"{type(exc).__name__}: {first_line(exc)}")

    def get(self, campaign: str, customer_id: str, connection: Any = None, *,
            for_update: bool = False) -> Stored | None:
        """This customer's current choices in `campaign`, or None (`for_update`: the row
        locked until the caller's transaction ends, where the database locks rows)."""
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        if connection is None and not self.database.exists():
            return None
        t = self.table
        query = select(t.c.choices, t.c.updated_at, t.c.source).where(
            t.c.campaign == campaign, t.c.customer_id == customer_id)
        if for_update:
            query = query.with_for_update()
        try:
            if for_update and connection is not None and connection.dialect.name == "sqlite":
                # SQLite has no row locks and pysqlite begins the transaction only at the
                # first write: a no-op write takes the database's write lock first, so
                # the read below is the latest and stays so until commit
                connection.execute(t.update().where(
                    t.c.campaign == campaign, t.c.customer_id == customer_id).values(
                    updated_at=t.c.updated_at))
            if connection is not None:
                row = connection.execute(query).first()
            else:
                with self.database.engine().connect() as own:
                    row = own.execute(query).first()
        except SQLAlchemyError as exc:
            raise self._failed("read", exc) from None
        if row is None:
            return None
        return Stored(campaign, customer_id, Choices.from_dict(json.loads(row[0])), row[1],
                      row[2])

    def put(self, connection: Any, campaign: str, customer_id: str, choices: Choices,
            source: str, at: str, *, first: bool = False) -> None:
        """Replace the customer's choices, inside the caller's transaction (the consent
        record goes in the same one: feedback/preferences.py). `first`: the caller read
        no row, so only an insert is right; another answer's row committed meanwhile
        makes it an IntegrityError (the caller reads again), never a silent update over
        a change the caller did not see."""
        t = self.table
        values = {"choices": json.dumps(choices.as_dict(), sort_keys=True),
                  "updated_at": at, "source": source[:40]}
        if first:
            connection.execute(t.insert().values(campaign=campaign, customer_id=customer_id,
                                                 **values))
            return
        updated = connection.execute(t.update().where(
            t.c.campaign == campaign, t.c.customer_id == customer_id).values(**values))
        if updated.rowcount == 0:
            connection.execute(t.insert().values(campaign=campaign, customer_id=customer_id,
                                                 **values))

    def snapshot(self, campaign: str) -> dict[str, Stored]:
        """Every customer's choices in `campaign`, read once (customer id -> Stored)."""
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        if not self.database.exists():
            return {}
        t = self.table
        query = select(t.c.customer_id, t.c.choices, t.c.updated_at, t.c.source).where(
            t.c.campaign == campaign)
        found: dict[str, Stored] = {}
        try:
            with self.database.engine().connect() as connection:
                for customer_id, choices, at, source in connection.execute(query):
                    found[customer_id] = Stored(campaign, customer_id,
                                                Choices.from_dict(json.loads(choices)), at,
                                                source)
        except SQLAlchemyError as exc:
            raise self._failed("read", exc) from None
        return found

    def all(self, campaign: str | None = None) -> list[Stored]:
        """Every stored row (for the CRM export), by campaign and customer."""
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        if not self.database.exists():
            return []
        t = self.table
        query = select(t.c.campaign, t.c.customer_id, t.c.choices, t.c.updated_at,
                       t.c.source).order_by(t.c.campaign, t.c.customer_id)
        if campaign is not None:
            query = query.where(t.c.campaign == campaign)
        try:
            with self.database.engine().connect() as connection:
                return [Stored(c, i, Choices.from_dict(json.loads(ch)), at, s)
                        for c, i, ch, at, s in connection.execute(query)]
        except SQLAlchemyError as exc:
            raise self._failed("read", exc) from None


__all__ = ["FORMATS", "FREQUENCIES", "SOURCES", "Choices", "PreferenceStore", "Stored",
           "now_text"]
