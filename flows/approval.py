"""Review before sending, in the Prefect UI: the run pauses until an approver answers.

A `send-campaign` run that sends (dry_run off, or a scheduled run of an `approval:
required` campaign) first renders as a dry run into its folder. This module then puts
what a reviewer needs into the run's artifacts — the summary, the report's warnings as
a table, the changes since the campaign's last approved or sent run, a link to browse
the editions — and pauses the flow run with an `ApprovalForm`. The approver resumes it
from the UI (**Resume**) and fills in the form: approved, the run folder gets its
approval.json (with the approver's name) and its files are sent exactly as in
`edition send` (edition/review/sending.py: the same lifecycle as a run, its batches as
`send-batch` task runs on the form's task runner); rejected, or not answered within the
timeout, the run ends Cancelled with the reason and nothing leaves.

The pause can last a day, so the run folder stays held for its review (an
`edition.review.approval.Review`: the folder's lock, from the summary to the record) and the
approval is recorded only for the run this flow run rendered, with the bytes the
reviewer was shown; the send then takes exactly that run and approval. A run whose
marketing messages carry no working unsubscribe link is refused before the pause.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.input import RunInput
from pydantic import Field

from edition.content.campaign import Campaign
from edition.errors import EditionError, UsageError
from edition.naming import artifact_key, new_run_id
from edition.review.approval import (
    APPROVAL_FILE,
    Review,
    file_digest,
)
from edition.review.review_page import review_page
from edition.review.sending import SENDS_FOLDER, SendSummary, health_check, send_approved
from edition.run.context import out_folder, target_of
from edition.run.folder import is_remote
from edition.run.options import RunOptions
from edition.run.run_page import output_link
from edition.run.workers import Work
from edition.send.delivery import channel_of
from flows.ending import ended
from flows.experiments import publish_experiment
from flows.form import RunSettings
from flows.tasks import executor_for

PAUSE_KEY = "approval"
ASK = ("Click **Resume** to answer: switch on *approve* and give your name to send these "
       "editions exactly as rendered; leave it off to reject the run. Without an answer "
       "within {hours} h nothing is sent.")
FORM = ("Switch on *approve* and give your name to send these editions exactly as rendered; "
        "leave it off to reject the run (nothing is sent).")
POLL_SECONDS = 5


class ApprovalForm(RunInput):
    """What the approver answers when resuming a paused send-campaign run."""

    approve: bool = Field(default=False, description=(
        "On: send these editions exactly as rendered. Off: reject the run (nothing is "
        "sent)."))
    approver: str = Field(min_length=1, max_length=200, description=(
        "Your name; it is recorded in the run folder's approval.json."))
    note: str = Field(default="", max_length=2000, description=(
        "What you checked, or why you reject the run."))
    allow_failed: bool = Field(default=False, description=(
        "Send although some customers failed, or preflight found errors (they are not "
        "sent)."))


def is_scheduled() -> bool:
    """Whether this flow run was created by its deployment's schedule."""
    from prefect.runtime import flow_run

    try:
        return "auto-scheduled" in (flow_run.get_tags() or [])
    except Exception:
        return False


def needs_review(options: RunOptions, campaign: Campaign, *, review: bool) -> bool:
    """Sending from a flow run waits for an approver when the run asks for it (the form's
    `review_before_send`, on by default), and always for an `approval: required`
    campaign, also when its schedule started the run."""
    if campaign.approval_required:
        return options.send or is_scheduled()
    return options.send and review


def dry_run_of(options: RunOptions, campaign: Campaign) -> RunOptions:
    """The same run rendering only (its mailing kept, for the approval); its folder must
    be on this machine: the approval hashes it and the approved send reads it."""
    out = out_folder(options, campaign)
    if is_remote(out):
        raise UsageError(f"review_before_send needs a run folder on this machine, not "
                         f"{out}; set out to a local folder, or turn review_before_send off")
    get_run_logger().warning("rendering as a dry run; it is sent to %s only once an approver "
                             "resumes this run", target_of(options, campaign))
    return options.replace(send=False, resend_unknown=False, new_mailing=False)


def rendered_here(review: Review) -> str | None:
    """Why the folder does not hold the run this flow run rendered (None: it does)."""
    from prefect.runtime import flow_run

    marker = review.facts.info.get("flow_run_id")
    here = flow_run.get_id()
    if marker and here and str(marker) != str(here):
        return (f"{review.folder} now holds run {review.facts.run_id}, rendered by flow run "
                f"{marker}, not the run this flow run rendered")
    return None


# -- the pause and the send ---------------------------------------------------------------


def _cancel_expired_pause(message: str) -> Any:
    """Cancelled, although the pause has expired.

    Prefect's server refuses to take a flow run out of a pause whose deadline has passed
    except into Failed ("The flow was paused and never resumed"), and its pause-expiry
    service fails such runs by itself. An unanswered approval is not a failure: nothing
    was sent, on purpose. So the state is set with force, and the flow returns it.
    """
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run
    from prefect.states import Cancelled

    state = Cancelled(message=message)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.get_id(), state, force=True)
    return Cancelled(message=message)


