"""The batch renderer: each version laid out once, its customers stamped onto it, and a
whole WeasyPrint render for whoever the fast path cannot serve exactly."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from weasyprint import HTML

from renderers.pdf.css import print_stylesheet, with_print_css
from renderers.pdf.engine import Engine
from renderers.pdf.model import Unsupported, Version
from renderers.pdf.slots import Slots
from renderers.pdf.stats import PdfStats


class SharedDocument(Protocol):
    """A version's HTML with the personal layer left as holes (see edition.personal)."""

    parts: list[str]
    holes: list[object]

    def fill(self, customer: Any) -> str: ...


# --------------------------------------------------------------------------- naive path


def render_pdf(
    html: str,
    *,
    base_url: str | None = None,
    page_size: str = "A4",
    campaign_name: str | None = None,
    templates_dir: str | Path | None = None,
) -> bytes:
    """Render one HTML document to PDF bytes: one WeasyPrint document, nothing shared."""
    css = print_stylesheet(
        page_size=page_size, campaign_name=campaign_name, templates_dir=templates_dir
    )
    return HTML(string=with_print_css(html, css), base_url=base_url).write_pdf()


# --------------------------------------------------------------------------- the renderer


class PdfBatchRenderer:
    """Renders the customers of many versions to PDF, sharing what they have in common."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        page_size: str = "A4",
        campaign_name: str | None = None,
        templates_dir: str | Path | None = None,
        max_versions: int = 256,
    ) -> None:
        self.engine = Engine(
            base_url=base_url,
            page_size=page_size,
            campaign_name=campaign_name,
            templates_dir=templates_dir,
        )
        self.stats = PdfStats()
        # Versions edit their cut-down tree in place per customer: one render at a time.
        self._lock = threading.RLock()
        self._versions: OrderedDict[tuple[str, ...], Version | str] = OrderedDict()
        self._seen: OrderedDict[tuple[str, ...], None] = OrderedDict()
        self._max_versions = max_versions

    def render_one(self, html: str) -> bytes:
        """The full render of one document (the fallback), same output as render_pdf."""
        with self._lock:
            return self.engine.render_pdf(html)

    def prepared(self, parts: Sequence[str]) -> Version | str | None:
        """The version of ``parts`` as prepared for sharing, why it is not, or None."""
        return self._versions.get(tuple(parts))

    def render(self, doc: SharedDocument, customers: Iterable[Any]) -> list[bytes]:
        """Each customer's PDF, in order."""
        return self.render_filled(doc.parts, [doc.fill(customer) for customer in customers])

    def render_filled(
        self, parts: Sequence[str], htmls: Sequence[str], *, prepare: bool | None = None
    ) -> list[bytes]:
        """PDFs for documents that are fills of ``parts`` (the version's static HTML);
        any other document is rendered whole."""
        # Callers may so pass whatever HTML each customer really gets. prepare: lay the
        # version out for sharing now (True), never (False), or from its second
        # customer on (None).
        with self._lock:
            return self._render_filled(parts, htmls, prepare)

    def _render_filled(
        self, parts: Sequence[str], htmls: Sequence[str], prepare: bool | None
    ) -> list[bytes]:
        if not parts:  # the engine renders this version's page whole for everyone
            self.stats.customers += len(htmls)
            self.stats.full["the version's page is not shared"] += len(htmls)
            return [self.render_one(html) for html in htmls]
        slots = Slots(parts)
        values = [slots.split(html) for html in htmls]
        sample = _typical([v for v in values if v is not None])
        version: Version | str = "not a fill of the version"
        if sample is not None and slots.count and prepare is not False:
            version = self._version(parts, sample, len(htmls) if prepare is None else 2)
        elif prepare is False:
            version = "too few customers to share the layout"
        static: bytes | None = None
        results = []
        for html, customer_values in zip(htmls, values, strict=True):
            self.stats.customers += 1
            result: bytes | str
            if customer_values is None:
                result = "not a fill of the version"
            elif slots.count == 0:  # nothing personal: one PDF for all
                static = static or self.render_one(html)
                result = static
            elif isinstance(version, str):
                result = version
            else:
                try:
                    result = version.render(customer_values, self.stats)
                except Exception as exc:  # correctness first: the whole render decides
                    result = f"fast path failed: {type(exc).__name__}"
            if isinstance(result, str):
                self.stats.full[result] += 1
                result = self.render_one(html)
            else:
                self.stats.fast += 1
            results.append(result)
        return results

    def _version(self, parts: Sequence[str], sample: list[str], customers: int) -> Version | str:
        key = tuple(parts)
        if key in self._versions:
            self._versions.move_to_end(key)
            return self._versions[key]
        if customers == 1 and key not in self._seen:
            # Preparing costs about one full render: not worth it for a version of one.
            self._seen[key] = None
            if len(self._seen) > 4 * self._max_versions:
                self._seen.popitem(last=False)
            return "first customer of the version"
        self._seen.pop(key, None)
        self.stats.versions += 1
        try:
            version: Version | str = Version(self.engine, parts, sample)
        except Unsupported as reason:
            version = str(reason)
            self.stats.versions_full[version] += 1
        else:
            if isinstance(version.direct, str) and version.needs_mini:
                self.stats.versions_laid_out[version.direct] += 1
        self._versions[key] = version
        while len(self._versions) > self._max_versions:
            _, evicted = self._versions.popitem(last=False)
            if isinstance(evicted, Version):
                evicted.close()
        return version


def _typical(values: list[list[str]]) -> list[str] | None:
    """Per slot, a value of the median length: the version is laid out with sentinels
    that wide, so that as few customers as possible lay out differently."""
    if not values:
        return None
    return [
        sorted((value[slot] for value in values), key=len)[len(values) // 2]
        for slot in range(len(values[0]))
    ]
