"""The send ledger: makes `--send` exactly-once across crashes and reruns.

One SQLite row per (campaign, customer_id, send_key); the engine's send key is the
mailing and the channel (delivery.py), so a customer is sent once per mailing and
channel whatever the content; the content hash is recorded beside it. The caller
claims a row (committed as `sending`) BEFORE handing the message to the provider and
records the outcome right after. A run killed at any moment can be rerun: rows never
claimed are sent, `sent` rows are skipped, and a row left `sending` (the process died
between claim and record, so the provider may have the message) comes back as UNKNOWN
and is not re-sent unless the caller asks (`resend_unknown`). The `mailings` table says
which mailings of a campaign were started and which finished.

Typical use::

    with SendLedger(out_root / campaign / "ledger.sqlite") as ledger:
        claim = ledger.claim(campaign, cid, key, run_id, content_hash=digest)
        if claim.may_send:
            ledger.record(campaign, cid, key, publisher.publish(delivery), run_id)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from edition import private
from edition.errors import LedgerBusy, LedgerError
from edition.send.ledger.group_commit import GroupCommit
from edition.send.ledger.records import (
    KEY_JOIN as KEY_JOIN,  # re-exported: callers import these from here too
)
from edition.send.ledger.records import (
    STATES,
    Claim,
    HistoryEvent,
    LedgerEntry,
    Mailing,
    outcome_rows,
)
from edition.send.ledger.records import send_key as send_key
from edition.send.ledger.sqlite_lock import lock_file
from edition.send.ledger.sqlite_schema import create_schema

if TYPE_CHECKING:  # only the shape (status, provider_id, reason) is used
    from edition.send.targets import Outcome

__all__ = ["Claim", "LedgerBusy", "LedgerEntry", "LedgerError", "Mailing", "SendLedger",
           "send_key"]





# an outcome waiting for the next commit: campaign, customer_id, send_key, state,
# provider_id, reason, run_id, when
_Record = tuple[str, str, str, str, str | None, str | None, str, str]

_COLUMNS = ", ".join(LedgerEntry.__dataclass_fields__)



def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SendLedger:
    """Exactly-once bookkeeping for one campaign's sends, in SQLite (WAL, synchronous=FULL).

    `exclusive=True` (default) holds an OS lock on `<path>.lock` while open, so a second
    run on the same ledger waits up to `wait` seconds, then raises LedgerBusy. Use
    `exclusive=False` when several processes of ONE run share the ledger; each claim is
    still atomic (BEGIN IMMEDIATE). Thread-safe.
    """

    def __init__(self, path: str | Path, *, exclusive: bool = True, wait: float = 0.0,
                 busy_timeout: float = 30.0, readonly: bool = False):
        self.path = Path(path)
        self.exclusive = exclusive and not readonly
        self.readonly = readonly
        self._wait = wait
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._in_flight: set[tuple[str, str, str]] = set()  # claimed by this object
        self._pending: list[_Record] = []
        self._group: GroupCommit[sqlite3.Connection] = GroupCommit(self._lock,
                                                                    self._transaction)
        self._run_lock: FileLock | None = None
        self._db: sqlite3.Connection | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def open(self) -> SendLedger:
        """Open (and create) the ledger; `with SendLedger(...)` calls this."""
        if self._db is not None:
            return self
        if self.readonly:
            if not self.path.exists():
                raise LedgerError("no ledger here", str(self.path))
            uri = self.path.resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout,
                                       isolation_level=None, check_same_thread=False)
            return self
        private.make_folder(self.path.parent)
        if self.exclusive:
            self._run_lock = lock_file(self.path.with_name(self.path.name + ".lock"),
                                        self._wait)
        try:
            # who was sent what: the owner's only (SQLite gives -wal/-shm the file's mode)
            private.create_file(self.path)
            private.tighten(self.path)
            db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            self._db = db
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before `claim`/`record` return, so the claim
            # really precedes the send even across a power cut.
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            with self._tx():
                create_schema(db)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise LedgerError(f"cannot open the send ledger: {exc}", str(self.path)) from None
        return self

    def close(self) -> None:
        """Commit deferred records, close the database and release the run lock."""
        with self._lock:
            if self._db is not None:
                try:
                    if self._pending:
                        self.flush()
                finally:
                    self._db.close()
                self._db = None
            if self._run_lock is not None:
                self._run_lock.release()
                self._run_lock = None

    def __enter__(self) -> SendLedger:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE so claims never interleave."""
        if self._db is None:
            raise LedgerError("the ledger is not open", str(self.path))
        if self.readonly:
            raise LedgerError("the ledger was opened read-only", str(self.path))
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise LedgerBusy(f"the ledger is locked by another process: {exc}",
                                 str(self.path)) from None
            # Deferred records ride along with the next commit (see `record(defer=True)`).
            pending, self._pending = self._pending, []
            try:
                self._write_records(db, pending)
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._pending = pending + self._pending
                if isinstance(exc, sqlite3.OperationalError) and _cannot_write(exc):
                    raise LedgerError(f"cannot write the send ledger: {exc}",
                                      str(self.path)) from None
                raise
            for key in pending:
                self._in_flight.discard(key[:3])

    def _transaction(self, body: Callable[[sqlite3.Connection], None]) -> None:
        """`body` in one write transaction: what the group commit runs its batch in."""
        with self._tx() as db:
            body(db)

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
        return self._group.run(lambda db: self._claim_in(db, key, run_id, now, resend_unknown,
                                                       once_per_customer, content_hash))

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
        batch = list(items)
        return self._group.run(lambda db: [
            self._claim_in(db, (campaign, customer_id, key), run_id, now, resend_unknown,
                           once_per_customer, content_hash)
            for customer_id, key, content_hash in batch])

    def _claim_in(self, db: sqlite3.Connection, key: tuple[str, str, str], run_id: str,
                  now: str, resend_unknown: bool, once_per_customer: bool,
                  content_hash: str) -> Claim:
        row = db.execute(
            "SELECT state, run_id FROM sends WHERE campaign=? AND customer_id=? "
            "AND send_key=?", key).fetchone()
        if once_per_customer and (row is None or row[0] != "sent"):
            other = db.execute(
                "SELECT 1 FROM sends WHERE campaign=? AND customer_id=? AND state='sent' "
                "LIMIT 1", key[:2]).fetchone()
            if other:
                return Claim.ALREADY_SENT
        if row is None:
            db.execute(
                "INSERT INTO sends (campaign, customer_id, send_key, content_hash, state, "
                "run_id, attempts, claimed_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'sending', ?, 1, ?, ?)",
                (*key, content_hash, run_id, now, now))
            self._event(db, key, run_id, "sending", None, None, now)
            self._in_flight.add(key)
            return Claim.SEND
        state, claimed_by = row
        if state == "sent":
            return Claim.ALREADY_SENT
        if state == "failed":
            self._reclaim(db, key, run_id, now, content_hash)
            return Claim.FAILED_BEFORE
        if state == "sending":
            # Someone is sending it right now: this object, or (in shared mode) a
            # sibling process of the same run. Otherwise its process is gone.
            if key in self._in_flight or (not self.exclusive and claimed_by == run_id):
                return Claim.UNKNOWN
            if not resend_unknown:
                reason = (f"interrupted: run {claimed_by} stopped after claiming it, "
                          "before recording the outcome; it may have been sent")
                db.execute(
                    "UPDATE sends SET state='unknown', reason=?, updated_at=? "
                    "WHERE campaign=? AND customer_id=? AND send_key=?",
                    (reason, now, *key))
                self._event(db, key, claimed_by, "unknown", None, reason, now)
                return Claim.UNKNOWN
        elif state == "unknown" and not resend_unknown:
            return Claim.UNKNOWN
        self._reclaim(db, key, run_id, now, content_hash)
        return Claim.SEND

    def record(self, campaign: str, customer_id: str, send_key: str, outcome: Outcome,
               run_id: str, *, defer: bool = False) -> None:
        """Store the outcome of a send; committed on return, before the next send.

        `defer=True` saves one disk flush per message: the row is committed together
        with the next `claim` (still before the next send) or by `flush`/`close`. A crash
        in between leaves the key `sending`, so a rerun reports it UNKNOWN: never a
        duplicate, only a wider unknown window.
        """
        self.record_many(campaign, [(customer_id, send_key, outcome)], run_id, defer=defer)

    def record_many(self, campaign: str, outcomes: Iterable[tuple[str, str, Outcome]],
                    run_id: str, *, defer: bool = False) -> None:
        """Store several outcomes in one commit (for outcomes gathered from a thread pool)."""
        rows = outcome_rows(campaign, outcomes, run_id, _now(), str(self.path))
        if defer:
            with self._lock:
                self._open_db()
                self._pending.extend(rows)
            return
        self._group.run(lambda db: self._write_records(db, rows))
        with self._lock:
            for row in rows:
                self._in_flight.discard(row[:3])

    def flush(self) -> None:
        """Commit deferred records now."""
        with self._tx():
            pass

    # --- reading -------------------------------------------------------------------------

    def lookup(self, campaign: str, customer_id: str, send_key: str) -> LedgerEntry | None:
        """The row for this key (state, provider_id, run, when), or None."""
        rows = self._select("WHERE campaign=? AND customer_id=? AND send_key=?",
                            (campaign, customer_id, send_key))
        return rows[0] if rows else None

    def lookup_customer(self, campaign: str, customer_id: str) -> list[LedgerEntry]:
        """Every row of one customer in a campaign (one per key sent or tried)."""
        return self._select("WHERE campaign=? AND customer_id=? ORDER BY claimed_at",
                            (campaign, customer_id))

    def entries(self, campaign: str, states: Iterable[str] | None = None) -> list[LedgerEntry]:
        """The rows of a campaign, optionally only in the given states."""
        wanted = list(states or STATES)
        marks = ", ".join("?" for _ in wanted)
        return self._select(f"WHERE campaign=? AND state IN ({marks}) ORDER BY customer_id",
                            (campaign, *wanted))

    def counts(self, campaign: str) -> dict[str, int]:
        """How many rows of the campaign are in each state."""
        with self._lock:
            db = self._open_db()
            rows = db.execute("SELECT state, COUNT(*) FROM sends WHERE campaign=? "
                              "GROUP BY state", (campaign,)).fetchall()
        return {state: 0 for state in STATES} | dict(rows)

    def history(self, campaign: str, customer_id: str) -> list[HistoryEvent]:
        """Every claim and outcome of one customer, oldest first (for audits)."""
        with self._lock:
            db = self._open_db()
            cur = db.execute(
                "SELECT send_key, run_id, state, provider_id, reason, at FROM events "
                "WHERE campaign=? AND customer_id=? ORDER BY seq", (campaign, customer_id))
            return [HistoryEvent(send_key=k, run_id=run, state=s, provider_id=p, reason=r,
                                 at=at) for k, run, s, p, r, at in cur.fetchall()]

    # --- mailings ------------------------------------------------------------------------

    def open_mailing(self, campaign: str, mailing: str, channel: str, *, as_of: str,
                     run_id: str, expected: int) -> None:
        """Record that a send of this mailing started (or resumed) on this channel."""
        now = _now()

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO mailings (campaign, mailing, channel, as_of, status, run_id, "
                "expected, started_at) VALUES (?, ?, ?, ?, 'open', ?, ?, ?) "
                "ON CONFLICT (campaign, mailing, channel) DO UPDATE SET status='open', "
                "run_id=excluded.run_id, expected=MAX(mailings.expected, excluded.expected), "
                "finished_at=NULL", (campaign, mailing, channel, as_of, run_id, expected, now))

        self._group.run(op)

    def finish_mailing(self, campaign: str, mailing: str, channel: str) -> None:
        """The mailing's send ran to its end: nobody is owed anything by it any more."""
        now = _now()
        self._group.run(lambda db: db.execute(
            "UPDATE mailings SET status='finished', finished_at=? WHERE campaign=? AND "
            "mailing=? AND channel=?", (now, campaign, mailing, channel)))

    def mailings(self, campaign: str, channel: str | None = None) -> list[Mailing]:
        """The campaign's mailings (on one channel), oldest first, with what each owes."""
        with self._lock:
            db = self._open_db()
            rows = db.execute(
                "SELECT m.mailing, m.channel, m.as_of, m.status, m.run_id, m.expected, "
                "m.started_at, m.finished_at, (SELECT COUNT(*) FROM sends s WHERE "
                "s.campaign = m.campaign AND s.send_key = m.mailing || ? || m.channel AND "
                "s.state = 'sent') FROM mailings m WHERE m.campaign=? AND (? IS NULL OR "
                "m.channel=?) ORDER BY m.started_at", (KEY_JOIN, campaign, channel, channel)
            ).fetchall()
        return [Mailing(*row) for row in rows]

    # --- internals -----------------------------------------------------------------------

    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise LedgerError("the ledger is not open", str(self.path))
        return self._db

    def _select(self, where: str, args: tuple[str, ...]) -> list[LedgerEntry]:
        with self._lock:
            db = self._open_db()
            rows = db.execute(f"SELECT {_COLUMNS} FROM sends {where}", args).fetchall()
        return [LedgerEntry(*row) for row in rows]

    def _write_records(self, db: sqlite3.Connection, rows: list[Any]) -> None:
        if not rows:
            return
        # Never let a later failure overwrite an acknowledged send: a `failed` row
        # may be claimed again, and that would send it twice. (executemany: one
        # prepared statement for a whole window of outcomes.)
        db.executemany(
            "INSERT INTO sends (campaign, customer_id, send_key, state, run_id, "
            "attempts, provider_id, reason, claimed_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?) "
            "ON CONFLICT (campaign, customer_id, send_key) DO UPDATE SET "
            "state=excluded.state, run_id=excluded.run_id, "
            "provider_id=excluded.provider_id, reason=excluded.reason, "
            "updated_at=excluded.updated_at WHERE sends.state != 'sent'",
            [(c, cid, k, state, run, provider, reason, now, now)
             for c, cid, k, state, provider, reason, run, now in rows])
        db.executemany(
            "INSERT INTO events (campaign, customer_id, send_key, run_id, state, "
            "provider_id, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(c, cid, k, run, state, provider, reason, now)
             for c, cid, k, state, provider, reason, run, now in rows])

    def _reclaim(self, db: sqlite3.Connection, key: tuple[str, str, str], run_id: str,
                 now: str, content_hash: str) -> None:
        db.execute(
            "UPDATE sends SET state='sending', run_id=?, attempts=attempts+1, provider_id=NULL, "
            "content_hash=?, reason=NULL, claimed_at=?, updated_at=? "
            "WHERE campaign=? AND customer_id=? AND send_key=?",
            (run_id, content_hash, now, now, *key))
        self._event(db, key, run_id, "sending", None, None, now)
        self._in_flight.add(key)

    @staticmethod
    def _event(db: sqlite3.Connection, key: tuple[str, str, str], run_id: str, state: str,
               provider_id: str | None, reason: str | None, now: str) -> None:
        db.execute(
            "INSERT INTO events (campaign, customer_id, send_key, run_id, state, "
            "provider_id, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, run_id, state, provider_id, reason, now))


def _cannot_write(exc: sqlite3.OperationalError) -> bool:
    """A full disk or quota, an I/O error, a read-only file: SQLite's own words for them."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF   # the primary result code
    return code in {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY}
