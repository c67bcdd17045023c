"""A test send: one or a few customers' editions to a reviewer's own address.

`edition run CAMPAIGN --send --test-to you@example.com --customer C1 --customer C2`
renders those customers exactly as a run would, marks the subject `[TEST]`, addresses
the messages to the reviewer, and sends them straight to the target: no send ledger
(it is not the customer's message) and no suppression lists (the reviewer asked for it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from edition.addresses import normalize
from edition.audience.customers import find_customer
from edition.errors import RunError, UsageError
from edition.naming import relative_path
from edition.render.editions import RenderFailure
from edition.render.encoding import Encoder
from edition.run.context import customers_file, target_of
from edition.run.options import RunOptions
from edition.run.workers import plan_for, unsubscribe_links
from edition.send.targets import Delivery, open_target


@dataclass(frozen=True)
class TestSent:
    """What happened to one customer's test message."""

    customer_id: str
    status: str
    detail: str


def test_send(options: RunOptions, customer_ids: Sequence[str], address: str) -> list[TestSent]:
    """Send these customers' editions to `address`, marked [TEST]; nothing is recorded."""
    if not customer_ids:
        raise UsageError("--test-to needs at least one --customer ID")
    try:
        to = normalize(address)
    except ValueError as exc:
        raise UsageError(f"--test-to {address!r} is not an e-mail address: {exc}") from None
    options = options.resolved()
    as_of = options.as_of or dt.date.today()
    options = options.replace(as_of=as_of, formats=("html", "text", "eml"))
    plan = plan_for(options)
    campaign = plan.campaign
    source = customers_file(options, campaign)
    encoder = Encoder(campaign, plan.formats, options.started or dt.datetime.now(dt.UTC),
                      links=unsubscribe_links(options.replace(send=False), plan),
                      mailing=options.mailing or as_of.isoformat())
    target = target_of(options, campaign)
    results: list[TestSent] = []
    with open_target(target, out_dir=campaign.root / "out" / campaign.name / "test-sends",
                     options=campaign.delivery.given_options()) as publisher:
        for customer_id in customer_ids:
            row = find_customer(source, customer_id, need_email=False, declared=campaign.fields)
            if row is None:
                raise RunError(f"customer {customer_id!r} is not in {source}")
            if row.rejected:
                results.append(TestSent(customer_id, "rejected", str(row.reason)))
                continue
            fields = dict(row.fields or {}) | {"email": to}
            version = plan.version_of(fields)[3]
            if encoder.links is not None:
                # a token carries str(locale), and nothing for an empty one
                given = fields.get("locale")
                locale = str(given) if given else None
                if encoder.links.unsubscribes:
                    fields["unsubscribe_url"] = encoder.links.url(customer_id, to, locale)
                preferences = encoder.links.preferences_url(customer_id, to, locale)
                if preferences is not None:
                    fields["preferences_url"] = preferences
            try:
                rendered = plan.renderer.whole(version, fields)
            except RenderFailure as exc:
                results.append(TestSent(customer_id, "failed", str(exc)))
                continue
            rendered = replace(rendered, subject=f"[TEST] {rendered.subject or ''}")
            digest = encoder.content_hash(f"test:{customer_id}", version.digest, rendered)
            eml = encoder.message(customer_id, fields, version.id, rendered, digest)
            outcome = publisher.publish(Delivery(
                campaign=campaign.name, customer_id=customer_id, recipient=to,
                content_hash=digest, message_id=encoder.message_id(digest), eml=eml,
                files={"eml": (relative_path("eml", customer_id), eml, "message/rfc822")}))
            results.append(TestSent(customer_id, outcome.status,
                                    outcome.reason or outcome.provider_id or ""))
    return results
