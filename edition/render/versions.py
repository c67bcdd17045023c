"""Versions: customers whose editions share everything but the personal layer.

The version key holds everything the shared part of an edition depends on — campaign,
templates, locale, segments, the chosen modules and their content, the run date — so
two customers with the same key get the same shared rendering. Its sha256, `digest`, is
what everything keys by: the shared renders, the report's counts, preflight's scan. The
`id` people read (manifest, versions.json, `edition versions`) is `v` and the digest's
first 11 hex digits: 44 bits, which were made to collide on purpose in seconds when
they were the key (one customer then got another version's edition), so nothing looks
anything up by the id alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from edition.audience.experiments import subject_variant
from edition.audience.selection import Selection


@dataclass(frozen=True)
class Version:
    """One distinct combination of modules (+ template, locale, segments)."""

    id: str          # for people: `v` + 11 hex digits of the digest
    locale: str
    segments: tuple[str, ...]
    selection: Selection
    digest: str = ""  # the whole sha256 of the version key: the key of every cache

    def __post_init__(self) -> None:
        if not self.digest:  # a version made by hand (tests): its id is all there is
            object.__setattr__(self, "digest", self.id)


def version_digest(*, campaign: str, templates_digest: str, locale: str,
                   segments: tuple[str, ...], selection: Selection, as_of: dt.date) -> str:
    """The sha256 of the version key: stable across runs and processes."""
    key = {
        "campaign": campaign,
        "templates": templates_digest,
        "locale": locale,
        "segments": sorted(segments),
        "as_of": as_of.isoformat(),
        "slots": [[s.slot, [[c.module.id, c.module.digest] for c in s.chosen]]
                  for s in selection.slots],
    }
    if (variant := subject_variant(selection.experiment)) is not None:
        key["subject"] = variant   # a subject-line test: one version per variant
    payload = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(payload).hexdigest()


def short_id(digest: str) -> str:
    """The id a version is shown by: `v` + the digest's first 11 hex digits."""
    return "v" + digest[:11]
