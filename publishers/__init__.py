"""Delivery targets: a folder, S3, SMTP or SES, chosen by the target string."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from publishers.base import BasePublisher, Delivery, Outcome, Publisher, safe_name
from publishers.errors import DeliveryError

__all__ = [
    "BasePublisher",
    "Delivery",
    "DeliveryError",
    "Outcome",
    "Publisher",
    "open_publisher",
    "safe_name",
]


def open_publisher(
    target: str, *, out_dir: Path, options: Mapping[str, Any] | None = None
) -> Publisher:
    """The publisher for `target` (local, local:DIR, s3://, smtp://, smtps://, ses, ses://).

    Nothing is opened yet: use the result as a context manager.
    """
    target = (target or "").strip()
    scheme = target.split(":", 1)[0].lower() if ":" in target else target.lower()
    # Imported lazily so that choosing SMTP does not import boto3, and the other way round.
    if scheme == "local":
        from publishers.local import LocalPublisher

        return LocalPublisher(target, out_dir=out_dir, options=options)
    if scheme == "s3":
        from publishers.s3 import S3Publisher

        return S3Publisher(target, out_dir=out_dir, options=options)
    if scheme in {"smtp", "smtps"}:
        from publishers.smtp import SmtpPublisher

        return SmtpPublisher(target, out_dir=out_dir, options=options)
    if scheme == "ses":
        from publishers.ses import SesPublisher

        return SesPublisher(target, out_dir=out_dir, options=options)
    shown = target.split("@")[-1] if "@" in target else target  # never echo userinfo
    raise DeliveryError(
        "unknown delivery target; expected local, local:DIR, s3://bucket/prefix, "
        "smtp://host:port, smtps://host:port, ses or ses://region",
        shown,
    )
