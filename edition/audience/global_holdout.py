"""The house's global control group: a share of all customers who never get marketing.

Membership is a hash of the house's salt and the customer id, so the same customers are
held out of every campaign, on every run and machine, whatever order or size the
customer file has; comparing them with everyone else measures what marketing does.
"""

from __future__ import annotations

import hashlib

from edition.outcomes import Reason

_SCALE = float(1 << 64)


def position(salt: str, customer_id: str) -> float:
    """Where a customer falls in [0, 1): uniform, stable, independent of other rows."""
    digest = hashlib.sha256(f"{salt}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def held_out(percent: float, salt: str, customer_id: str) -> bool:
    return percent > 0 and position(salt, customer_id) * 100 < percent


def holdout_reason(percent: float, salt: str, customer_id: str) -> Reason | None:
    if not held_out(percent, salt, customer_id):
        return None
    return Reason("holdout", f"holdout (global, {percent:g}% of customers get no marketing)",
                  "holdout (global)")
