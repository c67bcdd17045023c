"""Plain-text editions: readable text from HTML (headings underlined, lists dashed, links
spelled out), for module bodies and for campaigns without a text template.

Hand-written rather than html2text/inscriptis: the text editions are golden output
(headings underlined, `> ` quotes, links as `<url>`), and the converter runs once per
module, not per customer, so speed does not argue for a library either.
"""

from __future__ import annotations

import textwrap
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
            self.link_text_start = len("".join(self.current))
        elif tag == "hr":
            self.blocks.append(("hr", "-" * 20))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(self.skip - 1, 0)
            return
        if tag == "a" and self.link:
            label = "".join(self.current)[self.link_text_start:].strip()
            if self.link not in label and not self.link.startswith("#"):
                self.current.append(f" <{self.link}>")
            self.link = None
        if tag in _BLOCKS:
            self._flush()
        if tag == "blockquote":
            self.quote = max(self.quote - 1, 0)
        elif tag == "pre":
            self.pre = max(self.pre - 1, 0)
        elif tag in {"ul", "ol"} and self.list_stack:
            self.list_stack.pop()

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.current.append(data)

    def result(self, width: int) -> str:
        self._flush()
        out: list[str] = []
        for kind, text in self.blocks:
            if kind in {"h1", "h2"}:
                out.append(f"{text}\n{('=' if kind == 'h1' else '-') * len(text)}")
            elif kind.startswith("h"):
                out.append(text.upper() if kind == "h3" else text)
            elif kind in {"pre", "hr"}:
                out.append(text)
            elif kind == "li":
                indent = " " * (len(text) - len(text.lstrip()) + 2)
                out.append(textwrap.fill(text, width, subsequent_indent=indent,
                                         break_long_words=False, break_on_hyphens=False))
            else:
                depth = 0
                while text.startswith("> " * (depth + 1)):
                    depth += 1
                prefix = "> " * depth
                out.append(textwrap.fill(text, width, subsequent_indent=prefix,
                                         break_long_words=False, break_on_hyphens=False))
        joined: list[str] = []
        for i, block in enumerate(out):
            kind = self.blocks[i][0]
            # list items sit on consecutive lines; everything else is a paragraph
            sep = "\n" if i and kind == "li" and self.blocks[i - 1][0] == "li" else "\n\n"
            joined.append((sep if i else "") + block)
        return "".join(joined).strip() + "\n" if joined else ""
