"""The suppression store: who unsubscribed (or bounced), written by the unsubscribe server.

One table of the house store (edition.store.database: SQLite by default, or
PostgreSQL).

Scopes. An unsubscribe names the campaign its link came from: one-click in a mail
program and the page's main button unsubscribe from that campaign (the "list" of RFC
2369/8058); the page's second button records scope `*`, all marketing. A marketing run
honours the rows of its own campaign and every `*` row; bounces and complaints are
always `*` and are honoured by transactional campaigns too. A row matches a customer by
id or by address hash, so one address under two customer ids is one person.

Where: the house store (edition.store.database): `EDITION_STORE` (or its older name
`EDITION_SUPPRESSION_STORE`), else the campaign's `suppression.store`, else
`out/suppression.sqlite` under the content root — one store for every campaign of the
root, so an "all marketing" unsubscribe reaches all of them.

A run reads the store once (`snapshot`) and asks the snapshot per customer; the
unsubscribe server records one row per request (`record`, idempotent: the first
record of a person in a scope wins and keeps its date).

Resubscribing (store/resubscriptions.py): the later of an unsubscribe and a
resubscription wins. `lift` (the preference page's "subscribe again", a CRM import)
deletes the campaign's own unsubscribes and records the resubscription, which lifts an
"all marketing" row for that campaign only; an unsubscribe recorded after it deletes
the resubscription again (`record`), so the customer is out once more.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edition.databases import masked
from edition.store.database import (
    DEFAULT_STORE,
    RecordStore,
    StoreError,
    database_url,
    first_line,
    insert_ignoring_duplicates,
    store_location,
    store_location_by_name,
)
from edition.store.resubscriptions import Resubscribed, ResubscriptionStore, lifting

if TYPE_CHECKING:   # SQLAlchemy itself is imported only when a store is used
    from sqlalchemy import Table
    from sqlalchemy.engine import Engine

STORE_ENV = "EDITION_SUPPRESSION_STORE"   # still read; EDITION_STORE is the new name
ALL_MARKETING = "*"
KINDS = ("unsubscribed", "bounced", "complained")
TABLE = "suppressions"


@dataclass(frozen=True)
class Entry:
    """One stored suppression, as a run sees it."""

    kind: str           # unsubscribed | bounced | complained
    scope: str          # a campaign name, or "*" (all marketing)
    customer_id: str
    source: str         # one-click | page | mailto | import | ...
    recorded_at: str    # ISO 8601, UTC

    @property
    def day(self) -> str:
        return self.recorded_at[:10]


@dataclass(frozen=True)
class Snapshot:
    """The store's rows for one campaign, read once: O(1) lookups by id and address hash."""

    campaign: str
    by_id: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    by_address: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    # the customers who subscribed again to this campaign after an unsubscribe (which
    # is left out above): the run says "subscribed again on D" for them
    lifted_by_id: Mapping[str, Resubscribed] = field(default_factory=dict)
    lifted_by_address: Mapping[str, Resubscribed] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_id.values())

    def find(self, customer_id: str | None, hashed: str) -> Iterator[Entry]:
        """Every entry that names this customer, by id first, then by address."""
        if customer_id is not None:
            yield from self.by_id.get(customer_id, ())
        if hashed:
            yield from self.by_address.get(hashed, ())

    def lifted(self, customer_id: str | None, hashed: str) -> Resubscribed | None:
        """This customer's resubscription to the campaign, if any."""
        found = self.lifted_by_id.get(customer_id) if customer_id is not None else None
        return found or (self.lifted_by_address.get(hashed) if hashed else None)


@dataclass(frozen=True)
class Lift:
    """What a resubscription did (`SuppressionStore.lift`)."""

    lifted: tuple[Entry, ...] = ()     # the unsubscribes it lifted (empty: none stored)
    later: Entry | None = None         # an unsubscribe recorded after it: nothing lifted


def _declare_table() -> Table:
    from sqlalchemy import Column, Index, MetaData, String, Table

    metadata = MetaData()
    return Table(
        TABLE, metadata,
        Column("scope", String(255), primary_key=True),
        Column("customer_id", String(1024), primary_key=True),
        Column("kind", String(20), primary_key=True),
        Column("address_hash", String(64), nullable=False, server_default=""),
        Column("campaign", String(255), nullable=False),   # the link it came from
        Column("source", String(40), nullable=False),
        Column("recorded_at", String(32), nullable=False),
        Index("suppressions_by_address", "address_hash"),
    )


