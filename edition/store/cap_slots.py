"""Cap slots: the house's frequency cap taken per customer, atomically, across campaigns.

The run's cadence (edition.run.cadence) reads the send ledgers once when a run starts;
two sends of different campaigns running at the same time would both read "nothing
sent yet" and both mail a customer capped at one message. So every marketing message
under a cap also takes a slot here, in the house store (one for every campaign of the
content root: `EDITION_STORE`, else out/suppression.sqlite), right before its ledger
claim: in ONE transaction, the customer's slots of the last `days` days are counted
and, if the cap allows one more, this mailing's slot is written. SQLite serializes it
with `BEGIN IMMEDIATE` (the write lock first, then the count); PostgreSQL with a
transaction-scoped advisory lock per customer, taken in sorted order (two windows of
customers never wait on each other in a cycle). A slot whose message failed is given
back; a crash between slot and send leaves the slot: the cap errs on the side of
fewer messages, never more.

Priorities. An approved run plans its customers (state `planned`) for the next
`PLAN_HOURS`: a campaign of lower priority sending meanwhile finds the slot held for
the higher one (`excluded`, "... the slot is held for campaign X (priority 9, …)"); a
plan of equal or lower priority holds nothing. Equal priorities: first come, first
served — the first message to leave takes the slot. Sent is sent: a message that left
counts whatever its priority.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from edition.outcomes import Reason
from edition.store.database import (
    DEFAULT_STORE,
    Database,
    RecordStore,
    StoreError,
    _from_env,
    database_url,
    first_line,
)

TABLE = "cap_slots"
PLANNED, SENT = "planned", "sent"
PLAN_HOURS = 24      # an approval holds its customers' slots this long ("the same day")


class Slot(NamedTuple):
    """One customer's slot (a tuple: a dry run may read 100,000s)."""

    campaign: str
    mailing: str
    priority: int
    state: str            # planned | sent
    at: dt.datetime


@dataclass(frozen=True)
class Claimant:
    """Who asks for a slot: the campaign's mailing and its priority."""

    campaign: str
    mailing: str
    priority: int = 0


def house_store_location(root: Path, environ: Mapping[str, str] | None = None) -> str:
    """The house store every campaign of `root` shares (a campaign's own
    `suppression.store` does not apply: the cap spans campaigns)."""
    return database_url(_from_env(environ) or DEFAULT_STORE, root)


def _days(days: int) -> str:
    return f"{days} day{'s' if days != 1 else ''}"


def taken_by(slots: Iterable[Slot], me: Claimant, *, max_sends: int, days: int,
             now: dt.datetime) -> Reason | None:
    """Why the cap gives `me` no slot for this customer (None: it does). Pure.

    Counted: the slots of other mailings sent in the last `days` days, and the plans of
    the last PLAN_HOURS of a higher priority than mine."""
    since, plans_since = now - dt.timedelta(days=days), now - dt.timedelta(hours=PLAN_HOURS)
    counted: list[Slot] = []
    for slot in slots:
        if (slot.campaign, slot.mailing) == (me.campaign, me.mailing):
            continue
        if slot.state == SENT:
            if slot.at >= since:
                counted.append(slot)
        elif slot.at >= plans_since and slot.priority > me.priority:
            counted.append(slot)
    if len(counted) < max_sends:
        return None
    # the winner named: the strongest claim among those counted (a plan of higher
    # priority, else the latest message)
    winner = max(counted, key=lambda s: (s.priority, s.at))
    how = ("went to" if winner.state == SENT else "is held for")
    return Reason("frequency_cap",
                  f"frequency cap: max {max_sends} in {_days(days)} reached; the slot "
                  f"{how} campaign {winner.campaign} (priority {winner.priority}, "
                  f"{'sent' if winner.state == SENT else 'approved'} "
                  f"{winner.at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)",
                  f"frequency cap: taken by {winner.campaign}")


