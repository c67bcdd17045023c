"""Editions: a version rendered once, each customer's edition filled in from it.

`EditionRenderer.render` gives one customer's documents. It uses the version's shared
documents when the templates allow it and falls back to rendering the whole template
for that customer otherwise; both paths give the same bytes (the first customer of each
version is rendered both ways and compared, as a standing self-check).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import traceback
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from jinja2 import Template
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from markupsafe import Markup

from edition.content.campaign import Campaign
from edition.content.environment import CustomerView, EditionEnvironment
from edition.content.limits import DocumentTooLarge, LimitExceeded, RenderTimeout
from edition.content.limits import render as bounded_render
from edition.content.modules import Module
from edition.errors import EditionError
from edition.render import inlining
from edition.render.personal import (
    MARKER,
    OPEN,
    CustomerProbe,
    NotShareable,
    ProbeEnvironment,
    SharedDocument,
    Tainted,
    split,
)
from edition.render.versions import Version
from renderers.html import inline
from renderers.text import from_html

KINDS = ("page", "html", "text", "subject")


class RenderFailure(EditionError):
    """One customer's edition could not be rendered; the reason goes to the manifest.

    `code` says what kind: missing_field, too_large, too_slow, too_deep, sandbox, error.
    Only the first of them depends on the customer alone; the others are the content's.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 code: str = "error"):
        super().__init__(message, file, line)
        self.code = code

    def __reduce__(self):  # keep the code across process boundaries
        return (type(self), (self.message, self.file, self.line, self.code))


# a version's own limits: too big, too slow, too deep (not a customer's missing field)
CONTENT_LIMITS = (LimitExceeded, RecursionError, MemoryError)
# Per process, whatever the customer file holds: versions' shared documents (and whether
# they were self-checked, or fail for everyone), locales' environments with their
# compiled templates, and what the report says about each version's rendering.
CACHED_VERSIONS = 1024
CACHED_LOCALES = 32
CACHED_SHARING = 16 * CACHED_VERSIONS   # a few hundred bytes each; a batch's versions fit
# what a render may raise for one customer (everything else is a bug, reported as such)
RENDER_ERRORS = (TemplateError, TypeError, ValueError, ArithmeticError, LookupError,
                 AttributeError, LimitExceeded, RecursionError, MemoryError)


@dataclass
class Rendered:
    """One customer's documents: `page` is the template's HTML, `html` has CSS inlined."""

    page: str | None = None
    html: str | None = None
    text: str | None = None
    subject: str | None = None


class ModuleView:
    """A module as templates see it: id, kind, title, html, text, meta."""

    __slots__ = ("html", "id", "kind", "meta", "text", "title")

    def __init__(self, module: Module, html: str, text: str):
        self.id = module.id
        self.kind = module.kind
        self.title = module.title
        self.meta = module.meta
        self.html = html
        self.text = text

    def __repr__(self) -> str:
        return f"<module {self.kind}/{self.id}>"


