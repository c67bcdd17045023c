"""The send ledger in PostgreSQL: SendLedger's protocol for workers on many machines.

`delivery.ledger: postgresql://…` (or EDITION_LEDGER_URL) puts the ledger in a
database the team runs, so send workers on several hosts share one exactly-once
record. The protocol and its guarantees are ledger.py's, row for row:

- a claim is one statement, `INSERT … ON CONFLICT DO NOTHING RETURNING` (the new row
  and its `sending` event together, in one CTE); a key that exists is then locked with
  `SELECT … FOR UPDATE` and decided in the same transaction, so two workers racing for
  a key never both get SEND;
- the claim is committed before `claim` returns (synchronous_commit is forced back on
  for the ledger's own session if the server has it off);
- outcomes are grouped: deferred records ride along with the next claim's commit, or
  `flush`/`close`; claims from several threads of one process share a commit;
- an acknowledged `sent` is never downgraded by a later record;
- the run lock (`exclusive=True`) is a session advisory lock held on a connection of
  its own: the server releases it when that connection ends, also when the holder is
  killed with SIGKILL (its socket closes).

Tables: edition_sends, edition_events, edition_mailings, edition_ledger_meta; created
on first open under an advisory lock, so workers starting together do not race.
A pooler in transaction mode (pgbouncer) would break the session lock: point the
ledger at the server or a session-mode pool.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import (
    and_,
    func,
    literal_column,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from edition.databases import create_engine_for, masked, scrub, sqlalchemy_url
from edition.errors import LedgerBusy, LedgerError
from edition.send.ledger.group_commit import GroupCommit
from edition.send.ledger.postgres_claims import ClaimRound, claim_batch, claim_one
from edition.send.ledger.postgres_lock import take_run_lock
from edition.send.ledger.postgres_schema import create_schema, events, mailings, sends
from edition.send.ledger.postgres_statements import (
    ENTRY_COLUMNS,
    FINISH_MAILING,
    KEY,
    OPEN_MAILING,
    RECORD,
    RECORD_MANY,
    key_params,
)
from edition.send.ledger.records import (
    KEY_JOIN,
    STATES,
    Claim,
    HistoryEvent,
    LedgerEntry,
    Mailing,
    outcome_rows,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy import ColumnElement, Executable, Row

    from edition.send.targets import Outcome

__all__ = ["PostgresLedger"]

_RETRIES = 8  # deadlocks between workers' group commits are retried, then LedgerBusy
_RETRY_STATES = {"40P01", "40001"}  # deadlock_detected, serialization_failure


# an outcome waiting for the next commit: campaign, customer_id, send_key, state,
# provider_id, reason, run_id, when
_Record = tuple[str, str, str, str, str | None, str | None, str, datetime]


class _Victim(LedgerBusy):
    """The server rolled this transaction back to break a deadlock: run it again."""


class _Tx(NamedTuple):
    """What an operation of a group commit gets: the connection in its transaction and
    the keys this transaction claimed so far (in flight once it commits)."""

    db: Connection
    tentative: set[tuple[str, str, str]]


def _now() -> datetime:
    return datetime.now(UTC)


def _when(value: datetime) -> str:
    """A timestamp read back in the SQLite ledger's form (UTC, milliseconds)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def _iso(value: datetime | None) -> str | None:
    """A timestamp of a column that may be NULL, in the same form."""
    return None if value is None else _when(value)




