"""`X-Edition-Id`: which customer of which mailing a message went to, read back from a bounce.

A bounce or a complaint has to name the customer it is about, but what comes back is
often mangled: the top-level headers are the bouncing server's, the recipient address
was rewritten by a forwarder, a complaint's To is redacted. Every e-mail therefore
carries one header that survives in the returned part (RFC 3464's message/rfc822 or
text/rfc822-headers, RFC 5965's returned message, SES's `mail.headers`), and the
ingester reads it back (edition.feedback.events).

The value is the unsubscribe token's construction (edition.render.unsubscribe: HMAC-SHA256
tag + keystream, deterministic) under a key derived for this purpose from
`EDITION_UNSUBSCRIBE_SECRET`, over (campaign + mailing, customer id, address hash):

- the customer id is not readable by whoever sees the message (a forwarder, a mailbox
  provider's abuse desk);
- a forged bounce cannot name a customer it never received (it cannot make the tag), so
  nobody suppresses a customer by mailing our bounce address;
- it is not an unsubscribe token (another key): the header cannot unsubscribe anyone;
- the same customer of the same mailing gets the same bytes in every rerun.

Without a secret (a transactional campaign run without one) there is no header: the
bounce is then matched by Feedback-ID (the mailing) and the recipient's address.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edition.render.unsubscribe import (
    InvalidToken,
    UnsubscribeSecretError,
    make_token,
    secrets_from_env,
    verify,
)

HEADER = "X-Edition-Id"
_PURPOSE = b"edition message identity"
_SEPARATOR = "\n"    # between campaign and mailing: neither holds a line break


@dataclass(frozen=True)
class Identity:
    """Who a message was for, as far as the returned mail tells."""

    campaign: str = ""
    mailing: str = ""
    customer_id: str = ""
    address_hash: str = ""


@functools.lru_cache(maxsize=16)   # once per secret and process, not per message
def _derived(secret: bytes) -> bytes:
    return hmac.new(secret, _PURPOSE, hashlib.sha256).hexdigest().encode("ascii")


def make_value(*, campaign: str, mailing: str, customer_id: str, address: str | None,
               secret: bytes | str) -> str:
    """The header's value for one customer of one mailing."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return make_token(campaign=f"{campaign}{_SEPARATOR}{mailing}", customer_id=customer_id,
                      address=address, secret=_derived(raw))


def read_value(value: str, secrets: Sequence[bytes | str]) -> Identity | None:
    """Who a header value names, or None when it does not verify with any secret (cut,
    edited, forged, or made with a secret no longer configured)."""
    keys = [_derived(s.encode("utf-8") if isinstance(s, str) else s) for s in secrets]
    if not keys:
        return None
    try:
        found = verify("".join(str(value).split()), keys)
    except InvalidToken:
        return None
    campaign, _, mailing = found.campaign.partition(_SEPARATOR)
    return Identity(campaign, mailing, found.customer_id, found.address_hash)


@dataclass(frozen=True)
class MessageIdentity:
    """Makes the header for one mailing; the secret never goes into a pickle (a pool
    worker reads it again from its environment)."""

    campaign: str
    mailing: str
    _secret: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def for_mailing(cls, campaign: str, mailing: str,
                    environ: Mapping[str, str] | None = None) -> MessageIdentity | None:
        """None without a usable `EDITION_UNSUBSCRIBE_SECRET` (then no header)."""
        try:
            secret = secrets_from_env(environ)[0]
        except UnsubscribeSecretError:
            return None
        return cls(campaign, mailing, secret)

    def headers(self, customer_id: str, address: str | None) -> dict[str, str]:
        try:
            value = make_value(campaign=self.campaign, mailing=self.mailing,
                               customer_id=customer_id, address=address, secret=self._secret)
        except ValueError:   # a campaign name + mailing too long for a token: no header
            return {}
        return {HEADER: value}

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.campaign, self.mailing))


def _rebuild(campaign: str, mailing: str) -> MessageIdentity | None:
    return MessageIdentity.for_mailing(campaign, mailing)


__all__ = ["HEADER", "Identity", "MessageIdentity", "make_value", "read_value"]
