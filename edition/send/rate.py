"""One send rate for the whole send, whatever the number of workers and machines, and
per-domain throttles that back off when a receiver or SES pushes back.

`SharedRate` keeps a GCRA token bucket (the theoretical arrival time, `tat`, of the next
message) in ONE row of a database every worker reaches: PostgreSQL for workers on many
machines, a SQLite file for the processes of one machine. Each message reserves its slot
with one atomic upsert (`tat = max(tat, now) + 1/rate`) and sleeps until the slot
outside any transaction, so N workers together send at `rate`, not N × `rate`. On
PostgreSQL the clock is the server's (`clock_timestamp()`), so workers whose clocks
disagree still share one schedule. The row is scratch: a lost write only lets one
message out early, so its commits skip the WAL flush (`synchronous_commit = off`).

`take` > 1 reserves that many slots per round trip (a lease of `take` messages spaced
1/rate apart): fewer database calls for high rates, same average rate.

`DomainThrottle` is per worker: an optional rate per recipient domain (gmail.com …), and
an exponential pause for a domain after a 421/4xx reply or an SES throttling error, reset
by the next message that goes through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from edition.databases import create_engine_for, is_database_url, masked, sqlalchemy_url
from edition.errors import DeliveryError

__all__ = ["DomainThrottle", "SharedRate", "is_throttling"]

_TABLE = "edition_send_rates"
_CREATE = (f"CREATE TABLE IF NOT EXISTS {_TABLE} "
           "(name TEXT PRIMARY KEY, tat DOUBLE PRECISION NOT NULL)")
_NOW_PG = "extract(epoch from clock_timestamp())::double precision"
_RESERVE_PG = (
    f"INSERT INTO {_TABLE} AS r (name, tat) VALUES (:name, {_NOW_PG} + :span) "
    f"ON CONFLICT (name) DO UPDATE SET tat = greatest(r.tat, {_NOW_PG}) + :span "
    f"RETURNING r.tat - :span, {_NOW_PG}")
_RESERVE_SQLITE = (
    f"INSERT INTO {_TABLE} (name, tat) VALUES (:name, :now + :span) "
    f"ON CONFLICT (name) DO UPDATE SET tat = max({_TABLE}.tat, :now) + :span "
    f"RETURNING tat - :span, :now")


class SharedRate:
    """At most `rate` messages per second over every process that names the same
    `location` and `name`; thread-safe. `burst` slots may go at once after a pause."""

    def __init__(self, location: str | Path, rate: float, *, name: str = "send",
                 burst: int = 1, take: int = 1, sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise DeliveryError("a shared send rate needs a rate above 0", str(location))
        self.rate = float(rate)
        self.interval = 1.0 / self.rate
        self.tolerance = max(0, int(burst) - 1) * self.interval
        self.name = name
        self.take = max(1, int(take))
        self.location = masked(location)
        self._sleep = sleep
        self._lock = threading.RLock()  # acquire closes a broken connection under it
        self._lease: list[float] = []  # slots reserved by this process, not yet used
        self._postgres = is_database_url(location)
        if self._postgres:
            self._engine = create_engine_for(sqlalchemy_url(str(location)),
                                             application_name="edition-send-rate")
        else:
            from sqlalchemy import create_engine

            self._engine = create_engine(f"sqlite:///{Path(location)}",
                                         connect_args={"timeout": 30})
        self._db: Any = None

    def _connection(self) -> Any:
        from sqlalchemy import text

        if self._db is None:
            db = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if self._postgres:
                db.execute(text("SET synchronous_commit = off"))  # scratch: see the docstring
                # workers starting together: one creates the table, the others wait for it
                # (concurrent CREATE TABLE IF NOT EXISTS can fail on the catalog's keys)
                db.execute(text("BEGIN"))
                db.execute(text("SELECT pg_advisory_xact_lock(7261500141)"))
                db.execute(text(_CREATE))
                db.execute(text("COMMIT"))
            else:
                db.execute(text("PRAGMA journal_mode=WAL"))
                db.execute(text(_CREATE))
            self._db = db
        return self._db

    def _reserve(self) -> tuple[float, float]:
        """The first of `take` slots reserved now, and the clock's time, in seconds."""
        from sqlalchemy import text

        db = self._connection()
        span = self.interval * self.take
        if self._postgres:
            row = db.execute(text(_RESERVE_PG), {"name": self.name, "span": span}).one()
        else:
            row = db.execute(text(_RESERVE_SQLITE),
                             {"name": self.name, "span": span, "now": time.time()}).one()
        return float(row[0]), float(row[1])

    def acquire(self) -> float:
        """Block until the caller may send one message; returns the seconds waited."""
        with self._lock:
            if not self._lease:
                try:
                    first, now = self._reserve()
                except Exception as exc:  # any driver error: name the store, never the password
                    self.close()
                    raise DeliveryError(f"the shared send rate is unavailable: {exc}",
                                        self.location) from None
                # slots on the database clock, turned into this process's monotonic clock
                offset = time.monotonic() - now
                self._lease = [first + i * self.interval + offset for i in range(self.take)]
            slot = self._lease.pop(0)
        wait = slot - self.tolerance - time.monotonic()
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                with suppress(Exception):  # closing a broken connection
                    db.close()
            self._engine.dispose()


