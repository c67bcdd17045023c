"""Unsubscribe requests that come by mail: the `mailto:` of List-Unsubscribe.

With `unsubscribe_mailto` a campaign's List-Unsubscribe offers a mailto whose subject
ends in the customer's signed token (render/unsubscribe.py). A mail program that acts
on it sends a message to that address; delivered to the Maildir `edition events ingest`
reads, it is an unsubscribe like the one-click link, honoured at once (Gmail and Yahoo
ask for two days at most). Only the token counts — it names the campaign and the
customer and cannot be forged — never the sender's address, which anyone can write. A
subject without a token that verifies is not a request (an auto-reply, a human answer).
"""

from __future__ import annotations

import email
from email import policy

from edition.render.unsubscribe import InvalidToken, Subscriber, verify

_MAX_SUBJECT = 2048


def unsubscribe_request(data: bytes, secrets: tuple[bytes, ...]) -> Subscriber | None:
    """Who this message unsubscribes (the token at the end of its subject), else None."""
    if not secrets:
        return None
    try:
        message = email.message_from_bytes(data, policy=policy.default)
        subject = str(message.get("Subject") or "")[:_MAX_SUBJECT]
    except (ValueError, TypeError, IndexError, LookupError):
        return None   # a header no parser makes sense of is nobody's request
    # a reply may prefix "Re:" and a mail program may add words: the token is last
    words = subject.split()
    if not words:
        return None
    try:
        return verify(words[-1], secrets)
    except InvalidToken:
        return None


__all__ = ["unsubscribe_request"]
