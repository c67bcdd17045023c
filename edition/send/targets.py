"""The interface between the engine and delivery targets (Django's mail backends, smaller).

The engine builds one `Delivery` per customer and hands it to a `Publisher`, which
answers with an `Outcome`. The engine never imports a publisher: a target describes
itself (schemes, options model, channel, whether it needs addresses) and registers in
the `edition.targets` entry-point group (pyproject.toml); content/plugins.py finds it
there by the target's scheme, so the publishers package depends on this module and not
the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from edition.content.plugins import EMAIL, TargetPlugin, known_targets, target_plugin
from edition.errors import DeliveryError


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
    mailing: str | None = None  # which issue of the campaign (design.md, "Sending")
    subject: str | None = None  # the rendered subject, when the run knows it


@dataclass(frozen=True)
class Outcome:
    """What a target did with one delivery."""

    status: Literal["sent", "failed", "unknown"]
    # SMTP: the server's reply text or our Message-ID; SES: MessageId; S3: ETag/VersionId
    provider_id: str | None = None
    reason: str | None = None  # failed/unknown: human-readable, with the server reply
    # failed: the server refused the recipient, `hard` (550 5.1.1: no such address) or
    # `soft`; recorded as a bounce in the house store (edition.send.bounces)
    bounce: str = ""


@runtime_checkable
class Publisher(Protocol):
    """A delivery target; open it once with `with`, then `publish` many deliveries."""

    target: str  # the target string with any secret removed

    def __enter__(self) -> Publisher: ...

    def __exit__(self, *exc: object) -> None: ...

    def publish(self, delivery: Delivery) -> Outcome: ...


def plugin_for(target: str) -> type[TargetPlugin]:
    """The installed target that delivers to `target`, or DeliveryError."""
    plugin = target_plugin(target)
    if plugin is None:
        shown = target.split("@")[-1] if "@" in target else target  # never echo userinfo
        raise DeliveryError(f"unknown delivery target; expected {known_targets()}", shown)
    return plugin


def open_target(target: str, *, out_dir: Path,
                options: Mapping[str, object] | None = None) -> Publisher:
    """The publisher for `target` (local, s3://…, smtp://…, ses, https://…: whatever
    the installed targets take). Nothing is opened yet: use the result as a context
    manager."""
    factory: Any = plugin_for(target)
    publisher: Publisher = factory(target.strip(), out_dir=out_dir, options=options)
    return publisher


def channel_of(target: str) -> str:
    """The send ledger's channel: `email` for every target that mails customers,
    whatever the host or port (design.md, "Sending"); else where the target delivers
    (a folder, a bucket, an endpoint: each its own)."""
    plugin = plugin_for(target)
    return EMAIL if plugin.channel == EMAIL else plugin.place(target.strip())


def needs_email(target: str) -> bool:
    """Are rows without an address rejected when sending to `target`?"""
    return plugin_for(target).needs_email


def mails(target: str) -> bool:
    """Does sending to `target` mail customers (unsubscribe links and headers needed)?"""
    return plugin_for(target).channel == EMAIL
