"""A campaign's templates, compiled once per locale, and the digest of what they read.

Page, text and subject templates (or an experiment's subject line) and module bodies are
compiled on the locale's environments and kept there, so that they go when a locale's
environments leave the cache. The digest covers every template file (any may be included
or extended) and the campaign values the templates read.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from cachetools import LRUCache
from jinja2 import Template

from edition.audience.experiments import subject_variant
from edition.content.campaign import Campaign
from edition.content.environment import EditionEnvironment
from edition.content.modules import Module
from edition.render.personal import ProbeEnvironment
from edition.render.versions import Version

__all__ = ["CampaignTemplates"]


class CampaignTemplates:
    """One campaign's compiled templates: a pair of environments per locale (at most
    `cached_locales` kept), the template files reports name, and the content digest."""

    def __init__(self, campaign: Campaign, cached_locales: int):
        self.campaign = campaign
        templates = campaign.root / "templates"
        self._templates_dir = templates
        # one pair per locale: money and longdate default to the version's locale and the
        # campaign's currency for it, so `{{ x | money }}` stays shareable (no context)
        self._envs: LRUCache[str, tuple[EditionEnvironment, ProbeEnvironment]] = LRUCache(
            cached_locales)
        self._envs_lock = threading.Lock()
        self.template_files = {str((templates / n).resolve()): f"templates/{n}"
                               for n in filter(None, [campaign.template, campaign.text_template])}
        self.digest = self._digest(templates)

    @property
    def locales(self) -> int:
        """How many locales' environments are cached now."""
        return len(self._envs)

    def envs(self, locale: str) -> tuple[EditionEnvironment, ProbeEnvironment]:
        """The environments for a version's locale (made on first use)."""
        with self._envs_lock:  # a thread-pool task runner shares this renderer
            pair = self._envs.get(locale)
            if pair is None:
                limits, currency = self.campaign.limits, self.campaign.currency_for(locale)
                pair = self._envs[locale] = (
                    EditionEnvironment(self._templates_dir, limits=limits, locale=locale,
                                       currency=currency),
                    ProbeEnvironment(self._templates_dir, where=self.where, limits=limits,
                                     locale=locale, currency=currency))
        return pair

    def where(self, name: str | None, filename: str | None) -> str:
        """How reports name a template: `templates/x.html.j2`, a module file, the subject."""
        if filename and filename.endswith(".md"):
            return filename
        if name is None:
            return f"{self.campaign.file} (subject)"
        return f"templates/{name}"

    def _digest(self, templates: Path) -> str:
        # every template file may be included or extended, so all of them count
        h = hashlib.sha256()
        for path in sorted(templates.rglob("*")) if templates.is_dir() else []:
            if path.is_file():
                h.update(str(path.relative_to(templates)).encode() + b"\0" + path.read_bytes())
        h.update(repr(self.campaign.subject).encode())
        if self.campaign.experiment is not None and self.campaign.experiment.of_subject:
            h.update(repr(self.campaign.experiment.variants).encode())   # subject lines
        h.update(repr(self.campaign.currency).encode())
        h.update(repr(sorted(self.campaign.context().items(), key=str)).encode())
        return h.hexdigest()

    def template(self, env: EditionEnvironment, kind: str,
                 version: Version | None = None) -> Template | None:
        """The page, text or subject template (None: no text template, derive it)."""
        # compiled per environment (one per locale: the subject is the locale's), and kept
        # on it, so that they go when a locale's environments leave the cache
        templates: dict[str, Template] = env.compiled
        experiment = self.campaign.experiment
        variant = subject_variant(version.selection.experiment) if (
            kind == "subject" and version is not None and experiment is not None) else None
        if variant is not None and experiment is not None:
            # a subject-line test: the variant's line is the subject (its own version)
            key = f"subject:{variant}"
            if key not in templates:
                templates[key] = env.from_string(experiment.variants[variant])
            return templates[key]
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

    def body(self, env: EditionEnvironment, module: Module, fmt: str) -> Template:
        """A module's html or text body, as a template of its own."""
        key = f"{module.kind}/{module.id}.{fmt}"
        templates: dict[str, Template] = env.compiled
        if key not in templates:
            source = module.html if fmt == "html" else module.text
            # a name ending in .html turns autoescape on for the HTML body only
            name = f"{module.source}.{fmt}"
            code = env.compile(source, name=name, filename=module.source)
            templates[key] = env.template_class.from_code(env, code, env.make_globals(None))
        return templates[key]
