"""`experiment:` in a campaign: a test of one slot's modules, decided by a rule fixed
before anything is sent.

```yaml
experiment:
  name: offer-test                 # a slug; with the campaign, what assignment hashes
  slot: offer                      # the slot whose module varies, or `subject`
                                   # (then each variant is a subject line, a template)
  variants: {a: o-vip, b: o-generic}
  split: {a: 45, b: 45}            # percent; what is left (10) is the holdout
  metric: clicks
  decide: {min_per_variant: 1000, p_best: 0.95}
```

Each customer's variant is a hash of (campaign, experiment name, customer id): the same
in every run, whatever the order or size of the customer file, on any machine
(audience/experiments.py). Holdout customers get nothing (`excluded`, "holdout
(experiment NAME)"). The verdict (feedback/experiments.py) applies `decide` and nothing
else: below `min_per_variant` sends in any variant it is "keep testing"; at or above it a
variant whose chance to be best reaches the threshold wins, else "no difference".
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator, model_validator

from edition.content.campaign_values import SLUG, Strict
from edition.content.errors_at_lines import fail

SUBJECT = "subject"
METRICS = ("clicks",)
MAX_VARIANTS = 8
VARIANT_KEY = SLUG


class Decide(Strict):
    """`decide: {min_per_variant: N, p_best: 0.95}`: the rule, fixed before sending."""

    min_per_variant: int = 1000
    p_best: float = 0.95

    @field_validator("min_per_variant", mode="before")
    @classmethod
    def _minimum(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail("experiment.decide.min_per_variant must be a whole number of at "
                       "least 1 (sends per variant before any verdict)")
        return value

    @field_validator("p_best", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not 0.5 < value < 1:
            raise fail("experiment.decide.p_best must be a number between 0.5 and 1, "
                       "e.g. 0.95")
        return float(value)


class Experiment(Strict):
    """`experiment: {name, slot, variants, split, metric, decide}` (design.md, Learning)."""

    name: str
    slot: str
    variants: dict[str, str]
    split: dict[str, float]
    metric: str = "clicks"
    decide: Decide = Decide()

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        if not isinstance(value, str) or not SLUG.match(value):
            raise fail("experiment.name must be a slug: lowercase letters, digits and '-'")
        return value

    @field_validator("slot", mode="before")
    @classmethod
    def _slot(cls, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise fail("experiment.slot must name one of the campaign's slots, or `subject`")
        return value

    @field_validator("variants", mode="before")
    @classmethod
    def _variants(cls, value: Any) -> dict[str, str]:
        if not isinstance(value, dict) or not 2 <= len(value) <= MAX_VARIANTS:
            raise fail(f"experiment.variants must map 2 to {MAX_VARIANTS} keys to module "
                       f"ids (or, for slot: subject, subject lines), e.g. "
                       f"{{a: o-vip, b: o-generic}}")
        for key, module in value.items():
            if not isinstance(key, str) or not VARIANT_KEY.match(key) or key == "holdout":
                raise fail(f"experiment variant {key!r} must be a slug other than 'holdout'")
            if not isinstance(module, str) or not module:
                raise fail(f"experiment variant {key}: give a module id (or a subject line)")
        if len(set(value.values())) != len(value):
            raise fail("experiment.variants must name different modules (or subject lines)")
        return {str(k): str(v) for k, v in value.items()}

    @field_validator("split", mode="before")
    @classmethod
    def _split(cls, value: Any) -> dict[str, float]:
        if not isinstance(value, dict) or not value:
            raise fail("experiment.split must give each variant its percent, e.g. "
                       "{a: 45, b: 45} (what is left is the holdout)")
        for key, share in value.items():
            if isinstance(share, bool) or not isinstance(share, int | float) or share <= 0:
                raise fail(f"experiment.split.{key} must be a percent above 0")
        if sum(value.values()) > 100 + 1e-9:
            raise fail("experiment.split adds up to more than 100 percent")
        return {str(k): float(v) for k, v in value.items()}

    @field_validator("metric", mode="before")
    @classmethod
    def _metric(cls, value: Any) -> str:
        if value not in METRICS:
            raise fail(f"experiment.metric {value!r}: only clicks can be measured")
        return str(value)

    @model_validator(mode="after")
    def _same_keys(self) -> Experiment:
        if set(self.split) != set(self.variants):
            raise fail("experiment.split must give a percent for exactly the keys of "
                       f"experiment.variants ({', '.join(self.variants)})")
        return self

    @property
    def of_subject(self) -> bool:
        """A test of subject lines: each variant is the subject's template text."""
        return self.slot == SUBJECT

    @property
    def holdout(self) -> float:
        """The percent of customers held out (get nothing)."""
        return max(0.0, 100.0 - sum(self.split.values()))


__all__ = ["SUBJECT", "Decide", "Experiment"]
