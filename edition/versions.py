"""Versions: customers whose editions share everything but the personal layer.

The version key holds everything the shared part of an edition depends on — campaign,
templates, locale, segments, the chosen modules and their content, the run date — so
two customers with the same key get the same shared rendering. The id is a hash of
that key: stable across runs and processes, and changed by any edit to the content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from edition.selection import Selection


@dataclass(frozen=True)
class Version:
    """One distinct combination of modules (+ template, locale, segments)."""

    id: str
    locale: str
    segments: tuple[str, ...]
    selection: Selection


def version_id(*, campaign: str, templates_digest: str, locale: str, segments: tuple[str, ...],
               selection: Selection, as_of: dt.date) -> str:
    """A short, stable content hash of the version key."""
    key = {
        "campaign": campaign,
        "templates": templates_digest,
        "locale": locale,
        "segments": sorted(segments),
        "as_of": as_of.isoformat(),
        "slots": [[s.slot, [[c.module.id, c.module.digest] for c in s.chosen]]
                  for s in selection.slots],
    }
    payload = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    return "v" + hashlib.sha256(payload).hexdigest()[:11]
