"""The plan: a campaign's content loaded and checked once, before anything is rendered.

A Plan holds what the content says (campaign, catalog, compiled templates and rules)
and answers the questions that depend only on content: which segments a customer is
in, which modules fill each slot, which version that makes. It holds no run state:
no output folder, no delivery target, no ledger.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edition.audience.eligibility import Audience
from edition.audience.experiments import Rest, Steer, experiment_problems, steer
from edition.audience.learning import ClickHistory, Learner
from edition.audience.selection import Selection, select
from edition.content.campaign import Campaign, find_root, load_campaign
from edition.content.catalog import Catalog, load_catalog
from edition.content.segments import Segmenter
from edition.errors import ContentError, collect
from edition.locales import language_tag
from edition.render.editions import EditionRenderer
from edition.render.versions import Version, short_id, version_digest

# selections kept per process: each is a few KB, and a customer file can hold a
# distinct (segments, locale, interests) per row
CACHED_SELECTIONS = 4096


class Plan:
    """Loaded, checked content for one campaign, a set of formats and a run date."""

    def __init__(self, campaign: Campaign, catalog: Catalog, *, formats: tuple[str, ...],
                 as_of: dt.date):
        self.campaign = campaign
        self.catalog = catalog
        self.formats = formats
        self.as_of = as_of
        self.renderer = EditionRenderer(campaign, as_of, kinds=render_kinds(formats))
        self.segmenter = Segmenter(campaign.segments)
        self.audience = Audience(campaign.audience, campaign.exclude, campaign.require)
        self.slots = [(s.name, s.kind, s.count) for s in campaign.slots]
        # Only interests some module lists can change a selection: the rest (free text,
        # one per customer at worst) stay out of the key, and the cache of selections is
        # bounded too (a locale per customer would still make a key each).
        self.interests = frozenset(i for m in catalog for i in m.interests)
        self.selection_of = functools.lru_cache(maxsize=CACHED_SELECTIONS)(self._selection)
        # `rank: learn` slots: the run attaches a learner with its click snapshot
        # (run/click_table.py); without one the prior alone ranks, seeded by the run date
        self.learning = {s.name: s.kind for s in campaign.slots if s.rank == "learn"}
        self.learner = Learner(campaign.name, as_of.isoformat(), ClickHistory())
        # a "test then winner" experiment: what its rest gets in this run (the run sets it
        # from the verdict, run/experiment_verdict.py); None: they wait
        self.rest: Rest | None = None

    @classmethod
    def load(cls, campaign_file: str | Path, *, formats: tuple[str, ...] | None = None,
             as_of: dt.date | None = None) -> Plan:
        """Read and check campaign, catalog and templates: every problem at once."""
        errors: list[ContentError] = []
        catalog, catalog_errors = load_catalog(find_root(Path(campaign_file)),
                                               raise_errors=False)
        errors.extend(catalog_errors)
        try:
            campaign = load_campaign(campaign_file, kinds=catalog.kinds())
        except ContentError as exc:
            errors[:0] = getattr(exc, "errors", [exc])
            collect(errors)
            raise
        errors += experiment_problems(campaign, catalog)
        collect(errors)
        formats = formats or campaign.formats
        if "eml" in formats and not campaign.sender:
            raise ContentError("the campaign needs a sender to make email (eml)", campaign.file)
        return cls(campaign, catalog, formats=formats, as_of=as_of or dt.date.today())

    def version_of(self, fields: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, str],
                                                              Selection, Version]:
        """Segments, failed rules, selection and version for one customer."""
        segments, missing = self.segmenter.assign(fields)
        locale = language_tag(str(fields.get("locale") or "en"))
        interests = fields.get("interests") or []
        if not isinstance(interests, list):
            interests = [str(interests)]
        known = frozenset(str(i).lower() for i in interests) & self.interests
        customer_id = str(fields.get("id", ""))
        part = steer(self.campaign.name, self.campaign.experiment, customer_id, self.rest)
        learned = tuple((slot, self.learner.order(slot, self.catalog.by_kind.get(kind, []),
                                                  segments, customer_id))
                        for slot, kind in self.learning.items())
        # topics switched off in the preference center (audience/preferences.py)
        declined = frozenset(fields.get("declined_topics") or ()) & self.interests
        selection, version = self.selection_of(segments, locale, known, part, learned,
                                               declined)
        return segments, missing, selection, version

    def _selection(self, segments: tuple[str, ...], locale: str,
                   interests: frozenset[str], experiment: Steer | None = None,
                   learned: tuple[tuple[str, tuple[str, ...]], ...] = (),
                   declined: frozenset[str] = frozenset()) -> tuple[Selection, Version]:
        selection = select(self.slots, self.catalog.by_kind, segments=segments, locale=locale,
                           interests=interests, as_of=self.as_of, campaign=self.campaign.name,
                           experiment=experiment, learned=dict(learned), learner=self.learner,
                           declined=declined)
        digest = version_digest(campaign=self.campaign.name,
                                templates_digest=self.renderer.digest, locale=locale,
                                segments=segments, selection=selection, as_of=self.as_of)
        return selection, Version(short_id(digest), locale, segments, selection, digest)


    def cache_sizes(self) -> dict[str, tuple[int, int]]:
        """Per cache of this process: (entries, bound), the renderer's too."""
        info = self.selection_of.cache_info()
        return {"selections": (info.currsize, info.maxsize or 0)} | self.renderer.cache_sizes()


def render_kinds(formats: tuple[str, ...]) -> tuple[str, ...]:
    """Which documents the formats need: the inlined html, the page (PDF), text, subject."""
    kinds = set()
    if "html" in formats or "eml" in formats:
        kinds.add("html")
    if "pdf" in formats:
        kinds.add("page")
    if "text" in formats or "eml" in formats:
        kinds.add("text")
    if "eml" in formats:
        kinds.add("subject")
    return tuple(sorted(kinds))
