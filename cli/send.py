"""`edition send RUN_DIR`: deliver an approved run's files exactly as they were approved."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.console import counts_text, err, exit_if_too_many_failed, out, user_errors
from edition.errors import UsageError
from edition.review.approval import read_approval
from edition.review.send_plan import mailing_lines, plan_send
from edition.review.sending import SEND_BATCH, health_check, send_approved
from edition.run.executors import Pool, pool_size
from edition.run.lifecycle import stopping_on_sigterm


def register(app: typer.Typer) -> None:
    app.command("send")(send)


def send(
    run_dir: Annotated[Path, typer.Argument(help="An approved run folder")],
    to: Annotated[str | None, typer.Option(help="Delivery target, overrides the campaign")
                  ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before sending")] = False,
    mailing: Annotated[str | None, typer.Option(
        help="Which issue of the campaign: only the one the approved messages name (the "
             "default; choose another with the dry run's --mailing)")] = None,
    new_mailing: Annotated[bool, typer.Option(
        "--new-mailing", help="Start this mailing while another one is unfinished")] = False,
    resend_unknown: Annotated[bool, typer.Option(
        "--resend-unknown", help="Re-send editions whose outcome is unknown")] = False,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes delivering batches (default: CPUs)")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Send although the last mailing's complaint rate reached 0.3 %")
                     ] = False,
) -> None:
    """Send the approved editions (checked byte for byte against approval.json)."""
    with user_errors():
        confirmed: dict[str, str] = {}
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("not a terminal, so nobody can be asked: pass --yes to send")
            plan = plan_send(run_dir, to=to, mailing=mailing)   # a changed run: exit 2
            health_check(plan.campaign, plan.channel, force=force)  # refused before asking
            err.print(f"Files verified against approval.json: {plan.describe()}.",
                      markup=False)
            for line in mailing_lines(plan.facts, plan.campaign, to)[1:]:
                err.print(line.removeprefix("- "), markup=False)
            typer.confirm(f"Send {plan.editions:,} editions of {plan.campaign.name} to "
                          f"{plan.target} for real?", abort=True)
            # the run and the approval shown, nothing else: a folder re-rendered or
            # re-approved while the question was open is refused
            confirmed = {"run_id": plan.facts.run_id, "approval_sha256": plan.approval_sha256}
        # approval.json's count sizes the pool; the files are verified (again) under the
        # run folder's lock before the first message leaves
        editions = int((read_approval(run_dir).get("counts") or {}).get("rendered") or 0)
        with stopping_on_sigterm(), Pool(pool_size(workers, editions, SEND_BATCH)) as executor:
            summary = send_approved(run_dir, to=to, mailing=mailing, new_mailing=new_mailing,
                                    resend_unknown=resend_unknown, executor=executor,
                                    force=force, **confirmed)
        err.print(f"{summary.verified:,} approved files verified against approval.json "
                  f"(run {summary.approved_run}); send {summary.send_id} to {summary.target}",
                  markup=False)
        for note in summary.notes:
            err.print(note, markup=False)
        counts = counts_text(summary.counts, summary.already_sent)
        out.print(f"{summary.campaign}: {summary.customers:,} customers ({counts}) in "
                  f"{summary.seconds:.1f} s", markup=False)
        out.print(f"mailing {summary.mailing}: {summary.sent_line()}", markup=False)
        out.print(f"report:   {summary.send_dir}/report.md", markup=False)
        out.print(f"manifest: {summary.send_dir}/manifest.jsonl", markup=False)
        exit_if_too_many_failed(summary)
