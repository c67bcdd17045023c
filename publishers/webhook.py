"""Deliver by webhook: one signed JSON POST per edition to `https://host/path`.

The body holds the campaign, the mailing, the customer's id and address, the subject,
the content hash and Message-ID, and the edition itself: its `html` and `text`, or
with option `link_base` a link to each of its files (`links: {"pdf": …}`, for a run
folder published where the receiver can read it). Options never hold the secret.

Signed: `X-Edition-Signature: sha256=<hex>` is HMAC-SHA256, keyed with the secret in
`EDITION_WEBHOOK_SECRET` (or the variable option `secret_env` names), over
`<X-Edition-Timestamp>.<body>`; the timestamp lets the receiver refuse replays.
`Idempotency-Key` is the same for every attempt at one edition, so a receiver can drop
a retried duplicate.

Exactly once, as the send ledger gives it: an attempt is retried (tenacity, with
backoff) only when the receiver says it did not take the edition (5xx, 429) or the
request never got out (no connection); a 4xx is `failed` at once, never retried. Once
the whole request has gone out, a reply that never comes (a timeout, a dropped
connection) is `unknown`: recorded so, and not sent again unless --resend-unknown.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import time
from collections.abc import Mapping
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from edition.content.plugins import Delays
from edition.errors import DeliveryError
from publishers.base import (
    BasePublisher,
    Delivery,
    Outcome,
    RateLimiter,
    TargetOptions,
    backoff,
    redact,
    refuse_secrets,
    take_options,
)

log = logging.getLogger("edition.publish.webhook")

SECRET_ENV = "EDITION_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Edition-Signature"
TIMESTAMP_HEADER = "X-Edition-Timestamp"
MIN_SECRET = 16          # characters: a shorter secret is guessable
INLINE = ("html", "text")
# A pooled connection the receiver has already closed would turn the next request into
# an `unknown` (sent, no reply): connections are kept for a second only, less than any
# server's keep-alive timeout (uvicorn: 5 s).
KEEPALIVE_SECONDS = 1.0


class WebhookOptions(TargetOptions):
    secret_env: str = SECRET_ENV   # the environment variable holding the signing secret
    timeout: float = 30.0          # seconds to connect, and to wait for the reply
    attempts: int = 4              # tries per edition, the first included
    backoff: Delays = (0.5, 2.0, 8.0)
    rate: float = 0.0              # requests per second; 0 = unlimited
    burst: int = 1
    link_base: str | None = None   # send links under this URL instead of html/text
    insecure_http: bool = False    # allow http:// to a host that is not this machine


class WebhookPublisher(BasePublisher):
    """POSTs each delivery as signed JSON; thread-safe (one pooled httpx client)."""

    schemes = ("https", "http")
    forms = ("https://host/path (webhook)",)
    options_model = WebhookOptions
    channel = "webhook"
    needs_email = False   # the address is sent when the row has one

    def __init__(self, target: str, *, out_dir: Path | None = None,
                 options: Mapping[str, Any] | None = None):
        url = urlsplit(target)
        refuse_secrets(url, f"{SECRET_ENV} (the signing secret)")
        if url.scheme not in {"https", "http"} or not url.hostname or url.fragment:
            raise DeliveryError("expected https://host/path", target)
        self.target = target
        self.options = take_options(WebhookOptions, target, options)
        if url.scheme == "http" and not self.options.insecure_http and \
                not _is_loopback(url.hostname):
            raise DeliveryError("refusing to post customer data unencrypted; use https:// "
                                "(or option insecure_http: true)", target)
        link_base = self.options.link_base
        if link_base is not None and urlsplit(link_base).scheme not in {"https", "http"}:
            raise DeliveryError("option link_base must be an http(s) URL", target)
        self.attempts = max(1, self.options.attempts)
        self.limiter = RateLimiter(self.options.rate, self.options.burst)
        self.client: httpx.Client | None = None
        self._secret = b""

    def open(self) -> None:
        if self.client is not None:
            return
        secret = os.environ.get(self.options.secret_env, "")
        if len(secret) < MIN_SECRET:
            raise DeliveryError(
                f"set {self.options.secret_env} to the webhook's signing secret (at least "
                f"{MIN_SECRET} characters); it never goes in the campaign", self.target)
        self._secret = secret.encode("utf-8")
        self.client = httpx.Client(
            timeout=self.options.timeout, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def publish(self, delivery: Delivery) -> Outcome:
        """POST the edition; retried only while the receiver cannot have taken it."""
        if self.client is None:
            self.open()
        body = json.dumps(self.payload(delivery), ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
        key = f"{delivery.campaign}:{delivery.mailing or ''}:{delivery.customer_id}"

        def log_retry(state: Any) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning("%s: customer %r: %s; retrying", self.target, delivery.customer_id,
                        getattr(error, "reason", error))

        retrying = Retrying(stop=stop_after_attempt(self.attempts),
                            wait=backoff(self.options.backoff),
                            retry=retry_if_exception_type(_Retry), before_sleep=log_retry,
                            reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    return self._post(body, key)
        except _Retry as exc:
            if exc.unreachable:
                raise DeliveryError(exc.reason, self.target) from None
            return Outcome("failed", reason=f"{exc.reason} (after {self.attempts} attempts)")
        raise AssertionError("unreachable")  # pragma: no cover

    def payload(self, delivery: Delivery) -> dict[str, Any]:
        """What the receiver gets for one edition."""
        document: dict[str, Any] = {
            "campaign": delivery.campaign, "mailing": delivery.mailing,
            "customer_id": delivery.customer_id, "address": delivery.recipient,
            "subject": delivery.subject if delivery.subject is not None
            else _subject(delivery.eml),
            "content_hash": delivery.content_hash, "message_id": delivery.message_id,
        }
        base = self.options.link_base
        if base is not None:
            document["links"] = {fmt: f"{base.rstrip('/')}/{rel}"
                                 for fmt, (rel, _, _) in sorted(delivery.files.items())}
        else:
            for fmt in INLINE:
                if fmt in delivery.files:
                    document[fmt] = delivery.files[fmt][1].decode("utf-8")
        return document

    def signature(self, timestamp: str, body: bytes) -> str:
        """`sha256=` + HMAC-SHA256(secret, timestamp + "." + body), in hex."""
        mac = hmac.new(self._secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
        return f"sha256={mac.hexdigest()}"

    def _post(self, body: bytes, key: str) -> Outcome:
        """One attempt; raises _Retry only when the receiver did not take the edition."""
        assert self.client is not None
        self.limiter.acquire()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: self.signature(timestamp, body),
                   "User-Agent": "edition-webhook"}
        try:
            reply = self.client.post(self.target, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                httpx.WriteError, httpx.WriteTimeout) as exc:
            # the request did not get out whole: the receiver cannot have acted on it
            raise _Retry(f"cannot reach the webhook: {_words(exc)}", unreachable=True) from None
        except httpx.TransportError as exc:   # it went out; the reply did not come back
            return Outcome("unknown", reason=f"no reply from the webhook ({_words(exc)}); "
                           "not resent, it may have been received")
        status = reply.status_code
        if 200 <= status < 300:
            return Outcome("sent", provider_id=reply.headers.get("X-Request-Id")
                           or f"HTTP {status}")
        text = f"HTTP {status}: {_excerpt(reply)}"
        if status >= 500 or status == 429:
            raise _Retry(text)
        if status in (401, 403):   # a wrong secret fails every edition: stop the run
            raise DeliveryError(f"the webhook refused the signed request ({text}); check "
                                f"{self.options.secret_env}", self.target)
        if 300 <= status < 400:
            return Outcome("failed", reason=f"{text}; redirects are not followed")
        return Outcome("failed", reason=text)


class _Retry(Exception):
    """Internal: the receiver did not take the edition; trying again is safe."""

    def __init__(self, reason: str, *, unreachable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable   # no connection at all: the target is unusable


def _subject(eml: bytes | None) -> str | None:
    if eml is None:
        return None
    value = BytesHeaderParser(policy=policy.default).parsebytes(eml).get("Subject")
    return str(value) if value is not None else None


def _excerpt(reply: httpx.Response) -> str:
    text = " ".join(reply.text.split())
    return redact(text[:200] + ("…" if len(text) > 200 else "")) or reply.reason_phrase


def _words(exc: Exception) -> str:
    return redact(str(exc)) or type(exc).__name__


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
