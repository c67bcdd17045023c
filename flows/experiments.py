"""The campaign's experiment report as a Prefect artifact, after each run or send.

The same report as `edition experiment report CAMPAIGN` (edition/feedback/experiments.py:
variants, sends, clicks, rates with 95 % intervals, P(best) and the verdict of the rule
fixed before sending), in markdown, under the key `experiment-<campaign>`, so the UI
shows where the test stands after every mailing. A report that cannot be read (the click
store unreachable) is logged and leaves the run as it ended: it is feedback, not the run.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from edition.content.campaign import Campaign
from edition.errors import EditionError
from edition.feedback.experiments import report, report_text
from edition.naming import artifact_key


def publish_experiment(campaign: Campaign) -> str | None:
    """The artifact's key, or None when the campaign declares no experiment (or its
    report could not be read: said in the log)."""
    if campaign.experiment is None:
        return None
    try:
        data = report(campaign)
    except (EditionError, OSError) as exc:
        get_run_logger().warning("experiment report of %s not published: %s",
                                 campaign.name, exc)
        return None
    key = artifact_key("experiment", campaign.name)
    create_markdown_artifact(report_text(data), key=key,
                             description=f"{campaign.name}: experiment {data['experiment']}"
                                         f", {data['verdict']}")
    return key


__all__ = ["publish_experiment"]
