"""What earlier mailings' clicks say, read once per run: the report's table of the
previous mailing's clicks per module and segment, and the click snapshot `rank: learn`
slots rank on (audience/learning.py).

A campaign with `tracking:` learns from its last mailing: the run folders its index
names (run/index.py: approved or sent runs) give the newest run of another mailing, its
versions.json what each version held and how many customers got it (the sends), and
the house store the people's clicks on that mailing (store/clicks.py; machine clicks are
left out). A customer counts in each of their version's segments, "(none)" when in none;
"(template)" is the links the template itself holds.

Read once, at report time; anything missing (no earlier mailing, no store) gives no table.

The snapshot for `rank: learn` counts every earlier mailing the same way, but only runs
dated before this run's date and clicks recorded before its midnight (UTC): a rerun of a
mailing, in any process, reads the same counts and so ranks the same.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edition.audience.learning import ClickHistory, Learner
from edition.errors import EditionError
from edition.run.index import indexed_folders
from edition.store.clicks import NO_SEGMENT, ClickStore
from edition.store.database import store_location

if TYPE_CHECKING:
    from edition.content.campaign import Campaign
    from edition.render.plan import Plan

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


def _earlier_mailings(campaign: Campaign, before: dt.date) -> dict[str, Path]:
    """Mailing -> its newest indexed run folder, for runs dated before `before`."""
    found: dict[str, Path] = {}
    for folder in indexed_folders(campaign.root, campaign.name):   # oldest line first
        try:
            options = json.loads((folder / "run.json").read_text(encoding="utf-8")).get(
                "options") or {}
        except (OSError, ValueError, AttributeError):
            continue
        mailing, as_of = str(options.get("mailing") or ""), str(options.get("as_of") or "")
        if mailing and as_of and as_of < before.isoformat() and \
                (folder / "versions.json").is_file():
            found[mailing] = folder
    return found


def click_history(campaign: Campaign, before: dt.date) -> ClickHistory:
    """Sends and people's clicks per (module, segment) of the mailings before `before`."""
    mailings = _earlier_mailings(campaign, before)
    if not mailings:
        return ClickHistory()
    sends: Counter[tuple[str, str]] = Counter()
    clicks: Counter[tuple[str, str]] = Counter()
    cutoff = f"{before.isoformat()}T00:00:00"
    try:
        for folder in mailings.values():
            versions = json.loads((folder / "versions.json").read_text(encoding="utf-8"))
            for version in versions.get("versions", []):
                customers = int(version.get("customers") or 0)
                for ids in (version.get("modules") or {}).values():
                    for module in ids:
                        for segment in version.get("segments") or [NO_SEGMENT]:
                            sends[(module, segment)] += customers
        with ClickStore(store_location(campaign), campaign.root) as store:
            for click in store.clicks(campaign.name):
                if click.machine or click.mailing not in mailings or \
                        click.clicked_at >= cutoff:
                    continue
                for segment in click.segments or (NO_SEGMENT,):
                    clicks[(click.module, segment)] += 1
    except (OSError, ValueError, EditionError):
        return ClickHistory()   # no snapshot: the prior alone ranks (said in the reasons)
    return ClickHistory({key: (n, clicks.get(key, 0)) for key, n in sends.items()})


def learn_from_clicks(plan: Plan) -> None:
    """Give a plan with `rank: learn` slots the click snapshot of the mailings before its
    run date (the run seed is that date: a rerun of the mailing ranks the same)."""
    if plan.learning:
        plan.learner = Learner(plan.campaign.name, plan.as_of.isoformat(),
                               click_history(plan.campaign, plan.as_of))


__all__ = ["TEMPLATE_ROW", "ClickTable", "click_history", "learn_from_clicks",
           "previous_mailing_clicks"]
