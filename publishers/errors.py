"""`DeliveryError` (from edition.errors): the target itself is unusable, and the delivery
in hand was NOT sent, so the caller may record it as failed and stop the run."""

from __future__ import annotations

from edition.errors import DeliveryError

__all__ = ["DeliveryError"]
