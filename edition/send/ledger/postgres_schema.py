"""The PostgreSQL ledger's tables, and their creation on first open.

Workers starting together create them under an advisory lock, so they do not race;
the version row refuses a database an other edition laid out differently.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from edition.errors import LedgerError
from edition.send.ledger.postgres_lock import SCHEMA_LOCK

__all__ = ["SCHEMA_VERSION", "create_schema", "events", "mailings", "meta", "metadata", "sends"]

SCHEMA_VERSION = "1"

metadata = MetaData()

sends = Table(
    "edition_sends", metadata,
    Column("campaign", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("send_key", Text, nullable=False),
    Column("content_hash", Text, nullable=False, server_default=""),
    Column("state", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("provider_id", Text),
    Column("reason", Text),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("campaign", "customer_id", "send_key"),
    CheckConstraint("state IN ('sending', 'sent', 'failed', 'unknown')",
                    name="edition_sends_state"),
)
# counts per state and the "sent in this mailing" count of `mailings()`
Index("edition_sends_by_state", sends.c.campaign, sends.c.state, sends.c.send_key)

events = Table(
    "edition_events", metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("campaign", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("send_key", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("provider_id", Text),
    Column("reason", Text),
    Column("at", DateTime(timezone=True), nullable=False),
)
Index("edition_events_by_customer", events.c.campaign, events.c.customer_id, events.c.seq)

mailings = Table(
    "edition_mailings", metadata,
    Column("campaign", Text, nullable=False),
    Column("mailing", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("as_of", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("expected", BigInteger, nullable=False, server_default="0"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("campaign", "mailing", "channel"),
    CheckConstraint("status IN ('open', 'finished')", name="edition_mailings_status"),
)

meta = Table(
    "edition_ledger_meta", metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)


def create_schema(db: Connection, path: str) -> None:
    """Create what is missing (under the schema lock) and check the schema version."""
    with db.begin():
        db.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK)))
        metadata.create_all(db, checkfirst=True)
        db.execute(insert(meta).values(name="schema_version", value=SCHEMA_VERSION)
                   .on_conflict_do_nothing(index_elements=["name"]))
        version = db.execute(select(meta.c.value).where(
            meta.c.name == "schema_version")).scalar()
    if version != SCHEMA_VERSION:
        raise LedgerError(f"the ledger's tables are schema version {version}; this "
                          f"edition knows version {SCHEMA_VERSION}", path)
