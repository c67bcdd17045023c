"""Plain-text editions: readable text from HTML (headings underlined, lists dashed, links
spelled out), for module bodies and for campaigns without a text template.

Hand-written rather than html2text/inscriptis: the text editions are golden output
(headings underlined, `> ` quotes, links as `<url>`). A campaign without a text template
converts its page per customer; `TextShape` converts a page's template text once (the
customer's values marked), so per customer only the blocks holding values are made.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser


def from_html(html: str) -> str:
    """Readable text for campaigns without a text template."""
    return html_to_text(html)


def html_to_text(html: str, width: int = 72) -> str:
    """Readable plain text from HTML: headings underlined, lists dashed, links spelled out."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return parser.result(width)


_BLOCKS = {"p", "div", "ul", "ol", "table", "tr", "blockquote", "pre", "hr", "dl",
           "h1", "h2", "h3", "h4", "h5", "h6", "li", "dt", "dd", "br", "section",
           "article", "header", "footer", "body", "html"}
_SKIP = {"script", "style", "head", "title"}


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []   # (kind, text)
        self.current: list[str] = []
        self.kind = "p"
        self.skip = 0
        self.quote = 0
        self.list_stack: list[list[int | str]] = []
        self.link: str | None = None
        self.link_text_start = 0
        self.pre = 0

    def _flush(self) -> None:
        text = "".join(self.current)
        if not self.pre:
            text = " ".join(text.split())
        if text.strip():
            prefix = "> " * self.quote
            self.blocks.append((self.kind, prefix + text if self.kind != "pre" else text))
        self.current = []
        self.kind = "p"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if tag in _BLOCKS:
            self._flush()
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            self.kind = tag
        elif tag == "blockquote":
            self.quote += 1
        elif tag == "pre":
            self.pre += 1
            self.kind = "pre"
        elif tag in {"ul", "ol"}:
            self.list_stack.append([tag, 0])
        elif tag == "li":
            marker = "-"
            if self.list_stack and self.list_stack[-1][0] == "ol":
                self.list_stack[-1][1] = int(self.list_stack[-1][1]) + 1
                marker = f"{self.list_stack[-1][1]}."
            indent = "  " * max(len(self.list_stack) - 1, 0)
            self.current.append(f"{indent}{marker} ")
            self.kind = "li"
        elif tag == "a":
            self.link = dict(attrs).get("href")
            self._open_link()
        elif tag == "hr":
            self.blocks.append(("hr", "-" * 20))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(self.skip - 1, 0)
            return
        if tag == "a" and self.link:
            self._close_link(self.link)
            self.link = None
        if tag in _BLOCKS:
            self._flush()
        if tag == "blockquote":
            self.quote = max(self.quote - 1, 0)
        elif tag == "pre":
            self.pre = max(self.pre - 1, 0)
        elif tag in {"ul", "ol"} and self.list_stack:
            self.list_stack.pop()

    def _open_link(self) -> None:
        self.link_text_start = len("".join(self.current))

    def _close_link(self, link: str) -> None:
        label = "".join(self.current)[self.link_text_start:].strip()
        if link not in label and not link.startswith("#"):
            self.current.append(f" <{link}>")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.current.append(data)

    def result(self, width: int) -> str:
        self._flush()
        return _joined([(kind, _formatted(kind, text, width)) for kind, text in self.blocks])


# What textwrap rewrites in a line (its whitespace other than the space)
_WRAPPED_SPACE = re.compile("[\t\n\x0b\x0c\r]")


def _fill(text: str, width: int, indent: str) -> str:
    """textwrap.fill as the text edition calls it. A line that fits, with nothing for
    textwrap to replace or drop, is that line (measured: most blocks of a page are short,
    and textwrap costs ~60 µs each)."""
    if len(text) <= width and not text[-1:].isspace() and not _WRAPPED_SPACE.search(text):
        return text
    return textwrap.fill(text, width, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)


