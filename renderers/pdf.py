"""PDF editions with WeasyPrint: a naive one-document render and a fast batch path.

The fast path lays out each version once, with the personal layer replaced by
sentinels, and writes its pages once. Per customer it lays out only the blocks that
hold personal text (everything else on the page hidden, everything after them cut),
checks that they occupy exactly the space the version's blocks did, and stamps them
onto the shared pages; personal links are patched in the PDF link annotations.
Whenever that check fails, the customer gets a full render instead.

It leans on WeasyPrint 70 internals (page boxes, ``find_stylesheets``, HTML objects
built from a parsed tree) and on pypdf's raw stream data; tests/test_pdf.py compares
its pages pixel by pixel with whole renders, so an upgrade that breaks it shows there.
A PdfBatchRenderer renders one document at a time (a lock); use one per process.

The pieces: pdf_css (the print stylesheet), pdf_slots (holes in a version's HTML),
pdf_layout (WeasyPrint's boxes and mini documents), pdf_version (a version prepared
for sharing, and its stamps), pdf_assembly (the PDF objects of each customer's file).
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration

from renderers.pdf_css import PAGE_SIZES, print_stylesheet, with_print_css
from renderers.pdf_slots import _Slots
from renderers.pdf_version import _MINI_CSS, _Unsupported, _Version

__all__ = [
    "PAGE_SIZES",
    "PdfBatchRenderer",
    "PdfStats",
    "SharedDocument",
    "print_stylesheet",
    "render_pdf",
    "render_versions",
    "with_print_css",
]


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


# --------------------------------------------------------------------------- stats


@dataclass
class PdfStats:
    """How the customers of a batch were rendered."""

    customers: int = 0
    fast: int = 0
    full: Counter[str] = field(default_factory=Counter)  # reason -> customers
    versions: int = 0
    versions_full: Counter[str] = field(default_factory=Counter)  # reason -> versions
    stamps_reused: int = 0  # fast customers whose personal text an earlier one had

    def add(self, other: PdfStats) -> None:
        self.customers += other.customers
        self.fast += other.fast
        self.full.update(other.full)
        self.versions += other.versions
        self.versions_full.update(other.versions_full)
        self.stamps_reused += other.stamps_reused

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.full.most_common())
        return (
            f"{self.customers} customers, {self.fast} on the fast path"
            f" ({self.stamps_reused} reusing an earlier customer's personal blocks)"
            + (f"; full render: {reasons}" if reasons else "")
        )


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
        self.base_url = base_url
        self.css = print_stylesheet(
            page_size=page_size, campaign_name=campaign_name, templates_dir=templates_dir
        )
        self.font_config = FontConfiguration()
        self.mini_css = CSS(string=_MINI_CSS, font_config=self.font_config)
        self.cache: dict[str, Any] = {}  # images, across documents
        self.stats = PdfStats()
        # Versions edit their cut-down tree in place per customer: one render at a time.
        self._lock = threading.RLock()
        self._versions: OrderedDict[tuple[str, ...], _Version | str] = OrderedDict()
        self._seen: OrderedDict[tuple[str, ...], None] = OrderedDict()
        self._max_versions = max_versions

    def _render(
        self, document: HTML, stylesheets: list[CSS], version: _Version | None = None
    ) -> Any:
        # A version keeps its @counter-style and @color-profile state: its stylesheets
        # are parsed once and registered those there.
        return document.render(
            font_config=self.font_config,
            counter_style=version.counter_style if version else None,
            color_profiles=version.color_profiles if version else None,
            stylesheets=stylesheets,
            cache=self.cache,
        )

    def render_one(self, html: str) -> bytes:
        """The full render of one document (the fallback), same output as render_pdf."""
        document = HTML(string=with_print_css(html, self.css), base_url=self.base_url)
        with self._lock:
            return self._render(document, []).write_pdf()

    def render(self, doc: SharedDocument, customers: Iterable[Any]) -> list[bytes]:
        """Each customer's PDF, in order."""
        return self.render_filled(doc.parts, [doc.fill(customer) for customer in customers])

    def render_filled(
        self, parts: Sequence[str], htmls: Sequence[str], *, prepare: bool | None = None
    ) -> list[bytes]:
        """PDFs for documents that are fills of ``parts`` (the version's static HTML).

        A document that is not a fill of ``parts`` is rendered whole, so callers may
        pass whatever HTML each customer really gets. ``prepare``: lay the version out
        for sharing now (True), never (False), or once it has a second customer (None).
        """
        with self._lock:
            return self._render_filled(parts, htmls, prepare)

    def _render_filled(
        self, parts: Sequence[str], htmls: Sequence[str], prepare: bool | None
    ) -> list[bytes]:
        if not parts:  # the engine renders this version's page whole for everyone
            self.stats.customers += len(htmls)
            self.stats.full["the version's page is not shared"] += len(htmls)
            return [self.render_one(html) for html in htmls]
        slots = _Slots(parts)
        values = [slots.split(html) for html in htmls]
        sample = next((v for v in values if v is not None), None)
        version: _Version | str = "not a fill of the version"
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
                    result = version.render(customer_values)
                except Exception as exc:  # correctness first: the whole render decides
                    result = f"fast path failed: {type(exc).__name__}"
            if isinstance(result, str):
                self.stats.full[result] += 1
                result = self.render_one(html)
            else:
                self.stats.fast += 1
            results.append(result)
        return results

    def _version(self, parts: Sequence[str], sample: list[str], customers: int) -> _Version | str:
        key = tuple(parts)
        if key in self._versions:
            self._versions.move_to_end(key)
            return self._versions[key]
        if customers == 1 and key not in self._seen:
            # Preparing costs about two full renders: not worth it for a version of one.
            self._seen[key] = None
            if len(self._seen) > 4 * self._max_versions:
                self._seen.popitem(last=False)
            return "first customer of the version"
        self._seen.pop(key, None)
        self.stats.versions += 1
        try:
            version: _Version | str = _Version(self, parts, sample)
        except _Unsupported as reason:
            version = str(reason)
            self.stats.versions_full[version] += 1
        self._versions[key] = version
        while len(self._versions) > self._max_versions:
            _, evicted = self._versions.popitem(last=False)
            if isinstance(evicted, _Version):
                evicted.close()
        return version


