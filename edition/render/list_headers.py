"""The headers that say a message belongs to a mailing: List-Id and Feedback-ID.

Mailbox providers group a sender's mail by these. `List-Id` (RFC 2919) names the list a
marketing message belongs to — one per campaign, `<campaign.list-domain>` — so readers
can filter it and one-click unsubscribes apply to it. `Feedback-ID` (Gmail's feedback
loop) is `campaign:mailing:kind:sender-id`: complaint rates come back per campaign and
mailing. Both are the same for every customer of a mailing: make them once per run.
The per-customer List-Unsubscribe headers come from edition.render.unsubscribe.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edition.content.campaign import Campaign

_NOT_IN_FIELD = re.compile(r"[\s:<>]+")        # Feedback-ID fields are split on ':'
_NOT_IN_LABEL = re.compile(r"[^A-Za-z0-9-]+")


def list_id(campaign: str, list_domain: str, *, configured: str | None = None) -> str:
    """`<weekly-newsletter.acme.example>`, or `<configured>` when the campaign names one."""
    if configured:
        return f"<{configured}>"
    label = _NOT_IN_LABEL.sub("-", campaign).strip("-") or "list"
    return f"<{label}.{list_domain.strip('.').lower()}>"


def feedback_id(campaign: str, mailing: str, kind: str, sender_id: str) -> str:
    """`weekly-newsletter:2026-11-30:marketing:acme.example` (no field may hold ':')."""
    return ":".join(feedback_field(f) for f in (campaign, mailing, kind, sender_id))


def feedback_field(text: str) -> str:
    """One field of a Feedback-ID as the header carries it (`spring:2027` -> `spring-2027`):
    how a send compares its mailing with the one its approved messages name."""
    return _NOT_IN_FIELD.sub("-", text).strip("-") or "-"


def read_feedback_id(value: str) -> tuple[str, str, str, str] | None:
    """(campaign, mailing, kind, sender id) of a Feedback-ID header, or None if it is not
    one of ours."""
    fields = value.strip().split(":")
    return (fields[0], fields[1], fields[2], fields[3]) if len(fields) == 4 else None


def mailing_headers(campaign: Campaign, mailing: str) -> dict[str, str]:
    """List-Id (marketing only: a bill is not a list) and Feedback-ID for one mailing."""
    headers = {}
    if campaign.kind != "transactional":
        headers["List-Id"] = list_id(campaign.name, campaign.sender_domain,
                                     configured=campaign.list_id)
    headers["Feedback-ID"] = feedback_id(campaign.name, mailing, campaign.kind,
                                         campaign.feedback_id or campaign.sender_domain)
    return headers


__all__ = ["feedback_field", "feedback_id", "list_id", "mailing_headers", "read_feedback_id"]
