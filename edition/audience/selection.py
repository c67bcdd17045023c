"""Selection: which modules fill each slot for one customer, and why.

Pure functions over plain data: the rules of the contract, nothing else. For each slot
in campaign order: keep the eligible modules (kind, segments, locale, dates, campaign,
not already chosen), rank them by priority, shared interests, then id, take `count`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edition.audience.experiments import HOLDOUT, Steer
from edition.audience.learning import Learner
from edition.content.modules import Module
from edition.locales import language_of

OTHER_CAMPAIGNS = "for campaign(s) "   # how a module of another campaign is skipped


@dataclass(frozen=True)
class Choice:
    """A module chosen for a slot, with its rank and the reason in words."""

    module: Module
    rank: int
    reason: str


@dataclass(frozen=True)
class Skip:
    """A candidate that was not chosen, and why."""

    module_id: str
    reason: str


@dataclass(frozen=True)
class SlotSelection:
    """The outcome for one slot."""

    slot: str
    kind: str
    count: int
    chosen: tuple[Choice, ...]
    skipped: tuple[Skip, ...]

    @property
    def short(self) -> bool:
        """Fewer eligible modules than the slot takes."""
        return len(self.chosen) < self.count

    def candidates(self, limit: int = 5) -> str:
        """The modules this slot could have taken and why each was skipped, in words
        ("spring-sale (expired: valid until 2026-03-31), …"); modules made for other
        campaigns are only counted."""
        own = [s for s in self.skipped if not s.reason.startswith(OTHER_CAMPAIGNS)]
        others = len(self.skipped) - len(own)
        words = ", ".join(f"{s.module_id} ({s.reason})" for s in own[:limit])
        if len(own) > limit:
            words += f", and {len(own) - limit} more"
        if not own:
            words = f"no {self.kind} module is meant for it"
        if others:
            words += f"; {others} {self.kind} module(s) are for other campaigns only"
        return words


@dataclass(frozen=True)
class Selection:
    """Every slot's outcome for one customer (or every customer with the same profile)."""

    slots: tuple[SlotSelection, ...] = field(default_factory=tuple)
    experiment: Steer | None = None   # the customer's part in the campaign's experiment

    @property
    def held_out(self) -> bool:
        """In the experiment's holdout: gets nothing."""
        return self.experiment is not None and self.experiment.variant == HOLDOUT

    def ids(self) -> dict[str, list[str]]:
        """Chosen module ids per slot, in rank order (the manifest's `modules`)."""
        return {s.slot: [c.module.id for c in s.chosen] for s in self.slots}

    def modules(self) -> dict[str, list[Module]]:
        return {s.slot: [c.module for c in s.chosen] for s in self.slots}


def _locale_ok(module: Module, locale: str) -> bool:
    if module.locales is None:
        return True
    return locale in module.locales or language_of(locale) in module.locales


def ineligibility(module: Module, *, segments: frozenset[str], locale: str, as_of: dt.date,
                  campaign: str | None, taken: dict[str, str],
                  declined: frozenset[str] = frozenset()) -> str | None:
    """Why a module of the right kind cannot be chosen, or None if it can. `declined`:
    the topics the customer switched off in the preference center (a module all of whose
    interests are declined is their per-topic unsubscribe)."""
    if declined and module.interests and module.interests <= declined:
        return f"topic switched off by the customer: {', '.join(sorted(module.interests))}"
    if module.campaigns is not None and campaign not in module.campaigns:
        return f"{OTHER_CAMPAIGNS}{', '.join(sorted(module.campaigns))} only"
    if module.segments and not (module.segments & segments):
        return f"segment mismatch: needs {' or '.join(sorted(module.segments))}"
    if not _locale_ok(module, locale):
        return f"locale: {locale} not in [{', '.join(sorted(module.locales or ()))}]"
    if module.valid_from and as_of < module.valid_from:
        return f"not yet valid: from {module.valid_from.isoformat()}"
    if module.valid_until and as_of > module.valid_until:
        return f"expired: valid until {module.valid_until.isoformat()}"
    if module.id in taken:
        return f"already chosen for slot {taken[module.id]}"
    return None


def _why(module: Module, segments: frozenset[str], shared: Sequence[str]) -> str:
    parts = [f"priority {module.priority}"]
    matched = sorted(module.segments & segments)
    parts.append(f"segments matched: {', '.join(matched)}" if matched else "for everyone")
    if shared:
        parts.append(f"interests shared: {', '.join(shared)}")
    return "; ".join(parts)


def select(slots: Iterable[tuple[str, str, int]], modules_by_kind: dict[str, list[Module]], *,
           segments: Iterable[str], locale: str, interests: Iterable[str], as_of: dt.date,
           campaign: str | None = None, experiment: Steer | None = None,
           learned: Mapping[str, Sequence[str]] | None = None,
           learner: Learner | None = None, declined: Iterable[str] = ()) -> Selection:
    """Fill each (name, kind, count) slot in order by the contract's rules; an
    experiment puts the customer's variant first in its slot and skips the others';
    a `rank: learn` slot takes its modules in the `learned` order (audience/learning.py);
    `declined`: topics the customer switched off, see `ineligibility`."""
    segs = frozenset(segments)
    off = frozenset(d.lower() for d in declined)
    wanted = frozenset(i.lower() for i in interests)
    taken: dict[str, str] = {}
    results = []
    for name, kind, count in slots:
        eligible: list[tuple[Module, list[str]]] = []
        skipped: list[Skip] = []
        steered = experiment if experiment is not None and experiment.slot == name else None
        for module in modules_by_kind.get(kind, []):
            reason = ineligibility(module, segments=segs, locale=locale, as_of=as_of,
                                   campaign=campaign, taken=taken, declined=off)
            if reason is None and steered is not None and module.id in steered.others:
                reason = f"{steered.reason} (another variant's module)"
            if reason:
                skipped.append(Skip(module.id, reason))
            else:
                eligible.append((module, sorted(module.interests & wanted)))
        order = {mid: i for i, mid in enumerate((learned or {}).get(name, ()))}
        eligible.sort(key=lambda item: (
            not (steered is not None and item[0].id == steered.module),
            order.get(item[0].id, len(order)),
            -item[0].priority, -len(item[1]), item[0].id))

        pool = [m for m, _ in eligible]
        chosen = tuple(Choice(m, rank + 1, steered.reason
                              if steered is not None and m.id == steered.module
                              else learner.reason(name, m, pool, sorted(segs))
                              if order and learner is not None
                              else _why(m, segs, shared))
                       for rank, (m, shared) in enumerate(eligible[:count]))
        for rank, (module, shared) in enumerate(eligible[count:], start=count + 1):
            basis = (learner.reason(name, module, pool, sorted(segs))
                     if order and learner is not None else
                     f"priority {module.priority}, {len(shared)} shared interest(s)")
            skipped.append(Skip(module.id, f"outranked: rank {rank} of {len(eligible)} "
                                           f"({basis}); slot takes {count}"))
        for choice in chosen:
            taken[choice.module.id] = name
        results.append(SlotSelection(name, kind, count, chosen, tuple(skipped)))
    return Selection(tuple(results), experiment)
