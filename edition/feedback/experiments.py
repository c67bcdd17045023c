"""Experiment reports: each variant's sends, clicks and rate, and the verdict of the
rule the campaign fixed before sending (`experiment.decide`).

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
the sends.
"""


from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edition.errors import UsageError
from edition.run.experiment_verdict import (
    METHOD,
    Arm,
    Verdict,
    decide,
    gather,
    p_best,
    threshold,
    wilson,
)

if TYPE_CHECKING:
    from edition.content.campaign import Campaign

def report(campaign: Campaign) -> dict[str, Any]:
    """The report of the campaign's experiment (design.md's JSON)."""
    experiment = campaign.experiment
    if experiment is None:
        raise UsageError(f"the campaign {campaign.name} declares no experiment "
                         f"(experiment: in {campaign.file})")
    arms, holdout = gather(campaign, experiment)
    verdict = decide(arms, experiment.decide)
    return {
        "experiment": experiment.name,
        "campaign": campaign.name,
        "slot": experiment.slot,
        "metric": experiment.metric,
        "rule": {"min_per_variant": experiment.decide.min_per_variant,
                 "p_best": experiment.decide.p_best, "threshold": verdict.threshold,
                 "method": METHOD},
        "verdict": verdict.verdict,
        "winner": verdict.winner,
        "why": verdict.why,
        "variants": [{"variant": a.variant, "module": experiment.variants[a.variant],
                      "share": experiment.split[a.variant] / 100.0,
                      "sends": a.sends, "clicks": a.clicks, "rate": a.rate,
                      "interval": list(wilson(a.clicks, a.sends)),
                      "p_best": verdict.p_best.get(a.variant, 0.0)} for a in arms],
        "holdout": holdout,
    }


def report_text(data: dict[str, Any]) -> str:
    """The report in words and one table, for people."""
    lines = [f"# Experiment {data['experiment']} ({data['campaign']}, slot {data['slot']})",
             "",
             f"Verdict: {data['verdict']}" + (f" — {data['winner']}" if data["winner"] else "")
             + f" ({data['why']})",
             f"Rule: at least {data['rule']['min_per_variant']:,} sends per variant, then "
             f"P(best) >= {data['rule']['threshold']:.4f}; {data['rule']['method']}.",
             "",
             "| variant | module | sends | clicks | rate | 95 % interval | P(best) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for v in data["variants"]:
        lo, hi = v["interval"]
        lines.append(f"| {v['variant']} | {v['module']} | {v['sends']:,} | {v['clicks']:,} | "
                     f"{v['rate']:.2%} | {lo:.2%} – {hi:.2%} | {v['p_best']:.3f} |")
    hold = data["holdout"]
    lines += ["", f"Holdout: {hold['customers']:,} customer(s) ({hold['share']:.0%} of the "
                  f"split) got nothing; clicks cannot be measured on them, so the lift over "
                  f"the holdout needs a metric outside the mail (orders).", ""]
    return "\n".join(lines)


__all__ = ["METHOD", "Arm", "Verdict", "decide", "gather", "p_best", "report", "report_text",
           "threshold", "wilson"]
