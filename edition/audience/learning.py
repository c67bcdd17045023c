"""`rank: learn`: a slot's eligible modules ranked by Thompson sampling on click rates.

For each customer and learning slot, every module of the slot's kind draws a click rate
from its Beta posterior for the customer's segments — prior Beta(1 + priority / 10, 20)
(a click rate near 5 %, a little higher for a higher priority, soon outweighed by data)
updated with the sends and people's clicks of earlier mailings in those segments — and
the eligible modules are taken in the order of their draws. A module that has done well
is drawn high often, one that has not been tried much sometimes: the slot keeps
exploring while it learns, and converges on what each segment clicks.

Reproducible: the draws are seeded by (campaign, run seed, slot, customer id), and the
counts are a snapshot read once per run (run/click_table.py: sends of runs before the
run date, clicks recorded before it), so a rerun of a mailing ranks exactly as before.
The reason says it in words: "learned: P(best) 0.83 from 1,204 sends, 97 clicks in
segment mvc" (P(best) among the eligible modules, by a seeded Monte Carlo).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edition.content.modules import Module

NO_SEGMENT = "(none)"
PRIOR_SENDS = 20          # the prior's weight, in sends
PRIORITY_CLICKS = 0.1     # prior clicks per point of priority
P_BEST_DRAWS = 2000


@dataclass(frozen=True)
class ClickHistory:
    """Sends and people's clicks per (module id, segment), before this run."""

    counts: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def digest(self) -> str:
        """The snapshot's sha256: what a replay compares (same counts, same ranking)."""
        items = sorted((m, s, n, c) for (m, s), (n, c) in self.counts.items())
        return hashlib.sha256(repr(items).encode("utf-8", "surrogatepass")).hexdigest()

    def of(self, module: str, segments: Sequence[str]) -> tuple[int, int]:
        """(sends, clicks) of a module over the customer's segments."""
        sends = clicks = 0
        for segment in segments or (NO_SEGMENT,):
            s, c = self.counts.get((module, segment), (0, 0))
            sends, clicks = sends + s, clicks + c
        return sends, min(clicks, sends)


def _seeded(*parts: str) -> random.Random:
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class Learner:
    """Ranks learning slots for one campaign and run seed (one per Plan)."""

    def __init__(self, campaign: str, seed: str, history: ClickHistory):
        self.campaign = campaign
        self.seed = seed
        self.history = history
        self._reasons: dict[tuple[str, tuple[str, ...], tuple[str, ...]], dict[str, str]] = {}

    def _posterior(self, module: Module, segments: Sequence[str]) -> tuple[float, float]:
        sends, clicks = self.history.of(module.id, segments)
        alpha = 1 + max(module.priority, 0) * PRIORITY_CLICKS + clicks
        return alpha, PRIOR_SENDS + (sends - clicks)

    def order(self, slot: str, modules: Iterable[Module], segments: Sequence[str],
              customer_id: str) -> tuple[str, ...]:
        """The module ids of a slot's kind, best draw first, for one customer."""
        rng = _seeded(self.campaign, self.seed, slot, customer_id)
        draws = [(rng.betavariate(*self._posterior(m, segments)), m.id)
                 for m in sorted(modules, key=lambda m: m.id)]
        return tuple(mid for _, mid in sorted(draws, key=lambda d: (-d[0], d[1])))

    def reason(self, slot: str, module: Module, eligible: Sequence[Module],
               segments: Sequence[str]) -> str:
        """Why a learned module ranks where it does, in words."""
        key = (slot, tuple(sorted(segments)), tuple(sorted(m.id for m in eligible)))
        reasons = self._reasons.get(key)
        if reasons is None:
            reasons = self._reasons[key] = self._explain(key, eligible, segments)
        return reasons.get(module.id, "learned")

    def _explain(self, key: tuple[str, tuple[str, ...], tuple[str, ...]],
                 eligible: Sequence[Module], segments: Sequence[str]) -> dict[str, str]:
        rng = _seeded(self.campaign, self.seed, *key[0:1], *key[1], "|", *key[2])
        ordered = sorted(eligible, key=lambda m: m.id)
        params = [self._posterior(m, segments) for m in ordered]
        wins = [0] * len(ordered)
        for _ in range(P_BEST_DRAWS):
            draws = [rng.betavariate(a, b) for a, b in params]
            wins[max(range(len(draws)), key=draws.__getitem__)] += 1
        where = ", ".join(segments) if segments else NO_SEGMENT
        word = "segments" if len(segments) > 1 else "segment"
        out = {}
        for module, won in zip(ordered, wins, strict=True):
            sends, clicks = self.history.of(module.id, segments)
            out[module.id] = (f"learned: P(best) {won / P_BEST_DRAWS:.2f} from {sends:,} "
                              f"sends, {clicks:,} clicks in {word} {where}")
        return out


__all__ = ["NO_SEGMENT", "ClickHistory", "Learner"]
