"""Resubscriptions: a customer who unsubscribed and came back, per campaign.

One table of the house store, beside `suppressions` (store/suppressions.py): one row per
(campaign, customer) holding the time the customer subscribed again, the address hash
the link carried and where it came from (web: the preference page's "subscribe again";
crm: `edition preferences import`; api). The consent log (store/consent.py) keeps the
history; this table is the state a run reads.

Order by time, the later wins:
- a resubscription lifts, for its campaign, every unsubscribe of the customer (its own
  campaign's or "all marketing") recorded at or before it; the campaign's own rows are
  deleted, an "all marketing" row stays for the other campaigns;
- an unsubscribe recorded after it deletes it (store/suppressions.py `record`), so the
  "no" holds again;
- a resubscription dated before an unsubscribe that is already stored (a CRM file
  exported before the customer clicked "unsubscribe") lifts nothing.
Bounces and complaints are never lifted: they say the address fails or the person
called us spam, which a form does not undo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edition.store.database import RecordStore

TABLE = "resubscriptions"


@dataclass(frozen=True)
class Resubscribed:
    """When and how a customer subscribed again to one campaign."""

    recorded_at: str    # ISO 8601, UTC (the suppression rows' format: compared as text)
    source: str         # web | crm | api
    unsubscribed_scope: str = ""   # the unsubscribe it lifted first: its scope ("*": all)
    unsubscribed_at: str = ""      # and its time

    @property
    def day(self) -> str:
        return self.recorded_at[:10]


def _declare_table() -> Any:
    from sqlalchemy import Column, Index, MetaData, String, Table

    metadata = MetaData()
    return Table(
        TABLE, metadata,
        Column("scope", String(255), primary_key=True),    # the campaign
        Column("customer_id", String(1024), primary_key=True),
        Column("address_hash", String(64), nullable=False, server_default=""),
        Column("source", String(40), nullable=False),
        Column("recorded_at", String(32), nullable=False),
        Column("unsubscribed_scope", String(255), nullable=False, server_default=""),
        Column("unsubscribed_at", String(32), nullable=False, server_default=""),
        Index("resubscriptions_by_address", "address_hash"),
    )


class ResubscriptionStore(RecordStore):
    """The resubscriptions of the house store at one location (thread-safe)."""

    declare = staticmethod(_declare_table)

    def put(self, connection: Any, campaign: str, customer_id: str, address_hash: str,
            source: str, at: str, lifted: tuple[str, str] = ("", "")) -> None:
        """Record (or move later) the customer's resubscription, in the caller's
        transaction; `lifted`: the (scope, time) of the unsubscribe it lifts."""
        t = self.table
        values = {"address_hash": address_hash or "", "source": source[:40],
                  "recorded_at": at, "unsubscribed_scope": lifted[0][:255],
                  "unsubscribed_at": lifted[1][:32]}
        updated = connection.execute(t.update().where(
            t.c.scope == campaign, t.c.customer_id == customer_id).values(**values))
        if updated.rowcount == 0:
            connection.execute(t.insert().values(scope=campaign, customer_id=customer_id,
                                                 **values))

    def forget(self, connection: Any, customer_id: str, address_hash: str,
               campaign: str | None, at: str) -> int:
        """Delete the resubscriptions an unsubscribe at `at` overrides (those of
        `campaign`, or of every campaign when None: "all marketing"), in the caller's
        transaction; how many."""
        from sqlalchemy import or_

        t = self.table
        person = (or_(t.c.customer_id == customer_id, t.c.address_hash == address_hash)
                  if address_hash else t.c.customer_id == customer_id)
        query = t.delete().where(person, t.c.recorded_at <= at)
        if campaign is not None:
            query = query.where(t.c.scope == campaign)
        return int(connection.execute(query).rowcount or 0)

    def of_campaign(self, connection: Any, campaign: str, customer_id: str | None = None
                    ) -> tuple[dict[str, Resubscribed], dict[str, Resubscribed]]:
        """The campaign's resubscriptions (or one customer's), by customer id and by
        address hash."""
        from sqlalchemy import select

        t = self.table
        by_id: dict[str, Resubscribed] = {}
        by_address: dict[str, Resubscribed] = {}
        query = select(t.c.customer_id, t.c.address_hash, t.c.source, t.c.recorded_at,
                       t.c.unsubscribed_scope, t.c.unsubscribed_at).where(
            t.c.scope == campaign)
        if customer_id is not None:
            query = query.where(t.c.customer_id == customer_id)
        for ident, hashed, source, at, scope, since in connection.execute(query):
            back = Resubscribed(at, source, scope, since)
            by_id[ident] = back
            if hashed:
                by_address[hashed] = back
        return by_id, by_address


def lifting(resubscribed: Mapping[str, Resubscribed], key: str | None,
            recorded_at: str) -> Resubscribed | None:
    """The resubscription that lifts an unsubscribe recorded at `recorded_at`, if any."""
    found = resubscribed.get(key) if key else None
    return found if found is not None and found.recorded_at >= recorded_at else None


__all__ = ["Resubscribed", "ResubscriptionStore", "lifting"]
