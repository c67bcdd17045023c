"""The consent log: every change a customer made (or a CRM made for them), append-only.

GDPR Art. 7(1): the sender must be able to show the consent — who, when, what text,
through which form. One row per change: the time, the campaign and customer, what
changed from what to what (JSON {field: [from, to]}), the form and the version of its
text (a digest of the page template the customer saw), the source (web, crm, api,
one-click, page) and a hash of the client's IP and user agent (never the values
themselves: the log must prove, not profile). Rows are only ever inserted; nothing here
updates or deletes one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edition.databases import masked
from edition.store.database import RecordStore, StoreError, first_line

TABLE = "consent"


@dataclass(frozen=True)
class ConsentRecord:
    """One change, as stored."""

    recorded_at: str          # ISO 8601, UTC
    campaign: str
    customer_id: str
    change: Mapping[str, Any]  # {field: [from, to]}
    form: str                  # preferences | unsubscribe | crm-import | ...
    form_version: str          # digest of the text the customer saw ("" when none)
    source: str                # web | crm | api | one-click | page
    client_hash: str           # sha256 of IP + user agent ("" when none)

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.recorded_at, "campaign": self.campaign,
                "customer_id": self.customer_id, "change": dict(self.change),
                "form": self.form, "form_version": self.form_version,
                "source": self.source, "client_hash": self.client_hash}


def _declare_table() -> Any:
    from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

    metadata = MetaData()
    return Table(
        TABLE, metadata,
        # BigInteger on PostgreSQL, INTEGER (the rowid) on SQLite: both autoincrement
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("recorded_at", String(32), nullable=False),
        Column("campaign", String(255), nullable=False),
        Column("customer_id", String(1024), nullable=False),
        Column("change", Text, nullable=False),
        Column("form", String(64), nullable=False),
        Column("form_version", String(64), nullable=False, server_default=""),
        Column("source", String(40), nullable=False),
        Column("client_hash", String(64), nullable=False, server_default=""),
        Index("consent_by_customer", "customer_id"),
    )


class ConsentLog(RecordStore):
    """The consent log of the house store at one location (thread-safe)."""

    declare = staticmethod(_declare_table)

    def append(self, connection: Any, record: ConsentRecord) -> None:
        """Add one record inside the caller's transaction."""
        connection.execute(self.table.insert().values(
            recorded_at=record.recorded_at, campaign=record.campaign[:255],
            customer_id=record.customer_id, change=json.dumps(dict(record.change),
                                                              sort_keys=True, default=str),
            form=record.form[:64], form_version=record.form_version[:64],
            source=record.source[:40], client_hash=record.client_hash[:64]))

    def record(self, record: ConsentRecord) -> None:
        """Add one record in its own transaction."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.database.engine().begin() as connection:
                self.append(connection, record)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write the consent log {masked(self.database.url)}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None

    def of(self, customer_id: str) -> list[ConsentRecord]:
        """Every record of this customer, oldest first (an access request's answer)."""
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        if not self.database.exists():
            return []
        t = self.table
        query = select(t.c.recorded_at, t.c.campaign, t.c.customer_id, t.c.change, t.c.form,
                       t.c.form_version, t.c.source, t.c.client_hash).where(
            t.c.customer_id == customer_id).order_by(t.c.id)
        try:
            with self.database.engine().connect() as connection:
                return [ConsentRecord(at, campaign, ident, json.loads(change), form, version,
                                      source, client)
                        for at, campaign, ident, change, form, version, source, client
                        in connection.execute(query)]
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the consent log {masked(self.database.url)}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None


__all__ = ["ConsentLog", "ConsentRecord"]
