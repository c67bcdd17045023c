"""Returned mail: RFC 3464 delivery status notifications and RFC 5965 complaints, as events.

The stdlib `email` package parses both formats (message/delivery-status into its blocks
of fields; message/feedback-report as a block of fields). A bounce that is not RFC 3464
(old Exchange, qmail, Yahoo's own wording) goes to flufl.bounce, which knows those
formats and says which recipients failed permanently or for now.

The original message is looked for in the returned part — message/rfc822 or
text/rfc822-headers — and only there: the top-level headers are the reporter's. That
is where edition's identifying headers are (edition.feedback.events.identify), also when
the report carries no other trace of the original (listmonk's #492).
"""

from __future__ import annotations

import datetime as dt
import email
import email.utils
import hashlib
import logging
from collections.abc import Iterator
from email.message import Message
from email.parser import HeaderParser

from edition.feedback.events.identify import Identity, from_headers, with_recipient
from edition.send.bounces import severity, status_code
from edition.store.events import Event, utc_text

# RFC 3464's report, and RFC 6533's for mail sent with SMTPUTF8 (which the stdlib does
# not parse into blocks: _status_blocks does)
STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})

# Feedback-Type values that are a complaint (RFC 5965 3.1; `not-spam` is the opposite)
COMPLAINTS = frozenset({"abuse", "fraud", "virus", "other"})


def events_from_mail(data: bytes, secrets: tuple[bytes, ...], *,
                     received: dt.datetime | None = None) -> list[Event]:
    """The events one returned message reports; [] for a message that reports none (an
    auto-reply, a human's answer, spam to the bounce address)."""
    message = email.message_from_bytes(data)
    ident = _report_id(message, data)
    when = _date(message.get("Date")) or received or dt.datetime.now(dt.UTC)
    parts = list(message.walk())
    feedback = next((p for p in parts if p.get_content_type() == "message/feedback-report"),
                    None)
    if feedback is not None:
        return _complaint(feedback, parts, secrets, ident, when)
    status = next((p for p in parts if p.get_content_type() in STATUS_TYPES), None)
    if status is not None:
        found = list(_dsn(status, parts, secrets, ident, when))
        if found:
            return found
    return list(_other_bounce(message, parts, secrets, ident, when))


def _report_id(message: Message, data: bytes) -> str:
    """The report's own id: its Message-ID, else its bytes (the same file twice is one)."""
    mid = str(message.get("Message-ID") or "").strip()
    seed = mid.encode("utf-8", "replace") if mid else data
    return hashlib.sha256(seed).hexdigest()[:32]


def _date(value: object) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def original_headers(parts: list[Message]) -> list[tuple[str, str]]:
    """The returned original's headers (message/rfc822 or text/rfc822-headers), or []."""
    for part in parts:
        kind = part.get_content_type()
        if kind in {"message/rfc822", "message/global", "message/global-headers"}:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return [(k, str(v)) for k, v in inner[0].items()]
        if kind in {"text/rfc822-headers", "message/global", "message/global-headers"}:
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(
                part.get_payload())
            return [(k, str(v)) for k, v in HeaderParser().parsestr(text).items()]
    return []


def _address(field: object) -> str:
    """`rfc822; ann@example.com` -> `ann@example.com` (RFC 3464 address-type; address)."""
    text = str(field or "").strip()
    _, _, address = text.rpartition(";")
    return address.strip().strip("<>").strip()


def _dsn(status: Message, parts: list[Message], secrets: tuple[bytes, ...], ident: str,
         when: dt.datetime) -> Iterator[Event]:
    blocks = status.get_payload()
    if status.get_content_type() != "message/delivery-status":
        blocks = _status_blocks(status)
    if not isinstance(blocks, list) or len(blocks) < 2:
        return
    per_message, recipients = blocks[0], blocks[1:]
    if not isinstance(per_message, Message):
        return
    arrived = _date(per_message.get("Arrival-Date")) or when
    returned = original_headers(parts)
    identity = from_headers(returned, secrets)
    to = next((v for k, v in returned if k.lower() == "to"), None)
    for index, block in enumerate(recipients):
        if not isinstance(block, Message):
            continue
        action = str(block.get("Action") or "").strip().lower()
        final = _address(block.get("Final-Recipient"))
        original = _address(block.get("Original-Recipient"))
        code = status_code(str(block.get("Status") or ""))
        diagnostic = " ".join(str(block.get("Diagnostic-Code") or "").split())
        if action == "failed":
            kind = "bounce"
            level = severity(code, permanent=code.startswith("5") or not code)
        elif action == "delayed":
            kind, level = "delay", ""
        elif action in {"delivered", "relayed", "expanded"}:
            kind, level = "delivery", ""
        else:
            continue
        who = with_recipient(identity, original or final, to if len(recipients) == 1 else None)
        named = with_recipient(Identity(), original or final)
        if (len(recipients) > 1 and identity.address_hash and named.address_hash
                and named.address_hash != identity.address_hash):
            # a report about several recipients: the signed header names only one of them
            who = Identity(identity.campaign, identity.mailing, "", named.address_hash)
        yield _event(f"dsn:{ident}:{who.address_hash or index}", kind, level, code,
                     diagnostic, who, "dsn", _date(block.get("Last-Attempt-Date")) or arrived)