def redacted(url: str) -> str:
    """A store URL fit for messages: edition.databases.masked (the one masking function)."""
    return masked(url)


class SuppressionStore(RecordStore):
    """The suppressions of the house store at one location;
    `with SuppressionStore(url) as store: ...` (thread-safe)."""

    declare = staticmethod(_declare_table)

    def __repr__(self) -> str:
        return f"SuppressionStore({redacted(self.url)!r})"

    @property
    def sqlite_path(self) -> Path | None:
        return self.database.sqlite_path

    def exists(self) -> bool:
        """False for a SQLite file nobody has written yet (a run then reads nothing)."""
        return self.database.exists()

    def engine(self) -> Engine:
        engine = self.database.engine()
        self.table   # noqa: B018 (created on first use)
        return engine

    # -- writing ----------------------------------------------------------------------

    def record(self, campaign: str, customer_id: str, address_hash: str, source: str, *,
               scope: str | None = None, kind: str = "unsubscribed",
               at: dt.datetime | None = None) -> bool:
        """Remember that this customer must not get `campaign` (or, with
        `scope=ALL_MARKETING`, any marketing); True if new, False if already recorded.

        Idempotent: a repeated request (a mail program retrying the one-click POST, a
        double click) changes nothing, and the first date is kept.
        """
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        scope = ALL_MARKETING if kind != "unsubscribed" else (scope or campaign)
        when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
        row = {"scope": scope, "customer_id": customer_id, "kind": kind,
               "address_hash": address_hash or "", "campaign": campaign,
               "source": source[:40], "recorded_at": when.isoformat().replace("+00:00", "Z")}
        engine = self.engine()
        resubscriptions = ResubscriptionStore(self.database)
        resubscriptions.table  # noqa: B018 (created before the transaction: SQLite's lock)
        try:
            with engine.begin() as connection:
                statement = insert_ignoring_duplicates(engine.dialect, self.table, row,
                                                       self.table.c.scope)
                if statement is not None:
                    # a row comes back only when it was inserted (rowcount is -1 here
                    # with psycopg)
                    inserted = connection.execute(statement).first() is not None
                else:
                    connection.execute(self.table.insert().values(**row))
                    inserted = True
                if kind != "unsubscribed":
                    return inserted
                # a "no" after a "subscribe again" wins: the resubscription goes, and a
                # row kept from before it takes this request's date and source
                overridden = resubscriptions.forget(
                    connection, customer_id, address_hash, None if scope == ALL_MARKETING
                    else scope, row["recorded_at"])
                if overridden and not inserted:
                    t = self.table
                    connection.execute(t.update().where(
                        t.c.scope == scope, t.c.customer_id == customer_id,
                        t.c.kind == kind).values(recorded_at=row["recorded_at"],
                                                 source=row["source"], campaign=campaign))
                return inserted or overridden > 0
        except IntegrityError:
            return False     # another dialect: the duplicate raised instead of being ignored
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to the suppression store {redacted(self.url)}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None

    def lift(self, connection: Any, campaign: str, customer_id: str, address_hash: str,
             source: str, at: str) -> Lift:
        """The customer subscribes to `campaign` again at `at` (ISO, UTC), inside the
        caller's transaction (the consent record goes in the same one). Their
        unsubscribes of this campaign are deleted and the resubscription is recorded,
        which lifts an "all marketing" unsubscribe for this campaign; an unsubscribe
        recorded after `at` wins and nothing changes. Bounces and complaints stay."""
        from sqlalchemy import or_, select

        t = self.table
        person = (or_(t.c.customer_id == customer_id, t.c.address_hash == address_hash)
                  if address_hash else t.c.customer_id == customer_id)
        back_by_id, back_by_address = ResubscriptionStore(self.database).of_campaign(
            connection, campaign, customer_id)
        # an unsubscribe an earlier resubscription already lifted is no reason to lift
        # (and log) again: a CRM export re-imported changes nothing
        rows = [e for e in (Entry(*row) for row in connection.execute(
            select(t.c.kind, t.c.scope, t.c.customer_id, t.c.source, t.c.recorded_at).where(
                person, t.c.kind == "unsubscribed",
                t.c.scope.in_([campaign, ALL_MARKETING]))))
            if lifting(back_by_id, customer_id, e.recorded_at) is None
            and lifting(back_by_address, address_hash, e.recorded_at) is None]
        later = [e for e in rows if e.recorded_at > at]
        if later:
            return Lift((), min(later, key=_earliest_first))
        if not rows:
            return Lift()
        connection.execute(t.delete().where(person, t.c.kind == "unsubscribed",
                                            t.c.scope == campaign))
        lifted = tuple(sorted(rows, key=_earliest_first))
        ResubscriptionStore(self.database).put(connection, campaign, customer_id,
                                               address_hash, source, at,
                                               (lifted[0].scope, lifted[0].recorded_at))
        return Lift(lifted)

    # -- reading ----------------------------------------------------------------------

    def snapshot(self, campaign: str) -> Snapshot:
        """Every row that applies to `campaign` (its own scope and `*`), read once."""
        if not self.exists():
            return Snapshot(campaign)
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        t = self.table
        query = select(t.c.scope, t.c.customer_id, t.c.kind, t.c.address_hash, t.c.source,
                       t.c.recorded_at).where(t.c.scope.in_([campaign, ALL_MARKETING]))
        by_id: dict[str, list[Entry]] = {}
        by_address: dict[str, list[Entry]] = {}
        resubscriptions = ResubscriptionStore(self.database)
        resubscriptions.table  # noqa: B018 (created before reading: an older store lacks it)
        try:
            with self.engine().connect() as connection:
                back_by_id, back_by_address = resubscriptions.of_campaign(connection, campaign)
                for scope, customer_id, kind, hashed, source, at in connection.execute(query):
                    # scope, kind and source repeat on every row: share one string each
                    entry = Entry(sys.intern(kind), sys.intern(scope), customer_id,
                                  sys.intern(source), at)
                    back = None if kind != "unsubscribed" else (
                        lifting(back_by_id, customer_id, at)
                        or lifting(back_by_address, hashed, at))
                    if back is not None:   # subscribed again since: not honoured here
                        continue
                    by_id.setdefault(customer_id, []).append(entry)
                    if hashed:
                        by_address.setdefault(hashed, []).append(entry)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the suppression store {redacted(self.url)}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None
        order = _earliest_first
        return Snapshot(campaign, {k: tuple(sorted(v, key=order)) for k, v in by_id.items()},
                        {k: tuple(sorted(v, key=order)) for k, v in by_address.items()},
                        back_by_id, back_by_address)

    def lookup(self, campaign: str, customer_id: str) -> list[Entry]:
        """This customer's rows that apply to `campaign`, oldest first (one small query)."""
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        if not self.exists():
            return []
        t = self.table
        query = select(t.c.kind, t.c.scope, t.c.customer_id, t.c.source, t.c.recorded_at).where(
            t.c.customer_id == customer_id, t.c.scope.in_([campaign, ALL_MARKETING]))
        resubscriptions = ResubscriptionStore(self.database)
        resubscriptions.table  # noqa: B018
        try:
            with self.engine().connect() as connection:
                back, _ = resubscriptions.of_campaign(connection, campaign, customer_id)
                return sorted((entry for entry in (Entry(*row) for row in
                                                   connection.execute(query))
                               if entry.kind != "unsubscribed"
                               or lifting(back, customer_id, entry.recorded_at) is None),
                              key=_earliest_first)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the suppression store {redacted(self.url)}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None

    def entries(self) -> list[Entry]:
        """Every row (for tests and exports), oldest first."""
        from sqlalchemy import select

        if not self.exists():
            return []
        t = self.table
        with self.engine().connect() as connection:
            rows = connection.execute(select(t.c.kind, t.c.scope, t.c.customer_id,
                                             t.c.source, t.c.recorded_at))
            return sorted((Entry(*row) for row in rows), key=_earliest_first)


def _earliest_first(entry: Entry) -> tuple[str, str]:
    return (entry.recorded_at, entry.scope)


__all__ = ["ALL_MARKETING", "DEFAULT_STORE", "STORE_ENV", "Entry", "Lift", "Snapshot",
           "StoreError",
           "SuppressionStore", "database_url", "store_location", "store_location_by_name"]
