"""The batch renderer: each version laid out once, its customers stamped onto it, and a
whole WeasyPrint render for whoever the fast path cannot serve exactly."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from renderers.pdf import pin
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
    campaign_name: str | Mapping[str, str] | None = None,
    templates_dir: str | Path | None = None,
    root: str | Path | None = None,
    allow_hosts: Iterable[str] = (),
    locale: str | None = None,
) -> bytes:
    """Render one HTML document to PDF bytes: one WeasyPrint document, no layout shared
    (fonts and images are loaded once per set of options)."""
    name = campaign_name if not isinstance(campaign_name, Mapping) else tuple(
        campaign_name.items())
    options = (base_url, page_size, name, templates_dir, root, tuple(allow_hosts))
    with _naive_lock:
        return _naive_engine(options).render_pdf(html, locale)


_naive_lock = threading.Lock()
_naive_engines: OrderedDict[tuple[Any, ...], Engine] = OrderedDict()


def _naive_engine(options: tuple[Any, ...]) -> Engine:
    # Loading the shipped fonts costs ~0.3 s per font configuration: the naive path
    # shares one per set of options too, as WeasyPrint's docs advise, and nothing else
    # (a document's layout is its own).
    key = (*options, str(Path(options[3] or "templates").resolve()))
    if key not in _naive_engines:
        base_url, page_size, name, templates_dir, root, allow_hosts = options
        _naive_engines[key] = Engine(
            base_url=base_url, page_size=page_size,
            campaign_name=dict(name) if isinstance(name, tuple) else name,
            templates_dir=templates_dir, root=root, allow_hosts=allow_hosts)
        while len(_naive_engines) > 4:
            _naive_engines.popitem(last=False)
    _naive_engines.move_to_end(key)
    return _naive_engines[key]


# --------------------------------------------------------------------------- the renderer


class PdfBatchRenderer:
    """Renders the customers of many versions to PDF, sharing what they have in common."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        page_size: str = "A4",
        campaign_name: str | Mapping[str, str] | None = None,
        templates_dir: str | Path | None = None,
        root: str | Path | None = None,
        allow_hosts: Iterable[str] = (),
        max_versions: int = 256,
    ) -> None:
        """``campaign_name``: the display name the running header shows (one, or per
        locale); ``root``: the content root, whose files a render may read (default:
        the templates' parent); ``allow_hosts``: hosts whose https URLs it may fetch."""
        self.engine = Engine(
            base_url=base_url,
            page_size=page_size,
            campaign_name=campaign_name,
            templates_dir=templates_dir,
            root=root,
            allow_hosts=allow_hosts,
        )
        self.stats = PdfStats()
        self.unguarded = pin.checked()  # not the WeasyPrint the fast path knows: all whole
        # Versions edit their cut-down tree in place per customer: one render at a time.
        self._lock = threading.RLock()
        self._versions: OrderedDict[tuple[str | None, ...], Version | str] = OrderedDict()
        self._seen: OrderedDict[tuple[str | None, ...], None] = OrderedDict()
        self._max_versions = max_versions

    def render_one(self, html: str, *, locale: str | None = None) -> bytes:
        """The full render of one document (the fallback), same output as render_pdf;
        ``locale`` is the edition's (the page furniture's language)."""
        with self._lock:
            return self.engine.render_pdf(html, locale)

    def prepared(self, parts: Sequence[str], *, locale: str | None = None) -> Version | str | None:
        """The version of ``parts`` as prepared for sharing, why it is not, or None."""
        return self._versions.get(self._key(parts, locale))

    def render(self, doc: SharedDocument, customers: Iterable[Any], *,
               locale: str | None = None) -> list[bytes]:
        """Each customer's PDF, in order."""
        return self.render_filled(doc.parts, [doc.fill(customer) for customer in customers],
                                  locale=locale)

    def render_filled(
        self, parts: Sequence[str], htmls: Sequence[str], *, prepare: bool | None = None,
        locale: str | None = None,
    ) -> list[bytes]:
        """PDFs for documents that are fills of ``parts`` (the version's static HTML);
        any other document is rendered whole."""
        # Callers may so pass whatever HTML each customer really gets. prepare: lay the
        # version out for sharing now (True), never (False), or from its second
        # customer on (None).
        with self._lock:
            return self._render_filled(parts, htmls, prepare, locale)

    def _render_filled(
        self, parts: Sequence[str], htmls: Sequence[str], prepare: bool | None,
        locale: str | None,
    ) -> list[bytes]:
        if not parts or self.unguarded:  # this version's page rendered whole for everyone
            self.stats.customers += len(htmls)
            self.stats.full[self.unguarded or "the version's page is not shared"] += len(htmls)
            return [self.render_one(html, locale=locale) for html in htmls]
        slots = Slots(parts)
        values = [slots.split(html) for html in htmls]
        sample = _typical([v for v in values if v is not None])
        version: Version | str = "not a fill of the version"
        if sample is not None and slots.count and prepare is not False:
            version = self._version(parts, sample, len(htmls) if prepare is None else 2,
                                    locale)
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
                static = static or self.render_one(html, locale=locale)
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
                result = self.render_one(html, locale=locale)
            else:
                self.stats.fast += 1
            results.append(result)
        return results

    def _key(self, parts: Sequence[str], locale: str | None) -> tuple[str | None, ...]:
        # Two versions may share their HTML and differ in locale: not their furniture.
        return (*self.engine.furniture(locale), *parts)

    def _version(self, parts: Sequence[str], sample: list[str], customers: int,
                 locale: str | None) -> Version | str:
        key = self._key(parts, locale)
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
            version: Version | str = Version(self.engine, parts, sample, locale)
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
