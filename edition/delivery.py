"""Delivery with `--send`: the send ledger first, then the publisher, then the ledger again.

Nothing here runs in a dry run. With `--send`, each customer's edition is claimed in the
ledger before it leaves and its outcome recorded right after, so a rerun after a crash
sends every remaining customer once and never re-sends an acknowledged one. The main
process holds the ledger's run lock (`run_lock`); workers share the ledger without it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edition.ledger import Claim, SendLedger
from publishers import open_publisher
from publishers.base import Delivery, Outcome
from publishers.errors import DeliveryError

if TYPE_CHECKING:
    from edition.customers import Row
    from edition.run import Plan


def ledger_path(plan: Plan) -> Path:
    """`delivery.ledger` in the campaign, else out/<campaign>/ledger.sqlite under the root."""
    configured = plan.campaign.delivery.get("ledger")
    if configured:
        path = Path(str(configured))
        return path if path.is_absolute() else plan.campaign.root / path
    return plan.campaign.root / "out" / plan.campaign.name / "ledger.sqlite"


def run_lock(plan: Plan) -> SendLedger:
    """The ledger opened with its run lock: a second run on it waits, then fails clearly."""
    return SendLedger(ledger_path(plan), exclusive=True, wait=5.0).open()


class Deliverer:
    """One publisher connection and one ledger handle, per process."""

    def __init__(self, plan: Plan):
        self.plan = plan
        options = {k: v for k, v in plan.campaign.delivery.items() if k not in {"to", "ledger"}}
        self.publisher = open_publisher(plan.target, out_dir=plan.out_dir, options=options)
        self.publisher.__enter__()
        self.ledger = SendLedger(ledger_path(plan), exclusive=False).open()

    def deliver(self, row: Row, fields: dict[str, Any], digest: str,
                outputs: dict[str, tuple[str, bytes, str]]) -> tuple[str, str | None, dict]:
        """Claim, publish, record; returns (status, reason, extra manifest fields)."""
        plan = self.plan
        campaign = plan.campaign.name
        customer_id = str(row.customer_id)
        run_id = plan.options.run_id or ""
        eml = outputs.get("eml")
        # The same edition sent to another target (an S3 archive after the email) is
        # another delivery: the ledger key covers the target (never its credentials).
        where = str(self.publisher.target).split("?", 1)[0]  # options like ?rate= are not a place
        key = hashlib.sha256(f"{where}\0{digest}".encode()).hexdigest()
        claim = self.ledger.claim(campaign, customer_id, key, run_id,
                                  resend_unknown=plan.options.resend_unknown)
        if claim is Claim.ALREADY_SENT:
            previous = self.ledger.lookup(campaign, customer_id, key)
            return "sent", "already sent by an earlier run; not sent again", {
                "provider_id": getattr(previous, "provider_id", None)}
        if claim is Claim.UNKNOWN:
            return "unknown", ("an earlier run stopped while sending this edition; not sent "
                               "again (use --resend-unknown to send it)"), {}
        delivery = Delivery(campaign=campaign, customer_id=customer_id,
                            recipient=fields.get("email"), content_hash=digest,
                            message_id=plan.message_id(digest), eml=eml[1] if eml else None,
                            files=outputs)
        try:
            outcome = self.publisher.publish(delivery)
        except DeliveryError as exc:
            # the target is unusable: this edition did not leave; say so, then stop the run
            self.ledger.record(campaign, customer_id, key,
                               Outcome("failed", reason=str(exc)), run_id)
            raise
        # deferred: committed with the next claim, still before the next send; a crash
        # in between only widens the `unknown` window, it never causes a second send
        self.ledger.record(campaign, customer_id, key, outcome, run_id, defer=True)
        return outcome.status, outcome.reason, {"provider_id": outcome.provider_id}

    def close(self) -> None:
        try:
            self.publisher.__exit__(None, None, None)
        finally:
            self.ledger.close()