def _formatted(kind: str, text: str, width: int) -> str:
    """One block as the text edition prints it."""
    if kind in {"h1", "h2"}:
        return f"{text}\n{('=' if kind == 'h1' else '-') * len(text)}"
    if kind.startswith("h"):
        return text.upper() if kind == "h3" else text
    if kind in {"pre", "hr"}:
        return text
    if kind == "li":
        return _fill(text, width, " " * (len(text) - len(text.lstrip()) + 2))
    depth = 0
    while text.startswith("> " * (depth + 1)):
        depth += 1
    return _fill(text, width, "> " * depth)


def _joined(blocks: Sequence[tuple[str, str]]) -> str:
    """The formatted blocks as one text: list items on consecutive lines, everything else
    a paragraph."""
    joined: list[str] = []
    for i, (kind, block) in enumerate(blocks):
        sep = "\n" if i and kind == "li" and blocks[i - 1][0] == "li" else "\n\n"
        joined.append((sep if i else "") + block)
    return "".join(joined).strip() + "\n" if joined else ""


# -- a page's text converted once per shape ------------------------------------------

# Where a customer's value stands in the template text while it is converted once. The
# values and the template text never hold these (private-use) characters: checked.
_OPEN, _CLOSE = "\ue010", "\ue011"
_MARK = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
_PRIVATE = re.compile("[\ue000-\uf8ff]")
# Characters only, as an escaped value is: no tag, quote or bare `&` (whatever it
# stands beside, a value like this is read as its own text: data, or inside a quoted
# attribute value)
_NOT_PLAIN = re.compile(r"[<>\"']|&(?!(?:amp|lt|gt|#34|#39);)")
# Template text just before a value that the value could complete into markup or a
# character reference (`<` + `p>`, `&am` + `p;`): such a shape is converted per customer
_OPENS_BEFORE = re.compile(r"(?:<[/!?]?|&#?\w*)\Z")


class NotConvertible(Exception):
    """A value stands where the parse would depend on it (a tag's name, a comment...)."""


@dataclass(frozen=True)
class _Link:
    """A link's ` <url>` after its label, decided per customer: url or label hold values."""

    href: str
    before: tuple[str | _Link, ...]   # the block's text when the link opened
    after: tuple[str | _Link, ...]    # ... and when it closed

    def text(self, values: Sequence[str]) -> str:
        link = _filled(self.href, values)
        if not link:
            return ""
        label = _joined_tokens(self.after, values)[
            len(_joined_tokens(self.before, values)):].strip()
        return f" <{link}>" if link not in label and not link.startswith("#") else ""


def _filled(text: str, values: Sequence[str]) -> str:
    return _MARK.sub(lambda m: values[int(m.group(1))], text) if _OPEN in text else text


def _joined_tokens(tokens: Sequence[str | _Link], values: Sequence[str]) -> str:
    return "".join(t.text(values) if isinstance(t, _Link) else _filled(t, values)
                   for t in tokens)


def _variable(tokens: Sequence[str | _Link]) -> bool:
    return any(isinstance(t, _Link) or _OPEN in t for t in tokens)


@dataclass(frozen=True)
class _Block:
    """A block whose text holds values: collapsed, kept or dropped, formatted per customer."""

    kind: str
    pre: bool
    prefix: str
    tokens: tuple[str | _Link, ...]

    def text(self, values: Sequence[str]) -> str | None:
        """The block's text as `_TextParser._flush` keeps it, or None when it drops it."""
        text = _joined_tokens(self.tokens, values)
        if not self.pre:
            text = " ".join(text.split())
        if not text.strip():
            return None
        return self.prefix + text if self.kind != "pre" else text


