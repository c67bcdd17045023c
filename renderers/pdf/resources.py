"""The resources a document would make WeasyPrint fetch, read from its HTML and CSS
without laying it out, and checked with the render's own fetcher: preflight names a
refused or failed fetch before anything is rendered.

The render itself is confined by the fetcher whatever this finds; this only lets
preflight say which module or template asked for what.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import urljoin

import tinycss2
from weasyprint import HTML

from renderers.pdf.fetcher import ContentFetcher, describe

# element -> attributes holding a URL WeasyPrint fetches (images, embedded documents,
# SVG images and references); <link> and <a> only with the rel values it acts on.
_URL_ATTRIBUTES = {
    "img": ("src",), "embed": ("src",), "object": ("data",), "input": ("src",),
    "image": ("href",), "use": ("href",), "feimage": ("href",),
}
_LINK_RELS = {"stylesheet", "attachment"}
_NESTED_SHEETS = 4   # @import and <link> depth followed


class Reference(NamedTuple):
    """A URL as written in the document (or a stylesheet), and where it leads."""

    written: str
    url: str


class Problem(NamedTuple):
    """A reference the render cannot or may not fetch."""

    written: str
    url: str
    reason: str


class ResourceCheck:
    """Checks documents' references with a fetcher; each URL is tried once."""

    def __init__(self, fetcher: ContentFetcher) -> None:
        self.fetcher = fetcher
        self._verdicts: dict[str, str | None] = {}

    def problems(self, html: str, base_url: str | None, css: str = "") -> list[Problem]:
        """What a render of ``html`` (with the print stylesheet ``css``) cannot fetch."""
        found: list[Problem] = []
        seen: set[str] = set()
        for reference in references(html, base_url, self.fetcher, css=css):
            if reference.url in seen or reference.url.startswith("data:"):
                continue
            seen.add(reference.url)
            verdict = self.verdict(reference.url)
            if verdict is not None:
                found.append(Problem(reference.written, reference.url, verdict))
        return found

    def verdict(self, url: str) -> str | None:
        """None if the render may fetch ``url`` and can, else why not."""
        if url not in self._verdicts:
            try:
                self.fetcher.fetch(url).close()
            except Exception as exc:
                self._verdicts[url] = describe(exc)
            else:
                self._verdicts[url] = None
        return self._verdicts[url]


def references(html: str, base_url: str | None, fetcher: ContentFetcher,
               *, css: str = "") -> Iterator[Reference]:
    """Every URL the document's HTML and CSS name, resolved as WeasyPrint resolves them."""
    document = HTML(string=html, base_url=base_url, url_fetcher=fetcher)
    base = document.base_url or ""   # <base href> included
    if css:
        yield from _css_references(css, base, fetcher, 0)
    for element in document.etree_element.iter():
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.rpartition("}")[2].lower()
        for name, value in element.attrib.items():
            local = name.rpartition("}")[2].lower()
            if local in _URL_ATTRIBUTES.get(tag, ()) and value.strip():
                yield Reference(value, urljoin(base, value.strip()))
        rels = set((element.get("rel") or "").lower().split())
        href = (element.get("href") or "").strip()
        if tag in {"link", "a"} and href and rels & _LINK_RELS:
            url = urljoin(base, href)
            yield Reference(href, url)
            if tag == "link" and "stylesheet" in rels:
                yield from _linked_sheet(url, fetcher, 1)
        if tag == "style" and element.text:
            yield from _css_references(element.text, base, fetcher, 0)
        if element.get("style"):
            yield from _css_references(element.get("style") or "", base, fetcher, 0)


def _linked_sheet(url: str, fetcher: ContentFetcher, depth: int) -> Iterator[Reference]:
    if depth > _NESTED_SHEETS:
        return
    try:
        response = fetcher.fetch(url)   # refused: reported as the link itself
    except Exception:
        return
    try:
        text = response.read().decode("utf-8", "replace")
    finally:
        response.close()
    yield from _css_references(text, url, fetcher, depth)


def _css_references(css: str, base: str, fetcher: ContentFetcher,
                    depth: int) -> Iterator[Reference]:
    tokens = tinycss2.parse_component_value_list(css, skip_comments=True)
    for written, is_import in _css_urls(tokens):
        url = urljoin(base, written.strip())
        yield Reference(written, url)
        if is_import:
            yield from _linked_sheet(url, fetcher, depth + 1)


def _css_urls(tokens: list) -> Iterator[tuple[str, bool]]:
    """url(…) values and @import targets, at any depth of blocks and functions."""
    after_import = False
    for token in tokens:
        kind = token.type
        if kind in {"whitespace", "comment"}:
            continue
        if kind == "url":
            yield token.value, after_import
        elif kind == "function" and token.lower_name in {"url", "src"}:
            strings = [t.value for t in token.arguments if t.type == "string"]
            if strings:
                yield strings[0], after_import
        elif kind == "string" and after_import:
            yield token.value, True
        elif kind == "function":
            yield from _css_urls(token.arguments)
        elif kind in {"() block", "[] block", "{} block"}:
            yield from _css_urls(token.content)
        after_import = kind == "at-keyword" and token.lower_value == "import"
