"""Preview: one customer's selection with reasons, and their edition in one format."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from edition.audience.customers import find_customer
from edition.audience.preferences import RESUBSCRIBED
from edition.audience.selection import OTHER_CAMPAIGNS
from edition.audience.sources import CustomerSource
from edition.errors import RunError
from edition.render.editions import RenderFailure
from edition.render.plan import Plan
from edition.run.context import customers_file
from edition.run.options import RunOptions
from edition.run.pipeline import BatchResult, Pipeline, WorkItem
from edition.run.workers import pipeline_for, plan_for


@dataclass
class PreviewResult:
    """What `edition preview` and the `preview-customer` flow show."""

    customer_id: str
    status: str
    reason: str | None
    campaign: str = ""
    root: Path | None = None
    segments: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    subject: str | None = None      # as the recipient's mail program shows it (decoded)
    slots: list[dict[str, Any]] = field(default_factory=list)
    document: bytes | None = None
    html: str | None = None
    explanation: str = ""
    resubscribed: str | None = None   # "subscribed again by the customer on D (...)"

    def as_dict(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "status": self.status, "reason": self.reason,
                "segments": self.segments, "version": self.version, "subject": self.subject,
                "slots": self.slots, "resubscribed": self.resubscribed}




def preview_customer(campaign: str, customer_id: str, *, customers: str | None = None,
                     fmt: str = "text", as_of: dt.date | None = None,
                     encoding: str | None = None) -> PreviewResult:
    """Select and render one customer's edition as a run would; nothing is written or sent."""
    formats = ("html", "text", "eml") if fmt != "pdf" else ("pdf",)
    options = RunOptions.build(campaign=campaign, customers=customers, formats=formats,
                               as_of=as_of, encoding=encoding).resolved()
    as_of = options.as_of or dt.date.today()
    options = options.replace(as_of=as_of, mailing=as_of.isoformat())
    plan = plan_for(options)
    source = customers_file(options, plan.campaign)
    row = find_customer(source, customer_id, need_email=fmt == "eml",
                        declared=plan.campaign.fields)
    if row is None:
        raise RunError(f"customer {customer_id!r} is not in {source}")
    if row.rejected:
        result = PreviewResult(customer_id, "rejected", str(row.reason), plan.campaign.name,
                               plan.campaign.root)
        result.explanation = f"customer {customer_id}: rejected — {row.reason}"
        return result
    pipeline = pipeline_for(options)  # the run's own steps: audience, suppression, links
    item = pipeline.prepare(row, BatchResult([]))
    segments, missing, selection, version = plan.version_of(item.fields)
    result = PreviewResult(customer_id, "rendered", None, plan.campaign.name, plan.campaign.root,
                           list(segments), missing, version.id)
    chosen_by = item.fields.get("chosen_topics") or {}   # audience/preferences.py
    kept = frozenset(chosen_by.get("topics") or ())
    for slot in selection.slots:
        # modules of other campaigns are not candidates a reader weighs: count them only
        others = [s for s in slot.skipped if s.reason.startswith(OTHER_CAMPAIGNS)]
        result.slots.append({
            "slot": slot.slot, "kind": slot.kind, "count": slot.count,
            "chosen": [{"id": c.module.id, "title": c.module.title, "rank": c.rank,
                        "reason": c.reason + (
                            f" (chosen by the customer on {chosen_by.get('on')})"
                            if c.module.interests & kept else "")} for c in slot.chosen],
            "skipped": [{"id": s.module_id, "reason": s.reason} for s in slot.skipped
                        if not s.reason.startswith(OTHER_CAMPAIGNS)],
            "other_campaigns": len(others),
        })
    result.resubscribed = item.fields.get(RESUBSCRIBED)
    if item.skipped is not None:
        result.status, result.reason = item.skipped[0], str(item.skipped[1])
    elif item.failure is not None:
        result.status, result.reason = "failed", str(item.failure)
    else:
        _render(result, pipeline, item, fmt)
    result.explanation = explain(result, plan, source)
    return result


def _render(result: PreviewResult, pipeline: Pipeline, item: WorkItem, fmt: str) -> None:
    encoder, version = pipeline.encoder, item.version
    assert version is not None
    customer_id = str(item.row.customer_id)
    try:
        # one customer: the whole render is the reference and cheaper than sharing
        rendered = pipeline.plan.renderer.whole(version, item.fields)
        if fmt == "pdf":
            result.document = encoder.pdf_one(rendered, version.locale)
        elif fmt == "eml":
            digest = encoder.content_hash(customer_id, version.digest, rendered)
            result.document = encoder.message(customer_id, item.fields, version.id,
                                              rendered, digest)
        else:
            result.document = (getattr(rendered, fmt) or "").encode("utf-8")
        result.html = rendered.html
        result.subject = _subject(rendered.subject, result.document if fmt == "eml" else None)
    except RenderFailure as exc:
        result.status, result.reason = "failed", str(exc)


def _subject(rendered: str | None, eml: bytes | None) -> str | None:
    """The subject as a mail program shows it: the .eml's Subject header decoded (RFC
    2047 words and folding undone), else the rendered subject line."""
    if eml is not None:
        message = BytesParser(policy=policy.default).parsebytes(eml, headersonly=True)
        if message["Subject"] is not None:
            return str(message["Subject"])
    return rendered


def explain(result: PreviewResult, plan: Plan, source: CustomerSource) -> str:
    """The selection in words, slot by slot."""
    lines = [f"customer {result.customer_id} ({source.name}) — campaign {plan.campaign.name}, "
             f"as of {plan.as_of.isoformat()}",
             f"segments: {', '.join(result.segments) or '(none)'}"]
    for segment, problem in result.missing.items():
        lines.append(f"  rule {segment!r} is false: missing field {problem!r}")
    lines.append(f"version: {result.version}")
    if result.resubscribed:
        lines.append(f"mailed: {result.resubscribed}")
    if result.subject is not None:
        lines.append(f"subject: {result.subject}")
    for slot in result.slots:
        lines.append("")
        lines.append(f"{slot['slot']} ({slot['kind']}, takes {slot['count']}):")
        if not slot["chosen"]:
            lines.append("  (no eligible module)")
        for c in slot["chosen"]:
            lines.append(f"  {c['rank']}. {c['id']} — {c['title']}")
            lines.append(f"     chosen: {c['reason']}")
        if len(slot["chosen"]) < slot["count"]:
            lines.append(f"  only {len(slot['chosen'])} of {slot['count']} filled")
        for s in slot["skipped"]:
            lines.append(f"  - {s['id']}: {s['reason']}")
        if slot.get("other_campaigns"):
            lines.append(f"  ({slot['other_campaigns']} modules belong to other campaigns)")
    if result.status == "failed":
        lines += ["", f"FAILED: {result.reason}"]
    elif result.status in {"excluded", "suppressed"}:
        lines += ["", f"{result.status.upper()}: {result.reason} (nothing is rendered or sent "
                      f"for this customer)"]
    return "\n".join(lines)
