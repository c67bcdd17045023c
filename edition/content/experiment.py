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
  # optional, "test then winner": only `test_share` of the customers are the test cells
  # (split as above); the rest wait ("waiting for the experiment's verdict") until a run
  # of the mailing `wait` after the first test send finds a winner (or `default`)
  mode: test_then_winner           # or split (the default: everyone is in a cell)
  test_share: 0.2                  # a fraction, or "20%"
  wait: 24h                        # h, m or d
  default: a                       # optional: sent to the rest when there is no winner
```

Each customer's variant is a hash of (campaign, experiment name, customer id): the same
in every run, whatever the order or size of the customer file, on any machine
(audience/experiments.py). Holdout customers get nothing (`excluded`, "holdout
(experiment NAME)"). The verdict (feedback/experiments.py) applies `decide` and nothing
else: below `min_per_variant` sends in any variant it is "keep testing"; at or above it a
variant whose chance to be best reaches the threshold wins, else "no difference".
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import field_validator, model_validator

from edition.content.campaign_values import SLUG, Strict
from edition.content.errors_at_lines import fail

SUBJECT = "subject"
METRICS = ("clicks",)
MAX_VARIANTS = 8
VARIANT_KEY = SLUG
MODES = ("split", "test_then_winner")
_WAIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhd])\s*\Z")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


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
    mode: str = "split"
    test_share: float = 100.0       # percent of customers in the test cells
    wait: float = 24 * 3600.0        # seconds after the first test send before a verdict
    default: str | None = None       # the rest's variant when the verdict names none

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> str:
        if value not in MODES:
            raise fail(f"experiment.mode {value!r} must be one of {', '.join(MODES)}")
        return str(value)

    @field_validator("test_share", mode="before")
    @classmethod
    def _test_share(cls, value: Any) -> float:
        text = value.strip() if isinstance(value, str) else None
        try:
            share = (float(text[:-1]) if text and text.endswith("%") else
                     float(value) * 100.0 if not isinstance(value, bool | str) else -1.0)
        except (TypeError, ValueError):
            share = -1.0
        if not 0 < share <= 100:
            raise fail(f"experiment.test_share {value!r} must be a fraction above 0 and at "
                       f"most 1 (0.2), or a percent (\"20%\")")
        return share

    @field_validator("wait", mode="before")
    @classmethod
    def _wait(cls, value: Any) -> float:
        match = _WAIT.match(str(value)) if isinstance(value, str) else None
        if match is None:
            raise fail(f"experiment.wait {value!r} must be a duration such as 24h, 90m or 2d")
        return float(match.group(1)) * _UNITS[match.group(2)]

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
        if self.default is not None and self.default not in self.variants:
            raise fail(f"experiment.default {self.default!r} must be one of the variants "
                       f"({', '.join(self.variants)})")
        if self.mode != "test_then_winner" and (self.test_share < 100 or self.default):
            raise fail("experiment.test_share and experiment.default are for mode: "
                       "test_then_winner")
        return self

    @property
    def then_winner(self) -> bool:
        """"Test then winner": the test cells first, the winner to the rest later."""
        return self.mode == "test_then_winner"

    @property
    def waited(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.wait)

    @property
    def of_subject(self) -> bool:
        """A test of subject lines: each variant is the subject's template text."""
        return self.slot == SUBJECT

    @property
    def holdout(self) -> float:
        """The percent of customers held out (get nothing)."""
        return max(0.0, 100.0 - sum(self.split.values()))


__all__ = ["SUBJECT", "Decide", "Experiment"]