class _ShapeParser(_TextParser):
    """`_TextParser` over a page with marked values: blocks and links holding a value are
    kept as tokens, filled per customer with exactly what `_TextParser` does with them."""

    def __init__(self) -> None:
        super().__init__()
        self.link_before: tuple[str | _Link, ...] = ()

    def _flush(self) -> None:
        if not _variable(self.current):
            super()._flush()
            return
        prefix = "> " * self.quote
        self.blocks.append(_Block(self.kind, bool(self.pre), prefix,  # type: ignore[arg-type]
                                  tuple(self.current)))
        self.current = []
        self.kind = "p"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text() or ""
        if _OPEN in raw and not _only_in_quoted_values(raw):
            raise NotConvertible(f"a value in the <{tag}> tag outside a quoted attribute")
        super().handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if _OPEN in tag:
            raise NotConvertible("a value in an end tag's name")
        super().handle_endtag(tag)

    def _open_link(self) -> None:
        self.link_before = tuple(self.current)

    def _close_link(self, link: str) -> None:
        after = tuple(self.current)
        if _OPEN in link or _variable(after) or _variable(self.link_before):
            self.current.append(_Link(link, self.link_before, after))  # type: ignore[arg-type]
            return
        label = "".join(after)[len("".join(self.link_before)):]  # type: ignore[arg-type]
        if link not in label.strip() and not link.startswith("#"):
            self.current.append(f" <{link}>")

    def _refuse(self, data: str) -> None:
        if _OPEN in data:   # the value could end or reopen it: `--` + `>`
            raise NotConvertible("a value in a comment or declaration")

    handle_comment = handle_decl = handle_pi = unknown_decl = _refuse


def _only_in_quoted_values(raw: str) -> bool:
    """Every value of a start tag's source stands inside a quoted attribute value (the
    only place a plain value cannot change how the tag is read)."""
    quote = ""
    for i, char in enumerate(raw):
        if quote:
            if char == quote:
                quote = ""
        elif char == _OPEN:
            return False
        elif char in "\"'":
            if not raw[:i].rstrip().endswith("="):
                return False   # a stray quote: not read the way this scan reads it
            quote = char
    return True


class TextShape:
    """A page's text converted once for every customer of one shape (the page's template
    text fixed, the customer's values between): per customer only the blocks holding a
    value are filled and formatted. The text equals `html_to_text` of that customer's
    page, by construction; `fill` says None for values it cannot place that way."""

    def __init__(self, statics: Sequence[str], width: int = 72) -> None:
        """Raises NotConvertible when a value stands where it could change the parse."""
        if any(_PRIVATE.search(s) for s in statics):
            raise NotConvertible("the template text holds private-use characters")
        if any(_OPENS_BEFORE.search(s) for s in statics[:-1]):
            raise NotConvertible("a value could complete a tag or a character reference")
        page = [statics[0]]
        for i, static in enumerate(statics[1:]):
            page += (f"{_OPEN}{i}{_CLOSE}", static)
        parser = _ShapeParser()
        parser.feed("".join(page))
        parser.close()
        parser._flush()
        self.width = width
        self.values = len(statics) - 1
        # per block: (kind, formatted text), or the block filled per customer
        self.blocks: list[tuple[str, str] | _Block] = [
            b if isinstance(b, _Block) else (b[0], _formatted(b[0], b[1], width))
            for b in parser.blocks]

    def fill(self, values: Sequence[str]) -> str | None:
        """The text of the page with these values (as printed in it), or None when a
        value holds markup, a quote or private-use characters."""
        if len(values) != self.values:
            return None
        texts = []
        for value in values:
            if _NOT_PLAIN.search(value) or _PRIVATE.search(value):
                return None
            texts.append(unescape(value) if "&" in value else value)
        blocks: list[tuple[str, str]] = []
        for block in self.blocks:
            if isinstance(block, _Block):
                text = block.text(texts)
                if text is not None:
                    blocks.append((block.kind, _formatted(block.kind, text, self.width)))
            else:
                blocks.append(block)
        return _joined(blocks)
