"""The previous mailing's clicks per module and segment, for the next run's report.

A campaign with `tracking:` learns from its last mailing: the run folders its index
names (run/index.py: approved or sent runs) give the newest run of another mailing, its
versions.json what each version held and how many customers got it (the sends), and
the house store the people's clicks on that mailing (store/clicks.py; machine clicks are
left out). A customer counts in each of their version's segments, "(none)" when in none;
"(template)" is the links the template itself holds.

Read once, at report time; anything missing (no earlier mailing, no store) gives no table.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edition.errors import EditionError
from edition.run.index import indexed_folders
from edition.store.clicks import NO_SEGMENT, ClickStore
from edition.store.database import store_location

if TYPE_CHECKING:
    from edition.content.campaign import Campaign

TEMPLATE_ROW = "(template)"


@dataclass(frozen=True)
class ClickTable:
    """module × segment → sends, clicks for one earlier mailing."""

    mailing: str
    rows: tuple[tuple[str, str, int, int], ...]   # (module, segment, sends, clicks)
    machine: int = 0                              # machine clicks left out


def _previous(campaign: Campaign, mailing: str | None) -> tuple[str, Path] | None:
    for folder in reversed(indexed_folders(campaign.root, campaign.name)):
        try:
            info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        theirs = str((info.get("options") or {}).get("mailing") or "")
        if theirs and theirs != mailing and (folder / "versions.json").is_file():
            return theirs, folder
    return None


def previous_mailing_clicks(campaign: Campaign, mailing: str | None) -> ClickTable | None:
    """The table for the report of `mailing`, or None (no tracking, no earlier mailing)."""
    if getattr(campaign, "tracking", None) is None:
        return None
    found = _previous(campaign, mailing)
    if found is None:
        return None
    earlier, folder = found
    try:
        versions = json.loads((folder / "versions.json").read_text(encoding="utf-8"))
        with ClickStore(store_location(campaign), campaign.root) as store:
            counts = store.counts(campaign.name, earlier)
    except (OSError, ValueError, EditionError):
        return None   # the report goes on without the table
    sends: Counter[tuple[str, str]] = Counter()
    clicks: Counter[tuple[str, str]] = Counter()
    for version in versions.get("versions", []):
        customers = int(version.get("customers") or 0)
        modules = [m for ids in (version.get("modules") or {}).values() for m in ids]
        for segment in version.get("segments") or [NO_SEGMENT]:
            for module in [*modules, ""]:
                key = (module or TEMPLATE_ROW, segment)
                sends[key] += customers
                clicks[key] += counts.people.get((earlier, version.get("id"), module,
                                                  segment), 0)
    rows = tuple((module, segment, n, clicks[(module, segment)])
                 for (module, segment), n in sorted(sends.items(),
                                                    key=lambda kv: (kv[0][0] == TEMPLATE_ROW,
                                                                    kv[0])))
    return ClickTable(earlier, rows, counts.machine)


__all__ = ["TEMPLATE_ROW", "ClickTable", "previous_mailing_clicks"]
