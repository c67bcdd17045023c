"""Preflight: everything that can be known before a run writes a single file.

Each version is rendered once, whole, for a real customer of it, under the campaign's
limits: a version that is too large, too slow, recurses too deeply or is refused by the
sandbox is the content's mistake (it would fail every customer of that version) and is
reported as a content error; a failure that depends on one customer's data (a missing
field) is reported as a warning with that customer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edition.customers import Row
from edition.editions import RenderFailure
from edition.errors import ContentError
from edition.limits import watchdog
from edition.plan import Plan

CONTENT_CODES = {"too_large", "too_slow", "too_deep", "sandbox"}


@dataclass
class Preflight:
    """What preflight found: errors stop the run (exit 2), warnings are listed."""

    rows: int = 0
    rejected: int = 0
    versions: dict[str, int] = field(default_factory=dict)   # version id -> customers
    errors: list[ContentError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_versions(plan: Plan, rows: Iterable[Row]) -> Preflight:
    """Render each version once for its first customer; collect what that shows."""
    found = Preflight()
    seen_errors: set[str] = set()
    for row in rows:
        found.rows += 1
        if row.rejected:
            found.rejected += 1
            continue
        fields = dict(row.fields or {})
        version = plan.version_of(fields)[3]
        first = version.id not in found.versions
        found.versions[version.id] = found.versions.get(version.id, 0) + 1
        if not first:
            continue
        try:
            with watchdog.limit(plan.campaign.limits.render_seconds):
                plan.renderer.whole(version, fields)
        except RenderFailure as exc:
            if exc.code in CONTENT_CODES:
                key = f"{exc.location}:{exc.message}"
                if key not in seen_errors:
                    seen_errors.add(key)
                    found.errors.append(ContentError(
                        f"{exc.message} (version {version.id}, first rendered for customer "
                        f"{row.customer_id})", exc.file or plan.campaign.file, exc.line))
            else:
                found.warnings.append(f"customer {row.customer_id} (line {row.line}): {exc}")
    return found
