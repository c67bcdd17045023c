"""Experiment reports: each variant's sends, clicks and rate, and the verdict of the
rule the campaign fixed before sending (`experiment.decide`). The counts, the rule and its
method are edition/run/experiment_verdict.py's (a run applies them too, for a "test then
winner" experiment's rest); this module gives them to the report and re-exports them.
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
