"""An experiment's counts and verdict, for a run and for the report: each variant's
sends and clicks gathered from the campaign's run folders and the house store, the
decision rule applied, and what the rest of a "test then winner" experiment gets now.

The rule, and nothing else, decides:
- "keep testing" while any variant has fewer than `min_per_variant` sends;
- then "winner" when one variant's chance to be best reaches the threshold;
- else "no difference".

Method (named in every report): each variant's click rate has a Beta(1 + clicks,
1 + sends − clicks) posterior (a flat prior); P(best) is the chance that a variant's rate
is the highest, integrated numerically over the normal approximation of those posteriors
(sends are at least `min_per_variant` when it matters, where the approximation is
tight). The threshold is corrected so that the chance of a false winner stays under
1 − p_best however many variants there are and however often the report is read: a
variant wins at P(best) ≥ 1 − (1 − p_best) / (2k) for k variants (0.9875 for two at
p_best 0.95). Intervals are 95 % Wilson score intervals.

Where the numbers come from: the campaign's run folders (run/index.py: approved or sent
runs), whose manifests name each customer's variant (`experiment`) and status — a row
sent in the run or in one of its approved sends (`sends/*/manifest.jsonl`) is one send;
and the house store's people's clicks (machine clicks left out), attributed to a variant
through the version the link was in. At `tracking.level: customer` a variant's clicks
are the customers who clicked; at `aggregate` level the clicks themselves, capped at
the sends. The rest of a "test then winner" experiment (`"cell": "rest"`) is never
counted: it got the winner because it won.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from edition.audience.experiments import HOLDOUT, REST, Rest
from edition.run.folder import read_run_file
from edition.run.index import indexed_folders
from edition.run.manifest import MANIFEST_NAME, read_rows
from edition.store.clicks import ClickStore
from edition.store.database import store_location

if TYPE_CHECKING:
    from edition.content.campaign import Campaign
    from edition.content.experiment import Decide, Experiment

METHOD = ("Beta-Binomial posterior (flat prior), P(best) by numerical integration of "
          "its normal approximation; threshold corrected to 1 - (1 - p_best) / (2k)")
_Z95 = NormalDist().inv_cdf(0.975)
_GRID = 4001
_NORMAL = NormalDist()


@dataclass
class Arm:
    """One variant's counts."""

    variant: str
    sends: int = 0
    clicks: int = 0

    @property
    def rate(self) -> float:
        return self.clicks / self.sends if self.sends else 0.0


@dataclass(frozen=True)
class Verdict:
    verdict: str                       # winner | keep testing | no difference
    winner: str | None
    p_best: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.0
    why: str = ""


