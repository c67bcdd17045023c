"""Where a version's holes sit in its HTML, and how they survive CSS inlining.

Inlining parses and re-serializes the document, which changes how text is escaped
(`O&#39;Brien` comes out as `O'Brien`). A version is inlined once with its holes
marked; `finishers` tells, for each hole, how a customer's value must be written so the
result equals inlining that customer's whole document. Wherever that cannot be known
(a value in a tag name, a comment, <style>; CSS that selects on values), the version
is rendered whole per customer instead.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from edition.render.skeleton import CLOSE, MARKER, OPEN, PRIVATE, Layout, SharedDocument
from renderers.html import inline

# CSS that could style a hole differently by the customer's value: ":empty" and the like
# whatever the hole, and any attribute selector on `style` that holds a hole: with it the
# version is rendered whole per customer. Class and id selectors, and attribute selectors
# with a value (Foundation's `:not([class*=large-offset])`), when a hole sits in that
# attribute, are checked per customer (`_guarded`). An attribute selector without a
# value (`a[x-apple-data-detectors]`) asks only whether the attribute is there.
_CONTENT_SENSITIVE_CSS = re.compile(r":empty|:blank|:has\(|:contains")
_VALUE_SELECTOR = re.compile(
    r"\[\s*(?:[\w-]*\|)?([\w-]+)\s*[~|^$*]?=\s*(\"[^\"]*\"|'[^']*'|[^\]\s]+)")
_SELECTED_BY_NAME = {"style"}  # merged with the rules' declarations
# class and id holes are fine as long as a customer's value names no class or id the CSS
# selects on: checked per customer (`_guarded`), a customer whose value does is inlined alone
_SELECTED_TOKENS = {"class": re.compile(r"\.(-?[_a-zA-Z][\w-]*)"),
                    "id": re.compile(r"#(-?[_a-zA-Z][\w-]*)")}
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_OPEN_ATTRIBUTE = re.compile(r"([^\s\"'=<>/]+)=\"[^\"]*$")
_HOLE_ATTRIBUTE = re.compile(r"([^\s\"'=<>/]+)\s*=\s*(\"[^\"]*\"|'[^']*')")
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
    """Could the page's CSS style a hole differently by its value?

    `html` is the page with its holes marked. Cerberus, Foundation and Mailchimp's
    layouts all carry attribute selectors (`a[x-apple-data-detectors]`,
    `div[style*="margin: 16px 0"]`, `th.columns:not([class*=large-offset])`): they decide
    nothing about a customer's id in an href. A hole in `style` is merged with the rules'
    declarations, so it always counts; a hole in another attribute a selector compares
    is checked per customer (`finishers`).
    """
    styles = _STYLE.findall(html)
    if not styles:
        return False
    if any(_CONTENT_SENSITIVE_CSS.search(css) for css in styles):
        return True
    return bool(hole_attributes(html) & _SELECTED_BY_NAME)


def hole_attributes(html: str) -> set[str]:
    """The names (lower case) of the attributes whose values hold a hole."""
    held: set[str] = set()
    for match in _PAGE_TOKEN.finditer(html):
        if match.group(2) and MARKER.search(match.group(3) or ""):
            held.update(name.lower() for name, value in _HOLE_ATTRIBUTE.findall(match.group(3))
                        if MARKER.search(value))
    return held


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
        return ("the CSS selects on what a customer writes (:empty, or an attribute a value "
                "sits in)")
    problem = placement(page)
    if problem:
        reason, index = problem
        return f"{reason} ({where[index]})" if 0 <= index < count and where[index] else reason
    result = inline(page)
    found = MARKER.findall(result)
    if sorted(found) != sorted(MARKER.findall(page)):
        return "a customer value sits where CSS inlining drops it"
    finish = finishers(result, selected_tokens(page), selected_values(page))
    if finish is None:
        return "a customer value sits in a tag name, comment, <style> or <script>"
    pieces = MARKER.split(result)
    order = [int(i) for i in pieces[1::2]]
    if any(not 0 <= i < count for i in order):
        return "content already holds edition's hole markers"
    return SharedDocument(pieces[0::2], order, finish)


def selected_tokens(html: str) -> dict[str, frozenset[str]]:
    """The class names and ids the page's CSS selects on (`.vip`, `#hero`)."""
    css = _selectors(html)
    return {attribute: frozenset(pattern.findall(css))
            for attribute, pattern in _SELECTED_TOKENS.items()}


