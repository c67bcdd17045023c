"""Bounces and complaints coming back (issue 20): read, normalised into events, stored,
and turned into suppressions.

- `mail`: RFC 3464 DSNs and RFC 5965 complaints (stdlib `email`, flufl.bounce for
  bounces in other formats);
- `ses`: SES notifications (through SNS, SQS or a file);
- `identify`: who a returned message was for (X-Edition-Id, the List-Unsubscribe token,
  Feedback-ID, the recipient address);
- edition.send.bounces: hard or soft (the same rules as at send time);
- `ingest`: into the store, suppressing hard bounces and complaints at once, soft
  bounces after N within D days;
- `sources`, `sqs`: where they are read from (`edition events ingest SOURCE...`);
- `sns`: the SNS signature, for `POST /events/ses` on `edition web`;
- `unsubscribe_mail`: unsubscribe requests sent to the List-Unsubscribe mailto;
- `sent_messages`: SES's message id -> the message, from the send ledgers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from edition.feedback.events.ingest import Ingested, Ingester
from edition.feedback.events.mail import events_from_mail
from edition.feedback.events.ses import NotAnEvent, events_from_ses
from edition.feedback.events.sources import Item, read
from edition.feedback.events.unsubscribe_mail import unsubscribe_request
from edition.render.message_identity import Identity
from edition.store.events import Event

# SES's messageId -> the message's identity (sent_messages.SentMessages)
Sent = Callable[[str], Identity | None]


def events_of(item: Item, secrets: tuple[bytes, ...], sent: Sent | None = None) -> list[Event]:
    """The events one item holds (NotAnEvent for JSON that is no SES notification)."""
    if item.kind == "mail":
        return events_from_mail(item.data, secrets, received=item.received)
    return events_from_ses(item.data, secrets, sent=sent)


def ingest_items(items: Iterable[Item], ingester: Ingester,
                 secrets: tuple[bytes, ...], sent: Sent | None = None) -> Ingested:
    """Every item's events into the store; items that report nothing are counted."""
    result = Ingested()
    for item in items:
        try:
            found = events_of(item, secrets, sent)
        except NotAnEvent:
            result.counts["not an event"] += 1
            continue
        except RecursionError:   # MIME or JSON nested thousands deep: nobody's report
            result.counts["unreadable"] += 1
            continue
        if not found:
            who = (unsubscribe_request(item.data, secrets) if item.kind == "mail"
                   else None)
            if who is not None:   # the List-Unsubscribe mailto, acted on by a mail program
                result.add(ingester.unsubscribe(who))
                continue
            result.counts["not a report"] += 1
            continue
        result.add(ingester.ingest(found))
    return result


def ingest_sources(sources: Iterable[str], ingester: Ingester,
                   secrets: tuple[bytes, ...], sent: Sent | None = None) -> Ingested:
    """`edition events ingest`'s work: files, folders, Maildirs, mboxes and sqs:// queues."""
    from edition.feedback.events.sqs import drain

    result = Ingested()
    for source in sources:
        if source.startswith("sqs://"):
            def handle(document: object, where: str = source) -> None:
                if document is None:
                    result.counts["not an event"] += 1
                    return
                result.add(ingest_items([Item("ses", document, where)], ingester, secrets,
                                        sent))

            drain(source, handle)
        else:
            result.add(ingest_items(read(source), ingester, secrets, sent))
    return result


__all__ = ["Ingested", "Ingester", "Sent", "events_of", "ingest_items", "ingest_sources"]
