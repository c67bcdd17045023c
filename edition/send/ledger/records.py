"""What both send ledgers (SQLite, PostgreSQL) speak: a claim's decision, a row, an
event of a customer's history, a mailing, and the send key that joins mailing and channel.

One module so the two backends return the very same types and callers need not know
which ledger they hold.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict, TypeVar

from edition.errors import LedgerError

if TYPE_CHECKING:  # only the shape (status, provider_id, reason) is used
    from edition.send.targets import Outcome

__all__ = ["KEY_JOIN", "STATES", "Claim", "HistoryEvent", "LedgerEntry", "Mailing",
           "outcome_rows", "send_key"]

_When = TypeVar("_When")   # a backend's timestamp: ISO text (SQLite), datetime (PostgreSQL)

STATES = ("sending", "sent", "failed", "unknown")


class Claim(enum.Enum):
    """What `SendLedger.claim` decided for one key."""

    SEND = "send"  # claimed (committed as `sending`): send it now, then `record`
    ALREADY_SENT = "already_sent"  # acknowledged before: do not send
    UNKNOWN = "unknown"  # an earlier attempt may have been delivered: do not send
    FAILED_BEFORE = "failed_before"  # claimed again after a failure: send it, then `record`

    @property
    def may_send(self) -> bool:
        """True when the caller now owns the key and must send, then record."""
        return self in (Claim.SEND, Claim.FAILED_BEFORE)


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger."""

    campaign: str
    customer_id: str
    send_key: str
    content_hash: str
    state: str
    run_id: str
    attempts: int
    provider_id: str | None
    reason: str | None
    claimed_at: str
    updated_at: str


class HistoryEvent(TypedDict):
    """One claim or outcome of a customer's send, as `history` gives it."""

    send_key: str
    run_id: str
    state: str
    provider_id: str | None
    reason: str | None
    at: str | None



def outcome_rows(campaign: str, outcomes: Iterable[tuple[str, str, Outcome]], run_id: str,
                 now: _When, path: str
                 ) -> list[tuple[str, str, str, str, str | None, str | None, str, _When]]:
    """What `record_many` stores, one row an outcome: campaign, customer_id, send_key,
    state, provider_id, reason, run_id, when. An outcome that is not sent, failed or
    unknown is refused (LedgerError naming the ledger at `path`) before anything is."""
    rows = []
    for customer_id, key, outcome in outcomes:
        state = getattr(outcome, "status", None)
        if state not in ("sent", "failed", "unknown"):
            raise LedgerError(f"cannot record outcome status {state!r}", path)
        rows.append((campaign, customer_id, key, state, getattr(outcome, "provider_id", None),
                     getattr(outcome, "reason", None), run_id, now))
    return rows


KEY_JOIN = "\x1f"  # between mailing and channel in the engine's send key


def send_key(mailing: str, channel: str) -> str:
    """The ledger key of one message: which mailing, on which channel."""
    return f"{mailing}{KEY_JOIN}{channel}"


@dataclass(frozen=True)
class Mailing:
    """One issue of a campaign on one channel, as the ledger knows it."""

    mailing: str
    channel: str
    as_of: str
    status: str          # open (started, not finished) or finished
    run_id: str
    expected: int        # customer rows the last run over it read
    started_at: str
    finished_at: str | None
    sent: int

    @property
    def owed(self) -> int:
        return max(0, self.expected - self.sent)

