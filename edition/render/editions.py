"""Editions: a version rendered once, each customer's edition filled in from it.

`EditionRenderer.render` gives one customer's documents. Each template (page, text,
subject, module bodies) is rendered once per version as a skeleton (edition.render.
residual, .personal); per customer its holes and pieces are filled, and the page is
inlined through its *shape* (the text the customer's statements wrote: a branch taken,
a loop's length), inlined once per shape. Whatever cannot be shared is rendered whole
for that customer, for a reason `Rendered.paths` names. Both paths give the same bytes:
the first customer of each version, and of each shape, is rendered both ways and
compared, as a standing self-check; tests/test_shared_equals_whole.py checks every path.
Whether a version is shared never depends on the formats asked for.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from markupsafe import Markup

from edition.content.campaign import Campaign
from edition.content.environment import CustomerView, EditionEnvironment
from edition.content.limits import render as bounded_render
from edition.content.modules import Module
from edition.render import inlining
from edition.render.campaign_view import CampaignView, SubjectLine
from edition.render.compiled import CampaignTemplates
from edition.render.failures import (
    CONTENT_LIMITS,
    RENDER_ERRORS,
    RenderFailure,
    failure_of,
    located,
)
from edition.render.module_views import ModuleView, layer
from edition.render.personal import CustomerProbe, ProbeEnvironment, Tainted, TextProbe
from edition.render.skeleton import (
    MARKER,
    OPEN,
    Ambiguous,
    Layout,
    NotShareable,
    Residual,
    SharedDocument,
    _plain_text,
    split,
)
from edition.render.versions import Version
from renderers.html import inline
from renderers.text import NotConvertible, TextShape, from_html

# RenderFailure is imported from here by the run and review stages
__all__ = ["CACHED_LOCALES", "CACHED_SHAPES", "CACHED_SHARING", "CACHED_VERSIONS",
           "CONTENT_LIMITS", "KINDS", "RENDER_ERRORS", "SHAPES_PER_VERSION", "SHARED",
           "EditionRenderer", "ModuleView", "RenderFailure", "Rendered", "VersionDocs"]

KINDS = ("page", "html", "text", "subject")


# Per process, whatever the customer file holds: versions' shared documents (and whether
# they were self-checked, or fail for everyone), locales' environments with their
# compiled templates, and what the report says about each version's rendering.
CACHED_VERSIONS = 1024
CACHED_LOCALES = 32
CACHED_SHARING = 16 * CACHED_VERSIONS   # a few hundred bytes each; a batch's versions fit
# inlined pages, one per version and shape (tens of KB each), and at most this many
# shapes a version builds: past it, a new shape's customers are inlined one by one
CACHED_SHAPES = 512
SHAPES_PER_VERSION = 64


# A value that decides how the page is inlined is made part of its shape when it is a
# short word (`vip`, not a customer's free text), at most this many per customer.
FOLDS = 3
FOLDED_VALUE = 40

SHARED = "shared"


def _folded(layout: Layout, index: int) -> Layout:
    """The layout with value `index` made part of the template's text (its shape)."""
    statics = [*layout.statics[:index],
               layout.statics[index] + layout.values[index] + layout.statics[index + 1],
               *layout.statics[index + 2:]]
    return Layout((*layout.key, ("folded", index, layout.values[index])), statics,
                  layout.values[:index] + layout.values[index + 1:],
                  layout.where[:index] + layout.where[index + 1:])


@dataclass
class Rendered:
    """One customer's documents: `page` is the template's HTML, `html` has CSS inlined.

    `paths` says per kind how it was made: "shared" (from the version's skeleton) or why
    it was rendered whole for this customer; `layout` is the page cut into the template's
    text and the customer's values (PDF lays out each shape once)."""

    page: str | None = None
    html: str | None = None
    text: str | None = None
    subject: str | None = None
    paths: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    layout: Layout | None = field(default=None, compare=False, repr=False)


@dataclass
class VersionDocs:
    """A version's skeletons per kind, why a kind renders whole, and its html shapes."""

    residuals: dict[str, Residual]
    whole: dict[str, str]
    shapes: int = 0          # shapes this version built (bounded: SHAPES_PER_VERSION)
    text_shapes: int = 0     # the same for the text made from the page

    def sharing(self) -> dict[str, str]:
        entry = {kind: SHARED for kind in self.residuals} | dict(self.whole)
        return {k: entry[k] for k in KINDS if k in entry}