class PostgresLedger:
    """Exactly-once bookkeeping for sends, in PostgreSQL; the interface of SendLedger.

    `exclusive=True` (default) takes the run lock: a second run on the same ledger (and
    `scope`) waits up to `wait` seconds, then raises LedgerBusy naming the holder's pid.
    `exclusive=False` is for the workers of ONE run: each claim is still atomic.
    `scope` narrows the run lock (e.g. to one campaign, so campaigns sharing a database
    do not wait for each other); by default it covers the whole ledger, as the SQLite
    file's lock does. Thread-safe. `path` is the URL with its password masked.
    """

    def __init__(self, url: str, *, exclusive: bool = True, wait: float = 0.0,
                 busy_timeout: float = 30.0, readonly: bool = False,
                 scope: str | None = None):
        self._url = sqlalchemy_url(url)
        self.path = masked(url)
        self.exclusive = exclusive and not readonly
        self.readonly = readonly
        self.scope = scope or ""
        self._wait = wait
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._in_flight: set[tuple[str, str, str]] = set()  # claimed by this object
        self._pending: list[_Record] = []
        self._group: GroupCommit[_Tx] = GroupCommit(self._lock, self._tx)
        self._engine: Engine | None = None
        self._db: Connection | None = None
        self._run_lock: Connection | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def open(self) -> PostgresLedger:
        """Connect (and create the tables); `with PostgresLedger(...)` calls this."""
        if self._db is not None:
            return self
        name = f"edition-ledger pid={os.getpid()} host={socket.gethostname()}"
        try:
            with self._errors("cannot open the send ledger"):
                self._engine = create_engine_for(self._url, application_name=name,
                                                 connect_timeout=self._busy_timeout)
                if self.exclusive:
                    self._run_lock = take_run_lock(self._engine, self.scope, self._wait,
                                                   self.path)
                db = self._engine.connect()
                self._db = db
                self._configure(db)
                if self.readonly:
                    if db.execute(select(func.to_regclass(sends.name))).scalar() is None:
                        raise LedgerError("no ledger here", self.path)
                    db.commit()
                else:
                    create_schema(db, self.path)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Commit deferred records, close the connections and release the run lock."""
        with self._lock:
            try:
                if self._db is not None and self._pending and not self._broken():
                    self.flush()
            finally:
                for attribute in ("_db", "_run_lock"):
                    conn = getattr(self, attribute)
                    setattr(self, attribute, None)
                    if conn is not None:
                        with suppress(SQLAlchemyError):
                            conn.close()  # closing the lock's session releases the lock
                if self._engine is not None:
                    self._engine.dispose()
                    self._engine = None

    def __enter__(self) -> PostgresLedger:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _configure(self, db: Connection) -> None:
        settings = {"lock_timeout": f"{int(self._busy_timeout * 1000)}ms",
                    "idle_in_transaction_session_timeout": "0"}
        # the claim must be durable before the send: whatever the server's default,
        # this session's commits wait for the WAL flush (stricter settings are kept)
        if db.execute(select(func.current_setting("synchronous_commit"))).scalar() == "off":
            settings["synchronous_commit"] = "on"
        if self.readonly:
            settings["default_transaction_read_only"] = "on"
        for name, value in settings.items():
            db.execute(select(func.set_config(name, value, False)))
        db.commit()

    def _broken(self) -> bool:
        return self._db is None or self._db.invalidated

    # --- errors --------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Database errors as LedgerError/LedgerBusy, the password masked."""
        try:
            yield
        except DBAPIError as exc:
            code = getattr(exc.orig, "sqlstate", None)
            detail = scrub(str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip()
                           else type(exc.orig).__name__, self._url)
            if code == "25006":
                raise LedgerError("the ledger was opened read-only", self.path) from None
            if code in _RETRY_STATES:
                raise _Victim(f"the ledger is locked by another process: {detail}",
                              self.path) from None
            if code == "55P03":  # lock_timeout: a row stayed locked for busy_timeout
                raise LedgerBusy(f"the ledger is locked by another process: {detail}",
                                 self.path) from None
            raise LedgerError(f"{doing}: {detail}", self.path) from None
        except SQLAlchemyError as exc:
            raise LedgerError(f"{doing}: {scrub(str(exc), self._url)}", self.path) from None

    # --- transactions --------------------------------------------------------------------

    def _open_db(self) -> Connection:
        if self._db is None:
            raise LedgerError("the ledger is not open", self.path)
        return self._db

    def _tx(self, body: Callable[[_Tx], None] | None = None) -> None:
        """One write transaction: deferred records first, then `body`; retried whole
        when the server picks it as a deadlock victim (nothing of it took effect)."""
        db = self._open_db()
        if self.readonly:
            raise LedgerError("the ledger was opened read-only", self.path)
        with self._lock:
            pending = sorted(self._pending, key=lambda r: r[:3])
            self._pending = []
            try:
                for attempt in range(_RETRIES):
                    tentative: set[tuple[str, str, str]] = set()
                    try:
                        with self._errors("the send ledger failed"), db.begin():
                            self._write_records(db, pending)
                            if body is not None:
                                body(_Tx(db, tentative))
                        break
                    except _Victim:
                        if attempt == _RETRIES - 1 or db.invalidated:
                            raise
                        time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
            except BaseException:
                self._pending = pending + self._pending
                raise
            for row in pending:
                self._in_flight.discard(row[:3])
            self._in_flight |= tentative

    # --- the protocol --------------------------------------------------------------------

    def claim(self, campaign: str, customer_id: str, send_key: str, run_id: str, *,
              content_hash: str = "", resend_unknown: bool = False,
              once_per_customer: bool = False) -> Claim:
        """Decide whether this key may be sent now; a send claim is durable on return.

        `content_hash` is recorded with the claim (what was sent), not part of the key.
        `once_per_customer=True` also treats a customer as already sent when an earlier
        run sent them under another key.
        """
        key = (campaign, customer_id, send_key)
        now = _now()
        # claims run in key order within a commit: fewer lock-order deadlocks
        return self._group.run(
            lambda tx: claim_one(tx.db, tx.tentative, key, content_hash, self._round(
                run_id, now, resend_unknown, once_per_customer)), key)

    def claim_many(self, campaign: str, items: Sequence[tuple[str, str, str]],
                   run_id: str, *, resend_unknown: bool = False,
                   once_per_customer: bool = False) -> list[Claim]:
        """`claim` for many keys at once: (customer_id, send_key, content_hash) each, the
        decisions in the same order, all durable on return in ONE commit (with the
        deferred records). Claim only what is about to be sent: after a crash every key
        claimed here and not yet recorded is `unknown` (docs/scale.md)."""
        if not items:
            return []
        now = _now()
        order = min((campaign, c, k) for c, k, _ in items)
        return self._group.run(
            lambda tx: claim_batch(tx.db, tx.tentative, campaign, list(items), self._round(
                run_id, now, resend_unknown, once_per_customer)), order)

    def _round(self, run_id: str, now: datetime, resend_unknown: bool,
               once_per_customer: bool) -> ClaimRound:
        """The claims' shared facts, read inside the transaction (what is in flight now)."""
        return ClaimRound(run_id, now, resend_unknown, once_per_customer, self._in_flight,
                          self.exclusive, self.path)

    def record(self, campaign: str, customer_id: str, send_key: str, outcome: Outcome,
               run_id: str, *, defer: bool = False) -> None:
        """Store the outcome of a send; committed on return, before the next send.

        `defer=True`: committed together with the next `claim` (still before the next
        send) or by `flush`/`close`. A crash in between leaves the key `sending`, so a
        rerun reports it UNKNOWN: never a duplicate, only a wider unknown window.
        """
        self.record_many(campaign, [(customer_id, send_key, outcome)], run_id, defer=defer)

    def record_many(self, campaign: str, outcomes: Iterable[tuple[str, str, Outcome]],
                    run_id: str, *, defer: bool = False) -> None:
        """Store several outcomes in one commit (for outcomes gathered from a thread pool)."""
        rows = outcome_rows(campaign, outcomes, run_id, _now(), self.path)
        with self._lock:
            self._open_db()
            self._pending.extend(rows)
        if not defer:
            self._group.run(lambda tx: None)

    def flush(self) -> None:
        """Commit deferred records now."""
        if self.readonly:
            raise LedgerError("the ledger was opened read-only", self.path)
        with self._lock:
            if self._pending:
                self._tx()
            else:
                self._open_db()

    def _write_records(self, db: Connection, rows: list[Any]) -> None:
        if not rows:
            return
        if len(rows) == 1:
            c, cid, k, s, p, r, run, now = rows[0]
            RECORD(db, {"campaign": c, "customer_id": cid, "send_key": k, "state": s,
                         "provider_id": p, "reason": r, "run_id": run, "now": now})
            return
        columns = list(zip(*rows, strict=True))
        db.execute(RECORD_MANY, dict(zip(
            ("campaigns", "cids", "keys", "states", "providers", "reasons", "runs", "ats"),
            (list(col) for col in columns), strict=True)))

    # --- reading -------------------------------------------------------------------------

    def _read(self, statement: Executable, params: Mapping[str, object] | None = None
              ) -> list[Row[Any]]:   # SQLAlchemy types the columns of a row as Any
        with self._lock:
            db = self._open_db()
            with self._errors("cannot read the send ledger"), db.begin():
                return list(db.execute(statement, params or {}).all())

    def _entries(self, where: ColumnElement[bool],
                 *order: ColumnElement[str] | ColumnElement[datetime],
                 params: Mapping[str, object] | None = None) -> list[LedgerEntry]:
        rows = self._read(select(*ENTRY_COLUMNS).where(where).order_by(*order), params)
        return [LedgerEntry(c, cid, key, h, state, run, n, pid, why, _when(at), _when(upd))
                for c, cid, key, h, state, run, n, pid, why, at, upd in rows]

    def lookup(self, campaign: str, customer_id: str, send_key: str) -> LedgerEntry | None:
        """The row for this key (state, provider_id, run, when), or None."""
        rows = self._entries(KEY, params=key_params(campaign, customer_id, send_key))
        return rows[0] if rows else None

    def lookup_customer(self, campaign: str, customer_id: str) -> list[LedgerEntry]:
        """Every row of one customer in a campaign (one per key sent or tried)."""
        return self._entries(and_(sends.c.campaign == campaign,
                                  sends.c.customer_id == customer_id),
                             sends.c.claimed_at)

    def entries(self, campaign: str, states: Iterable[str] | None = None) -> list[LedgerEntry]:
        """The rows of a campaign, optionally only in the given states."""
        wanted = list(states or STATES)
        # byte order, as SQLite sorts, whatever the database's collation
        return self._entries(and_(sends.c.campaign == campaign, sends.c.state.in_(wanted)),
                             sends.c.customer_id.collate("C"))

    def counts(self, campaign: str) -> dict[str, int]:
        """How many rows of the campaign are in each state."""
        rows = self._read(select(sends.c.state, func.count()).where(
            sends.c.campaign == campaign).group_by(sends.c.state))
        return {state: 0 for state in STATES} | {state: int(n) for state, n in rows}

    def history(self, campaign: str, customer_id: str) -> list[HistoryEvent]:
        """Every claim and outcome of one customer, oldest first (for audits)."""
        rows = self._read(
            select(events.c.send_key, events.c.run_id, events.c.state, events.c.provider_id,
                   events.c.reason, events.c.at)
            .where(events.c.campaign == campaign, events.c.customer_id == customer_id)
            .order_by(events.c.seq))
        return [HistoryEvent(send_key=k, run_id=run, state=s, provider_id=p, reason=r,
                             at=_iso(at)) for k, run, s, p, r, at in rows]

    # --- mailings ------------------------------------------------------------------------

    def open_mailing(self, campaign: str, mailing: str, channel: str, *, as_of: str,
                     run_id: str, expected: int) -> None:
        """Record that a send of this mailing started (or resumed) on this channel."""
        self._check_run_lock()
        params = {"campaign": campaign, "mailing": mailing, "channel": channel,
                  "as_of": as_of, "run_id": run_id, "expected": expected, "now": _now()}
        self._group.run(lambda tx: OPEN_MAILING(tx.db, params))

    def finish_mailing(self, campaign: str, mailing: str, channel: str) -> None:
        """The mailing's send ran to its end: nobody is owed anything by it any more."""
        self._check_run_lock()
        params = {"m_campaign": campaign, "m_mailing": mailing, "m_channel": channel,
                  "now": _now()}
        self._group.run(lambda tx: tx.db.execute(FINISH_MAILING, params))

    def mailings(self, campaign: str, channel: str | None = None) -> list[Mailing]:
        """The campaign's mailings (on one channel), oldest first, with what each owes."""
        sent = (select(func.count()).select_from(sends)
                .where(sends.c.campaign == mailings.c.campaign,
                       sends.c.send_key == mailings.c.mailing + KEY_JOIN + mailings.c.channel,
                       sends.c.state == "sent")
                .scalar_subquery())
        query = (select(mailings.c.mailing, mailings.c.channel, mailings.c.as_of,
                        mailings.c.status, mailings.c.run_id, mailings.c.expected,
                        mailings.c.started_at, mailings.c.finished_at, sent)
                 .where(mailings.c.campaign == campaign).order_by(mailings.c.started_at))
        if channel is not None:
            query = query.where(mailings.c.channel == channel)
        return [Mailing(m, ch, as_of, status, run, int(expected), _when(started),
                        _iso(finished), int(n))
                for m, ch, as_of, status, run, expected, started, finished, n
                in self._read(query)]

    # --- the run lock ---------------------------------------------------------------------

    def _check_run_lock(self) -> None:
        """Before a mailing changes state: the lock's session must still be alive (a
        server restart ends it, and another run could then take the lock)."""
        if self._run_lock is None:
            return
        with self._lock, self._errors("the send ledger's run lock was lost"):
            self._run_lock.execute(select(literal_column("1")))