def selected_values(html: str) -> dict[str, frozenset[str]]:
    """Per attribute (lower case), the values the CSS's attribute selectors compare it
    with (`large-offset` in `[class*=large-offset]`), lower case."""
    found: dict[str, set[str]] = {}
    for name, value in _VALUE_SELECTOR.findall(_selectors(html)):
        value = value[1:-1] if value[:1] in "\"'" else value
        found.setdefault(name.lower(), set()).add(value.lower())
    return {name: frozenset(values) for name, values in found.items()}


def _selectors(html: str) -> str:
    css = _COMMENT.sub("", " ".join(_STYLE.findall(html)))
    return re.sub(r"\{[^{}]*\}", "{}", css)  # selectors only, not `0.5em` or `#fff`


def _guarded(selected: frozenset[str], left: str, right: str,
             compared: frozenset[str] = frozenset()) -> Callable[[str], str | None]:
    """An attribute finisher that gives up (None: this customer is inlined alone) when a
    class or id the CSS selects on is among the words the value makes with the text
    touching it (`left`, `right`: `points` in `class="points{{ x }}"`), or when a value an
    attribute selector compares with (`compared`) occurs in those words. In the skeleton
    those words hold the marker and match nothing; for this customer they must not either.
    (A selector's match that touches the value lies within those words, whatever its
    operator, unless the compared value holds a space: then the customer is inlined alone.)
    """
    def finish(jinja_output: str) -> str | None:
        value = _parsed(jinja_output)
        if value is None or selected.intersection((left + value + right).split()):
            return None
        if compared:
            words = (left + value + right).lower()
            if any(c in words or c != "".join(c.split()) for c in compared if c):
                return None
        return _as_attribute(jinja_output)
    return finish


def _touching(tag: str, start: int, end: int) -> tuple[str, str] | None:
    """The attribute text touching a hole at tag[start:end] up to whitespace or the quote
    on each side; None if another hole touches it too (then the customer is inlined alone)."""
    before = tag[:start]
    after = tag[end:]
    left = re.split(r"[\s\"]", before)[-1]
    right = re.split(r"[\s\"]", after)[0]
    if MARKER.search(left) or MARKER.search(right) or OPEN in left + right:
        return None
    return html.unescape(left), html.unescape(right)


def finishers(inlined: str, selected: dict[str, frozenset[str]] | None = None,
              compared: dict[str, frozenset[str]] | None = None,
              ) -> list[Callable[[str], str | None]] | None:
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
        if not inside:
            result.append(_as_text)
            continue
        tag_start, tag_end = in_tag_spans[span_index]
        name = _OPEN_ATTRIBUTE.search(inlined[tag_start:hole.start()])
        attribute = name[1].lower() if name else ""
        if attribute not in _SELECTED_TOKENS and attribute not in (compared or {}):
            result.append(_as_attribute)
            continue
        touching = _touching(inlined[tag_start:tag_end], hole.start() - tag_start,
                             hole.end() - tag_start)
        if touching is None:
            result.append(lambda _: None)
        else:
            result.append(_guarded((selected or {}).get(attribute, frozenset()), *touching,
                                   (compared or {}).get(attribute, frozenset())))
    return result


def shape_inlined(layout: Layout, page: str) -> SharedDocument | str:
    """A shape's inlined skeleton, checked against inlining this customer's page."""
    marked = [layout.statics[0]]
    for i, static in enumerate(layout.statics[1:]):
        marked += (f"{OPEN}{i}{CLOSE}", static)
    if any(PRIVATE.search(static) for static in layout.statics):
        return "content already holds edition's hole markers"
    doc = inlined("".join(marked), layout.where)
    if isinstance(doc, str):
        return doc
    filled = doc.fill(layout.values)
    if filled is not None and filled != inline(page):
        return "self-check: shared and whole renders differ"
    return doc