def review_then_send(options: RunOptions, campaign: Campaign, out_dir: Path,
                     settings: RunSettings) -> Any:
    """Publish the review, pause for the ApprovalForm, then send or cancel.

    The run folder is held (its lock) from the review to the approval: nothing re-renders
    it while the reviewer reads, however long the pause.
    """
    from prefect.states import Failed

    logger = get_run_logger()
    try:
        with Review(out_dir, kind=campaign.kind) as review:
            other = rendered_here(review)
            if other:
                logger.error(f"{other}; nothing was sent")
                return Failed(message=f"{other}; nothing was sent")
            # sender health as `edition run --send` asks it: nobody waits on an approval
            # for a send that would be refused (the send checks again, mail may come back)
            for warning in health_check(campaign, channel_of(target_of(options, campaign)),
                                        force=options.force):
                logger.warning(warning)
            answer = _review_and_pause(review, campaign, settings.approval_timeout_hours,
                                       options.to)
            if not isinstance(answer, dict):
                return answer   # Failed, or Cancelled (rejected, unanswered, refused)
            run_id = review.facts.run_id
            approval_sha256 = file_digest(out_dir / APPROVAL_FILE)
    except EditionError as exc:
        logger.error(f"{exc}; nothing was sent")
        return Failed(message=f"{exc}; nothing was sent")
    logger.info("approved by %s; sending %s", answer["approved_by"], out_dir)
    # exactly the run and the approval recorded under the lock: a folder re-rendered or
    # re-approved between the record and the send is refused
    try:
        summary = send_reviewed(options, campaign, out_dir, settings, run_id=run_id,
                                approval_sha256=approval_sha256,
                                rendered=int(answer["counts"].get("rendered", 0)))
    except EditionError as exc:   # refused before anything left (sender health ...)
        logger.error(f"{exc}; nothing was sent" if "nothing was sent" not in str(exc)
                     else str(exc))
        return Failed(message=str(exc))
    _send_artifacts(summary, campaign.name)
    publish_experiment(campaign)
    return ended(summary)


def send_reviewed(options: RunOptions, campaign: Campaign, out_dir: Path,
                  settings: RunSettings, *, run_id: str, approval_sha256: str,
                  rendered: int) -> SendSummary:
    """The approved send, its batches as send-batch task runs on the form's task runner."""
    from prefect.runtime import flow_run

    send_id = new_run_id()
    work = None
    if settings.task_runner == "dask":   # a Dask worker has no content root: a bundle
        work = Work.pack(campaign, options.campaign, sending=True,
                         local_dir=str((out_dir / SENDS_FOLDER / send_id).resolve()))
    with executor_for(settings, rows=rendered, batch_size=settings.batch_size,
                      work=work) as executor:
        return send_approved(out_dir, to=options.to, mailing=options.mailing,
                             new_mailing=options.new_mailing,
                             resend_unknown=options.resend_unknown, run_id=run_id,
                             approval_sha256=approval_sha256, send_id=send_id,
                             executor=executor, batch_size=settings.batch_size,
                             marker={"flow_run_id": flow_run.get_id()},
                             force=options.force)


def _send_artifacts(summary: SendSummary, name: str) -> None:
    """What was sent, for the UI: the send's report, a link to its folder; and the log."""
    logger = get_run_logger()
    create_markdown_artifact(summary.report, key=artifact_key("send-report", name),
                             description=f"{name}: what was sent (approved by "
                                         f"{summary.approved_by})")
    create_link_artifact(output_link(Path(summary.send_dir)), link_text=f"Send {summary.send_id}",
                         key=artifact_key("send", name),
                         description=f"{name}: manifest.jsonl and report.md of the send")
    logger.info("mailing %s: %s", summary.mailing, summary.sent_line())
    for note in summary.notes:
        logger.warning(note)


def _review_and_pause(review: Review, campaign: Campaign, timeout_hours: float,
                      to: str | None) -> Any:
    """The artifacts, the pause and the record: the approval document, or the state the
    flow run ends in (nothing sent)."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run
    from prefect.states import Cancelled, Failed

    logger = get_run_logger()
    out_dir = review.folder
    summary, warnings, changes = review_page(review, campaign, output_link,
                                             ASK.format(hours=f"{timeout_hours:g}"), to)
    name = campaign.name
    create_markdown_artifact(summary, key=artifact_key("review", name),
                             description=f"{name}: what will be sent, for the approver")
    create_table_artifact(warnings or [{"section": "-", "reason": "no warnings"}],
                          key=artifact_key("warnings", name),
                          description=f"{name}: preflight and report warnings")
    create_markdown_artifact(changes, key=artifact_key("changes", name),
                             description=f"{name}: changes since the last approved or sent run")
    create_link_artifact(output_link(out_dir), link_text=f"Browse the editions of {out_dir.name}",
                         key=artifact_key("editions", name),
                         description=f"{name}: the rendered editions awaiting approval")
    unsendable = review.unsendable()
    if unsendable:   # no approval can make it sendable: do not keep anyone waiting for one
        message = (f"run {review.facts.run_id} cannot be sent as it is: "
                   + "; ".join(unsendable) + "; nothing was sent")
        logger.error(message)
        return Failed(message=message)
    seconds = max(1, int(timeout_hours * 3600))
    logger.warning("waiting for approval (up to %g h): open this flow run in the Prefect "
                   "UI, read the review artifacts and click Resume", timeout_hours)
    try:
        form = pause_flow_run(wait_for_input=ApprovalForm.with_initial_data(
            description=summary.replace(ASK.format(hours=f"{timeout_hours:g}"), FORM)),
            timeout=seconds,
            poll_interval=min(POLL_SECONDS, seconds), key=PAUSE_KEY)
    except FlowPauseTimeout:
        message = f"no approval within {timeout_hours:g} h: nothing was sent"
        logger.warning(message)
        return _cancel_expired_pause(message)
    who = " ".join(form.approver.split())
    if not form.approve:
        message = f"rejected by {who}" + (f": {form.note}" if form.note else "") \
            + "; nothing was sent"
        logger.warning(message)
        return Cancelled(message=message)
    try:
        return review.record(by=who, note=form.note, allow_failed=form.allow_failed)
    except Exception as exc:
        message = f"approved by {who}, but {exc}; nothing was sent"
        logger.error(message)
        return Cancelled(message=message)
