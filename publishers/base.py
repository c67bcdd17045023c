"""The delivery contract shared by every target, plus the small helpers they all use.

The engine builds one `Delivery` per customer and hands it to a `Publisher`, which
answers with an `Outcome`. Nothing here talks to the network.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import SplitResult

from publishers.errors import DeliveryError


@dataclass(frozen=True)
class Delivery:
    """One customer's rendered edition, ready to hand to a target."""

    campaign: str  # campaign name (slug)
    customer_id: str
    recipient: str | None  # email address, None when the campaign has no eml
    content_hash: str  # hex digest identifying this customer's content for this campaign
    message_id: str  # the Message-ID header value already in `eml`
    eml: bytes | None  # the full message, CRLF line endings
    # format -> (relative key like "html/c1.html", bytes, content type)
    files: Mapping[str, tuple[str, bytes, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What a target did with one delivery."""

    status: Literal["sent", "failed", "unknown"]
    # SMTP: the server's reply text or our Message-ID; SES: MessageId; S3: ETag/VersionId
    provider_id: str | None = None
    reason: str | None = None  # failed/unknown: human-readable, with the server reply


@runtime_checkable
class Publisher(Protocol):
    """A delivery target; open it once with `with`, then `publish` many deliveries."""

    target: str  # the target string with any secret removed

    def __enter__(self) -> Publisher: ...

    def __exit__(self, *exc: object) -> None: ...

    def publish(self, delivery: Delivery) -> Outcome: ...


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


# --- safe names -------------------------------------------------------------------------

# Device names Windows refuses as file names whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
_HASHED = re.compile(r".*-[0-9a-f]{10}")
_EXTENSIONS = {"html": ".html", "text": ".txt", "txt": ".txt", "pdf": ".pdf", "eml": ".eml"}


def safe_name(value: str, max_len: int = 64) -> str:
    """A file/key name for `value` that stays in its folder on any OS and is unique per value.

    Plain lower-case ids are kept as they are; anything else becomes a slug plus a short
    hash of the real value, so `A`/`a`, `../x`/`x` and long ids never collide.
    """
    ascii_ = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9._-]+", "-", ascii_.lower()).strip(".-_")
    slug = slug[:max_len].rstrip(".-_") or "customer"
    # A name that merely looks like slug-plus-hash gets hashed too, so no crafted id can
    # take another id's name.
    if slug != value or slug.split(".")[0] in _RESERVED or _HASHED.fullmatch(slug):
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        slug = f"{slug}-{digest}"
    return slug


def extension(fmt: str, key: str = "") -> str:
    """The file extension for format `fmt` (falling back to the suffix of the engine's key)."""
    if fmt in _EXTENSIONS:
        return _EXTENSIONS[fmt]
    match = re.search(r"\.[A-Za-z0-9]{1,8}$", key)
    return match.group(0).lower() if match else ""


# --- addresses ----------------------------------------------------------------------------

_BAD_ADDRESS_CHARS = re.compile(r"[\x00-\x20\x7f<>,;\"()\[\]\\]")


def clean_address(value: str | None) -> str | None:
    """The bare addr-spec in `value`, or None when it is not one safe single address."""
    if not value or "\r" in value or "\n" in value:
        return None
    found = getaddresses([value])
    if len(found) != 1:  # "a@x, b@y" must not quietly become a@x
        return None
    addr = found[0][1]
    if not addr or len(addr) > 254 or addr.count("@") != 1 or _BAD_ADDRESS_CHARS.search(addr):
        return None
    local, domain = addr.split("@")
    return addr if local and domain and "." not in (domain[0], domain[-1]) else None


def sender_address(eml: bytes) -> str | None:
    """The address in the message's From header (the SMTP/SES envelope sender)."""
    headers = BytesHeaderParser().parsebytes(eml)
    value = headers.get("From")
    return clean_address(str(value)) if value is not None else None


# --- secrets ------------------------------------------------------------------------------

SECRET_ENV = ("EDITION_SMTP_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def redact(text: str | None) -> str | None:
    """`text` with any credential value from the environment replaced by `***`."""
    if not text:
        return text
    for name in SECRET_ENV:
        secret = os.environ.get(name)
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "***")
    return text


_SECRET_QUERY_KEYS = {"user", "username", "password", "pass", "passwd", "secret", "token", "key"}


def refuse_secrets(url: SplitResult, env_hint: str) -> None:
    """Refuse a target URL that carries credentials; they belong in the environment."""
    if "@" in url.netloc or url.username is not None or url.password is not None:
        raise DeliveryError(
            f"credentials are not allowed in the target; set {env_hint} in the environment",
            target=strip_userinfo(url)._replace(query="").geturl(),
        )
    keys = {k.lower() for k, _, _ in (p.partition("=") for p in url.query.split("&") if p)}
    if keys & _SECRET_QUERY_KEYS:
        raise DeliveryError(
            f"credentials are not allowed in the target; set {env_hint} in the environment",
            target=strip_userinfo(url)._replace(query="").geturl(),
        )


def strip_userinfo(url: SplitResult) -> SplitResult:
    """`url` without `user:password@`."""
    host = url.netloc.rpartition("@")[2]
    return url._replace(netloc=host)


# --- options ------------------------------------------------------------------------------


def as_bool(value: Any) -> bool:
    """Accept YAML/query-string spellings of a boolean."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def as_delays(value: Any) -> tuple[float, ...]:
    """A list of backoff delays in seconds, from a list or `0.2,0.5,1`."""
    items = value.split(",") if isinstance(value, str) else list(value)
    delays = tuple(float(v) for v in items)
    if any(d < 0 for d in delays):
        raise ValueError("delays must be >= 0")
    return delays


def as_str(value: Any) -> str:
    """Options given as text."""
    return str(value)


# Keys of a campaign's `delivery:` block read by the engine, not by a target.
ENGINE_KEYS = frozenset({"to", "ledger"})


def take_options(
    target: str,
    options: Mapping[str, Any] | None,
    spec: Mapping[str, tuple[Callable[[Any], Any], Any]],
) -> dict[str, Any]:
    """Validate `options` against `spec` (name -> (converter, default)); unknown names fail.

    Unknown names are refused so that a typo (`rat: 10`) cannot silently disable a limit.
    Keys of the campaign's delivery block that belong to the engine are ignored.
    """
    result = {name: default for name, (_, default) in spec.items()}
    for name, value in (options or {}).items():
        if name in ENGINE_KEYS:
            continue
        if name not in spec:
            known = ", ".join(sorted(spec))
            raise DeliveryError(f"unknown delivery option {name!r} (known: {known})", target)
        if value is None:
            continue
        try:
            result[name] = spec[name][0](value)
        except (TypeError, ValueError) as exc:
            raise DeliveryError(f"bad value for delivery option {name!r}: {exc}", target) from None
    return result


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


def backoff_delay(delays: tuple[float, ...], attempt: int) -> float:
    """The pause before retry number `attempt` (1-based); the last delay repeats."""
    if not delays:
        return 0.0
    return delays[min(attempt - 1, len(delays) - 1)]
