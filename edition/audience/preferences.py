"""Applying the customers' choices to a run: who gets what, per the preference center.

The run reads the preference store once (`PreferenceSnapshot.load`: customer id ->
choices, edition.store.preferences) and asks the snapshot per customer row, before
segments and selection, as the suppression is asked:

- `frequency: paused` (until a date, or until changed) → `suppressed`, the reason naming
  the customer's choice and its date; every topic switched off is the same "no".
- chosen topics become the customer's interests: the campaign's topic keys the
  customer kept replace whatever the customer file said about those keys (other
  interests stay); a topic switched off is the per-topic unsubscribe: a module whose
  interests are all switched-off topics is not chosen (`declined_topics`, which
  audience/selection.py reads).
- `locale` overrides the file's locale; `large_type` and `format` reach the template
  context as `customer.large_type` and `customer.preferred_format`.

`weekly`/`monthly` need the send history across campaigns (the ledger), which the run's
history snapshot and audience/frequency.py apply; here they are only carried, as the
field `preferred_frequency`.
Plain data: the snapshot pickles for pool workers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edition.locales import NotALanguageTag, language_tag
from edition.outcomes import Reason
from edition.store.preferences import PreferenceStore, Stored

if TYPE_CHECKING:
    from edition.content.campaign import Campaign


APPLIED = "customer_choices"   # the field naming the choices applied to this customer
# the field saying a customer is mailed only because they subscribed again (the run's
# suppression step sets it: audience/suppression.py `resubscribed`)
RESUBSCRIBED = "customer_resubscribed"
# the reason codes of a customer who gets nothing by their own choice (preflight and the
# report count them)
DECLINED = frozenset({"suppressed_paused", "suppressed_topics"})


@dataclass(frozen=True)
class PreferenceSnapshot:
    """One campaign's stored choices, read once per run; `apply(fields)` per customer."""

    campaign: str
    topics: tuple[str, ...] = ()         # the campaign's topic keys (preferences.topics)
    as_of: dt.date = field(default_factory=dt.date.today)
    by_id: Mapping[str, Stored] = field(default_factory=dict)
    time: bool = False                   # preferences.time: a preferred day and hour
    # a transactional campaign (a bill) ignores a pause and "how often": it must come
    transactional: bool = False

    def __len__(self) -> int:
        return len(self.by_id)

    @classmethod
    def load(cls, campaign: Campaign, as_of: dt.date | None = None,
             environ: Mapping[str, str] | None = None) -> PreferenceSnapshot:
        """The snapshot for a run of `campaign` (empty when it has no preference center,
        so a run without one never opens the store for it)."""
        from edition.store.database import store_location

        center = getattr(campaign, "preferences", None)   # a stand-in campaign may lack it
        day = as_of or dt.date.today()
        if center is None:
            return cls(campaign.name, (), day)
        topics = tuple(center.topics)
        with PreferenceStore(store_location(campaign, environ), campaign.root) as store:
            return cls(campaign.name, topics, day, store.snapshot(campaign.name),
                       center.time, getattr(campaign, "kind", "") == "transactional")

    def apply(self, fields: dict[str, Any]) -> Reason | None:
        """Change this customer's fields by their choices (in place); the reason they get
        nothing (paused, every topic off), else None."""
        if not self.by_id:
            return None
        stored = self.by_id.get(str(fields.get("id")))
        if stored is None:
            return None
        choices, day = stored.choices, stored.updated_at[:10]
        applied: list[str] = []
        if choices.frequency == "paused" and not self.transactional:
            until = _date(choices.paused_until)
            if until is None or self.as_of < until:
                shown = f" until {until.isoformat()}" if until else ""
                return Reason("suppressed_paused", (
                    f"suppressed: paused{shown} by the customer on {day} (preference "
                    f"center, {stored.source})"), "suppressed: paused by the customer")
        if choices.frequency in {"weekly", "monthly"} and not self.transactional:
            # for audience/frequency.py, which holds the send history (cadence)
            fields["preferred_frequency"] = choices.frequency
        if choices.topics is not None and self.topics:
            kept = [t for t in choices.topics if t in self.topics]
            if not kept:
                return Reason("suppressed_topics", (
                    f"suppressed: every topic switched off by the customer on {day} "
                    f"(preference center, {stored.source})"),
                    "suppressed: every topic switched off by the customer")
            offered = set(self.topics)
            interests = fields.get("interests") or []
            if not isinstance(interests, list):
                interests = [str(interests)]
            fields["interests"] = [i for i in interests if str(i).lower() not in offered] + kept
            # a topic switched off is the per-topic unsubscribe: its modules are not chosen
            fields["declined_topics"] = [t for t in self.topics if t not in kept]
            fields["chosen_topics"] = {"topics": kept, "on": day}
            applied.append("topics")
        if choices.locale:
            # validated when recorded; an old row must not fail the customer
            with contextlib.suppress(NotALanguageTag):
                fields["locale"] = language_tag(choices.locale)
                applied.append("locale")
        if choices.large_type is not None:
            fields["large_type"] = choices.large_type
            applied.append("large_type")
        if choices.format:
            fields["preferred_format"] = choices.format
            applied.append("format")
        if self.time and (choices.day or choices.hour is not None):
            # audience/preferred_time.py holds a send until then (preferences.time)
            fields["preferred_day"] = choices.day or ""
            fields["preferred_hour"] = choices.hour
            applied.append("time")
        if choices.tracking is False:   # render/tracking.py leaves their links plain
            fields["tracking"] = "off"
            applied.append("tracking")
        if applied:   # the manifest row and the report say what the customer's choices did
            fields[APPLIED] = applied
        return None


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def no_preferences(campaign: str) -> PreferenceSnapshot:
    """A snapshot that changes nothing (previews, tests)."""
    return PreferenceSnapshot(campaign)


__all__ = ["APPLIED", "DECLINED", "RESUBSCRIBED", "PreferenceSnapshot", "no_preferences"]
