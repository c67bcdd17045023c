"""HTML editions for email clients: the template's <style> inlined with css-inline.

Inlining parses and re-serializes the document, which changes how text is escaped
(`O&#39;Brien` comes out as `O'Brien`). A version is inlined once with its holes
marked; `finishers` tells, for each hole, how a customer's value must be written so the
result equals inlining that customer's whole document.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import css_inline

from edition.personal import MARKER

_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

# CSS that could style a hole differently than the customer's value (":empty", attribute
# selectors); with it the version is rendered whole per customer.
_VALUE_SENSITIVE_CSS = re.compile(r"\[|:empty|:blank|:has\(|:contains")
_STYLE = re.compile(r"<style[^>]*>(.*?)</style\s*>", re.S | re.I)
_RAW_TEXT = {"style", "script", "xmp", "iframe", "noembed", "noframes", "plaintext", "noscript"}
_TOKEN = re.compile(
    r"<!--.*?-->|<![^>]*>|</[^>]*>|<([A-Za-z][^\s/>]*)((?:\s+[^\s=/>]+(?:=\"[^\"]*\")?)*)\s*/?>",
    re.S,
)
_ATTR_VALUE = re.compile(r"=\"[^\"]*\"")
_UNSAFE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def inline(html: str) -> str:
    """Inline the document's <style> rules into style attributes."""
    return _INLINER.inline(html)


def css_is_value_sensitive(html: str) -> bool:
    """Does the page's CSS select on content or attribute values?"""
    return any(_VALUE_SENSITIVE_CSS.search(css) for css in _STYLE.findall(html))


def _unescape(jinja_output: str) -> str:
    # exact inverse of markupsafe.escape
    return (jinja_output.replace("&lt;", "<").replace("&gt;", ">").replace("&#34;", '"')
            .replace("&#39;", "'").replace("&amp;", "&"))


def _parsed(jinja_output: str) -> str | None:
    """The text an HTML parser would read from escaped Jinja output (None: can't say)."""
    if "<" in jinja_output or ">" in jinja_output:
        return None
    value = _unescape(jinja_output)
    if _UNSAFE_CONTROL.search(value):
        return None
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _as_text(jinja_output: str) -> str | None:
    value = _parsed(jinja_output)
    if value is None:
        return None
    return (value.replace("&", "&amp;").replace("\u00a0", "&nbsp;")
            .replace("<", "&lt;").replace(">", "&gt;"))


def _as_attribute(jinja_output: str) -> str | None:
    value = _parsed(jinja_output)
    if value is None:
        return None
    return value.replace("&", "&amp;").replace("\u00a0", "&nbsp;").replace('"', "&quot;")


def finishers(inlined: str) -> list[Callable[[str], str | None]] | None:
    """Per hole (in order), how its Jinja output is written in the inlined document.

    None when a hole sits where its value cannot be predicted (a tag or attribute
    name, a comment, <style> or <script>): the version is then rendered whole.
    """
    raw_until: str | None = None
    pos = 0
    for match in _TOKEN.finditer(inlined):
        text = inlined[pos:match.start()]
        if raw_until and MARKER.search(text):
            return None
        token = match.group(0)
        if raw_until:
            if token.lower().startswith(f"</{raw_until}"):
                raw_until = None
            elif MARKER.search(token):
                return None
            pos = match.end()
            continue
        if MARKER.search(token):
            if not match.group(1):
                return None  # inside a comment, doctype or end tag
            outside = _ATTR_VALUE.sub("", token)
            if MARKER.search(outside):
                return None  # in a tag or attribute name
        if match.group(1) and match.group(1).lower() in _RAW_TEXT and not token.endswith("/>"):
            raw_until = match.group(1).lower()
        pos = match.end()
    tail = inlined[pos:]
    if MARKER.search(tail) and raw_until:
        return None
    # Order holes by position; attribute holes are those inside start tags.
    result: list[Callable[[str], str | None]] = []
    in_tag_spans = [(m.start(), m.end()) for m in _TOKEN.finditer(inlined) if m.group(1)]
    span_index = 0
    for hole in MARKER.finditer(inlined):
        while span_index < len(in_tag_spans) and in_tag_spans[span_index][1] <= hole.start():
            span_index += 1
        inside = (span_index < len(in_tag_spans)
                  and in_tag_spans[span_index][0] <= hole.start() < in_tag_spans[span_index][1])
        result.append(_as_attribute if inside else _as_text)
    return result