def is_throttling(status: str, reason: str | None) -> bool:
    """Whether an outcome says the receiver asked us to slow down: an SMTP 421 or other
    4xx reply, or SES's throttling errors (ThrottlingException, TooManyRequests, …)."""
    if status == "sent" or not reason:
        return False
    text = reason.strip()
    if text[:1] == "4" and text[:3].isdigit():
        return True
    return any(word in text for word in ("Throttl", "TooManyRequests", "Maximum sending rate"))


class DomainThrottle:
    """Per recipient domain: an optional rate (messages/s), and a pause after pushback
    that doubles with each throttled message (`backoff` seconds, capped at `longest`)
    and ends with the first message that goes through. Thread-safe; per process."""

    def __init__(self, rates: Mapping[str, float] | None = None, *, backoff: float = 1.0,
                 longest: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rates = {domain.lower(): float(r) for domain, r in (rates or {}).items() if r > 0}
        self.backoff = backoff
        self.longest = longest
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}       # domain -> earliest next send (rate)
        self._paused: dict[str, float] = {}     # domain -> end of its pause (pushback)
        self._streak: dict[str, int] = {}       # domain -> throttled messages in a row

    @staticmethod
    def domain(recipient: str | None) -> str:
        return (recipient or "").rpartition("@")[2].strip().strip(">").lower()

    def wait(self, recipient: str | None) -> float:
        """Block until a message to this recipient's domain may go; the seconds waited."""
        domain = self.domain(recipient)
        with self._lock:
            now = self._clock()
            start = max(now, self._paused.get(domain, 0.0))
            rate = self.rates.get(domain)
            if rate:
                start = max(start, self._next.get(domain, 0.0))
                self._next[domain] = start + 1.0 / rate
        wait = start - now
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0

    def pause_for(self, recipient: str | None) -> float:
        """The pause left for this recipient's domain now (0 when none)."""
        domain = self.domain(recipient)
        with self._lock:
            return max(0.0, self._paused.get(domain, 0.0) - self._clock())

    def outcome(self, recipient: str | None, status: str, reason: str | None) -> None:
        """Learn from a message's outcome: pushback pauses the domain, success resets."""
        domain = self.domain(recipient)
        with self._lock:
            if is_throttling(status, reason):
                streak = self._streak.get(domain, 0) + 1
                self._streak[domain] = streak
                pause = min(self.longest, self.backoff * 2 ** (streak - 1))
                self._paused[domain] = max(self._paused.get(domain, 0.0),
                                           self._clock() + pause)
            elif status == "sent":
                self._streak.pop(domain, None)
                self._paused.pop(domain, None)
