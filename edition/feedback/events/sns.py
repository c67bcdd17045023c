"""Amazon SNS messages: is this one really from SNS, for a topic we subscribed to?

SNS signs each message (RSA over a canonical string of its fields, SHA1 for
SignatureVersion 1, SHA256 for 2) with a key whose certificate it names in
`SigningCertURL`. Checking that is not enough: anyone can create a topic of their own,
subscribe our endpoint and have SNS sign whatever they publish. So a message is taken
only when, as well:

- its `TopicArn` is one the operator named (`EDITION_SNS_TOPIC_ARNS`, comma-separated;
  none named: every message is refused);
- the certificate URL is https on an SNS host (`sns.<region>.amazonaws.com`, the .cn
  partition too), port 443, a path ending in `.pem`, no user info, no query: the server
  never fetches anything else, so a message cannot make it reach into the network
  behind it (SSRF). The certificate is fetched without following redirects, at most
  `MAX_CERT_BYTES`, and kept per URL; it must be in its validity period;
- `SubscribeURL` (confirming a subscription) passes the same host check.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from edition.errors import EditionError

TOPICS_ENV = "EDITION_SNS_TOPIC_ARNS"
MAX_CERT_BYTES = 16 * 1024
_SNS_HOST = re.compile(r"^sns\.[a-z]{2}(-[a-z]+)+-\d{1,2}\.amazonaws\.com(\.cn)?$")
_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
}
_FIELDS["UnsubscribeConfirmation"] = _FIELDS["SubscriptionConfirmation"]


class SnsRefused(EditionError):
    """A message that is not from SNS, not for our topics, or not well formed."""


def topics_from_env(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    raw = (os.environ if environ is None else environ).get(TOPICS_ENV, "")
    return frozenset(t for t in re.split(r"[\s,]+", raw.strip()) if t)


def sns_url(url: object, *, suffix: str = "") -> str:
    """`url` if it is an https URL on an SNS host (see the module docstring), else
    SnsRefused: the only URLs this server ever fetches for a message."""
    if not isinstance(url, str) or len(url) > 2048:
        raise SnsRefused("not an SNS URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SnsRefused("not an SNS URL") from None
    host = parts.hostname or ""
    if (parts.scheme != "https" or parts.username is not None or parts.password is not None
            or port not in (None, 443) or not _SNS_HOST.match(host)
            or parts.netloc.lower() not in (host, f"{host}:443") or parts.fragment
            or (suffix and (parts.query or not parts.path.endswith(suffix)))):
        raise SnsRefused(f"not an SNS URL: {host or '(no host)'}")
    return url


def canonical(message: Mapping[str, Any]) -> bytes:
    """The string SNS signs: each signed field present, `Name\\nValue\\n`, in name order."""
    kind = message.get("Type")
    fields = _FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise SnsRefused("not an SNS message (Type)")
    out = []
    for name in fields:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise SnsRefused(f"an SNS {kind} without {name}")
        if not isinstance(value, str):
            raise SnsRefused(f"an SNS message whose {name} is not text")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


def fetch_certificate(url: str) -> bytes:
    """GET the PEM at an already checked SNS URL: no redirects, bounded, short timeout."""
    import httpx

    try:
        with httpx.Client(follow_redirects=False, timeout=10.0, trust_env=False) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise SnsRefused(f"the signing certificate answered {response.status_code}")
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_CERT_BYTES:
                    raise SnsRefused("the signing certificate is too large")
            return body
    except httpx.HTTPError as exc:
        raise SnsRefused(f"cannot fetch the signing certificate: {type(exc).__name__}") from None


class SnsVerifier:
    """Verifies SNS messages for the given topics; certificates cached per URL.

    `fetch` gets a certificate's bytes for a checked URL (tests give their own; the
    check of the URL is never skipped)."""

    def __init__(self, topics: frozenset[str], *,
                 fetch: Callable[[str], bytes] = fetch_certificate):
        self.topics = topics
        self.fetch = fetch
        self._keys: dict[str, Any] = {}
        self._lock = threading.Lock()

    def verify(self, message: Any) -> Mapping[str, Any]:
        """The message if it is SNS's, signed, for one of our topics; else SnsRefused."""
        if not isinstance(message, Mapping) or message.get("Type") not in _TYPES:
            raise SnsRefused("not an SNS message")
        if message.get("TopicArn") not in self.topics:
            raise SnsRefused("a topic this server was not told to accept "
                             f"({TOPICS_ENV})")
        version = message.get("SignatureVersion")
        if version not in ("1", "2"):
            raise SnsRefused("an unknown SNS SignatureVersion")
        try:
            signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise SnsRefused("an SNS signature that is not base64") from None
        key = self._key(sns_url(message.get("SigningCertURL"), suffix=".pem"))
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        # SignatureVersion 1 is SHA1 (SNS's default), 2 is SHA256
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        try:
            key.verify(signature, canonical(message), padding.PKCS1v15(), digest)
        except (InvalidSignature, TypeError, ValueError):
            raise SnsRefused("the SNS signature does not verify") from None
        if message.get("Type") == "SubscriptionConfirmation":
            sns_url(message.get("SubscribeURL"))
        return message

    def _key(self, url: str) -> Any:
        with self._lock:
            key = self._keys.get(url)
        if key is not None:
            return key
        from cryptography import x509

        try:
            certificate = x509.load_pem_x509_certificate(self.fetch(url))
        except ValueError:
            raise SnsRefused("the signing certificate is not a PEM certificate") from None
        now = dt.datetime.now(dt.UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SnsRefused("the signing certificate is not valid now")
        key = certificate.public_key()
        with self._lock:
            self._keys[url] = key
        return key


__all__ = ["MAX_CERT_BYTES", "TOPICS_ENV", "SnsRefused", "SnsVerifier", "canonical",
           "fetch_certificate", "sns_url", "topics_from_env"]
