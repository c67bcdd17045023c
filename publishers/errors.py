"""Errors raised by delivery targets.

`DeliveryError` means the target itself is unusable (bad target string, unreachable
server, refused credentials, missing bucket). When `publish` raises it, the delivery in
hand was NOT sent, so the caller may record it as failed and stop the run.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A delivery target is misconfigured or unusable; nothing was sent for this delivery."""

    def __init__(self, message: str, target: str | None = None):
        super().__init__(message)
        self.message = message
        self.target = target

    def __reduce__(self):  # keep `target` across pickling (process pools, Prefect)
        return (type(self), (self.message, self.target))

    def __str__(self) -> str:
        return f"{self.target}: {self.message}" if self.target else self.message
