"""Delivery with `--send`: the send ledger first, then the publisher, then the ledger again.

Nothing here runs in a dry run. With `--send`, each customer's edition is claimed in the
ledger before it leaves, and the outcome is recorded right after, so a rerun after a crash
sends every remaining customer once and never re-sends an acknowledged one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edition.ledger import Claim, SendLedger
from publishers import open_publisher
from publishers.base import Delivery

if TYPE_CHECKING:
    from edition.customers import Row
    from edition.run import Plan


class Deliverer:
    """One publisher connection and one ledger, per process."""

    def __init__(self, plan: Plan):
        self.plan = plan
        campaign = plan.campaign
        options = {k: v for k, v in campaign.delivery.items() if k != "to"}
        self.publisher = open_publisher(plan.target, out_dir=plan.out_dir, options=options)
        self.publisher.__enter__()
        ledger_path = campaign.delivery.get("ledger") or (
            campaign.root / "out" / campaign.name / "ledger.sqlite")
        self.ledger = SendLedger(ledger_path)
        self.ledger.__enter__()

    def deliver(self, row: Row, fields: dict[str, Any], digest: str,
                outputs: dict[str, tuple[str, bytes, str]]) -> tuple[str, str | None, dict]:
        """Claim, publish, record; returns (status, reason, extra manifest fields)."""
        plan = self.plan
        customer_id = str(row.customer_id)
        eml = outputs.get("eml")
        delivery = Delivery(
            campaign=plan.campaign.name, customer_id=customer_id,
            recipient=fields.get("email"), content_hash=digest,
            message_id=plan.message_id(digest), eml=eml[1] if eml else None,
            files=outputs)
        run_id = plan.options.run_id or ""
        claim = self.ledger.claim(plan.campaign.name, customer_id, digest, run_id,
                                  resend_unknown=plan.options.resend_unknown)
        if claim is Claim.ALREADY_SENT:
            previous = self.ledger.lookup(plan.campaign.name, customer_id, digest)
            return "sent", "already sent by an earlier run; not sent again", {
                "provider_id": getattr(previous, "provider_id", None)}
        if claim is Claim.UNKNOWN:
            return "unknown", ("an earlier run stopped while sending this edition; not sent "
                               "again (use --resend-unknown to send it)"), {}
        outcome = self.publisher.publish(delivery)
        self.ledger.record(plan.campaign.name, customer_id, digest, outcome, run_id)
        return outcome.status, outcome.reason, {"provider_id": outcome.provider_id}

    def close(self) -> None:
        self.publisher.__exit__(None, None, None)
        self.ledger.__exit__(None, None, None)
