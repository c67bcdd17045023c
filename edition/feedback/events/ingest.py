"""Events into the store, and the suppressions they call for.

- a hard bounce and a complaint suppress at once (all marketing and transactional mail:
  scope `*`), dated when they happened;
- a soft bounce is counted: the `count`-th within `days` days suppresses;
- deliveries and delays are kept for sender health and suppress nothing.

An event is recorded once (the store is idempotent on its id), and a repeated event
suppresses nothing new. An event that names no customer and no address is kept but
suppresses nobody ("unmatched"). A suppression row whose customer is known only by
address is keyed `@<address hash>`: the run matches it by the customer's address.

The suppression row's source carries the words of the reason
(edition.audience.suppression renders it): `bounced (hard, 5.1.1) on 2026-11-30 via
the SMTP reply`, `complained on 2026-11-30 via the feedback loop`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edition.audience.suppression import event_source
from edition.render.unsubscribe import Subscriber
from edition.send.bounces import SoftBounceRule
from edition.store.events import Event, EventStore
from edition.store.suppressions import SuppressionStore, store_location_by_name

UNKNOWN_CAMPAIGN = "(events)"   # the suppression row's campaign when the event names none


@dataclass
class Ingested:
    """What an ingest did, for the command's summary."""

    counts: Counter[str] = field(default_factory=Counter)
    suppressed: list[str] = field(default_factory=list)   # "C1: bounced (hard, 5.1.1)"

    def add(self, other: Ingested) -> None:
        self.counts.update(other.counts)
        self.suppressed.extend(other.suppressed)


Stores = tuple[EventStore, SuppressionStore]


class HouseStores:
    """The store an event of a campaign goes to: `store` when given (--store), else the
    campaign's, as a run of it finds it (EDITION_STORE, its `suppression.store`, else the
    root's out/suppression.sqlite); one handle per location, thread-safe."""

    def __init__(self, root: Path, store: str | None = None):
        self.root = root
        self.store = store
        self._open: dict[str, Stores] = {}
        self._lock = threading.Lock()

    def __call__(self, campaign: str) -> Stores:
        location = self.store or store_location_by_name(self.root, campaign or
                                                         UNKNOWN_CAMPAIGN)
        with self._lock:
            found = self._open.get(location)
            if found is None:
                found = self._open[location] = (EventStore(location, self.root),
                                                SuppressionStore(location, self.root))
            return found

    def __enter__(self) -> HouseStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for events, suppressions in self._open.values():
                events.close()
                suppressions.close()
            self._open.clear()


class Ingester:
    """Records events and suppresses from them, in the store `stores(campaign)` names;
    `rule_for(campaign)` gives the soft-bounce rule of the campaign an event names (the
    default rule otherwise)."""

    def __init__(self, stores: Callable[[str], Stores], *,
                 rule: SoftBounceRule | None = None,
                 rule_for: Callable[[str], SoftBounceRule | None] | None = None):
        self.stores = stores
        self.rule = rule or SoftBounceRule()
        self.rule_for = rule_for

    def ingest(self, found: Iterable[Event]) -> Ingested:
        result = Ingested()
        for event in found:
            self._one(event, result)
        return result

    def unsubscribe(self, who: Subscriber) -> Ingested:
        """An unsubscribe request that came by mail (the List-Unsubscribe mailto): the
        campaign's unsubscribe, as the one-click link records it, with its consent
        record; a repeated request changes nothing."""
        from edition.feedback.preferences import log_unsubscribe

        result = Ingested()
        _, suppressions = self.stores(who.campaign)
        if suppressions.record(who.campaign, who.customer_id, who.address_hash, "mailto"):
            log_unsubscribe(suppressions.database, campaign=who.campaign,
                            customer_id=who.customer_id, scope=who.campaign,
                            source="mailto")
            result.counts["unsubscribe request"] += 1
            result.suppressed.append(f"{who.customer_id}: unsubscribed (mailto)")
        else:
            result.counts["duplicate"] += 1
        return result

    def _one(self, event: Event, result: Ingested) -> None:
        label = event.kind if event.kind != "bounce" else f"{event.severity or 'soft'} bounce"
        events, suppressions = self.stores(event.campaign)
        if not events.record(event):
            result.counts["duplicate"] += 1
            return
        result.counts[label] += 1
        if not (event.customer_id or event.recipient_hash):
            result.counts["unmatched"] += 1
            return
        detail = self._suppressing(event, events)
        if detail is None:
            return
        kind = "complained" if event.kind == "complaint" else "bounced"
        customer = event.customer_id or f"@{event.recipient_hash}"
        when = dt.datetime.fromisoformat(event.occurred_at.replace("Z", "+00:00"))
        if suppressions.record(event.campaign or UNKNOWN_CAMPAIGN, customer,
                                    event.recipient_hash, event_source(detail, event.source),
                                    kind=kind, at=when):
            result.counts["suppressed"] += 1
            words = f"{kind} ({detail})" if detail else kind
            result.suppressed.append(f"{customer}: {words}")

    def _suppressing(self, event: Event, events: EventStore) -> str | None:
        """The reason's detail if this event suppresses ("" for a complaint), else None."""
        if event.kind == "complaint":
            return ""
        if event.kind != "bounce":
            return None
        if event.severity == "hard":
            return ", ".join(p for p in ("hard", event.status) if p)
        rule = (self.rule_for(event.campaign) if self.rule_for and event.campaign
                else None) or self.rule
        if not rule.reached(events, event):
            return None
        return f"soft, {rule.words()}"


def soft_bounce_rules(root: Path) -> dict[str, SoftBounceRule]:
    """Each campaign's `suppression.soft_bounces` under a content root, by campaign name.

    Only that key of each campaign file is read (not its templates or modules): an
    ingest must go on while a campaign's content is broken; a campaign whose key is
    unreadable keeps the default rule.
    """
    from pydantic import ValidationError

    from edition.content.campaign_blocks import SoftBounces
    from edition.content.yamlfile import load_yaml
    from edition.errors import ContentError

    rules: dict[str, SoftBounceRule] = {}
    for file in sorted((root / "campaigns").glob("*.y*ml")):
        try:
            data = load_yaml(file.read_text(encoding="utf-8"), str(file))
        except (OSError, UnicodeDecodeError, ContentError):
            continue
        if not isinstance(data, dict):
            continue
        block = data.get("suppression")
        given = block.get("soft_bounces") if isinstance(block, dict) else None
        if not isinstance(given, dict):
            continue
        try:
            checked = SoftBounces.model_validate(given)
        except (ValidationError, ContentError):
            continue
        rules[str(data.get("name") or file.stem)] = SoftBounceRule(checked.count, checked.days)
    return rules


__all__ = ["UNKNOWN_CAMPAIGN", "HouseStores", "Ingested", "Ingester", "soft_bounce_rules"]
