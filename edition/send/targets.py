"""The interface between the engine and delivery targets (Django's mail backends, smaller).

The engine builds one `Delivery` per customer and hands it to a `Publisher`, which
answers with an `Outcome`. The engine never imports a publisher: targets are found by
their scheme in the `edition.targets` entry-point group (pyproject.toml), so the
publishers package depends on this module and not the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from edition.content.config import scheme_of
from edition.errors import DeliveryError

ENTRY_POINTS = "edition.targets"


@dataclass(frozen=True)
class Delivery:
    """One customer's rendered edition, ready to hand to a target."""

    campaign: str  # campaign name (slug)
    customer_id: str
    recipient: str | None  # email address, None when the campaign has no eml
    content_hash: str  # hex digest identifying this customer's content for this campaign
    message_id: str  # the Message-ID header value already in `eml`
    eml: bytes | None  # the full message, CRLF line endings
    # format -> (relative key like "html/C1.html", bytes, content type)
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


def open_target(target: str, *, out_dir: Path,
                options: Mapping[str, Any] | None = None) -> Publisher:
    """The publisher for `target` (local, local:DIR, s3://, smtp://, smtps://, ses, ses://).

    Nothing is opened yet: use the result as a context manager.
    """
    scheme = scheme_of(target)
    found = [ep for ep in entry_points(group=ENTRY_POINTS) if ep.name == scheme]
    if not found:
        shown = target.split("@")[-1] if "@" in target else target  # never echo userinfo
        raise DeliveryError(
            "unknown delivery target; expected local, local:DIR, s3://bucket/prefix, "
            "smtp://host:port, smtps://host:port, ses or ses://region", shown)
    factory = found[0].load()
    return factory(target.strip(), out_dir=out_dir, options=options)
