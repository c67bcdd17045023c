"""What mail programs do to an e-mail's HTML, checked before a run (preflight warnings).

Gmail clips HTML over 102 KB (and with it a footer's unsubscribe link), images without
alt text show nothing when images are blocked, an <html> without `lang` leaves screen
readers guessing, and without a preheader the inbox preview shows the page's first text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from edition.render.plan import Plan

GMAIL_CLIP = 102 * 1024          # Gmail hides what comes after 102 KB of HTML
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ALT = re.compile(r"\balt\s*=", re.I)
_HTML_LANG = re.compile(r"<html\b[^>]*\blang\s*=\s*[\"']?[A-Za-z]", re.I)
_BODY = re.compile(r"<body\b[^>]*>", re.I)
_PREHEADER = re.compile(r"preheader|display\s*:\s*none|max-height\s*:\s*0|mso-hide", re.I)


def mail_program_problems(plan: Plan, html: str, fields: Mapping[str, Any]) -> list[str]:
    """What mail programs will do to this HTML: clip it, show no alt text, guess a language."""
    problems = []
    data = html.encode("utf-8")
    if len(data) > GMAIL_CLIP:
        problems.append("the HTML is over 102 KB; Gmail clips it and hides the rest (footer, "
                        "unsubscribe link)")
        link = str(fields.get("unsubscribe_url") or plan.campaign.unsubscribe_url or "")
        if link and data.find(link.encode("utf-8")) > GMAIL_CLIP:
            problems.append("the unsubscribe link comes after Gmail's 102 KB clip point: "
                            "its readers will not see it")
    missing_alt = [tag for tag in _IMG.findall(html) if not _ALT.search(tag)]
    if missing_alt:
        problems.append("images without alt text (shown when images are blocked, read by "
                        "screen readers)")
    if not _HTML_LANG.search(html):
        problems.append("<html> has no lang attribute (screen readers and translation guess "
                        "the language)")
    body = _BODY.search(html)
    start = html[body.end():body.end() + 2000] if body else html[:2000]
    if not _PREHEADER.search(start):
        problems.append("no preheader (inbox previews show the first text of the page "
                        "instead)")
    return problems
