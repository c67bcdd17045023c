"""Bounces: which are hard (an enhanced status code, RFC 3463, or SES's bounce type in;
`hard` or `soft` out), and the refusals an SMTP server gives at send time, recorded as
bounces in the house store (a 550 5.1.1 is a hard bounce at once: listmonk #2623).

The ingester of returned mail (edition.feedback.events) classifies with the same rules.

Not every permanent failure is about the address (listmonk treats all bounces alike,
its #489): a 5.7.1 policy rejection or a 5.2.2 full mailbox says nothing about whether
the address exists, and suppressing on it would drop good customers after one bad day
at their provider. So only what says "this address does not exist or takes no mail" is
hard; every other failure, permanent or not, is soft and suppresses only after
`SoftBounceRule.count` of them within `SoftBounceRule.days`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# permanent failures that are about the address itself (RFC 3463 subjects):
# X.1.* addressing (bad mailbox, bad domain, null MX), X.2.1 mailbox disabled,
# X.4.4 unable to route (no such domain), X.0.0 "permanent, unspecified" (what Postfix
# and Exim say for "user unknown" when they say nothing else)
_HARD = re.compile(r"^5\.(1\.\d+|2\.1|4\.4|0\.0)$")


def status_code(text: str | None) -> str:
    """The first enhanced status code in a reply or field (`550 5.1.1 ...` -> `5.1.1`)."""
    found = _STATUS.search(text or "")
    return ".".join(found.groups()) if found else ""


def severity(status: str, *, permanent: bool | None = None) -> str:
    """`hard` or `soft` for an enhanced status code (and whether the reporter called the
    failure permanent, for a bounce that carries no code)."""
    if status:
        return "hard" if _HARD.match(status) else "soft"
    return "hard" if permanent else "soft"


def smtp_severity(code: int, text: str) -> str:
    """A send-time SMTP reply: `hard` for a 5xx whose enhanced code says the address is
    bad (550 5.1.1), `soft` for other refusals, "" for what is not a refusal."""
    if not 400 <= code < 600:
        return ""
    status = status_code(text) or ("5.0.0" if code in (550, 551, 553) and
                                   _NO_SUCH_USER.search(text) else "")
    return severity(status) if code >= 500 else "soft"


# a 550 without an enhanced code: the words servers use for an unknown mailbox
_NO_SUCH_USER = re.compile(r"(?i)(user|mailbox|recipient|address)\s+(unknown|not found|"
                           r"does not exist|doesn't exist|unavailable)|no such (user|mailbox)")


def ses_severity(bounce_type: str) -> str:
    """SES's bounceType: Permanent is hard; Transient and Undetermined are soft."""
    return "hard" if bounce_type.strip().lower() == "permanent" else "soft"


@dataclass(frozen=True)
class SoftBounceRule:
    """Suppress after `count` soft bounces within `days` days (the campaign's
    `suppression.soft_bounces`; 3 in 14 unless it says otherwise)."""

    count: int = 3
    days: int = 14

    def words(self) -> str:
        return f"{self.count} in {self.days} days"

    def reached(self, events: Any, event: Any) -> bool:
        """Is this soft bounce (an edition.store.events.Event, recorded in `events`) the
        `count`-th of its recipient within `days` days up to it?"""
        when = dt.datetime.fromisoformat(event.occurred_at.replace("Z", "+00:00"))
        since = (when - dt.timedelta(days=self.days)).isoformat().replace("+00:00", "Z")
        recent = [e for e in events.soft_bounces(customer_id=event.customer_id,
                                                 recipient_hash=event.recipient_hash,
                                                 since=since)
                  if e.occurred_at <= event.occurred_at]
        return len(recent) >= self.count


class SendBounces:
    """Records a target's refusals of one mailing in the house store: each an event (the
    sender health counts it), a hard one also a suppression (`*`: no campaign mails the
    address again), a soft one once the campaign's rule is reached (3 within 14 days).
    Opened on the first refusal; pickles as its location."""

    def __init__(self, location: str, campaign: str, mailing: str,
                 rule: SoftBounceRule | None = None):
        self.location = location
        self.campaign = campaign
        self.mailing = mailing
        self.rule = rule or SoftBounceRule()
        self._stores: tuple[Any, Any] | None = None

    def __reduce__(self) -> tuple[object, ...]:
        return (SendBounces, (self.location, self.campaign, self.mailing, self.rule))

    def record(self, *, customer_id: str, recipient: str | None, level: str,
               reply: str) -> None:
        from edition.addresses import address_hash
        from edition.audience.suppression import event_source
        from edition.store.events import Event, EventStore, utc_text
        from edition.store.suppressions import SuppressionStore

        if self._stores is None:
            self._stores = (EventStore(self.location), SuppressionStore(self.location))
        events, suppressions = self._stores
        code = status_code(reply)
        hashed = address_hash(recipient)
        now = dt.datetime.now(dt.UTC)
        event = Event(
            event_id=f"smtp:{self.campaign}:{self.mailing}:{customer_id}", kind="bounce",
            occurred_at=utc_text(now), source="smtp", recipient_hash=hashed, severity=level,
            status=code, diagnostic=" ".join(reply.split()), customer_id=customer_id,
            campaign=self.campaign, mailing=self.mailing)
        if not events.record(event):
            return     # this mailing's refusal of this customer is known already
        if level == "hard":
            detail = ", ".join(p for p in ("hard", code) if p)
        elif self.rule.reached(events, event):
            detail = f"soft, {self.rule.words()}"
        else:
            return
        suppressions.record(self.campaign, customer_id, hashed, event_source(detail, "smtp"),
                            kind="bounced", at=now)

    def close(self) -> None:
        if self._stores is not None:
            for store in self._stores:
                store.close()
            self._stores = None


__all__ = ["SendBounces", "SoftBounceRule", "ses_severity", "severity", "smtp_severity",
           "status_code"]
