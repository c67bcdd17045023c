"""The print stylesheet of PDF editions and where it goes in a document."""

from __future__ import annotations

import re
from pathlib import Path

PAGE_SIZES = {"A4": "A4", "Letter": "letter"}
# Beside the other renderers: templates/print.css overrides it, and docs point at it.
DEFAULT_PRINT_CSS = Path(__file__).parents[1] / "print_default.css"


def print_stylesheet(
    *,
    page_size: str = "A4",
    campaign_name: str | None = None,
    templates_dir: str | Path | None = None,
) -> str:
    """The print CSS: templates/print.css if present, else ours; plus size and name."""
    if page_size not in PAGE_SIZES:
        raise ValueError(f"page_size must be one of {', '.join(PAGE_SIZES)}, not {page_size!r}")
    folder = Path("templates") if templates_dir is None else Path(templates_dir)
    custom = folder / "print.css"
    css = (custom if custom.is_file() else DEFAULT_PRINT_CSS).read_text(encoding="utf-8")
    css += f"\n@page {{ size: {PAGE_SIZES[page_size]}; }}\n"
    if campaign_name:
        css += f"html {{ string-set: campaign {_css_string(campaign_name)}; }}\n"
    return css


def _css_string(text: str) -> str:
    # Escaping "<" keeps a name like "</style>" from closing the style element.
    escaped = "".join(
        f"\\{ord(char):x} " if char in '\\"<>\n\r\f' or ord(char) < 32 else char
        for char in text
    )
    return f'"{escaped}"'


_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)
_BODY_START = re.compile(r"<body[\s>]", re.IGNORECASE)


def with_print_css(html: str, css: str) -> str:
    """Insert the print CSS as the document's last author stylesheet."""
    # As an author sheet after the template's own <style> it wins ties, like a browser's
    # print stylesheet; user-origin sheets would lose to every template rule.
    style = f"<style>{css}</style>"
    for pattern in (_HEAD_END, _BODY_START):
        if match := pattern.search(html):
            return html[: match.start()] + style + html[match.start() :]
    return style + html
