"""Delivery with `--send`: the send ledger first, then the target, then the ledger again.

Nothing here runs in a dry run. With `--send`, each customer's edition is claimed in the
ledger before it leaves and its outcome recorded right after, so a rerun after a crash
sends every remaining customer once and never re-sends an acknowledged one. The main
process holds the ledger's run lock (`run_lock`); workers share the ledger without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edition.campaign import Campaign
from edition.errors import DeliveryError
from edition.ledger import Claim, SendLedger
from edition.manifest import Reason
from edition.targets import Delivery, Outcome, open_target


def ledger_path(campaign: Campaign) -> Path:
    """`delivery.ledger` in the campaign, else out/<campaign>/ledger.sqlite under the root."""
    configured = campaign.delivery.get("ledger")
    if configured:
        path = Path(str(configured))
        return path if path.is_absolute() else campaign.root / path
    return campaign.root / "out" / campaign.name / "ledger.sqlite"


def run_lock(path: Path) -> SendLedger:
    """The ledger opened with its run lock: a second run on it waits, then fails clearly."""
    return SendLedger(path, exclusive=True, wait=5.0).open()


@dataclass(frozen=True)
class Sent:
    """What delivery made of one customer: manifest status, reason, extra fields."""

    status: str
    reason: Reason | None
    extra: dict[str, Any]


class Deliverer:
    """One target connection and one ledger handle, per process."""

    def __init__(self, *, target: str, options: Mapping[str, Any], ledger: Path,
                 campaign: str, run_id: str, out_dir: Path, resend_unknown: bool = False):
        self.campaign = campaign
        self.run_id = run_id
        self.resend_unknown = resend_unknown
        self.publisher = open_target(target, out_dir=out_dir, options=options)
        self.publisher.__enter__()
        try:
            self.ledger = SendLedger(ledger, exclusive=False).open()
        except BaseException:
            self.publisher.__exit__(None, None, None)
            raise

    def deliver(self, *, customer_id: str, recipient: str | None, digest: str,
                message_id: str, files: Mapping[str, tuple[str, bytes, str]]) -> Sent:
        """Claim, publish, record."""
        campaign = self.campaign
        eml = files.get("eml")
        # The same edition sent to another target (an S3 archive after the email) is
        # another delivery: the ledger key covers the target (never its credentials).
        where = str(self.publisher.target).split("?", 1)[0]  # options like ?rate= are not a place
        key = hashlib.sha256(f"{where}\0{digest}".encode()).hexdigest()
        claim = self.ledger.claim(campaign, customer_id, key, self.run_id,
                                  resend_unknown=self.resend_unknown)
        if claim is Claim.ALREADY_SENT:
            previous = self.ledger.lookup(campaign, customer_id, key)
            return Sent("sent", Reason("already_sent", "already sent by an earlier run; not "
                                       "sent again"),
                        {"provider_id": getattr(previous, "provider_id", None)})
        if claim is Claim.UNKNOWN:
            return Sent("unknown", Reason("outcome_unknown", (
                "an earlier run stopped while sending this edition; not sent again (use "
                "--resend-unknown to send it)")), {})
        delivery = Delivery(campaign=campaign, customer_id=customer_id, recipient=recipient,
                            content_hash=digest, message_id=message_id,
                            eml=eml[1] if eml else None, files=files)
        try:
            outcome = self.publisher.publish(delivery)
        except DeliveryError as exc:
            # the target is unusable: this edition did not leave; say so, then stop the run
            self.ledger.record(campaign, customer_id, key,
                               Outcome("failed", reason=str(exc)), self.run_id)
            raise
        # deferred: committed with the next claim, still before the next send; a crash
        # in between only widens the `unknown` window, it never causes a second send
        self.ledger.record(campaign, customer_id, key, outcome, self.run_id, defer=True)
        reason = None
        if outcome.reason:
            reason = Reason("delivery_failed" if outcome.status == "failed"
                            else "outcome_unknown", outcome.reason)
        return Sent(outcome.status, reason, {"provider_id": outcome.provider_id})

    def flush(self) -> None:
        """Commit deferred outcomes now (a batch is done only when its outcomes are)."""
        self.ledger.flush()

    def close(self) -> None:
        try:
            self.publisher.__exit__(None, None, None)
        finally:
            self.ledger.close()