class EditionRenderer:
    """Renders one campaign's editions (one per process; not shared across threads' state)."""

    def __init__(self, campaign: Campaign, as_of: dt.date, *, kinds: tuple[str, ...] = KINDS):
        self.campaign = campaign
        self.as_of = as_of
        self.kinds = kinds
        templates = campaign.root / "templates"
        self._templates_dir = templates
        # one pair per locale: money and longdate default to the version's locale and the
        # campaign's currency for it, so `{{ x | money }}` stays shareable (no context)
        self._envs: LRUCache[str, tuple[EditionEnvironment, ProbeEnvironment]] = LRUCache(
            CACHED_LOCALES)
        self._envs_lock = threading.Lock()
        self.env, self.probe = self.envs("en")
        self._shared: OrderedDict[str, dict[str, SharedDocument | str]] = OrderedDict()
        self._checked: LRUCache[str, bool] = LRUCache(CACHED_VERSIONS)
        # digest -> (id, per kind 'shared' or why not)
        self._all_sharing: LRUCache[str, tuple[str, dict[str, str]]] = LRUCache(CACHED_SHARING)
        self._sharing_lock = threading.Lock()
        self._broken: LRUCache[str, RenderFailure] = LRUCache(CACHED_VERSIONS)
        self._marks_lock = threading.Lock()   # _checked and _broken, across task threads
        self.template_files = {str((templates / n).resolve()): f"templates/{n}"
                               for n in filter(None, [campaign.template, campaign.text_template])}
        self.digest = self._digest(templates)

    def envs(self, locale: str) -> tuple[EditionEnvironment, ProbeEnvironment]:
        """The environments for a version's locale (made on first use)."""
        with self._envs_lock:  # a thread-pool task runner shares this renderer
            pair = self._envs.get(locale)
            if pair is None:
                settings = {"limits": self.campaign.limits, "locale": locale,
                            "currency": self.campaign.currency_for(locale)}
                pair = self._envs[locale] = (
                    EditionEnvironment(self._templates_dir, **settings),
                    ProbeEnvironment(self._templates_dir, **settings))
        return pair

    def cache_sizes(self) -> dict[str, tuple[int, int]]:
        """Per cache: (entries, bound). Memory stays flat whatever the customers hold."""
        return {"shared versions": (len(self._shared), CACHED_VERSIONS),
                "checked versions": (len(self._checked), CACHED_VERSIONS),
                "broken versions": (len(self._broken), CACHED_VERSIONS),
                "locale environments": (len(self._envs), CACHED_LOCALES),
                "version sharing": (len(self._all_sharing), CACHED_SHARING)}

    def _digest(self, templates: Path) -> str:
        # every template file may be included or extended, so all of them count
        h = hashlib.sha256()
        for path in sorted(templates.rglob("*")) if templates.is_dir() else []:
            if path.is_file():
                h.update(str(path.relative_to(templates)).encode() + b"\0" + path.read_bytes())
        h.update(repr(self.campaign.subject).encode())
        h.update(repr(self.campaign.currency).encode())
        h.update(repr(sorted(self.campaign.context().items(), key=str)).encode())
        return h.hexdigest()

    # -- templates -------------------------------------------------------------------

    def _template(self, env: EditionEnvironment, kind: str) -> Template | None:
        # compiled per environment (one per locale: the subject is the locale's), and kept
        # on it, so that they go when a locale's environments leave the cache
        templates = env.compiled
        if kind not in templates:
            if kind == "page":
                templates[kind] = env.get_template(self.campaign.template)
            elif kind == "text":
                if not self.campaign.text_template:
                    return None
                templates[kind] = env.get_template(self.campaign.text_template)
            elif kind == "subject":
                templates[kind] = env.from_string(self.campaign.subject_for(env.locale))
        return templates[kind]

    def _body(self, env: EditionEnvironment, module: Module, fmt: str) -> Template:
        key = f"{module.kind}/{module.id}.{fmt}"
        templates = env.compiled
        if key not in templates:
            source = module.html if fmt == "html" else module.text
            # a name ending in .html turns autoescape on for the HTML body only
            name = f"{module.source}.{fmt}"
            code = env.compile(source, name=name, filename=module.source)
            templates[key] = env.template_class.from_code(env, code, env.make_globals(None))
        return templates[key]

    def _modules(self, env: EditionEnvironment, version: Version,
                 base: Mapping[str, Any]) -> dict[str, list[ModuleView]]:
        slots: dict[str, list[ModuleView]] = {}
        probing = isinstance(env, ProbeEnvironment)
        for slot, modules in version.selection.modules().items():
            views = []
            for module in modules:
                if module.personal:
                    limit = env.limits.document_bytes
                    html = bounded_render(self._body(env, module, "html"), base, limit)
                    text = bounded_render(self._body(env, module, "text"), base, limit)
                    html = Tainted(html) if probing and OPEN in html else Markup(html)
                    if probing and OPEN in text:
                        text = Tainted(text)
                else:
                    html, text = Markup(module.html), module.text
                views.append(ModuleView(module, html, text))
            slots[slot] = views
        return slots

    def context(self, env: EditionEnvironment, version: Version, customer: Any) -> dict[str, Any]:
        """The template context of the contract, plus `locale` and `run`."""
        base = {
            "customer": customer,
            "segments": list(version.segments),
            "campaign": self.campaign.context(version.locale),
            "locale": version.locale,
            "run": {"as_of": self.as_of},
        }
        return base | self._modules(env, version, base)

    # -- whole render (the reference) ----------------------------------------------

    def whole(self, version: Version, fields: Mapping[str, Any]) -> Rendered:
        """Render every template for this customer alone."""
        view = CustomerView(fields)
        env = self.envs(version.locale)[0]
        limit = env.limits.document_bytes
        try:
            ctx = self.context(env, version, view)
            out = Rendered()
            needs_page = any(k in self.kinds for k in ("page", "html")) or (
                "text" in self.kinds and not self.campaign.text_template)
            if needs_page:
                page_template = self._template(env, "page")
                assert page_template is not None
                out.page = bounded_render(page_template, ctx, limit)
                if "html" in self.kinds:
                    out.html = inline(out.page)
            if "text" in self.kinds:
                text_template = self._template(env, "text")
                out.text = (bounded_render(text_template, ctx, limit)
                            if text_template is not None
                            else from_html(out.page or ""))
            if "subject" in self.kinds:
                subject_template = self._template(env, "subject")
                assert subject_template is not None
                out.subject = bounded_render(subject_template, ctx, limit)
            return out
        except RENDER_ERRORS as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: Exception) -> RenderFailure:
        where, line = self.campaign.file, None
        for frame in traceback.extract_tb(exc.__traceback__):
            name = self.template_files.get(str(Path(frame.filename).resolve())) if (
                frame.filename and not frame.filename.startswith("<")) else None
            if name:
                where, line = name, frame.lineno
            elif frame.filename and frame.filename.endswith(".md"):
                where, line = frame.filename, None
            elif frame.filename == "<template>":
                where, line = f"{self.campaign.file} (subject)", None
        code = "error"
        if isinstance(exc, UndefinedError):
            message, code = exc.message or "undefined value", "missing_field"
        elif isinstance(exc, SecurityError):
            message, code = f"refused by the sandbox: {exc}", "sandbox"
        elif isinstance(exc, DocumentTooLarge | MemoryError):
            message, code = f"too large: {exc}", "too_large"
        elif isinstance(exc, RenderTimeout):
            message, code = (f"rendering took longer than {self.env.limits.render_seconds:g} "
                             f"s"), "too_slow"
        elif isinstance(exc, RecursionError):
            message, code = "a macro or include calls itself too deeply (recursion)", "too_deep"
        else:
            message = f"{type(exc).__name__}: {exc}"
        return RenderFailure(message, where, line, code)

    # -- shared render -------------------------------------------------------------

    def shared(self, version: Version) -> dict[str, SharedDocument | str]:
        """The version's documents with holes, or per kind the reason it renders whole."""
        if version.digest in self._shared:
            self._shared.move_to_end(version.digest)
            return self._shared[version.digest]
        docs: dict[str, SharedDocument | str] = {}
        probe = self.envs(version.locale)[1]
        limit = probe.limits.document_bytes
        holes = probe.record()
        try:
            ctx = self.context(probe, version, CustomerProbe())
            outputs: dict[str, str | None] = {}
            for kind in ("page", "text", "subject"):
                template = self._template(probe, kind)
                try:
                    outputs[kind] = (bounded_render(template, ctx, limit)
                                     if template is not None else None)
                except NotShareable as exc:
                    docs[kind] = f"{kind} template: {exc}"
                except CONTENT_LIMITS:
                    raise  # the version itself is too big, too slow or too deep
                except Exception as exc:  # the whole render reports it per customer
                    docs[kind] = f"{kind} template fails: {type(exc).__name__}"
        except NotShareable as exc:
            return self._keep(version, {k: f"a module body: {exc}" for k in KINDS})
        except CONTENT_LIMITS:
            raise
        except Exception as exc:
            return self._keep(version, {k: f"fails: {type(exc).__name__}" for k in KINDS})
        finally:
            probe.stop()
        for kind, output in outputs.items():
            if output is None:
                continue
            if not _markers_intact(output, len(holes)):
                docs[kind] = "content already holds edition's hole markers"
                continue
            docs[kind] = split(output, holes)
        page = docs.get("page")
        if isinstance(page, SharedDocument):
            docs["html"] = self._inlined(outputs["page"] or "", holes)
        else:
            docs["html"] = page if isinstance(page, str) else "no page"
        if "text" not in docs and not self.campaign.text_template:
            docs["text"] = "text is derived from the HTML per customer"
        return self._keep(version, docs)

    def _keep(self, version: Version, docs: dict[str, SharedDocument | str]
              ) -> dict[str, SharedDocument | str]:
        """Cache a version's documents; the least recently used go first (flat memory)."""
        self._shared[version.digest] = docs
        self._note_sharing(version, docs)
        while len(self._shared) > CACHED_VERSIONS:
            old, _ = self._shared.popitem(last=False)
            with self._marks_lock:
                self._checked.pop(old, None)
        return docs

    def _inlined(self, page: str, holes: list) -> SharedDocument | str:
        if inlining.css_is_value_sensitive(page):
            return "the CSS selects on attribute values or :empty"
        placement = inlining.placement_problem(page)
        if placement:
            return placement
        inlined = inline(page)
        if sorted(MARKER.findall(inlined)) != sorted(MARKER.findall(page)):
            return "a customer value sits where CSS inlining drops it"
        finish = inlining.finishers(inlined)
        if finish is None:
            return "a customer value sits in a tag name, comment, <style> or <script>"
        doc = split(inlined, holes)
        doc.finish = finish
        return doc

    def render(self, version: Version, fields: Mapping[str, Any]) -> Rendered:
        """One customer's documents (shared path when possible, whole otherwise)."""
        with self._marks_lock:
            broken = self._broken.get(version.digest)
        if broken is not None:  # too slow or too deep for anyone: fail at once
            raise broken
        try:
            return self._render(version, fields)
        except CONTENT_LIMITS as exc:
            failure = self._failure(exc)
        except RenderFailure as exc:
            failure = exc
        if failure.code in {"too_slow", "too_deep"}:
            with self._marks_lock:
                self._broken[version.digest] = failure
        raise failure

    def _render(self, version: Version, fields: Mapping[str, Any]) -> Rendered:
        docs = self.shared(version)
        with self._marks_lock:
            first = version.digest not in self._checked
            self._checked[version.digest] = True
        if first:
            self._self_check(version, fields, docs)
            self._note_sharing(version, docs)
        view = CustomerView(fields)
        out = Rendered()
        whole: Rendered | None = None
        for kind in self.kinds:
            doc = docs.get(kind)
            value = None
            if isinstance(doc, SharedDocument):
                try:
                    value = doc.fill(fields, view, self.envs(version.locale)[0])
                except CONTENT_LIMITS:
                    raise
                except RENDER_ERRORS:
                    value = None  # the whole render says exactly what failed
            if value is None:
                whole = whole or self.whole(version, fields)
                value = getattr(whole, kind)
            setattr(out, kind, value)
        return out

    def _self_check(self, version: Version, fields: Mapping[str, Any],
                    docs: dict[str, SharedDocument | str]) -> None:
        try:
            reference = self.whole(version, fields)
        except RenderFailure:
            return  # this customer fails either way; the next version check will tell
        view = CustomerView(fields)
        for kind, doc in list(docs.items()):
            if not isinstance(doc, SharedDocument):
                continue
            try:
                filled = doc.fill(fields, view, self.envs(version.locale)[0])
            except Exception:
                filled = None
            if filled is not None and filled != getattr(reference, kind):
                docs[kind] = "self-check: shared and whole renders differ"

    def sharing(self) -> dict[str, dict[str, str]]:
        """Per version id and kind: 'shared' or the reason it renders whole (for people)."""
        with self._sharing_lock:
            return {vid: dict(entry) for vid, entry in self._all_sharing.values()}

    def sharing_of(self, versions: Iterable[str]) -> dict[str, dict[str, str]]:
        """Per version digest (of these) and kind: 'shared' or why it renders whole.

        Asked per batch for the batch's own versions: a Plan (and this renderer) serves
        every run of its campaign in a process, so "what is new" would be another run's.
        """
        with self._sharing_lock:  # a thread-pool task runner shares this renderer
            return {v: dict(self._all_sharing[v][1]) for v in versions
                    if v in self._all_sharing}

    def _note_sharing(self, version: Version, docs: dict[str, SharedDocument | str]) -> None:
        entry = {k: ("shared" if isinstance(d, SharedDocument) else d) for k, d in docs.items()}
        with self._sharing_lock:
            self._all_sharing[version.digest] = (version.id, entry)


def _markers_intact(output: str, count: int) -> bool:
    indices = [int(i) for i in MARKER.findall(output)]
    return len(indices) == len(set(indices)) and all(0 <= i < count for i in indices) and (
        output.count(OPEN) == len(indices))
