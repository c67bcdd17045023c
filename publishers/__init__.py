"""Delivery targets: a folder, S3, SMTP or SES, chosen by the target string.

Each target is one module with one Publisher class, registered under its scheme in the
`edition.targets` entry-point group (pyproject.toml); the engine finds it there.
"""

from __future__ import annotations

from edition.errors import DeliveryError
from edition.naming import safe_name
from edition.send.targets import Delivery, Outcome, Publisher, open_target
from publishers.base import BasePublisher

open_publisher = open_target

__all__ = [
    "BasePublisher",
    "Delivery",
    "DeliveryError",
    "Outcome",
    "Publisher",
    "open_publisher",
    "safe_name",
]
