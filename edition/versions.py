"""Versions: customers whose editions share everything but the personal layer.

The version key holds everything the shared part of an edition depends on — campaign,
templates, locale, segments, the chosen modules and their content, the run date — so
two customers with the same key get the same shared rendering. The id is the sha256 of
that key: stable across runs and processes, and changed by any edit to the content.

The id is the whole digest on purpose: it keys the shared renders, the manifest and
versions.json, and an id cut to 44 bits was made to collide on purpose in seconds (one
customer then got another version's edition). `short_id` is for people only: tables
and reports show it, nothing looks anything up by it.
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
    """The version's id: `v` and the sha256 of the version key (never cut short)."""
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
    return "v" + hashlib.sha256(payload).hexdigest()


SHORT = 12


def short_id(version: str) -> str:
    """A version id as tables show it (`v` and 11 hex digits); never a key."""
    return version[:SHORT]
