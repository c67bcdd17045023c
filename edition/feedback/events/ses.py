"""SES notifications as events: the JSON SES publishes to SNS (and SNS on to SQS or an
HTTPS endpoint), for both event publishing (`eventType`) and identity notifications
(`notificationType`): Bounce, Complaint, Delivery and DeliveryDelay.

The message is recognised by its own fields; an SNS envelope around it (`Type:
Notification`, the SES JSON as a string in `Message`) is unwrapped here, after the
caller verified its signature where it came from the open internet (web/events.py).
The identifying headers are read from `mail.headers` (SES includes them unless the
configuration set says otherwise); the recipient from the event's own recipient list.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from edition.errors import UsageError
from edition.feedback.events.identify import Identity, from_headers, with_recipient
from edition.send.bounces import ses_severity, status_code
from edition.store.events import Event, utc_text

KINDS = {"bounce": "bounce", "complaint": "complaint", "delivery": "delivery",
         "deliverydelay": "delay"}


class NotAnEvent(UsageError):
    """JSON that is no SES notification (nor an SNS envelope of one)."""



def unwrap(document: Any) -> Mapping[str, Any]:
    """The SES notification in a document: itself, or the `Message` of an SNS envelope."""
    if isinstance(document, Mapping) and document.get("Type") == "Notification" \
            and isinstance(document.get("Message"), str):
        try:
            document = json.loads(document["Message"])
        except ValueError:
            raise NotAnEvent("the SNS notification's Message is not JSON") from None
    if not isinstance(document, Mapping) or not _kind(document):
        raise NotAnEvent("not an SES notification (no eventType or notificationType of "
                         "Bounce, Complaint, Delivery or DeliveryDelay)")
    return document


def _kind(document: Mapping[str, Any]) -> str:
    name = str(document.get("eventType") or document.get("notificationType") or "")
    return KINDS.get(name.lower(), "")


def events_from_ses(document: Any, secrets: tuple[bytes, ...], *,
                    envelope_id: str = "",
                    sent: Callable[[str], Identity | None] | None = None) -> list[Event]:
    """The events of one SES notification (one per recipient it names); `sent` names
    the message by SES's messageId when its headers do not (sent_messages.py)."""
    note = unwrap(document)
    if not envelope_id and isinstance(document, Mapping):
        envelope_id = str(document.get("MessageId") or "")
    kind = _kind(note)
    found = note.get("mail")
    mail: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    headers = [(str(h.get("name", "")), str(h.get("value", "")))
               for h in mail.get("headers") or [] if isinstance(h, Mapping)]
    identity = from_headers(headers, secrets)
    detail = note.get({"delay": "deliveryDelay"}.get(kind, kind))
    detail = detail if isinstance(detail, Mapping) else {}
    when = _instant(detail.get("timestamp")) or _instant(mail.get("timestamp")) or \
        dt.datetime.now(dt.UTC)
    # SES's own id of this feedback (bounces, complaints); else the notification's
    base = str(detail.get("feedbackId") or envelope_id or _digest(note))
    message_id = str(mail.get("messageId") or "")
    if not identity.customer_id and sent is not None:
        # exact: the id SES gave the message when we sent it (the ledger's provider_id)
        identity = sent(message_id) or identity
    return list(_per_recipient(kind, detail, identity, base, message_id, when))


def _per_recipient(kind: str, detail: Mapping[str, Any], identity: Identity, base: str,
                   message_id: str, when: dt.datetime) -> Iterator[Event]:
    if kind == "bounce":
        level = ses_severity(str(detail.get("bounceType") or ""))
        for item in _items(detail.get("bouncedRecipients")):
            diagnostic = str(item.get("diagnosticCode") or detail.get("bounceSubType") or "")
            code = status_code(str(item.get("status") or "")) or status_code(diagnostic)
            yield _event(f"ses:{base}", kind, level, code, diagnostic, identity,
                         item.get("emailAddress"), when)
    elif kind == "complaint":
        why = str(detail.get("complaintFeedbackType") or "")
        for item in _items(detail.get("complainedRecipients")):
            yield _event(f"ses:{base}", kind, "", "", f"feedback-type {why}" if why else "",
                         identity, item.get("emailAddress"), when)
    elif kind == "delivery":
        for address in detail.get("recipients") or []:
            yield _event(f"ses:delivery:{message_id or base}", kind, "", "",
                         str(detail.get("smtpResponse") or ""), identity, address, when)
    else:
        for item in _items(detail.get("delayedRecipients")):
            diagnostic = str(item.get("diagnosticCode") or detail.get("delayType") or "")
            yield _event(f"ses:delay:{base}", kind, "", status_code(str(item.get("status"))),
                         diagnostic, identity, item.get("emailAddress"), when)


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value or [] if isinstance(v, Mapping)] if isinstance(value, list) else []


def _event(prefix: str, kind: str, level: str, code: str, diagnostic: str, identity: Identity,
           address: Any, when: dt.datetime) -> Event:
    who = with_recipient(identity, str(address) if address else None)
    return Event(event_id=f"{prefix}:{who.address_hash}", kind=kind, occurred_at=utc_text(when),
                 source="ses", recipient_hash=who.address_hash, severity=level, status=code,
                 diagnostic=" ".join(diagnostic.split()), customer_id=who.customer_id,
                 campaign=who.campaign, mailing=who.mailing)


def _instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _digest(note: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(note, sort_keys=True, default=str).encode()).hexdigest()[:32]


__all__ = ["NotAnEvent", "events_from_ses", "unwrap"]