# --------------------------------------------------------------------------- process pool

_worker: PdfBatchRenderer | None = None


def _init_worker(options: dict[str, Any]) -> None:
    global _worker
    _worker = PdfBatchRenderer(**options)


def _work(parts: tuple[str, ...], htmls: list[str], prepare: bool) -> tuple[list[bytes], PdfStats]:
    assert _worker is not None
    before = _worker.stats
    _worker.stats = PdfStats()
    try:
        return _worker.render_filled(parts, htmls, prepare=prepare), _worker.stats
    finally:
        before.add(_worker.stats)
        _worker.stats = before


def render_versions(
    jobs: Iterable[tuple[SharedDocument, Sequence[Any]]],
    *,
    workers: int | None = None,
    chunk_size: int = 250,
    stats: PdfStats | None = None,
    **options: Any,
) -> Iterator[list[bytes]]:
    """For each (version document, customers) job, in order, the customers' PDFs.

    Runs on ``workers`` processes (default: one per CPU), each with one long-lived
    PdfBatchRenderer made from ``options``; a version's customers go out in chunks.
    """
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(options,)) as pool:
        queue: deque[tuple[int, bool, Future[tuple[list[bytes], PdfStats]]]] = deque()
        collected: list[bytes] = []

        def take() -> list[bytes] | None:
            _, last_chunk, future = queue.popleft()
            pdfs, chunk_stats = future.result()
            if stats is not None:
                stats.add(chunk_stats)
            collected.extend(pdfs)
            if not last_chunk:
                return None
            done = collected.copy()
            collected.clear()
            return done

        for job, (doc, customers) in enumerate(jobs):
            htmls = [doc.fill(customer) for customer in customers]
            starts = range(0, len(htmls), chunk_size) or [0]
            for start in starts:
                chunk = htmls[start : start + chunk_size]
                # Laying a version out for sharing costs about two whole renders: worth it
                # from three customers on, even when a chunk holds only one of them.
                future = pool.submit(_work, tuple(doc.parts), chunk, len(htmls) >= 3)
                queue.append((job, start == starts[-1], future))
                # A few chunks in flight per worker, not the whole campaign in memory.
                while len(queue) > 3 * workers:
                    if (done := take()) is not None:
                        yield done
        while queue:
            if (done := take()) is not None:
                yield done
