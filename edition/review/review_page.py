"""What a reviewer reads before approving a run: its summary and mailing, why it could
not be sent as it is, the report's warnings as rows, and the changes since the
campaign's last approved or sent run (with sample text diffs); Markdown, for the
Prefect UI's review artifacts and its approval form."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edition.content.campaign import Campaign
from edition.markdown_text import code, fenced, text
from edition.review.approval import Review, earlier_run, summary_lines, table_rows
from edition.review.diff import RunDiff, diff_runs
from edition.review.send_plan import mailing_lines


def _previous_diff(review: Review) -> tuple[Path | None, RunDiff | None]:
    previous = earlier_run(review.facts)
    if previous is None:
        return None, None
    try:
        return previous, diff_runs(previous, review.folder, samples=5)
    except Exception:  # a damaged old run must not stop the review
        return previous, None


def review_page(review: Review, campaign: Campaign, link: Callable[[Path], str], ask: str,
                to: str | None = None) -> tuple[str, list[dict[str, str]], str]:
    """(the summary, the warnings table, the changes), in Markdown and rows; `link` makes
    a link to a file of the run, `ask` says how to answer (the summary's last words)."""
    facts = review.facts
    out_dir = review.folder
    summary = ["# Review before sending", "", *summary_lines(facts),
               *mailing_lines(facts, campaign, to), "",
               f"[Browse the editions]({link(out_dir)}) · "
               f"[report.md]({link(out_dir / 'report.md')})", ""]
    unsendable = review.unsendable()
    refused = review.problems(allow_failed=False)
    if unsendable:
        summary += ["**Cannot be sent as it is:** " + "; ".join(unsendable)
                    + ". Nothing will be sent; fix the campaign and run it again.", ""]
    elif refused:
        summary += ["**Cannot be sent as it is:** " + "; ".join(refused)
                    + " (tick allow_failed to send the others)", ""]
    summary += [ask, ""]
    warnings: list[dict[str, str]] = []
    for title, lines in facts.warnings().items():
        rows = table_rows(lines)
        if rows:
            warnings += [{"section": title, **row} for row in rows]
        else:
            warnings += [{"section": title, "reason": line.lstrip("-* ")} for line in lines]
    previous, diff = _previous_diff(review)
    if previous is None:
        changes = "No earlier approved or sent run of this campaign to compare with."
    elif diff is None:
        changes = f"Could not compare with the last approved or sent run ({previous})."
    else:
        changes = "\n".join(["# Changes since the last approved or sent run", "",
                             fenced("\n".join(diff.summary_lines(limit=30)))])
        for sample in diff.samples:
            changes += (f"\n\nCustomer {code(sample.customer_id)} ({text(sample.reason)}):"
                        f"\n\n{fenced(sample.diff or '(text identical)', 'diff')}")
    summary += ["## Changes", "", changes.replace("# Changes since", "### Changes since", 1)
                if diff else changes]
    return "\n".join(summary), warnings, changes