def _status_blocks(status: Message) -> list[Message]:
    """The blocks of fields of RFC 6533's message/global-delivery-status (UTF-8 fields,
    blocks apart by blank lines), which the stdlib parses as one message: its headers
    are the first block, its body the others."""
    payload = status.get_payload()
    first = payload[0] if isinstance(payload, list) and payload else None
    if not isinstance(first, Message):
        return []
    rest = first.get_payload()
    text = rest if isinstance(rest, str) else ""
    chunks = [c for c in text.replace("\r\n", "\n").split("\n\n") if c.strip()]
    return [first, *(HeaderParser().parsestr(chunk.strip("\n") + "\n") for chunk in chunks)]


def _complaint(feedback: Message, parts: list[Message], secrets: tuple[bytes, ...],
               ident: str, when: dt.datetime) -> list[Event]:
    fields = feedback.get_payload()
    block = fields[0] if isinstance(fields, list) and fields else feedback
    if not isinstance(block, Message):
        return []
    kind = str(block.get("Feedback-Type") or "abuse").strip().lower()
    if kind not in COMPLAINTS:
        return []
    returned = original_headers(parts)
    to = next((v for k, v in returned if k.lower() == "to"), None)
    who = with_recipient(from_headers(returned, secrets),
                         _address(block.get("Original-Rcpt-To")), to)
    occurred = _date(block.get("Arrival-Date") or block.get("Received-Date")) or when
    return [_event(f"arf:{ident}", "complaint", "", "", f"feedback-type {kind}", who, "arf",
                   occurred)]


def _other_bounce(message: Message, parts: list[Message], secrets: tuple[bytes, ...],
                  ident: str, when: dt.datetime) -> Iterator[Event]:
    """A bounce in a format of its own: flufl.bounce finds the failed recipients."""
    from flufl.bounce import all_failures

    # flufl.bounce logs each detector that chokes on a message with its traceback (a
    # mail that is not a bounce at all trips several): that is not news to whoever
    # runs an ingest, whose report counts the message as "not a report"
    quiet = logging.getLogger("flufl.bounce")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    try:
        temporary, permanent = all_failures(message)
    except Exception:   # a detector choking on odd mail must not stop the ingest
        return
    identity = from_headers(original_headers(parts), secrets)
    if not (temporary or permanent):
        yield from _returned_only(message, identity, ident, when)
        return
    for failed, level in ((permanent, "hard"), (temporary - permanent, "soft")):
        for raw in sorted(failed):
            address = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            who = with_recipient(identity, address)
            yield _event(f"bounce:{ident}:{who.address_hash}", "bounce", level, "",
                         "", who, "dsn", when)


# who writes bounces: the mail system's own senders (RFC 5321 4.5.1, RFC 2142)
_MAIL_SYSTEM = frozenset({"mailer-daemon", "postmaster", "mail-daemon"})


def _returned_only(message: Message, identity: Identity, ident: str,
                   when: dt.datetime) -> Iterator[Event]:
    """A bounce with only the returned message to go on: no RFC 3464 part and wording no
    detector knows. It counts when the mail system sent it (a null return path or a
    MAILER-DAEMON/postmaster sender: an out-of-office reply quoting our message is no
    bounce), its own words carry a status code, and the returned message's signed
    headers name the customer (a forged one names nobody)."""
    if not identity.customer_id:
        return
    sender = email.utils.parseaddr(str(message.get("From") or ""))[1]
    null_path = str(message.get("Return-Path") or "").strip() == "<>"
    if not null_path and sender.partition("@")[0].lower() not in _MAIL_SYSTEM:
        return
    words = _reporter_text(message)
    code = status_code(words)
    if not code:
        return
    line = next((line for line in words.splitlines() if code in line), "")
    yield _event(f"bounce:{ident}:{identity.address_hash}", "bounce",
                 severity(code), code, " ".join(line.split())[:200], identity, "dsn", when)


def _reporter_text(part: Message) -> str:
    """The reporter's own text parts, without the returned message inside."""
    if part.is_multipart():
        inner = part.get_payload()
        return "\n".join(_reporter_text(p) for p in inner if isinstance(p, Message)
                         and not p.get_content_type().startswith("message/")) \
            if isinstance(inner, list) else ""
    if part.get_content_type() not in {"text/plain", "text/html"}:
        return ""
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    try:
        return raw.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:   # a charset Python does not know: the code is ASCII anyway
        return raw.decode("utf-8", "replace")


def _event(event_id: str, kind: str, level: str, code: str, diagnostic: str, who: Identity,
           source: str, when: dt.datetime) -> Event:
    return Event(event_id=event_id, kind=kind, occurred_at=utc_text(when), source=source,
                 recipient_hash=who.address_hash, severity=level, status=code,
                 diagnostic=diagnostic, customer_id=who.customer_id, campaign=who.campaign,
                 mailing=who.mailing)


__all__ = ["COMPLAINTS", "STATUS_TYPES", "events_from_mail", "original_headers"]