def wilson(clicks: int, sends: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a rate."""
    if sends <= 0:
        return (0.0, 1.0)
    p = clicks / sends
    z2 = _Z95 * _Z95
    centre = (p + z2 / (2 * sends)) / (1 + z2 / sends)
    half = _Z95 * math.sqrt(p * (1 - p) / sends + z2 / (4 * sends * sends)) / (1 + z2 / sends)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _posterior(arm: Arm) -> tuple[float, float]:
    a, b = 1 + arm.clicks, 1 + max(0, arm.sends - arm.clicks)
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    return mean, sd


def p_best(arms: list[Arm]) -> dict[str, float]:
    """Each variant's chance to have the highest click rate (sums to 1)."""
    if not arms:
        return {}
    params = [_posterior(a) for a in arms]
    lo = min(m - 8 * s for m, s in params)
    hi = max(m + 8 * s for m, s in params)
    step = (hi - lo) / (_GRID - 1)
    out = {}
    for i, arm in enumerate(arms):
        mean, sd = params[i]
        total = 0.0
        for g in range(_GRID):
            x = lo + g * step
            density = math.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
            if density < 1e-300:
                continue
            others = 1.0
            for j, (m, s) in enumerate(params):
                if j != i:
                    others *= _NORMAL.cdf((x - m) / s)
            total += density * others * step
        out[arm.variant] = total
    norm = sum(out.values()) or 1.0
    return {k: v / norm for k, v in out.items()}


def threshold(decide: Decide, variants: int) -> float:
    """The P(best) a variant needs to win (see the module's docstring)."""
    return 1 - (1 - decide.p_best) / (2 * max(2, variants))


def decide(arms: list[Arm], rule: Decide) -> Verdict:
    """The verdict of the campaign's fixed rule on these counts."""
    needed = threshold(rule, len(arms))
    chances = p_best(arms)
    short = [a.variant for a in arms if a.sends < rule.min_per_variant]
    if short:
        return Verdict("keep testing", None, chances, needed,
                       f"fewer than {rule.min_per_variant:,} sends in {', '.join(short)}")
    best = max(chances, key=lambda k: chances[k])
    if chances[best] >= needed:
        return Verdict("winner", best, chances, needed,
                       f"P(best) {chances[best]:.3f} >= {needed:.4f}")
    return Verdict("no difference", None, chances, needed,
                   f"no variant reached P(best) {needed:.4f} (highest {chances[best]:.3f})")


# -- gathering the counts ------------------------------------------------------------


def _sent_rows(folder: Path) -> list[dict[str, Any]]:
    """The run's manifest rows, with those its approved sends sent marked sent."""
    rows, _ = read_rows(folder / MANIFEST_NAME)
    sent = {str(r.get("customer_id")) for send in sorted((folder / "sends").glob(
        f"*/{MANIFEST_NAME}")) for r in read_rows(send)[0] if r.get("status") == "sent"}
    for row in rows:
        if str(row.get("customer_id")) in sent:
            row["status"] = "sent"
    return rows


def gather(campaign: Campaign, experiment: Experiment) -> tuple[list[Arm], dict[str, Any]]:
    """The variants' counts and the holdout's, from the run folders and the store."""
    arms = {key: Arm(key) for key in experiment.variants}
    holdout: set[str] = set()
    version_variant: dict[str, str] = {}
    exposed: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for folder in indexed_folders(campaign.root, campaign.name):
        for row in _sent_rows(folder):
            part = row.get("experiment") or {}
            if part.get("name") != experiment.name or part.get("cell") == REST:
                continue
            customer = str(row.get("customer_id"))
            variant = str(part.get("variant"))
            if variant == HOLDOUT:
                holdout.add(customer)
            elif variant in arms and row.get("status") == "sent" \
                    and row.get("reason_code") != "already_sent":   # a rerun's: not again
                exposed[variant].add((str(folder), customer))
                module = experiment.variants[variant]
                if row.get("version") and (experiment.of_subject or module in (
                        row.get("modules") or {}).get(experiment.slot, [])):
                    version_variant[str(row["version"])] = variant
    for variant, sends in exposed.items():
        arms[variant].sends = len(sends)
    clickers: dict[str, set[str]] = defaultdict(set)
    clicks: dict[str, int] = defaultdict(int)
    with ClickStore(store_location(campaign), campaign.root) as store:
        for click in store.clicks(campaign.name):
            clicked = version_variant.get(click.version)
            if click.machine or clicked is None:
                continue
            clicks[clicked] += 1
            if click.customer_id is not None:
                clickers[clicked].add(click.customer_id)
    for variant, arm in arms.items():
        counted = len(clickers[variant]) if clickers[variant] else clicks[variant]
        arm.clicks = min(counted, arm.sends)
    return list(arms.values()), {"customers": len(holdout),
                                 "share": experiment.holdout / 100.0}




def first_test_send(campaign: Campaign, experiment: Experiment) -> dt.datetime | None:
    """When the experiment's test cells first went out: the start of the earliest run
    (or approved send) of the campaign with a sent test row (None: none yet)."""
    first: dt.datetime | None = None
    for folder in indexed_folders(campaign.root, campaign.name):
        sent = any((row.get("experiment") or {}).get("name") == experiment.name
                   and (row.get("experiment") or {}).get("cell") != REST
                   and row.get("status") == "sent" for row in _sent_rows(folder))
        if not sent:
            continue
        info = read_run_file(folder) or {}
        started = (info.get("options") or {}).get("started") or info.get("started")
        try:
            at = dt.datetime.fromisoformat(str(started))
        except ValueError:
            continue
        at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        first = at if first is None or at < first else first
    return first


def rest_decision(campaign: Campaign, now: dt.datetime) -> Rest | None:
    """What the rest of a "test then winner" experiment gets in a run at `now` (None:
    the campaign has no such experiment): nothing before the wait is over ("waiting
    until T"), then the winner the rule names, else the declared default, else nothing
    yet (the verdict said so: keep testing)."""
    experiment = campaign.experiment
    if experiment is None or not experiment.then_winner:
        return None
    started = first_test_send(campaign, experiment)
    if started is None:
        return Rest(None, "no test cell sent yet")
    due = started + experiment.waited
    if now < due:
        return Rest(None, f"until {due.astimezone(dt.UTC).isoformat(timespec='minutes')}")
    verdict = decide(*gather(campaign, experiment)[:1], experiment.decide)
    if verdict.winner is not None:
        return Rest(verdict.winner, f"winner {verdict.winner}, P(best) "
                                    f"{verdict.p_best.get(verdict.winner, 0.0):.3f}")
    if experiment.default is not None:
        return Rest(experiment.default, f"{verdict.verdict}: the default variant "
                                        f"{experiment.default}")
    return Rest(None, f"verdict: {verdict.verdict}, no default variant")


__all__ = ["METHOD", "Arm", "Verdict", "decide", "first_test_send", "gather", "p_best",
           "rest_decision", "threshold", "wilson"]
