"""Experiment assignment: which variant of the campaign's experiment a customer gets.

The variant is a pure function of (campaign, experiment name, customer id): the first 8
bytes of their SHA-256, as a number in [0, 1), fall into one variant's share of the
split (in the order the campaign lists them) or past them all into the holdout. No
state, no seed, no order: the same customer gets the same variant in every run and
mailing, in a reordered or grown customer file, on any machine; another experiment
name reshuffles everyone independently.

A slot experiment steers selection (audience/selection.py): in the experiment's slot,
the customer's variant module comes first when it is eligible for them, and the other
variants' modules are skipped ("experiment NAME: variant K"). Holdout customers are
excluded (audience/eligibility.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from edition.content.experiment import SUBJECT
from edition.content.yamlfile import LineDict, load_yaml
from edition.errors import ContentError

if TYPE_CHECKING:
    from edition.content.campaign import Campaign
    from edition.content.catalog import Catalog
    from edition.content.experiment import Experiment

HOLDOUT = "holdout"
REST = "rest"          # test then winner: a customer outside the test cells ...
WAITING = "waiting"    # ... who gets nothing until the verdict (or the default)
_SCALE = float(1 << 64)


@dataclass(frozen=True)
class Rest:
    """What the rest of a "test then winner" experiment gets in this run: the winner's
    (or the default) variant, or None: they wait; `note` says why (the run's verdict)."""

    variant: str | None
    note: str


@dataclass(frozen=True)
class Steer:
    """What an experiment does to one customer's selection."""

    name: str             # the experiment
    variant: str          # a variant key, or HOLDOUT
    slot: str
    module: str | None    # the variant's module (None for the holdout)
    others: frozenset[str]   # the other variants' modules: not for this customer
    cell: str = "test"    # "rest": outside a test-then-winner experiment's test cells
    note: str = ""        # the rest's verdict in this run

    @property
    def waiting(self) -> bool:
        return self.variant == WAITING

    @property
    def reason(self) -> str:
        return f"experiment {self.name}: variant {self.variant}"


def position(campaign: str, experiment: str, customer_id: str) -> float:
    """Where the customer falls in [0, 1) for this experiment (stable everywhere)."""
    key = "\0".join((campaign, experiment, customer_id)).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / _SCALE


def variant_of(campaign: str, experiment: Experiment, customer_id: str) -> str:
    """The customer's variant key, or HOLDOUT."""
    point = position(campaign, experiment.name, customer_id) * 100.0
    if experiment.then_winner:
        if point >= experiment.test_share:
            return REST
        point = point * 100.0 / experiment.test_share   # spread over the split again
    edge = 0.0
    for key, share in experiment.split.items():
        edge += share
        if point < edge:
            return key
    return HOLDOUT


def steer(campaign: str, experiment: Experiment | None, customer_id: str,
          rest: Rest | None = None) -> Steer | None:
    """The customer's part in the campaign's experiment (None without one). `rest`: what
    the customers outside a test-then-winner experiment's test cells get in this run."""
    if experiment is None:
        return None
    variant = variant_of(campaign, experiment, customer_id)
    cell, note = "test", ""
    if variant == REST:
        cell = REST
        note = rest.note if rest is not None else "no verdict yet"
        variant = rest.variant if rest is not None and rest.variant else WAITING
        if variant == WAITING:
            return Steer(experiment.name, WAITING, experiment.slot, None,
                         frozenset(experiment.variants.values()) if not experiment.of_subject
                         else frozenset(), cell, note)
    if experiment.of_subject:   # the subject varies (render/editions.py), not a slot
        return Steer(experiment.name, variant, experiment.slot, None, frozenset(), cell, note)
    module = experiment.variants.get(variant)
    return Steer(experiment.name, variant, experiment.slot, module,
                 frozenset(m for k, m in experiment.variants.items() if k != variant),
                 cell, note)


def subject_variant(steer: Steer | None) -> str | None:
    """The variant key whose subject line this customer gets (None: the campaign's)."""
    if steer is None or steer.slot != SUBJECT or steer.variant in (HOLDOUT, WAITING):
        return None
    return steer.variant




def experiment_problems(campaign: Campaign, catalog: Catalog) -> list[ContentError]:
    """What is wrong with the campaign's experiment given its modules (empty: nothing)."""
    experiment = campaign.experiment
    if experiment is None:
        return []
    if experiment.of_subject:
        return _subject_problems(campaign, experiment)
    kind = next((s.kind for s in campaign.slots if s.name == experiment.slot), None)
    known = {m.id for m in catalog.by_kind.get(kind or "", [])}
    return [ContentError(f"experiment variant {key}: no {kind} module {module!r} for slot "
                         f"{experiment.slot!r}", campaign.file, _variant_line(campaign, key))
            for key, module in experiment.variants.items() if module not in known]


def _variant_line(campaign: Campaign, key: str) -> int | None:
    """The variant's line in the campaign file: the campaign keeps no lines, and only
    the catalog knows the module is missing, so the file is read again (rarely: only
    for a message)."""
    try:
        data = load_yaml((campaign.root / campaign.file).read_text(encoding="utf-8"),
                         campaign.file)
    except (OSError, UnicodeDecodeError, ContentError):
        return None
    block = data.get("experiment") if isinstance(data, LineDict) else None
    variants = block.get("variants") if isinstance(block, LineDict) else None
    if isinstance(variants, LineDict) and key in variants:
        return variants.line_of(key)
    return block.line_of("variants") if isinstance(block, LineDict) else None


def _subject_problems(campaign: Campaign, experiment: Experiment) -> list[ContentError]:
    """Each variant's subject line must be a template (Jinja syntax), like `subject:`."""
    problems = []
    for key, text in experiment.variants.items():
        try:
            SandboxedEnvironment().parse(text)
        except TemplateSyntaxError as exc:
            problems.append(ContentError(f"experiment variant {key}: the subject line is "
                                         f"not a template: {exc.message}", campaign.file))
    return problems


__all__ = ["HOLDOUT", "Steer", "experiment_problems", "position", "steer", "subject_variant",
           "variant_of"]
