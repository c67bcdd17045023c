"""Who a returned message was for: read back from the original's headers.

In order of trust: `X-Edition-Id` (signed: campaign, mailing, customer, address hash),
the List-Unsubscribe token (signed: campaign, customer, address hash; the mailing from
Feedback-ID beside it), Feedback-ID alone only when no secret is configured (unsigned),
and last the recipient address the report names (its hash). A header that
does not verify is ignored, never trusted: anyone can mail a bounce address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

from edition.addresses import address_hash
from edition.render.list_headers import read_feedback_id
from edition.render.message_identity import HEADER, Identity, read_value
from edition.render.unsubscribe import InvalidToken, token_of, verify

_LINK = re.compile(r"<([^<>\s]+)>")

Headers = Iterable[tuple[str, str]]


def from_headers(headers: Headers, secrets: tuple[bytes, ...]) -> Identity:
    """What the original's headers say about who it went to (empty fields: unknown)."""
    found: Mapping[str, list[str]] = _by_name(headers)
    for value in found.get(HEADER.lower(), []):
        identity = read_value(value, secrets) if secrets else None
        if identity is not None:
            return identity
    mailing = Identity()
    for value in found.get("feedback-id", []):
        fields = read_feedback_id(value)
        if fields is not None:
            mailing = Identity(campaign=fields[0], mailing=fields[1])
            break
    if not secrets:
        # nothing can be verified: the unsigned Feedback-ID is all there is to go on
        return mailing
    for value in found.get("list-unsubscribe", []):
        for link in _LINK.findall(value):
            token = token_of(link)
            if not token:
                continue
            try:
                who = verify(token, secrets)
            except InvalidToken:
                continue
            same = mailing.campaign == who.campaign
            return Identity(who.campaign, mailing.mailing if same else "", who.customer_id,
                            who.address_hash)
    # with secrets configured, a mailing named by no signed header is not believed: a
    # forged report must not count against a mailing's bounce or complaint rate
    return Identity()


def with_recipient(identity: Identity, *recipients: str | None) -> Identity:
    """The identity, with the first recipient address given (the report's, then the
    original's To) when the signed headers gave none."""
    if identity.address_hash:
        return identity
    for recipient in recipients:
        hashed = _hash_of(recipient) if recipient else ""
        if hashed:
            return replace(identity, address_hash=hashed)
    return identity


def _hash_of(value: str) -> str:
    from email.utils import getaddresses

    pairs = getaddresses([value])
    address = next((a for _, a in pairs if "@" in a), "")
    return address_hash(address) if address else ""


def _by_name(headers: Headers) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in headers:
        found.setdefault(str(name).strip().lower(), []).append(str(value))
    return found


__all__ = ["Identity", "from_headers", "with_recipient"]
