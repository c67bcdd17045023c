"""Plain-text editions: the campaign's text template, or text derived from the HTML."""

from __future__ import annotations

from edition.markup import html_to_text


def from_html(html: str) -> str:
    """Readable text for campaigns without a text template."""
    return html_to_text(html)
