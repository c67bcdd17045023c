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

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_COMMENT = re.compile(r"\{#.*?#\}", re.S)
_TAG = re.compile(r"<[^>]*>")

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


class BodyProblem(ValueError):
    """A body whose Jinja the sanitizer would cut or misplace (a content error)."""


def strip_comments(body: str) -> str:
    """Jinja comments are never published; their line breaks stay, so lines still match."""
    return _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), body)


class Tokens:
    """Inert word tokens standing for a body's Jinja while Markdown and nh3 run.

    The token's prefix is chosen so that it occurs nowhere in the body: no text of the
    body can be mistaken for a token when they are put back.
    """

    def __init__(self, body: str):
        nonce = 0
        while f"edj{nonce}q" in body:
            nonce += 1
        self.prefix = f"edj{nonce}q"
        self.pattern = re.compile(f"{self.prefix}(\\d+)x")
        self.saved: list[str] = []

    def protect(self, body: str) -> str:
        def stash(match: re.Match[str]) -> str:
            self.saved.append(match.group(0))
            return f"{self.prefix}{len(self.saved) - 1}x"

        return _JINJA.sub(stash, body)

    def restore(self, text: str) -> str:
        if not self.saved:
            return text
        return self.pattern.sub(lambda m: self.saved[int(m.group(1))], text)

    def check(self, html: str) -> None:
        """Every expression survived the sanitizer once, and no statement sits in a tag."""
        found = [int(i) for i in self.pattern.findall(html)]
        lost = [self.saved[i] for i in range(len(self.saved)) if i not in found]
        if lost:
            raise BodyProblem(f"the HTML sanitizer removes {_show(lost[0])} (Jinja inside an "
                              f"HTML tag or attribute that is not allowed)")
        for tag in _TAG.findall(html):
            for i in self.pattern.findall(tag):
                if self.saved[int(i)].startswith("{%"):
                    raise BodyProblem(f"{_show(self.saved[int(i)])} sits inside an HTML tag; "
                                      f"use it around whole elements")


def _show(source: str) -> str:
    return source if len(source) <= 60 else source[:57] + "..."


def render_body(body: str) -> tuple[str, str]:
    """Markdown to (sanitized HTML, plain text); Jinja expressions survive untouched.

    The text is wrapped while the expressions are still short tokens, so wrapping never
    splits an expression across lines. Raises BodyProblem when the sanitizer would cut
    or misplace one.
    """
    body = strip_comments(body)
    tokens = Tokens(body)
    protected = tokens.protect(body)
    html = markdown.markdown(protected, extensions=["extra", "sane_lists"], output_format="html")
    clean = nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                      url_schemes={"http", "https", "mailto", "tel"})
    tokens.check(clean)
    return tokens.restore(clean), tokens.restore(html_to_text(clean))
