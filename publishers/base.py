"""What every delivery target shares: the context-manager plumbing, address and secret
hygiene, typed options and pacing. The contract itself (Delivery, Outcome, Publisher)
lives in edition.targets; it is re-exported here for the targets' convenience.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable, Mapping
from email import policy
from email.parser import BytesHeaderParser
from typing import Any
from urllib.parse import SplitResult

from edition.addresses import AddressError, parse_mailbox
from edition.content.config import target_options
from edition.databases import masked
from edition.errors import DeliveryError
from edition.naming import safe_name
from edition.send.targets import Delivery, Outcome, Publisher

__all__ = ["BasePublisher", "Delivery", "DeliveryError", "Outcome", "Publisher", "RateLimiter",
           "clean_address", "redact", "refuse_secrets", "safe_name", "sender_address",
           "take_options"]


class BasePublisher:
    """Context-manager plumbing: subclasses implement `open`, `close` and `publish`."""

    target: str = ""

    def open(self) -> None:
        """Open connections/clients; called once by `__enter__`."""

    def close(self) -> None:
        """Release connections/clients; called once by `__exit__`."""

    def __enter__(self) -> BasePublisher:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish(self, delivery: Delivery) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


# --- addresses ----------------------------------------------------------------------------

def clean_address(value: str | None) -> str | None:
    """The one address in `value`, normalized (edition.addresses), or None if it is not one."""
    if not value:
        return None
    try:
        return parse_mailbox(value)[1]
    except AddressError:
        return None


def sender_address(eml: bytes) -> str | None:
    """The address in the message's From header (the SMTP/SES envelope sender)."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(eml)
    try:
        found = headers["From"].addresses if headers.get("From") is not None else ()
    except (AttributeError, ValueError, IndexError):
        return None
    if len(found) != 1:
        return None
    # a UTF-8 address (RFC 6532) comes out of the parser with its bytes escaped
    addr = found[0].addr_spec.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return clean_address(addr)


# --- secrets ------------------------------------------------------------------------------

SECRET_ENV = ("EDITION_SMTP_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def redact(text: str | None) -> str | None:
    """`text` with any credential from the environment replaced by `***`.

    Also their base64 forms: an SMTP server that refuses a login may echo the AUTH
    PLAIN blob (`\0user\0password` in base64) or AUTH LOGIN's base64 password back.
    """
    if not text:
        return text
    for secret in _secret_forms():
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _secret_forms() -> list[str]:
    values = [os.environ.get(name) or "" for name in SECRET_ENV]
    secrets = [v for v in values if len(v) >= 4]
    user = os.environ.get("EDITION_SMTP_USERNAME") or ""
    password = os.environ.get("EDITION_SMTP_PASSWORD") or ""
    forms = list(secrets)
    for secret in secrets:
        forms.append(base64.b64encode(secret.encode()).decode().rstrip("="))
    if password:
        forms.append(base64.b64encode(f"\0{user}\0{password}".encode()).decode().rstrip("="))
    return sorted({f for f in forms if len(f) >= 4}, key=len, reverse=True)


_SECRET_QUERY_KEYS = {"user", "username", "password", "pass", "passwd", "secret", "token", "key"}


def refuse_secrets(url: SplitResult, env_hint: str) -> None:
    """Refuse a target URL that carries credentials; they belong in the environment."""
    if "@" in url.netloc or url.username is not None or url.password is not None:
        raise DeliveryError(
            f"credentials are not allowed in the target; set {env_hint} in the environment",
            target=masked(url.geturl()),
        )
    keys = {k.lower() for k, _, _ in (p.partition("=") for p in url.query.split("&") if p)}
    if keys & _SECRET_QUERY_KEYS:
        raise DeliveryError(
            f"credentials are not allowed in the target; set {env_hint} in the environment",
            target=masked(url.geturl()),
        )


# --- options ------------------------------------------------------------------------------


def take_options(target: str, options: Mapping[str, Any] | None) -> Any:
    """The typed options of this kind of target (edition.config); a typo is refused.

    Unknown names are refused so that a typo (`rat: 10`) cannot silently disable a limit.
    """
    try:
        return target_options(target, options)
    except ValueError as exc:
        raise DeliveryError(str(exc), target) from None


# --- pacing -------------------------------------------------------------------------------


class RateLimiter:
    """Token bucket shared by all threads: at most `rate` acquisitions per second.

    `burst` tokens may be spent at once after an idle period; the default of 1 spaces
    messages evenly, which is what provider limits (SES: N per second) expect.
    """

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic):
        self.rate = float(rate)
        self.interval = 1.0 / self.rate if self.rate > 0 else 0.0
        self.tolerance = max(0, int(burst) - 1) * self.interval
        self._clock = clock
        self._lock = threading.Lock()
        self._tat = 0.0  # theoretical arrival time of the next acquisition (GCRA)

    def acquire(self) -> float:
        """Block until the caller may send; returns the seconds waited."""
        if self.interval <= 0:
            return 0.0
        # Each caller reserves its slot under the lock, then sleeps outside it, so
        # threads queue up fairly without holding the lock while waiting.
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            self._tat = tat + self.interval
            wait = tat - self.tolerance - now
        if wait > 0:
            time.sleep(wait)
            return wait
        return 0.0


def backoff(delays: tuple[float, ...]) -> Callable[[Any], float]:
    """A tenacity wait: the pause before retry N is delays[N-1]; the last one repeats."""

    def wait(state: Any) -> float:
        if not delays:
            return 0.0
        return delays[min(state.attempt_number - 1, len(delays) - 1)]

    return wait
