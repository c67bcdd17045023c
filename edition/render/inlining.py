"""Where a version's holes sit in its HTML, and how they survive CSS inlining.

Inlining parses and re-serializes the document, which changes how text is escaped
(`O&#39;Brien` comes out as `O'Brien`). A version is inlined once with its holes
marked; `finishers` tells, for each hole, how a customer's value must be written so the
result equals inlining that customer's whole document. Wherever that cannot be known
(a value in a tag name, a comment, <style>; CSS that selects on values), the version
is rendered whole per customer instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from edition.render.personal import MARKER, SharedDocument
from renderers.html import inline

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
# what markupsafe.escape never leaves in its output
_NOT_ESCAPED = re.compile(r"[\"']|&(?!(?:amp|lt|gt|#34|#39);)")
_PAGE_TOKEN = re.compile(
    r"<!--.*?(?:-->|$)|<[!?][^>]*>?|</([A-Za-z][^\s/>]*)[^>]*>"
    r"|<([A-Za-z][^\s/>]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>",
    re.S,
)
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_VOID = {"area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img",
         "input", "keygen", "link", "meta", "param", "source", "track", "wbr"}
# Where a parser keeps whitespace apart from other text, or moves text elsewhere (into
# the body, before the table): there the value decides where it ends up.
_MOVES_TEXT = {"html", "head", "table", "thead", "tbody", "tfoot", "tr", "colgroup",
               "select", "frameset", "template"}
_DROPS_FIRST_NEWLINE = {"pre", "textarea", "listing"}


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
    if _NOT_ESCAPED.search(jinja_output):
        return None  # unescaped output (`| safe`): a parser decodes `&copy;`, quotes end values
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


def placement_problem(page: str) -> str | None:
    """Why some hole's place in the parsed page depends on its value, or None."""
    found = placement(page)
    return found[0] if found else None


def placement(page: str) -> tuple[str, int] | None:
    """Why some hole's place in the parsed page depends on its value, and which hole.

    Checked on the template's output before inlining. A value must sit in a quoted
    attribute or in text inside an element that keeps text where it is: not at the top
    level, in <head> or directly in a <table> (whitespace stays, other text moves), not
    in an unquoted attribute (a space ends it), not first in <pre>/<textarea> (a leading
    newline is dropped).
    """
    stack: list[str] = []
    raw_until: str | None = None
    after: str | None = None
    pos = 0
    for match in (*_PAGE_TOKEN.finditer(page), None):
        text = page[pos:match.start() if match else len(page)]
        hole = MARKER.search(text) if not raw_until else None
        if hole:
            if not stack or stack[-1] in _MOVES_TEXT:
                return "a customer value sits where the HTML parser moves text", int(hole[1])
            if after in _DROPS_FIRST_NEWLINE and MARKER.match(text):
                return "a customer value starts a <pre> or <textarea>", int(hole[1])
        if match is None:
            break
        pos, after = match.end(), None
        end, start = (match.group(1) or "").lower(), (match.group(2) or "").lower()
        if raw_until:
            raw_until = None if end == raw_until else raw_until
        elif start:
            hole = MARKER.search(start) or MARKER.search(_QUOTED.sub("", match.group(3)))
            if hole:
                return "a customer value sits in a tag name or an unquoted attribute", int(
                    hole[1])
            if start in _RAW_TEXT:
                raw_until = None if match.group(0).endswith("/>") else start
            elif start not in _VOID and not match.group(0).endswith("/>"):
                stack.append(start)
                after = start
        elif end in stack:
            del stack[len(stack) - 1 - stack[::-1].index(end):]
    return None


def inlined(page: str, where: list[str]) -> SharedDocument | str:
    """A page whose values are marked (0 … n-1), inlined once: its parts, and per value
    how it is written in the inlined document; or why that cannot be done (with the
    template line of the value at fault, `where[i]`)."""
    count = len(where)
    if css_is_value_sensitive(page):
        return "the CSS selects on attribute values or :empty"
    problem = placement(page)
    if problem:
        reason, index = problem
        return f"{reason} ({where[index]})" if 0 <= index < count and where[index] else reason
    result = inline(page)
    found = MARKER.findall(result)
    if sorted(found) != sorted(MARKER.findall(page)):
        return "a customer value sits where CSS inlining drops it"
    finish = finishers(result)
    if finish is None:
        return "a customer value sits in a tag name, comment, <style> or <script>"
    pieces = MARKER.split(result)
    order = [int(i) for i in pieces[1::2]]
    if any(not 0 <= i < count for i in order):
        return "content already holds edition's hole markers"
    return SharedDocument(pieces[0::2], order, finish)


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
