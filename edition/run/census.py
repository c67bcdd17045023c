"""A census of a campaign's customers before a run: who is in the audience, who is left
out and why, and which versions the audience falls into.

Each row goes through the run's own dry pipeline up to rendering (`Pipeline.prepare`:
audience, exclusions, required slots, suppression), the same checks preflight makes, so
the numbers are the run's. Nothing is rendered and nothing is written.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edition.audience.customers import Row, read_customers
from edition.run.context import customers_file, need_email
from edition.run.options import RunOptions
from edition.run.pipeline import BatchResult, Pipeline, count_skipped
from edition.run.workers import pipeline_for, plan_for


@dataclass
class VersionCount:
    """One version and the audience customers who get it."""

    id: str
    locale: str
    segments: list[str]
    modules: dict[str, list[str]]
    customers: int = 0
    digest: str = ""

    def as_dict(self, audience: int) -> dict[str, Any]:
        return {"id": self.id, "digest": self.digest, "customers": self.customers,
                "share": round(100 * self.customers / audience, 2) if audience else 0.0,
                "locale": self.locale, "segments": self.segments, "modules": self.modules}


@dataclass
class Census:
    """How the rows of a customer file split; versions count the audience only."""

    campaign: str
    as_of: dt.date
    rows: int = 0
    rejected: int = 0
    excluded: int = 0
    suppressed: int = 0
    failed: int = 0                       # rows whose selection itself fails
    reasons: Counter[str] = field(default_factory=Counter)   # "excluded: why" -> customers
    versions: dict[str, VersionCount] = field(default_factory=dict)

    @property
    def audience(self) -> int:
        """Customers the run would render (and send): as preflight counts them."""
        return self.rows - self.rejected - self.excluded - self.suppressed

    def ordered(self) -> list[VersionCount]:
        """Largest share first; equal shares by id, so the order is stable."""
        return sorted(self.versions.values(), key=lambda v: (-v.customers, v.id))

    def share(self, version: VersionCount) -> float:
        """The version's share of the audience, in %."""
        return 100 * version.customers / self.audience if self.audience else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "as_of": self.as_of.isoformat(), "rows": self.rows,
                "audience": self.audience, "excluded": self.excluded,
                "suppressed": self.suppressed, "rejected": self.rejected,
                "failed": self.failed, "reasons": dict(self.reasons.most_common()),
                "versions": [v.as_dict(self.audience) for v in self.ordered()]}


def take_census(rows: Iterable[Row], pipeline: Pipeline) -> Census:
    """Count the rows through the pipeline's checks (see the module docstring)."""
    plan = pipeline.plan
    census = Census(plan.campaign.name, plan.as_of)
    scratch = BatchResult([])
    for row in rows:
        census.rows += 1
        if row.rejected:
            census.rejected += 1
            continue
        item = pipeline.prepare(row, scratch)
        if item.skipped is not None:
            count_skipped(census, item.skipped)
            continue
        version = item.version
        if version is None:
            census.failed += 1
            continue
        counted = census.versions.get(version.digest)
        if counted is None:
            counted = census.versions[version.digest] = VersionCount(
                version.id, version.locale, list(item.segments), item.modules,
                digest=version.digest)
        counted.customers += 1
    return census


def census_for(options: RunOptions) -> Census:
    """The census of a run with these options over its customer file (a dry run's view)."""
    options = options.resolved()
    options = options.replace(as_of=options.as_of or dt.date.today(), send=False)
    plan = plan_for(options)
    rows = read_customers(customers_file(options, plan.campaign),
                          need_email=need_email(options, plan), declared=plan.campaign.fields,
                          limit=options.limit)
    return take_census(rows, pipeline_for(options))
