"""The print stylesheet of PDF editions and where it goes in a document.

It is made of three parts: the fonts edition ships, declared with @font-face under
the family names templates use (renderers.pdf.fontfaces); the print
rules (templates/print.css, else renderers/print_default.css); and what edition knows
about the edition: paper size, the campaign's display name and the page furniture's
words in the edition's language, as named strings for the margin boxes:
``string(campaign)``, and ``string(page-label) counter(page) string(page-of)
counter(pages)`` ("Page 1 of 3", "Página 1 de 3", "1 / 3").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from renderers.pdf.fontfaces import font_faces

PAGE_SIZES = {"A4": "A4", "Letter": "letter"}
# Beside the other renderers: templates/print.css overrides it, and docs point at it.
DEFAULT_PRINT_CSS = Path(__file__).parents[1] / "print_default.css"

# The page furniture's words by language: (before the page number, between it and the
# page count). Other languages get the language-neutral "1 / 3".
PAGE_WORDS = {
    "en": ("Page ", " of "),
    "es": ("Página ", " de "),
    "pt": ("Página ", " de "),
    "fr": ("Page ", " sur "),
    "de": ("Seite ", " von "),
    "it": ("Pagina ", " di "),
    "nl": ("Pagina ", " van "),
}
NEUTRAL_PAGE_WORDS = ("", " / ")


def _language(locale: str) -> str:
    return re.split(r"[-_]", locale.strip(), maxsplit=1)[0].lower()


def page_words(locale: str | None) -> tuple[str, str]:
    """The furniture's words for an edition's locale (es, es-MX, es_ES: Spanish)."""
    if locale is None:
        return PAGE_WORDS["en"]
    return PAGE_WORDS.get(_language(locale), NEUTRAL_PAGE_WORDS)


def display_name(name: str | Mapping[str, str] | None, locale: str | None) -> str | None:
    """The campaign's display name for an edition: one for all, or per locale (the
    locale, its language, then English, then the first given)."""
    if name is None or isinstance(name, str):
        return name
    keys = [locale, _language(locale)] if locale else []
    for key in [*keys, "en"]:
        if key in name:
            return name[key]
    return next(iter(name.values()), None)


def print_rules(templates_dir: str | Path | None = None) -> tuple[Path, str]:
    """The print rules in force (templates/print.css, else ours) and their text."""
    folder = Path("templates") if templates_dir is None else Path(templates_dir)
    custom = folder / "print.css"
    source = custom if custom.is_file() else DEFAULT_PRINT_CSS
    return source, source.read_text(encoding="utf-8")


def print_stylesheet(
    *,
    page_size: str = "A4",
    campaign_name: str | Mapping[str, str] | None = None,
    templates_dir: str | Path | None = None,
    locale: str | None = None,
) -> str:
    """The print CSS: shipped fonts, the print rules, paper size, name and furniture
    (``campaign_name``: the display name, one or per locale)."""
    if page_size not in PAGE_SIZES:
        raise ValueError(f"page_size must be one of {', '.join(PAGE_SIZES)}, not {page_size!r}")
    css = font_faces() + print_rules(templates_dir)[1]
    css += f"\n@page {{ size: {PAGE_SIZES[page_size]}; }}\n"
    label, between = page_words(locale)
    strings = [f"page-label {_css_string(label)}", f"page-of {_css_string(between)}"]
    if name := display_name(campaign_name, locale):
        strings.insert(0, f"campaign {_css_string(name)}")
    css += f"html {{ string-set: {', '.join(strings)}; }}\n"
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
