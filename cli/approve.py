"""`edition approve RUN_DIR`: review a finished dry run and sign it off for `edition send`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.console import err, out, user_errors
from edition.errors import ApprovalError, UsageError
from edition.review.approval import Review, RunFacts, default_approver, earlier_run, summary_lines
from edition.review.diff import diff_runs
from edition.review.send_plan import mailing_lines


def register(app: typer.Typer) -> None:
    app.command("approve")(approve)


def approve(
    run_dir: Annotated[Path, typer.Argument(help="The run folder (out/<campaign>/<run id>)")],
    by: Annotated[str | None, typer.Option(help="Who approves (default: the OS user)")] = None,
    note: Annotated[str, typer.Option(help="Why, or what was checked")] = "",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
    allow_failed: Annotated[bool, typer.Option(
        "--allow-failed", help="Approve although customers failed or preflight found errors")
    ] = False,
) -> None:
    """Show a run's summary, warnings and changes, then record its approval."""
    with user_errors():
        # the folder's lock from the summary to the record: what is approved is what was
        # shown (a re-render meanwhile is refused; a changed manifest refuses the approval)
        with Review(run_dir) as review:
            facts = review.facts
            for line in summary_lines(facts):
                out.print(line, markup=False)
            for line in mailing_lines(facts):
                out.print(line, markup=False)
            warnings = facts.warnings()
            if warnings:
                out.print("\nWarnings from report.md:", markup=False)
                for title, lines in warnings.items():
                    out.print(f"\n### {title}", markup=False)
                    for line in lines:
                        out.print(line, markup=False)
            _changes(facts)
            refused = review.problems(allow_failed=allow_failed)  # every file hashed here
            if refused:
                raise ApprovalError(f"cannot approve run {facts.run_id}: " + "; ".join(refused),
                                    facts.folder)
            who = by or default_approver()
            if not yes:
                if not sys.stdin.isatty():
                    raise UsageError("not a terminal, so nobody can be asked: review the "
                                     "summary and pass --yes to approve")
                typer.confirm(f"\nApprove run {facts.run_id} of {facts.campaign} for sending, "
                              f"as {who}?", abort=True)
            document = review.record(by=who, note=note, allow_failed=allow_failed)
        out.print(f"\napproved by {document['approved_by']} at {document['approved_at']}: "
                  f"{len(document['files']):,} files, run.json and the manifest recorded in "
                  f"{Path(run_dir) / 'approval.json'}", markup=False)
        out.print(f"send it with: edition send {run_dir}", markup=False)


def _changes(facts: RunFacts) -> None:
    """The diff against the campaign's last approved or sent run, in words."""
    previous = earlier_run(facts)
    if previous is None:
        out.print("\nNo earlier approved or sent run of this campaign to compare with.",
                  markup=False)
        return
    try:
        diff = diff_runs(previous, facts.folder, samples=0)
    except Exception as exc:  # a damaged old run must not stop a review
        err.print(f"cannot compare with {previous}: {exc}", markup=False)
        return
    out.print(f"\nChanges since the last approved or sent run ({previous}):", markup=False)
    for line in diff.summary_lines(limit=10)[1:]:
        out.print(line, markup=False)
    out.print(f"(text diffs: edition diff {previous} {facts.folder})", markup=False)
