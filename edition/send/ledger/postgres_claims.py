"""The PostgreSQL ledger's claim decision: may this key be sent now?

A fresh key is claimed by one statement (the row and its `sending` event); a key that
exists is locked with `SELECT … FOR UPDATE` and decided in the same transaction, so
two workers racing for a key never both get SEND.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from edition.errors import LedgerError
from edition.send.ledger.postgres_statements import (
    CLAIM,
    CLAIM_MANY,
    EVENT,
    LOCK_ROW,
    MARK_UNKNOWN,
    RECLAIM,
    SENT_TO_CUSTOMER,
    key_params,
)
from edition.send.ledger.records import Claim

__all__ = ["ClaimRound", "claim_batch", "claim_one"]

Key = tuple[str, str, str]


@dataclass(frozen=True)
class ClaimRound:
    """What the claims of one call share: the run, the time, the options, and what the
    ledger object claimed before (its keys in flight, whether it holds the run lock)."""

    run_id: str
    now: datetime
    resend_unknown: bool
    once_per_customer: bool
    in_flight: set[Key]
    exclusive: bool
    path: str


def claim_batch(db: Connection, tentative: set[Key], campaign: str,
                items: list[tuple[str, str, str]], round_: ClaimRound) -> list[Claim]:
    """`claim_one` for (customer_id, send_key, content_hash) each: fresh keys in one
    statement, the others one by one; the decisions in the order of `items`."""
    decided: dict[int, Claim] = {}
    # key order, as `claim` takes its locks: two workers never wait on each other crosswise
    ranked = sorted(range(len(items)), key=lambda i: items[i][:2])
    if not round_.once_per_customer:
        fresh = {(c, k) for c, k in db.execute(CLAIM_MANY, {
            "campaign": campaign, "run_id": round_.run_id, "now": round_.now,
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
            decided[i] = claim_one(db, tentative, (campaign, customer_id, one_key),
                                   content_hash, round_)
    return [decided[i] for i in range(len(items))]


def claim_one(db: Connection, tentative: set[Key], key: Key, content_hash: str,
              round_: ClaimRound) -> Claim:
    """Decide one key inside the caller's transaction; keys claimed go to `tentative`."""
    run_id = round_.run_id
    params: dict[str, object] = key_params(*key) | {"run_id": run_id, "now": round_.now,
                                                    "content_hash": content_hash}
    if round_.once_per_customer and db.execute(SENT_TO_CUSTOMER, params).first():
        return Claim.ALREADY_SENT
    if CLAIM(db, params).first() is not None:
        tentative.add(key)
        return Claim.SEND
    # The key exists (or a concurrent claim just committed it): lock it and decide.
    row = db.execute(LOCK_ROW, params).first()
    if row is None:
        raise LedgerError("a ledger row vanished while claiming it", round_.path)
    state, claimed_by = row
    if state == "sent":
        return Claim.ALREADY_SENT
    if state == "failed":
        _reclaim(db, tentative, key, params)
        return Claim.FAILED_BEFORE
    if state == "sending":
        # Someone is sending it right now: this object, or (in shared mode) a
        # sibling process of the same run. Otherwise its process is gone.
        if (key in round_.in_flight or key in tentative
                or (not round_.exclusive and claimed_by == run_id)):
            return Claim.UNKNOWN
        if not round_.resend_unknown:
            reason = (f"interrupted: run {claimed_by} stopped after claiming it, "
                      "before recording the outcome; it may have been sent")
            db.execute(MARK_UNKNOWN, params | {"reason": reason})
            db.execute(EVENT, params | {"run_id": claimed_by, "state": "unknown",
                                        "provider_id": None, "reason": reason})
            return Claim.UNKNOWN
    elif state == "unknown" and not round_.resend_unknown:
        return Claim.UNKNOWN
    _reclaim(db, tentative, key, params)
    return Claim.SEND


def _reclaim(db: Connection, tentative: set[Key], key: Key,
             params: dict[str, object]) -> None:
    db.execute(RECLAIM, params)
    db.execute(EVENT, params | {"state": "sending", "provider_id": None, "reason": None})
    tentative.add(key)