def _declare_table() -> Any:
    from sqlalchemy import Column, Index, Integer, MetaData, String, Table

    metadata = MetaData()
    return Table(
        TABLE, metadata,
        Column("customer_id", String(1024), primary_key=True),
        Column("campaign", String(255), primary_key=True),
        Column("mailing", String(255), primary_key=True),
        Column("priority", Integer, nullable=False),
        Column("state", String(16), nullable=False),
        Column("at", String(32), nullable=False),        # ISO 8601 UTC: sorts as text
        Index("cap_slots_by_time", "at"),
    )


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _when(text: str) -> dt.datetime:
    at = dt.datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _lock_key(customer_id: str) -> int:
    """A signed 64-bit advisory lock key for one customer (PostgreSQL)."""
    digest = hashlib.blake2b(f"edition-cap:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class CapSlots(RecordStore):
    """The cap slots of the house store at one location (thread-safe)."""

    declare = staticmethod(_declare_table)

    def __init__(self, location: str | Database, root: Path | None = None):
        super().__init__(location, root)

    def take(self, customer_ids: Sequence[str], me: Claimant, *, max_sends: int, days: int,
             now: dt.datetime) -> dict[str, Reason]:
        """Take this mailing's slot for each customer the cap allows, atomically with the
        count; returns the ones refused, with why. A customer holding this mailing's slot
        already (a resumed send) keeps it."""
        from sqlalchemy import and_, delete, select
        from sqlalchemy.exc import SQLAlchemyError

        wanted = sorted({str(c) for c in customer_ids})
        if not wanted:
            return {}
        t = self.table
        oldest = _iso(now - dt.timedelta(days=max(days, 1), hours=PLAN_HOURS))
        refused: dict[str, Reason] = {}
        try:
            with self.database.engine().connect() as connection:
                postgres = connection.dialect.name == "postgresql"
                if not postgres:
                    # the write lock before the count: nobody can take a slot in between
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    connection.begin()
                try:
                    if postgres:   # sorted: two windows never wait on each other in a cycle
                        for cid in wanted:
                            connection.exec_driver_sql(
                                "SELECT pg_advisory_xact_lock(%(k)s)", {"k": _lock_key(cid)})
                    held: dict[str, list[Slot]] = {cid: [] for cid in wanted}
                    # one read and one write per window, not per customer (a window of
                    # 16 took 7-10x the ledger's claim when done one by one)
                    for r in connection.execute(
                            select(t.c.customer_id, t.c.campaign, t.c.mailing, t.c.priority,
                                   t.c.state, t.c.at)
                            .where(and_(t.c.customer_id.in_(wanted), t.c.at >= oldest))):
                        held[r[0]].append(Slot(r[1], r[2], int(r[3]), r[4], _when(r[5])))
                    granted: list[str] = []
                    for cid, slots in held.items():
                        if any((s.campaign, s.mailing, s.state) == (me.campaign, me.mailing,
                                                                    SENT) for s in slots):
                            continue   # resumed: the ledger decides ("already sent")
                        reason = taken_by(slots, me, max_sends=max_sends, days=days, now=now)
                        if reason is not None:
                            refused[cid] = reason
                        else:
                            granted.append(cid)
                    if granted:
                        connection.execute(delete(t).where(and_(
                            t.c.customer_id.in_(granted), t.c.campaign == me.campaign,
                            t.c.mailing == me.mailing)))
                        connection.execute(t.insert(), [
                            {"customer_id": cid, "campaign": me.campaign,
                             "mailing": me.mailing, "priority": me.priority, "state": SENT,
                             "at": _iso(now)} for cid in granted])
                    if postgres:
                        connection.commit()
                    else:
                        connection.exec_driver_sql("COMMIT")
                except BaseException:
                    if postgres:
                        connection.rollback()
                    else:
                        connection.exec_driver_sql("ROLLBACK")
                    raise
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot take frequency cap slots in the store "
                             f"{self.database.shown}: {type(exc).__name__}: "
                             f"{first_line(exc)}") from None
        return refused

    def give_back(self, customer_ids: Iterable[str], me: Claimant) -> None:
        """The slots of messages that did not leave (failed): the cap is not used."""
        from sqlalchemy import and_, delete
        from sqlalchemy.exc import SQLAlchemyError

        ids = [str(c) for c in customer_ids]
        if not ids:
            return
        t = self.table
        try:
            with self.database.engine().begin() as connection:
                connection.execute(delete(t).where(and_(
                    t.c.customer_id.in_(ids), t.c.campaign == me.campaign,
                    t.c.mailing == me.mailing, t.c.state == SENT)))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot give back frequency cap slots in the store "
                             f"{self.database.shown}: {type(exc).__name__}: "
                             f"{first_line(exc)}") from None

    def plan(self, customer_ids: Iterable[str], me: Claimant, *, now: dt.datetime) -> int:
        """An approved run's customers: their slots held for this mailing (state
        `planned`, replacing the mailing's earlier plan; a slot already sent stays)."""
        from sqlalchemy import and_, delete, select
        from sqlalchemy.exc import SQLAlchemyError

        t = self.table
        ids = sorted({str(c) for c in customer_ids})
        try:
            with self.database.engine().begin() as connection:
                connection.execute(delete(t).where(and_(
                    t.c.campaign == me.campaign, t.c.mailing == me.mailing,
                    t.c.state == PLANNED)))
                sent = {r[0] for r in connection.execute(select(t.c.customer_id).where(and_(
                    t.c.campaign == me.campaign, t.c.mailing == me.mailing)))}
                rows = [{"customer_id": cid, "campaign": me.campaign, "mailing": me.mailing,
                         "priority": me.priority, "state": PLANNED, "at": _iso(now)}
                        for cid in ids if cid not in sent]
                if rows:
                    connection.execute(t.insert(), rows)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot plan frequency cap slots in the store "
                             f"{self.database.shown}: {type(exc).__name__}: "
                             f"{first_line(exc)}") from None
        return len(rows)

    def snapshot(self, *, now: dt.datetime, days: int) -> dict[str, tuple[Slot, ...]]:
        """Every customer's slots that can still count (a dry run's read, once)."""
        if not self.database.exists():
            return {}
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        t = self.table
        oldest = _iso(now - dt.timedelta(days=max(days, 1), hours=PLAN_HOURS))
        found: dict[str, list[Slot]] = {}
        try:
            with self.database.engine().connect() as connection:
                for r in connection.execute(select(
                        t.c.customer_id, t.c.campaign, t.c.mailing, t.c.priority, t.c.state,
                        t.c.at).where(t.c.at >= oldest)):
                    found.setdefault(r[0], []).append(
                        Slot(r[1], r[2], int(r[3]), r[4], _when(r[5])))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read frequency cap slots in the store "
                             f"{self.database.shown}: {type(exc).__name__}: "
                             f"{first_line(exc)}") from None
        return {k: tuple(v) for k, v in found.items()}


__all__ = ["PLAN_HOURS", "CapSlots", "Claimant", "Slot", "house_store_location", "taken_by"]
