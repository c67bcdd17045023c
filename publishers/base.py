"""What every delivery target shares: the declarations the engine reads (edition's
content/plugins.py), the context-manager plumbing, address and secret hygiene, typed
options and pacing. The contract itself (Delivery, Outcome, Publisher) lives in
edition/send/targets.py; it is re-exported here for the targets' convenience.

A target is one module with one subclass of BasePublisher, registered in the
`edition.targets` entry-point group (pyproject.toml); see publishers/webhook.py.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import SplitResult

from edition.addresses import AddressError, parse_mailbox
from edition.content.plugins import TargetOptions, checked_options, scheme_of
from edition.databases import masked
from edition.errors import DeliveryError
from edition.naming import safe_name
from edition.send.targets import Delivery, Outcome, Publisher

__all__ = ["BasePublisher", "Delivery", "DeliveryError", "Outcome", "Publisher", "RateLimiter",
           "TargetOptions", "clean_address", "redact", "refuse_secrets", "safe_name",
           "sender_address", "take_options"]

Options = TypeVar("Options", bound=TargetOptions)


class BasePublisher:
    """A delivery target: what it declares, and the context-manager plumbing.

    Subclasses set the class attributes below and implement `__init__(target, *,
    out_dir, options)` (parse the target, check the options; nothing opened yet),
    `open`, `close` and `publish`.
    """

    schemes: ClassVar[tuple[str, ...]] = ()      # URL schemes it takes
    forms: ClassVar[tuple[str, ...]] = ()        # how its targets are written, for messages
    options_model: ClassVar[type[TargetOptions]] = TargetOptions
    channel: ClassVar[str] = "files"             # "email" for targets that mail customers
    needs_email: ClassVar[bool] = False          # rows without an address are rejected
    dkim: ClassVar[bool] = False                 # the engine DKIM-signs messages for it

    target: str = ""

    def __init__(self, target: str, *, out_dir: Path | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        self.target = target

    @classmethod
    def target_problem(cls, target: str) -> str | None:
        """Why `target` cannot be used, in the words of the target's own parser: the
        constructor parses the target and opens nothing, so it is the one check."""
        try:
            cls(target, out_dir=Path.cwd(), options=None)
        except DeliveryError as exc:
            return f"is not a usable {cls.schemes[0] if cls.schemes else ''} target: " \
                   f"{exc.message}"
        return None

    @classmethod
    def place(cls, target: str) -> str:
        """Where it delivers (the ledger's channel of a target that is not e-mail): the
        target without options (`?sse=`) or a trailing slash."""
        return target.split("?", 1)[0].rstrip("/")

    def open(self) -> None:
        """Open connections/clients; called once by `__enter__`."""

    def close(self) -> None:
        """Release connections/clients; called once by `__exit__`, and by `__enter__`
        when `open` fails half-way (so must cope with a half-open target)."""

    def __enter__(self) -> BasePublisher:
        try:
            self.open()
        except BaseException:
            # what `open` did open before it failed is released, as Django's mail
            # backends do; the caller never gets to `__exit__`
            self.close()
            raise
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


# The end of the header block: a line ending followed by another (an empty line), as the
# email parser splits lines (\r\n, \r or \n). What follows is the body.
_HEADER_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?=[\r\n])")


def sender_address(eml: bytes) -> str | None:
    """The address in the message's From header (the SMTP/SES envelope sender).

    Measured (issue 22): the whole parse was ~1.3 ms of worker CPU per message, most of
    it re-reading the body and parsing the same From header of every customer. So only
    the header block is parsed, and the From value's address is remembered."""
    end = _HEADER_END.search(eml)
    head = eml[:end.end()] if end is not None else eml
    headers = BytesHeaderParser(policy=policy.default).parsebytes(head)
    raw = next((value for name, value in headers.raw_items() if name.lower() == "from"),
               None)
    return None if raw is None else _sender_of(raw)


@functools.lru_cache(maxsize=256)
def _sender_of(raw_from: str) -> str | None:
    """The one address of a From header value as stored by the parser, else None."""
    header = policy.default.header_fetch_parse("From", raw_from)
    try:
        found = header.addresses
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


def take_options(model: type[Options], target: str,
                 options: Mapping[str, Any] | None) -> Options:
    """The typed options of this kind of target (its `options_model`); a typo is refused.

    Unknown names are refused so that a typo (`rat: 10`) cannot silently disable a limit.
    The engine's own delivery keys (to, ledger, dkim) are not the target's and are left out.
    """
    def error(message: str) -> DeliveryError:
        return DeliveryError(message, target)

    return checked_options(model, options, error=error, kind=scheme_of(target))


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
