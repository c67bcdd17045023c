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

import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

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
    Select,
    Table,
    Text,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from edition.databases import create_engine_for, masked, scrub, sqlalchemy_url
from edition.errors import LedgerBusy, LedgerError
from edition.send.ledger.sqlite import (
    KEY_JOIN,
    STATES,
    Claim,
    HistoryEvent,
    LedgerEntry,
    Mailing,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy import ColumnElement, CursorResult, Executable, Row
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.dml import Insert, ReturningInsert
    from sqlalchemy.sql.elements import ClauseElement

    from edition.send.targets import Outcome

__all__ = ["PostgresLedger"]

SCHEMA_VERSION = "1"
_RETRIES = 8  # deadlocks between workers' group commits are retried, then LedgerBusy
_RETRY_STATES = {"40P01", "40001"}  # deadlock_detected, serialization_failure

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

# --- statements, built once (SQLAlchemy caches their compiled form) ------------------------

# (UPDATE … SET reserves the column names for its own parameters, hence k_…)
_KEY = and_(sends.c.campaign == bindparam("k_campaign"),
            sends.c.customer_id == bindparam("k_customer_id"),
            sends.c.send_key == bindparam("k_send_key"))


def _key_params(campaign: str, customer_id: str, send_key: str) -> dict[str, str]:
    return {"campaign": campaign, "customer_id": customer_id, "send_key": send_key,
            "k_campaign": campaign, "k_customer_id": customer_id, "k_send_key": send_key}


def _event_values(state: object, provider_id: object = None,
                  reason: object = None) -> dict[str, object]:
    return {"campaign": bindparam("campaign"), "customer_id": bindparam("customer_id"),
            "send_key": bindparam("send_key"), "run_id": bindparam("run_id"),
            "state": state, "provider_id": provider_id, "reason": reason,
            "at": bindparam("now")}


def _claim_statement() -> ReturningInsert[tuple[int]]:
    """The new row and its `sending` event, or nothing when the key exists: one statement."""
    claimed = (
        insert(sends)
        .values(campaign=bindparam("campaign"), customer_id=bindparam("customer_id"),
                send_key=bindparam("send_key"), content_hash=bindparam("content_hash"),
                state="sending", run_id=bindparam("run_id"), attempts=1,
                claimed_at=bindparam("now"), updated_at=bindparam("now"))
        .on_conflict_do_nothing(index_elements=["campaign", "customer_id", "send_key"])
        .returning(sends.c.campaign, sends.c.customer_id, sends.c.send_key, sends.c.run_id,
                   sends.c.claimed_at)
        .cte("claimed")
    )
    row = select(claimed.c.campaign, claimed.c.customer_id, claimed.c.send_key,
                 claimed.c.run_id, literal("sending"), claimed.c.claimed_at)
    return (insert(events)
            .from_select(["campaign", "customer_id", "send_key", "run_id", "state", "at"], row)
            .add_cte(claimed)
            .returning(events.c.seq))


class _Precompiled:
    """A statement SQLAlchemy will not cache (the PostgreSQL dialect's INSERT … ON
    CONFLICT is built afresh on every execute, about a millisecond of Python): compiled
    once per dialect, then sent as its SQL string with the bound values merged in."""

    def __init__(self, statement: ClauseElement):
        self.statement = statement
        self._compiled: dict[type[Dialect], tuple[str, dict[str, object]]] = {}

    def __call__(self, db: Connection,
                 params: dict[str, object] | list[dict[str, object]]
                 ) -> CursorResult[tuple[int]]:
        kind = type(db.dialect)
        if kind not in self._compiled:
            compiled = self.statement.compile(dialect=db.dialect)
            self._compiled[kind] = (compiled.string, dict(compiled.params))
        sql, defaults = self._compiled[kind]
        if isinstance(params, list):
            return db.exec_driver_sql(sql, [defaults | p for p in params])
        return db.exec_driver_sql(sql, defaults | params)


_CLAIM = _Precompiled(_claim_statement())
# Many fresh keys in one statement (claim_many): the rows and their `sending` events,
# nothing for keys that exist (those are decided one by one, as `claim` does).
_CLAIM_MANY = text(
    "WITH claimed AS ("
    " INSERT INTO edition_sends (campaign, customer_id, send_key, content_hash, state,"
    " run_id, attempts, claimed_at, updated_at)"
    " SELECT :campaign, t.c, t.k, t.h, 'sending', :run_id, 1, :now, :now"
    " FROM unnest(CAST(:cids AS text[]), CAST(:keys AS text[]), CAST(:hashes AS text[]))"
    " AS t(c, k, h)"
    " ON CONFLICT (campaign, customer_id, send_key) DO NOTHING"
    " RETURNING campaign, customer_id, send_key, run_id, claimed_at),"
    " logged AS ("
    " INSERT INTO edition_events (campaign, customer_id, send_key, run_id, state, at)"
    " SELECT campaign, customer_id, send_key, run_id, 'sending', claimed_at FROM claimed)"
    " SELECT customer_id, send_key FROM claimed")
# Many outcomes in one statement: what `_RECORD` does row after row, over arrays (one
# round trip for a whole window of outcomes); of one key's rows, a `sent` wins, else the last.
_RECORD_MANY = text(
    "WITH rows AS ("
    " SELECT * FROM unnest(CAST(:campaigns AS text[]), CAST(:cids AS text[]),"
    " CAST(:keys AS text[]), CAST(:states AS text[]), CAST(:providers AS text[]),"
    " CAST(:reasons AS text[]), CAST(:runs AS text[]), CAST(:ats AS timestamptz[]))"
    " WITH ORDINALITY AS t(campaign, customer_id, send_key, state, provider_id, reason,"
    " run_id, at, n)),"
    " recorded AS ("
    " INSERT INTO edition_sends AS s (campaign, customer_id, send_key, state, run_id,"
    " attempts, provider_id, reason, claimed_at, updated_at)"
    " SELECT DISTINCT ON (campaign, customer_id, send_key) campaign, customer_id, send_key,"
    " state, run_id, 1, provider_id, reason, at, at FROM rows"
    " ORDER BY campaign, customer_id, send_key, (state = 'sent') DESC, n DESC"
    " ON CONFLICT (campaign, customer_id, send_key) DO UPDATE SET"
    " state = excluded.state, run_id = excluded.run_id, provider_id = excluded.provider_id,"
    " reason = excluded.reason, updated_at = excluded.updated_at"
    " WHERE s.state != 'sent')"
    " INSERT INTO edition_events (campaign, customer_id, send_key, run_id, state,"
    " provider_id, reason, at)"
    " SELECT campaign, customer_id, send_key, run_id, state, provider_id, reason, at FROM rows"
    " ORDER BY n")
_LOCK_ROW = select(sends.c.state, sends.c.run_id).where(_KEY).with_for_update()
_SENT_TO_CUSTOMER: Select[tuple[int]] = (select(literal_column("1", Integer)).select_from(sends)
                     .where(sends.c.campaign == bindparam("campaign"),
                            sends.c.customer_id == bindparam("customer_id"),
                            sends.c.state == "sent").limit(1))
_MARK_UNKNOWN = (update(sends).where(_KEY)
                 .values(state="unknown", reason=bindparam("reason"),
                         updated_at=bindparam("now")))
_RECLAIM = (update(sends).where(_KEY)
            .values(state="sending", run_id=bindparam("run_id"),
                    attempts=sends.c.attempts + 1, provider_id=None,
                    content_hash=bindparam("content_hash"), reason=None,
                    claimed_at=bindparam("now"), updated_at=bindparam("now")))
_EVENT = sa_insert(events).values(**_event_values(bindparam("state"), bindparam("provider_id"),
                                                  bindparam("reason")))


def _record_statement() -> Insert:
    """An outcome and its event: one statement, so a group of records is one round trip."""
    upsert = insert(sends).values(
        campaign=bindparam("campaign"), customer_id=bindparam("customer_id"),
        send_key=bindparam("send_key"), state=bindparam("state"), run_id=bindparam("run_id"),
        attempts=1, provider_id=bindparam("provider_id"), reason=bindparam("reason"),
        claimed_at=bindparam("now"), updated_at=bindparam("now"))
    # Never let a later failure overwrite an acknowledged send: a `failed` row may be
    # claimed again, and that would send it twice. (The event is kept either way.)
    recorded = upsert.on_conflict_do_update(
        index_elements=["campaign", "customer_id", "send_key"],
        set_={"state": upsert.excluded.state, "run_id": upsert.excluded.run_id,
              "provider_id": upsert.excluded.provider_id, "reason": upsert.excluded.reason,
              "updated_at": upsert.excluded.updated_at},
        where=sends.c.state != "sent").cte("recorded")
    return sa_insert(events).values(**_event_values(
        bindparam("state"), bindparam("provider_id"), bindparam("reason"))).add_cte(recorded)


_RECORD = _Precompiled(_record_statement())
_open = insert(mailings).values(
    campaign=bindparam("campaign"), mailing=bindparam("mailing"),
    channel=bindparam("channel"), as_of=bindparam("as_of"), status="open",
    run_id=bindparam("run_id"), expected=bindparam("expected"),
    started_at=bindparam("now"))
_OPEN_MAILING = _Precompiled(_open.on_conflict_do_update(
    index_elements=["campaign", "mailing", "channel"],
    set_={"status": "open", "run_id": _open.excluded.run_id,
          "expected": func.greatest(mailings.c.expected, _open.excluded.expected),
          "finished_at": None}))
_FINISH_MAILING = (update(mailings)
                   .where(mailings.c.campaign == bindparam("m_campaign"),
                          mailings.c.mailing == bindparam("m_mailing"),
                          mailings.c.channel == bindparam("m_channel"))
                   .values(status="finished", finished_at=bindparam("now")))
# who holds a bigint advisory lock: pg_locks splits the key into classid (high 32 bits)
# and objid (low 32 bits); the holder's application_name carries its pid and host
_HOLDER = text(
    "SELECT coalesce(a.application_name, '') FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
    "AND l.granted AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.objsubid = 1")
_NO_IDLE_TIMEOUTS = text(
    "SELECT set_config(name, '0', false) FROM pg_settings WHERE name IN "
    "('idle_session_timeout', 'idle_in_transaction_session_timeout')")
_ENTRY_COLUMNS = [sends.c[name] for name in LedgerEntry.__dataclass_fields__]

_Op = Callable[[Connection, set[tuple[str, str, str]]], object]
_T = TypeVar("_T")
# an outcome waiting for the next commit: campaign, customer_id, send_key, state,
# provider_id, reason, run_id, when
_Record = tuple[str, str, str, str, str | None, str | None, str, datetime]


class _Victim(LedgerBusy):
    """The server rolled this transaction back to break a deadlock: run it again."""


class _Request:
    """One operation waiting for a group commit, and what it produced."""

    __slots__ = ("done", "error", "op", "order", "result")

    def __init__(self, op: _Op, order: tuple[str, ...]):
        self.op = op
        self.order = order  # claims run in key order: fewer lock-order deadlocks
        self.done = False
        self.result: object = None
        self.error: BaseException | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _when(value: datetime) -> str:
    """A timestamp read back in the SQLite ledger's form (UTC, milliseconds)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def _iso(value: datetime | None) -> str | None:
    """A timestamp of a column that may be NULL, in the same form."""
    return None if value is None else _when(value)


def _lock_key(scope: str) -> int:
    """The advisory lock's 64-bit key: one per ledger scope."""
    digest = hashlib.blake2b(f"edition-ledger\x1f{scope}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_SCHEMA_LOCK = _lock_key("\x00schema")


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
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()
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
                    self._run_lock = self._take_run_lock()
                db = self._engine.connect()
                self._db = db
                self._configure(db)
                if self.readonly:
                    if db.execute(select(func.to_regclass(sends.name))).scalar() is None:
                        raise LedgerError("no ledger here", self.path)
                    db.commit()
                else:
                    self._create_schema(db)
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

    def _create_schema(self, db: Connection) -> None:
        with db.begin():
            db.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            metadata.create_all(db, checkfirst=True)
            db.execute(insert(meta).values(name="schema_version", value=SCHEMA_VERSION)
                       .on_conflict_do_nothing(index_elements=["name"]))
            version = db.execute(select(meta.c.value).where(
                meta.c.name == "schema_version")).scalar()
        if version != SCHEMA_VERSION:
            raise LedgerError(f"the ledger's tables are schema version {version}; this "
                              f"edition knows version {SCHEMA_VERSION}", self.path)

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

    def _tx(self, ops: list[_Request]) -> None:
        """One write transaction: deferred records first, then `ops`; retried whole
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
                            for request in ops:
                                request.result = request.op(db, tentative)
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

    def _grouped(self, op: Callable[[Connection, set[tuple[str, str, str]]], _T],
                 order: tuple[str, ...] = ()) -> _T:
        """Run `op` in a write transaction whose commit it shares with the ops other
        threads queued meanwhile (one round of commits for several claims)."""
        request = _Request(op, order)
        with self._queue_lock:
            self._queue.append(request)
        with self._lock:  # whoever gets the lock commits everything queued so far
            if not request.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                batch.sort(key=lambda r: r.order)
                try:
                    self._tx(batch)
                except BaseException as exc:
                    for r in batch:
                        r.error = exc
                for r in batch:
                    r.done = True
        if request.error is not None:
            raise request.error
        return cast(_T, request.result)   # what `op` returned: it did not raise

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
        return self._grouped(
            lambda db, tentative: self._claim_in(db, tentative, key, run_id, now,
                                                 resend_unknown, once_per_customer,
                                                 content_hash), key)

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
        return self._grouped(
            lambda db, tentative: self._claim_batch(db, tentative, campaign, list(items),
                                                    run_id, now, resend_unknown,
                                                    once_per_customer), order)

    def _claim_batch(self, db: Connection, tentative: set[tuple[str, str, str]],
                     campaign: str, items: list[tuple[str, str, str]], run_id: str,
                     now: datetime, resend_unknown: bool,
                     once_per_customer: bool) -> list[Claim]:
        decided: dict[int, Claim] = {}
        # key order, as `claim` takes its locks: two workers never wait on each other crosswise
        ranked = sorted(range(len(items)), key=lambda i: items[i][:2])
        if not once_per_customer:
            fresh = {(c, k) for c, k in db.execute(_CLAIM_MANY, {
                "campaign": campaign, "run_id": run_id, "now": now,
                "cids": [items[i][0] for i in ranked], "keys": [items[i][1] for i in ranked],
                "hashes": [items[i][2] for i in ranked]}).all()}
            for i in ranked:
                key = (campaign, *items[i][:2])
                if items[i][:2] in fresh and key not in tentative:
                    tentative.add(key)
                    decided[i] = Claim.SEND
        for i in ranked:  # keys that existed (or repeat within the batch): one by one
            if i not in decided:
                customer_id, one_key, content_hash = items[i]
                decided[i] = self._claim_in(db, tentative, (campaign, customer_id, one_key),
                                            run_id, now, resend_unknown, once_per_customer,
                                            content_hash)
        return [decided[i] for i in range(len(items))]

    def _claim_in(self, db: Connection, tentative: set[tuple[str, str, str]],
                  key: tuple[str, str, str], run_id: str, now: datetime,
                  resend_unknown: bool, once_per_customer: bool, content_hash: str) -> Claim:
        params: dict[str, object] = _key_params(*key) | {"run_id": run_id, "now": now,
                                                         "content_hash": content_hash}
        if once_per_customer and db.execute(_SENT_TO_CUSTOMER, params).first():
            return Claim.ALREADY_SENT
        if _CLAIM(db, params).first() is not None:
            tentative.add(key)
            return Claim.SEND
        # The key exists (or a concurrent claim just committed it): lock it and decide.
        row = db.execute(_LOCK_ROW, params).first()
        if row is None:
            raise LedgerError("a ledger row vanished while claiming it", self.path)
        state, claimed_by = row
        if state == "sent":
            return Claim.ALREADY_SENT
        if state == "failed":
            self._reclaim(db, tentative, key, params)
            return Claim.FAILED_BEFORE
        if state == "sending":
            # Someone is sending it right now: this object, or (in shared mode) a
            # sibling process of the same run. Otherwise its process is gone.
            if (key in self._in_flight or key in tentative
                    or (not self.exclusive and claimed_by == run_id)):
                return Claim.UNKNOWN
            if not resend_unknown:
                reason = (f"interrupted: run {claimed_by} stopped after claiming it, "
                          "before recording the outcome; it may have been sent")
                db.execute(_MARK_UNKNOWN, params | {"reason": reason})
                db.execute(_EVENT, params | {"run_id": claimed_by, "state": "unknown",
                                             "provider_id": None, "reason": reason})
                return Claim.UNKNOWN
        elif state == "unknown" and not resend_unknown:
            return Claim.UNKNOWN
        self._reclaim(db, tentative, key, params)
        return Claim.SEND

    def _reclaim(self, db: Connection, tentative: set[tuple[str, str, str]],
                 key: tuple[str, str, str], params: dict[str, object]) -> None:
        db.execute(_RECLAIM, params)
        db.execute(_EVENT, params | {"state": "sending", "provider_id": None, "reason": None})
        tentative.add(key)

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
        now = _now()
        rows = []
        for customer_id, send_key, outcome in outcomes:
            state = getattr(outcome, "status", None)
            if state not in ("sent", "failed", "unknown"):
                raise LedgerError(f"cannot record outcome status {state!r}", self.path)
            rows.append((campaign, customer_id, send_key, state,
                         getattr(outcome, "provider_id", None),
                         getattr(outcome, "reason", None), run_id, now))
        with self._lock:
            self._open_db()
            self._pending.extend(rows)
        if not defer:
            self._grouped(lambda db, tentative: None)

    def flush(self) -> None:
        """Commit deferred records now."""
        if self.readonly:
            raise LedgerError("the ledger was opened read-only", self.path)
        with self._lock:
            if self._pending:
                self._tx([])
            else:
                self._open_db()

    def _write_records(self, db: Connection, rows: list[Any]) -> None:
        if not rows:
            return
        if len(rows) == 1:
            c, cid, k, s, p, r, run, now = rows[0]
            _RECORD(db, {"campaign": c, "customer_id": cid, "send_key": k, "state": s,
                         "provider_id": p, "reason": r, "run_id": run, "now": now})
            return
        columns = list(zip(*rows, strict=True))
        db.execute(_RECORD_MANY, dict(zip(
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
        rows = self._read(select(*_ENTRY_COLUMNS).where(where).order_by(*order), params)
        return [LedgerEntry(c, cid, key, h, state, run, n, pid, why, _when(at), _when(upd))
                for c, cid, key, h, state, run, n, pid, why, at, upd in rows]

    def lookup(self, campaign: str, customer_id: str, send_key: str) -> LedgerEntry | None:
        """The row for this key (state, provider_id, run, when), or None."""
        rows = self._entries(_KEY, params=_key_params(campaign, customer_id, send_key))
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
        self._grouped(lambda db, tentative: _OPEN_MAILING(db, params))

    def finish_mailing(self, campaign: str, mailing: str, channel: str) -> None:
        """The mailing's send ran to its end: nobody is owed anything by it any more."""
        self._check_run_lock()
        params = {"m_campaign": campaign, "m_mailing": mailing, "m_channel": channel,
                  "now": _now()}
        self._grouped(lambda db, tentative: db.execute(_FINISH_MAILING, params))

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

    # --- the run lock --------------------------------------------------------------------

    def _take_run_lock(self) -> Connection:
        """A session advisory lock on a connection of its own, waiting up to `wait`."""
        assert self._engine is not None
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            # the lock lives as long as this idle session: the server must not end it
            # (only settings this server has: idle_session_timeout is PostgreSQL 14+)
            conn.execute(_NO_IDLE_TIMEOUTS)
            key = _lock_key(self.scope)
            deadline = time.monotonic() + max(0.0, self._wait)
            while not conn.execute(select(func.pg_try_advisory_lock(key))).scalar():
                left = deadline - time.monotonic()
                if left <= 0:
                    holder = self._holder(conn, key)
                    raise LedgerBusy(
                        f"another run is using this send ledger ({holder}); wait for it "
                        "to finish, then rerun: already-sent customers are skipped",
                        self.path)
                time.sleep(min(0.1, left))
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _holder(conn: Connection, key: int) -> str:
        """`pid N` of the process holding the lock (`on HOST` when it is another host)."""
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        row = conn.execute(_HOLDER, {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).first()
        name = row[0] if row else ""
        fields = dict(part.split("=", 1) for part in name.split()[1:] if "=" in part)
        pid = fields.get("pid", "?")
        host = fields.get("host")
        return f"pid {pid}" if host in (None, socket.gethostname()) else f"pid {pid} on {host}"

    def _check_run_lock(self) -> None:
        """Before a mailing changes state: the lock's session must still be alive (a
        server restart ends it, and another run could then take the lock)."""
        if self._run_lock is None:
            return
        with self._lock, self._errors("the send ledger's run lock was lost"):
            self._run_lock.execute(select(literal_column("1")))
