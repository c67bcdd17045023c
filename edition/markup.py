"""Module bodies: Markdown to sanitized HTML and readable plain text, once per module.

Bodies may contain Jinja expressions for the personal layer (`{{ customer.first_name }}`).
They are set aside before Markdown and nh3 see the body, so neither can mangle them,
and put back afterwards; the result is a small template rendered per customer.
"""

from __future__ import annotations

import re

import markdown
import nh3

from renderers.text import html_to_text

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_TOKEN = "edjinja{}x"
_TOKEN_RE = re.compile(r"edjinja(\d+)x")

# Tags a module author may use; everything else (script, style, iframe, on* handlers)
# is removed by nh3.
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s",
    "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr",
    "u", "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "*": {"class"},
}


def protect(body: str) -> tuple[str, list[str]]:
    """Replace Jinja expressions with inert word tokens."""
    saved: list[str] = []

    def stash(match: re.Match[str]) -> str:
        saved.append(match.group(0))
        return _TOKEN.format(len(saved) - 1)

    return _JINJA.sub(stash, body), saved


def restore(text: str, saved: list[str]) -> str:
    """Put the Jinja expressions back where their tokens are."""
    if not saved:
        return text
    return _TOKEN_RE.sub(lambda m: saved[int(m.group(1))], text)


def render_body(body: str) -> tuple[str, str]:
    """Markdown to (sanitized HTML, plain text); Jinja expressions survive untouched.

    The text is wrapped while the expressions are still short tokens, so wrapping never
    splits an expression across lines.
    """
    protected, saved = protect(body)
    html = markdown.markdown(protected, extensions=["extra", "sane_lists"], output_format="html")
    clean = nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                      url_schemes={"http", "https", "mailto", "tel"})
    return restore(clean, saved), restore(html_to_text(clean), saved)