class EditionRenderer:
    """Renders one campaign's editions (one per process; not shared across threads' state)."""

    def __init__(self, campaign: Campaign, as_of: dt.date, *, kinds: tuple[str, ...] = KINDS):
        self.campaign = campaign
        self.as_of = as_of
        self.kinds = kinds
        self.templates = CampaignTemplates(campaign, CACHED_LOCALES)
        self.template_files = self.templates.template_files
        self.env, self.probe = self.envs("en")
        self._shared: OrderedDict[str, VersionDocs] = OrderedDict()
        self._shared_lock = threading.Lock()
        self._shapes: LRUCache[tuple[str, Any], SharedDocument | str] = LRUCache(CACHED_SHAPES)
        # the text made from the page, converted once per version and shape
        self._text_shapes: LRUCache[tuple[str, Any], TextShape | str] = LRUCache(CACHED_SHAPES)
        self._checked: LRUCache[str, bool] = LRUCache(CACHED_VERSIONS)
        # digest -> (id, per kind 'shared' or why not)
        self._all_sharing: LRUCache[str, tuple[str, dict[str, str]]] = LRUCache(CACHED_SHARING)
        self._sharing_lock = threading.Lock()
        self._broken: LRUCache[str, RenderFailure] = LRUCache(CACHED_VERSIONS)
        self._marks_lock = threading.Lock()   # _checked, _broken, _shapes across task threads
        self.digest = self.templates.digest

    def envs(self, locale: str) -> tuple[EditionEnvironment, ProbeEnvironment]:
        """The environments for a version's locale (made on first use)."""
        return self.templates.envs(locale)

    def _failure(self, exc: Exception) -> RenderFailure:
        return failure_of(exc, self.campaign.file, self.template_files,
                          self.env.limits.render_seconds)

    def cache_sizes(self) -> dict[str, tuple[int, int]]:
        """Per cache: (entries, bound). Memory stays flat whatever the customers hold."""
        return {"shared versions": (len(self._shared), CACHED_VERSIONS),
                "checked versions": (len(self._checked), CACHED_VERSIONS),
                "broken versions": (len(self._broken), CACHED_VERSIONS),
                "html shapes": (len(self._shapes), CACHED_SHAPES),
                "text shapes": (len(self._text_shapes), CACHED_SHAPES),
                "locale environments": (self.templates.locales, CACHED_LOCALES),
                "version sharing": (len(self._all_sharing), CACHED_SHARING)}

    # -- templates -------------------------------------------------------------------

    def _modules(self, env: EditionEnvironment, version: Version,
                 base: Mapping[str, Any]) -> dict[str, list[ModuleView]]:
        slots: dict[str, list[ModuleView]] = {}
        probing = isinstance(env, ProbeEnvironment)
        for slot, modules in version.selection.modules().items():
            views = []
            for module in modules:
                if module.personal:
                    limit = env.limits.document_bytes
                    html = bounded_render(self.templates.body(env, module, "html"), base, limit)
                    text = bounded_render(self.templates.body(env, module, "text"), base, limit)
                    html = Tainted(html) if probing and OPEN in html else Markup(html)
                    if probing and OPEN in text:
                        text = Tainted(text)
                else:
                    html, text = Markup(module.html), module.text
                views.append(ModuleView(module, html, text, personal=probing and module.personal))
            slots[slot] = views
        return slots

    def _base(self, version: Version, customer: Any,
              subject: SubjectLine | None = None) -> dict[str, Any]:
        settings = self.campaign.context(version.locale)
        return {
            "customer": customer,
            "segments": list(version.segments),
            "campaign": CampaignView(settings, subject or SubjectLine(settings["subject"])),
            "locale": version.locale,
            "run": {"as_of": self.as_of},
        }

    def context(self, env: EditionEnvironment, version: Version, customer: Any,
                subject: Callable[[Mapping[str, Any]], object] | None = None
                ) -> dict[str, Any]:
        """The template context of the contract, plus `locale` and `run`.

        `subject(ctx)` renders the subject line in this context when a template first
        reads `campaign.subject` (edition.render.campaign_view)."""
        ctx: dict[str, Any] = {}
        written = self.campaign.context(version.locale)["subject"]
        line = SubjectLine(written, (lambda: subject(ctx)) if subject is not None else None)
        base = self._base(version, customer, line)
        ctx.update(base | self._modules(env, version, base))
        return ctx


    # -- whole render (the reference) ----------------------------------------------

    def whole(self, version: Version, fields: Mapping[str, Any],
              kinds: tuple[str, ...] | None = None) -> Rendered:
        """Render every template for this customer alone."""
        kinds = self.kinds if kinds is None else kinds
        view = CustomerView(fields)
        env = self.envs(version.locale)[0]
        limit = env.limits.document_bytes
        # for this customer alone: not the layer of pieces that may be running (a piece
        # reading campaign.subject may ask for it)
        running = layer.current, layer.subject
        layer.current = layer.subject = None
        try:
            subject_template = self.templates.template(env, "subject", version)
            assert subject_template is not None
            ctx = self.context(env, version, view,
                               lambda ctx: bounded_render(subject_template, ctx, limit))
            out = Rendered()
            needs_page = any(k in kinds for k in ("page", "html")) or (
                "text" in kinds and not self.campaign.text_template)
            if needs_page:
                page_template = self.templates.template(env, "page")
                assert page_template is not None
                out.page = bounded_render(page_template, ctx, limit)
                if "html" in kinds:
                    out.html = inline(out.page)
            if "text" in kinds:
                text_template = self.templates.template(env, "text")
                out.text = (bounded_render(text_template, ctx, limit)
                            if text_template is not None
                            else from_html(out.page or ""))
            if "subject" in kinds:
                out.subject = str(ctx["campaign"]["subject"])
            return out
        except RENDER_ERRORS as exc:
            raise self._failure(exc) from None
        finally:
            layer.current, layer.subject = running

    # -- the skeleton, once per version --------------------------------------------

    def shared(self, version: Version) -> VersionDocs:
        """The version's skeletons (per kind), or why a kind renders whole per customer.

        Every kind is made whatever the formats asked for: whether a version is shared
        never depends on them."""
        with self._shared_lock:
            docs = self._shared.get(version.digest)
            if docs is not None:
                self._shared.move_to_end(version.digest)
                return docs
        docs = self._skeleton(version)
        with self._shared_lock:
            self._shared[version.digest] = docs
            while len(self._shared) > CACHED_VERSIONS:
                old, _ = self._shared.popitem(last=False)
                with self._marks_lock:
                    self._checked.pop(old, None)
        self._note_sharing(version, docs)
        return docs

    def _skeleton(self, version: Version) -> VersionDocs:
        residuals: dict[str, Residual] = {}
        whole: dict[str, str] = {}
        probe = self.envs(version.locale)[1]
        limit = probe.limits.document_bytes
        holes = probe.record()
        outputs: dict[str, str | None] = {}
        try:
            customer = CustomerProbe({"locale": version.locale})
            subject_template = self.templates.template(probe, "subject", version)
            assert subject_template is not None

            def subject_line(ctx: Mapping[str, Any]) -> object:
                # printed in the page, its holes are filled per customer (a TextHole)
                line = bounded_render(subject_template, ctx, limit)
                return TextProbe(line, False, tuple(holes)) if OPEN in line else line

            ctx = self.context(probe, version, customer, subject_line)
            for kind in ("page", "text", "subject"):
                template = self.templates.template(probe, kind, version)
                try:
                    outputs[kind] = (bounded_render(template, ctx, limit)
                                     if template is not None else None)
                except NotShareable as exc:
                    whole[kind] = located(exc, f"{kind} template", self.templates.where)
                except CONTENT_LIMITS:
                    raise  # the version itself is too big, too slow or too deep
                except Exception as exc:  # the whole render reports it per customer
                    whole[kind] = f"{kind} template fails: {type(exc).__name__}"
        except NotShareable as exc:
            reason = located(exc, "a module body", self.templates.where)
            return VersionDocs({}, {k: reason for k in KINDS})
        except CONTENT_LIMITS:
            raise
        except Exception as exc:
            return VersionDocs({}, {k: f"fails: {type(exc).__name__}" for k in KINDS})
        finally:
            probe.stop()
        for kind, output in outputs.items():
            if output is None:
                continue
            if not _markers_intact(output, len(holes)):
                whole[kind] = "content already holds edition's hole markers"
                continue
            residuals[kind] = split(output, holes)
        page = residuals.get("page")
        if page is None:
            whole["html"] = whole.get("page", "no page")
        if "html" not in whole and page is not None:
            residuals["html"] = page
        if "text" not in residuals and "text" not in whole and not self.campaign.text_template:
            if page is not None:
                residuals["text"] = page   # derived from each customer's page
            else:
                whole["text"] = whole.get("page", "no page")
        return VersionDocs(residuals, whole)

    # -- per customer ------------------------------------------------------------------

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
        if first and not self._self_check(version, fields, docs):
            with self._marks_lock:  # this customer could not tell: the next one checks
                self._checked.pop(version.digest, None)
        out, reason = self._from_residuals(version, fields, docs, self.kinds)
        if reason is not None:  # this customer's values: the whole render decides
            whole = self.whole(version, fields)
            whole.paths = {kind: reason for kind in self.kinds}
            return whole
        missing = [k for k in self.kinds if k not in docs.residuals]
        if missing:
            whole = self.whole(version, fields, tuple(missing))
            for kind in missing:
                setattr(out, kind, getattr(whole, kind))
        return out

    def _from_residuals(self, version: Version, fields: Mapping[str, Any], docs: VersionDocs,
                        kinds: tuple[str, ...]) -> tuple[Rendered, str | None]:
        """The kinds that render once, filled for this customer; the paths of all.

        The reason is set when this customer's values cannot take the shared path at
        all (the caller renders whole)."""
        out = Rendered()
        for kind in kinds:
            if kind in docs.whole:
                out.paths[kind] = docs.whole[kind]
        wanted = [k for k in kinds if k in docs.residuals]
        if not wanted:
            return out, None
        if fields.get("locale") != version.locale:
            return out, "the customer's locale field is not the version's"
        env = self.envs(version.locale)[0]
        limit = env.limits.document_bytes
        view = CustomerView(fields)
        personal = self._personal_layer(version, view, env)
        layer.current = personal
        layer.subject = SubjectLine(None, lambda: self._subject_of(version, fields, view, env,
                                                                   docs))
        try:
            page_outputs: list[str] | None = None
            page = docs.residuals.get("page")
            if page is not None and ({"page", "html"} & set(wanted) or (
                    "text" in wanted and docs.residuals["text"] is page)):
                page_outputs = page.outputs(fields, view, env)
                out.page = page.text(page_outputs, limit)
            for kind in ("text", "subject"):
                residual = docs.residuals.get(kind)
                if kind not in wanted or residual is None or residual is page:
                    continue   # the text made from the page: below, from its layout
                setattr(out, kind, residual.text(residual.outputs(fields, view, env), limit))
        except CONTENT_LIMITS:
            raise
        except (NotShareable, Ambiguous) as exc:
            return out, f"this customer's values: {exc}"
        except RENDER_ERRORS:
            return out, "fails for this customer (the whole render says why)"
        finally:
            layer.current = layer.subject = None
        for kind in wanted:
            out.paths[kind] = SHARED
        if page is not None and page_outputs is not None:
            out.layout = page.layout(page_outputs)
            if "text" in wanted and docs.residuals.get("text") is page:
                out.text = self._text(version, docs, out.layout, out.page or "")
            if "html" in wanted:
                out.html, how = self._html(version, docs, out.layout, out.page or "")
                out.paths["html"] = how
        if "page" not in kinds:
            out.page = None
        return out, None

    def _subject_of(self, version: Version, fields: Mapping[str, Any], view: CustomerView,
                    env: EditionEnvironment, docs: VersionDocs) -> object:
        """This customer's subject line, for a piece that reads `campaign.subject`."""
        residual = docs.residuals.get("subject")
        if residual is None:
            return self.whole(version, fields, ("subject",)).subject
        return residual.text(residual.outputs(fields, view, env), env.limits.document_bytes)

    def _personal_layer(self, version: Version, view: CustomerView,
                        env: EditionEnvironment) -> Any:
        """A personal module's body for this customer, when a piece prints it."""
        bodies: dict[tuple[str, str], str] = {}

        def body(module: Module, fmt: str) -> str:
            key = (module.source, fmt)
            if key not in bodies:
                layer.current = None   # the body renders as in the whole render
                try:
                    rendered = bounded_render(self.templates.body(env, module, fmt),
                                              self._base(version, view),
                                              env.limits.document_bytes)
                finally:
                    layer.current = body
                bodies[key] = Markup(rendered) if fmt == "html" else rendered
            return bodies[key]

        return body

    def _html(self, version: Version, docs: VersionDocs, layout: Layout,
              page: str) -> tuple[str, str]:
        """The inlined page from its shape's inlined skeleton, or inlined for this customer
        alone (correct, slower), with the reason."""
        key: tuple[Any, ...] = (version.digest, layout.key)
        where = ""
        for folds in range(FOLDS + 1):
            with self._marks_lock:
                shape = self._shapes.get(key)
            if shape is None:
                if docs.shapes >= SHAPES_PER_VERSION:
                    return inline(page), (f"html inlined per customer: more than "
                                          f"{SHAPES_PER_VERSION} shapes in one version")
                docs.shapes += 1
                shape = inlining.shape_inlined(layout, page)
                with self._marks_lock:
                    self._shapes[key] = shape
            if isinstance(shape, str):
                return inline(page), f"html inlined per customer: {shape}"
            html = shape.fill(layout.values)
            if html is not None:
                return html, SHARED
            index = shape.failing(layout.values)
            if index is None:
                break
            where = layout.where[index]
            value = layout.values[index]
            if folds == FOLDS or len(value) > FOLDED_VALUE or not _plain_text(value):
                break
            # The value decides how the page is inlined: `class="row{% if customer.vip %}
            # vip{% endif %}"` glues it to `row`, a class the CSS selects (Foundation's
            # layouts select nearly every class). A short plain value (a branch's word)
            # is made part of the shape: customers who wrote the same share its inlining.
            layout = _folded(layout, index)
            key = (*key, (index, value))
        return inline(page), ("html inlined per customer: a value with markup, raw "
                              "characters or a class or id the CSS selects"
                              + (f" ({where})" if where else ""))

    def _text(self, version: Version, docs: VersionDocs, layout: Layout, page: str) -> str:
        """The text made from the page: its shape's text, converted once, with this
        customer's values filled in; or this customer's page converted alone. (The first
        customer of each version is checked both ways by `_self_check`.)"""
        key = (version.digest, layout.key)
        with self._marks_lock:
            shape = self._text_shapes.get(key)
        if shape is None:
            if docs.text_shapes >= SHAPES_PER_VERSION:
                return from_html(page)
            docs.text_shapes += 1
            try:
                shape = TextShape(layout.statics)
            except NotConvertible as exc:
                shape = str(exc)
            with self._marks_lock:
                self._text_shapes[key] = shape
        if isinstance(shape, str):
            return from_html(page)
        filled = shape.fill(layout.values)
        return filled if filled is not None else from_html(page)

    def _self_check(self, version: Version, fields: Mapping[str, Any],
                    docs: VersionDocs) -> bool:
        """The first customer of a version: every kind both ways, whatever the formats.
        False when this customer could not tell (it fails, or takes the whole path)."""
        try:
            reference = self.whole(version, fields, KINDS)
        except RenderFailure:
            return False
        out, reason = self._from_residuals(version, fields, docs, KINDS)
        if reason is not None:
            return False
        for kind in KINDS:
            if kind in docs.residuals and getattr(out, kind) != getattr(reference, kind):
                docs.residuals.pop(kind, None)
                docs.whole[kind] = "self-check: shared and whole renders differ"
        self._note_sharing(version, docs)
        return True

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

    def _note_sharing(self, version: Version, docs: VersionDocs) -> None:
        with self._sharing_lock:
            self._all_sharing[version.digest] = (version.id, docs.sharing())


def _markers_intact(output: str, count: int) -> bool:
    indices = [int(i) for i in MARKER.findall(output)]
    return len(indices) == len(set(indices)) and all(0 <= i < count for i in indices) and (
        output.count(OPEN) == len(indices))
