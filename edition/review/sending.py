"""Sending an approved run: its files as approved, byte for byte, through the send ledger.

`send_approved` checks the run folder against approval.json before anything leaves
(edition/review/send_plan.py: a missing approval, a changed manifest or run.json, a file
changed, missing or added, marketing messages without a working unsubscribe link, a
mailing other than the one the messages name in their Feedback-ID: the whole send is
refused, exit 2). Given the run id and the approval a person confirmed, it also refuses
a folder re-rendered or re-approved since.

The send is a run of the one lifecycle (edition/run/lifecycle.py), fed the approved
rows (`ApprovedRows`): the ledger's run lock and the mailing the approved messages name,
the run folder held (and verified again under its lock), the rows in batches through
the executor the caller chose (this process, a process pool, Prefect's task runners,
Dask), one claim per (campaign, mailing, customer, channel) in the workers, the manifest,
report and `send.json` in `RUN_DIR/sends/<send id>/` (a local target's outbox too), so
the approved files stay as they were and the approval still verifies after the send. A
send stopped in its process (an error, Ctrl-C, SIGTERM) repairs its folder at once; one
killed outright is repaired by the next send of the run (`recover_sends`), each row's
outcome as the ledger recorded it.

In the main process each `rendered` row's files are read once, checked against their
approved digest, and handed to a worker as they are (the .eml is not rebuilt);
suppression is asked again for every customer (someone may have unsubscribed since
the approval) through a hook, `is_suppressed(customer_id, fields)`, that answers a
reason or None. The house's cadence is asked again too (edition/run/cadence.py,
`cadence_at_send`): a customer the frequency cap (or their weekly/monthly choice) holds
back now, because another campaign reached them since the dry run, is `excluded` with
the reason "… (at send time)"; so is a customer outside their send window or before
their preferred hour now, in their `timezone` as the customer file says it now
(`windows_at_send`): "deferred until T (…) (at send time)", sent by a later send of the
run, once (the ledger). Each message also takes its customer's frequency cap slot as it
leaves (edition.store.cap_slots), atomically across campaigns. Everyone else gets
exactly the approved bytes. Rows that are not `rendered` are carried as the approved
manifest says.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.audience.preferences import PreferenceSnapshot
from edition.audience.suppression import Suppression
from edition.content.campaign import load_campaign
from edition.errors import ApprovalError, EditionError, FolderBusy, RunError
from edition.markdown_text import code, text
from edition.naming import CONTENT_TYPES, new_run_id
from edition.outcomes import ManifestRow, Reason
from edition.review.approval import APPROVAL_FILE, read_plain, sha256
from edition.review.send_folder import (
    SEND_FILE,
    SENDS_FOLDER,
    Approved,
    complete_send,
    message_headers,
    recover_sends,
)
from edition.review.send_plan import SendPlan, customers_of, plan_send
from edition.run.cadence import (
    Cadence,
    SendTimeWindows,
    cadence_at_send,
    cap_gate,
    windows_at_send,
)
from edition.run.context import RunContext, options_key
from edition.run.executors import BatchExecutor
from edition.run.folder import FileWriter, FolderLock, read_json, write_json
from edition.run.index import record as index_run
from edition.run.lifecycle import Lifecycle
from edition.run.manifest import MANIFEST_NAME, read_rows
from edition.run.options import RunOptions
from edition.run.pipeline import BatchResult
from edition.run.report import RunInfo, Tally, render_report
from edition.run.summary import RunSummary
from edition.run.workers import Work
from edition.send.delivery import Deliverer, MailingChoice, Message

SEND_BATCH = 200   # approved rows per batch: deliveries between ledger flushes

# The suppression hook: (customer id, {"id", "email", "manifest": the approved row}) ->
# the reason this customer must not be mailed now, or None.
SuppressionCheck = Callable[[str, Mapping[str, Any]], "str | None"]


def suppression_for(campaign: Any) -> SuppressionCheck:
    """The campaign's send-time suppression check: its lists and the unsubscribe store,
    read now, so whoever unsubscribed between approval and send is not mailed.

    Customer columns (`unsubscribed`, `email_status`) were judged when the run rendered;
    the approved row carries only the id and the address, which is what lists and the
    store match on. The customer's own "no" in the preference center (paused, every
    topic switched off) is asked again too: it is an unsubscribe by another door. The
    one place `edition send` and the approval flow take it from.
    """
    suppression = Suppression.load(campaign)
    choices = PreferenceSnapshot.load(campaign)

    def is_suppressed(customer_id: str, fields: Mapping[str, Any]) -> str | None:
        found = suppression.reason_for({"id": customer_id, "email": fields.get("email")})
        if found is None and len(choices):
            # apply() changes the fields it is given: a throwaway copy
            found = choices.apply({"id": customer_id, "email": fields.get("email")})
        return found

    return is_suppressed


def health_check(campaign: Any, channel: str, *, force: bool) -> list[str]:
    """Sender health before an approved send, as preflight asks it before `edition run
    --send`: the campaign's last mailing at or over the 0.3 % complaint rate refuses the
    send (ApprovalError, exit 2, nothing sent) unless `force`; the warnings are returned.
    The approval was given on the rendered files, not on what came back since."""
    from edition.run.sender_health import check_send

    if channel != "email":
        return []
    try:
        errors, warnings = check_send(campaign, force=force)
    except OSError as exc:
        raise RunError(f"the send ledger or store could not be read for sender health: "
                       f"{exc}") from None
    if errors:
        raise ApprovalError("; ".join(errors) + "; nothing was sent", campaign.file)
    return warnings


def ask_nobody(customer_id: str, fields: Mapping[str, Any]) -> str | None:
    """A suppression hook that suppresses nobody (a send whose caller checked already)."""
    return None


@dataclass
class SendSummary(RunSummary):
    """What `edition send` prints and the approval flow returns: a run summary (the
    lifecycle's) of the send, with the approved run it sent."""

    approved_run: str = ""    # the run that was approved and sent
    run_dir: str = ""         # its folder
    approved_by: str = ""
    verified: int = 0         # approved files checked before the first message left

    @property
    def send_id(self) -> str:
        return self.run_id

    @property
    def send_dir(self) -> str:
        return self.out_dir


# -- what travels to a worker -------------------------------------------------------------


@dataclass(frozen=True)
class SendJob:
    """Deliver approved rows with these options (the send's: campaign file, target,
    mailing, send id as run id, the send folder as out)."""

    options: RunOptions
    kind: str = "send"
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", "send:" + options_key(self.options))

    def open(self, work: Work | None) -> ApprovedSender:
        return ApprovedSender(self.options, work)


class ApprovedSender:
    """A worker's side of a send: one deliverer (target connection, ledger handle)."""

    def __init__(self, options: RunOptions, work: Work | None):
        campaign_file = options.campaign if work is None else str(work.bundle.unpack())
        campaign = load_campaign(campaign_file)
        self.send_id = str(options.run_id)
        out = Path(work.local_dir) if work is not None and work.local_dir else Path(
            str(options.out))
        self.deliverer = Deliverer.for_campaign(
            campaign, target=str(options.to), mailing=str(options.mailing),
            run_id=self.send_id, out_dir=out, resend_unknown=options.resend_unknown,
            ledger=work.ledger_here() if work is not None else None)
        # the cap's slots, taken atomically across campaigns as each message leaves (a
        # worker elsewhere takes them in the run's cadence's store, never its bundle's)
        found = getattr(work, "cadence", None) if work is not None else None
        self.deliverer.gate = (found.gate() if found is not None else None) if work else \
            cap_gate(campaign, mailing=str(options.mailing),
                     now=options.started or dt.datetime.now(dt.UTC))

    def process(self, batch: list[Approved]) -> BatchResult:
        if self.deliverer.in_flight > 1:
            rows = self._in_flight(batch)
        else:
            rows = [self._one(item) for item in batch]
        self.deliverer.flush()  # outcomes committed before the manifest says so
        return BatchResult(rows)

    def _in_flight(self, batch: list[Approved]) -> list[ManifestRow]:
        """The batch's messages sent `delivery.in_flight` at a time (deliver_many)."""
        rows: list[ManifestRow | None] = []
        pending: list[tuple[int, Approved]] = []
        for item in batch:
            if item.carried or item.outcome is not None:
                rows.append(self._one(item))
            else:
                pending.append((len(rows), item))
                rows.append(None)
        messages = [Message(customer_id=str(item.row.get("customer_id")),
                            recipient=item.recipient, digest=item.digest,
                            message_id=item.message_id, files=item.files)
                    for _, item in pending]
        for (at, item), sent in zip(pending, self.deliverer.deliver_many(
                messages, in_flight=self.deliverer.in_flight), strict=True):
            rows[at] = item.manifest(sent.status, sent.reason, self.send_id, **sent.extra)
        return [row for row in rows if row is not None]

    def _one(self, item: Approved) -> ManifestRow:
        if item.carried:
            return ManifestRow.from_dict(item.row)
        if item.outcome is not None:
            return item.manifest(*item.outcome, self.send_id)
        customer_id = str(item.row.get("customer_id"))
        sent = self.deliverer.deliver(customer_id=customer_id, recipient=item.recipient,
                                      digest=item.digest, message_id=item.message_id,
                                      files=item.files)
        return item.manifest(sent.status, sent.reason, self.send_id, **sent.extra)

    def close(self) -> None:
        self.deliverer.close()


# -- the send as a lifecycle's feed ---------------------------------------------------------


class ApprovedRows:
    """An approved run's rows, for the lifecycle (see the module docstring)."""

    document_name = SEND_FILE
    summary_type = SendSummary
    sending = True
    resumed = 0

    def __init__(self, run_dir: Path | str, *, to: str | None, mailing: str | None,
                 send_id: str, new_mailing: bool, resend_unknown: bool,
                 is_suppressed: SuppressionCheck | None, run_id: str | None,
                 approval_sha256: str | None, batch_size: int = SEND_BATCH,
                 force: bool = False):
        self.run_dir = Path(run_dir)
        self.asked = {"to": to, "mailing": mailing}
        self.send_id, self.new_mailing = send_id, new_mailing
        self.resend_unknown, self.batch_size = resend_unknown, batch_size
        # verified now, before any lock: a changed or unapproved run is refused at once
        self.plan: SendPlan = plan_send(self.run_dir, run_id=run_id,
                                        approval_sha256=approval_sha256, **self.asked)
        self.campaign = self.plan.campaign
        self.health_warnings = health_check(self.campaign, self.plan.channel, force=force)
        self.is_suppressed = is_suppressed or suppression_for(self.campaign)
        self.send_dir = self.run_dir / SENDS_FOLDER / send_id
        self.lock: FolderLock | None = None
        self.cadence: Cadence | None = None   # read when the send starts (decide)
        self.windows: SendTimeWindows | None = None   # the send windows, then too

    @property
    def approved(self) -> dict[str, str]:
        """The approved files' digests (relative path -> sha256)."""
        return dict(self.plan.approval.get("files") or {})

    def wanted(self) -> tuple[str, str | None, Any, bool]:
        return self.plan.channel, self.plan.mailing, self.plan.as_of, self.new_mailing

    def decide(self, life: Lifecycle, choice: MailingChoice | None) -> RunContext:
        plan = self.plan
        if choice is None or choice.mailing != plan.mailing:  # cannot be: the mailing is named
            raise ApprovalError(f"the send would be recorded as mailing "
                                f"{choice.mailing if choice else '?'}, but the approved "
                                f"messages are of mailing {plan.mailing}; nothing was sent",
                                self.run_dir)
        started = dt.datetime.now(dt.UTC).replace(microsecond=0)
        options = RunOptions(campaign=plan.campaign_file, send=True,
                             to=plan.target, mailing=plan.mailing, as_of=choice.as_of,
                             run_id=self.send_id, started=started, out=str(self.send_dir),
                             resend_unknown=self.resend_unknown, new_mailing=self.new_mailing,
                             batch_size=self.batch_size)
        # the cap over the send history as it is now: another campaign may have reached
        # an approved customer since the dry run
        self.cadence = cadence_at_send(self.campaign, now=started, mailing=plan.mailing,
                                       as_of=choice.as_of)
        # the send window and preferred times as they are now: approved at 3 p.m., sent
        # at 3 a.m. in the customer's zone, a message waits for the next opening
        self.windows = windows_at_send(self.campaign, now=started,
                                       customers=self._customers(), as_of=choice.as_of)
        if self.windows is not None and self.windows.note:
            life.notes.append(self.windows.note)
        return RunContext.of(options, self.campaign, mailing=plan.mailing, as_of=choice.as_of,
                             started=started)

    def _customers(self) -> Any:
        """The run's customer source as run.json recorded it (None: none to be read)."""
        from types import SimpleNamespace

        from edition.run.context import customers_file

        options = self.plan.facts.options
        try:
            return customers_file(SimpleNamespace(  # type: ignore[arg-type]
                customers=options.get("customers"), encoding=options.get("encoding")),
                self.campaign)
        except EditionError:
            return None

    def hold(self, life: Lifecycle) -> Path:
        """The run folder's lock for the length of the send (no run or send changes it
        meanwhile); under it, the run verified again as first verified, the dead sends
        of this run repaired, and the send's folder made."""
        lock = FolderLock(self.run_dir)
        try:
            lock.acquire()
        except FolderBusy:
            raise FolderBusy(f"another run or send is using {self.run_dir}; wait for it to "
                             f"finish, then send again (already-sent customers are skipped)",
                             self.run_dir) from None
        self.lock = lock
        life.notes.extend(self.health_warnings)
        # exactly the run and the approval verified before: re-rendered or re-approved
        # meanwhile is refused
        self.plan = plan_send(self.run_dir, run_id=self.plan.facts.run_id,
                              approval_sha256=self.plan.approval_sha256, **self.asked)
        for repaired in recover_sends(self.run_dir, self.plan, life.ledger):
            life.notes.append(f"an earlier send of this run stopped; its folder was "
                              f"repaired: {repaired}")
        sends = self.run_dir / SENDS_FOLDER
        for path in (sends, self.send_dir):
            if path.is_symlink():
                raise RunError(f"{path} is a symbolic link; edition writes nothing through "
                               f"links", path)
        self.send_dir.mkdir(parents=True, exist_ok=False)
        return self.send_dir

    def started(self, life: Lifecycle) -> None:
        """Nothing to publish: a send's folder is local (sends/<id>/ of the run)."""

    def document(self, life: Lifecycle) -> dict[str, Any]:
        plan, context = self.plan, life.context
        return {"send_id": self.send_id, "run_id": plan.facts.run_id,
                "campaign": context.campaign, "target": context.target,
                "channel": context.channel, "mailing": context.mailing,
                "options": context.options.recorded(),
                "approval": {"approved_by": plan.approval.get("approved_by"),
                             "approved_at": plan.approval.get("approved_at"),
                             "sha256": sha256(read_plain(self.run_dir / APPROVAL_FILE))}}

    def estimate(self) -> int:
        return self.plan.editions

    def job(self, life: Lifecycle) -> SendJob:
        return SendJob(life.context.options)

    def batches(self, life: Lifecycle) -> Iterator[list[Approved]]:
        batch: list[Approved] = []
        for row in self.plan.facts.rows:
            batch.append(self._approved(row))
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _approved(self, row: dict[str, Any]) -> Approved:
        """A row ready for a worker: its files read once and checked, suppression asked."""
        if row.get("status") != "rendered":
            return Approved(row, carried=True)
        customer_id = str(row.get("customer_id"))
        files, problem = self._files(row)
        if problem is not None:
            return Approved(row, outcome=("failed", problem))
        eml = files.get("eml")
        recipient, message_id = message_headers(eml[1]) if eml else (None, "")
        why = self.is_suppressed(customer_id, {"id": customer_id, "email": recipient,
                                               "manifest": row})
        if why:
            return Approved(row, outcome=("suppressed", Reason(
                "suppressed", f"suppressed at send time: {why}", "suppressed at send time")))
        held = self.cadence.hold(customer_id, {"id": customer_id, "email": recipient}) \
            if self.cadence is not None else None
        if held is not None:
            status, reason = held
            return Approved(row, outcome=(status, Reason(
                reason.code, f"{reason} (at send time)", reason.group or str(reason))))
        wait = self.windows.deferred(customer_id) if self.windows is not None else None
        if wait is not None:   # a later send of this run sends it, once (the ledger)
            return Approved(row, outcome=("excluded", Reason(
                wait.code, f"{wait} (at send time)", wait.group)))
        approved = self.approved
        digest = approved[eml[0]] if eml is not None else sha256(
            "\0".join(approved[rel] for rel, _, _ in files.values()).encode())
        return Approved(row, files=files, recipient=recipient, message_id=message_id,
                        digest=digest)

    def _files(self, row: dict[str, Any]) -> tuple[dict[str, tuple[str, bytes, str]],
                                                   Reason | None]:
        """The row's files as approved (format -> key, bytes, type), or why not."""
        files = {}
        approved = self.approved
        for fmt, rel in (row.get("files") or {}).items():
            try:
                data = read_plain(self.run_dir / rel)
            except ApprovalError as exc:
                return {}, Reason("changed_since_approval", f"{rel}: {exc.message}; not sent",
                                  "file unreadable since the approval")
            if sha256(data) != approved.get(rel):
                return {}, Reason("changed_since_approval",
                                  f"{rel} changed after it was verified; not sent",
                                  "file changed since the approval")
            files[fmt] = (rel, data, CONTENT_TYPES.get(fmt, "application/octet-stream"))
        return files, None

    # -- the end ------------------------------------------------------------------------

    def report(self, life: Lifecycle, stopped: str | None = None) -> tuple[str, dict[str, Any]]:
        """report.md of the send; the summary's fields (this send's own failures and
        suppressions: rows carried as approved count in the statuses only)."""
        plan, tally = self.plan, life.tally
        already = tally.codes.get(("sent", "already_sent"), 0)
        if already:
            life.notes.append(already_note(already, tally.status.get("sent", 0), plan.mailing,
                                           life.earlier))
        report = render_report(tally, self.info(life), life.seconds,
                               self.note(stopped, life.notes[-1] if already else None))
        FileWriter(self.send_dir).write("report.md", report.encode("utf-8"))
        carried = plan.facts.counts
        return report, {
            "failed": sum(tally.status.get(s, 0) - carried.get(s, 0)
                          for s in ("failed", "unknown")),
            "suppressed": tally.status.get("suppressed", 0) - carried.get("suppressed", 0),
            "failure_limit": self.campaign.failure_limit(plan.editions),
            "approved_run": plan.facts.run_id, "run_dir": str(self.run_dir),
            "approved_by": str(plan.approval.get("approved_by") or ""),
            "verified": len(self.approved)}

    def info(self, life: Lifecycle) -> RunInfo:
        plan = self.plan
        campaign = plan.campaign
        formats = tuple(plan.approval.get("formats") or ()) or tuple(sorted(
            {f for r in plan.facts.rows for f in (r.get("files") or {})}))
        return RunInfo(campaign=campaign.name,
                       segments=tuple((s.name, s.expression) for s in campaign.segments),
                       run_id=self.send_id,
                       mode=f"edition send of approved run {plan.facts.run_id} to "
                            f"{plan.target}",
                       as_of=life.context.as_of, formats=formats,
                       customers=customers_of(plan.facts), mailing=plan.mailing)

    def note(self, stopped: str | None, already: str | None) -> str:
        approval = self.plan.approval
        note = (f"> **Approved run sent.** Run {code(self.plan.facts.run_id)}, approved by "
                f"{text(approval.get('approved_by'))} at {text(approval.get('approved_at'))}"
                + (f" (\u201c{text(approval.get('note'))}\u201d)" if approval.get("note")
                   else "")
                + f"; {len(self.approved):,} approved files verified before sending.")
        if stopped:
            note += (f"\n>\n> **{stopped.capitalize()}.** Rows not reached are `failed` with "
                     f"reason code `send_stopped`; send again to finish the mailing.")
        if already:
            note += f"\n>\n> {already}"
        return note

    def finished(self, life: Lifecycle, summary: RunSummary) -> None:
        plan = self.plan
        document = read_json(self.send_dir / SEND_FILE) or {}
        write_json(self.send_dir / SEND_FILE, document | {"line": summary.sent_line()})
        problem = index_run(plan.campaign.root, plan.campaign.name, run_id=plan.facts.run_id,
                            folder=self.run_dir, event="sent")
        if problem:
            summary.notes.append(problem)

    def repair(self, life: Lifecycle, reason: str) -> None:
        """The send stopped here: every approved row in its manifest, a report."""
        complete_send(self.send_dir, self.plan, life.ledger, reason)
        tally = Tally()
        rows, _ = read_rows(self.send_dir / MANIFEST_NAME)
        tally.add(ManifestRow.from_dict(r) for r in rows)
        life.tally = tally
        self.report(life, stopped=reason)
        document = read_json(self.send_dir / SEND_FILE) or {}
        write_json(self.send_dir / SEND_FILE, document | {"status": "stopped", "reason": reason})

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def already_note(already: int, sent: int, mailing: str, earlier: Any) -> str:
    """Customers skipped because the mailing reached them before, said out loud."""
    when = (f" (its earlier send finished {earlier.finished_at})"
            if earlier is not None and earlier.finished_at else "")
    line = (f"{already:,} customer(s) already had mailing {mailing}{when}; they were not "
            f"sent again")
    if sent == already:
        line += (". Nothing new was sent: to send this run as a new issue, make its dry "
                 "run with --mailing KEY, approve it and send that")
    return line


# -- the send ------------------------------------------------------------------------------


def send_approved(run_dir: Path | str, *, to: str | None = None, mailing: str | None = None,
                  new_mailing: bool = False, resend_unknown: bool = False,
                  is_suppressed: SuppressionCheck | None = None, send_id: str | None = None,
                  on_progress: Callable[[int], None] | None = None,
                  run_id: str | None = None, approval_sha256: str | None = None,
                  executor: BatchExecutor | None = None, batch_size: int = SEND_BATCH,
                  marker: dict[str, Any] | None = None, force: bool = False) -> SendSummary:
    """Send an approved run's files, exactly as approved, once per mailing and channel.

    `to` overrides the campaign's target; `mailing` must be the approved run's mailing
    (the one its messages name; the default). `is_suppressed` is asked for every
    customer before their edition leaves; None means the campaign's own check
    (`suppression_for`), `ask_nobody` none. `run_id` and `approval_sha256` are the run
    and the approval someone confirmed (a plan's): another run or approval in the
    folder now is refused. `force` sends although the last mailing's complaint rate
    reached 0.3 % (`health_check`; otherwise refused). `executor` processes the
    batches (default: this process).
    Raises ApprovalError (exit 2, nothing sent) when the folder differs from its
    approval or its messages cannot be sent as they are.
    """
    try:
        feed = ApprovedRows(run_dir, to=to, mailing=mailing, send_id=send_id or new_run_id(),
                            new_mailing=new_mailing, resend_unknown=resend_unknown,
                            is_suppressed=is_suppressed, run_id=run_id,
                            approval_sha256=approval_sha256, batch_size=batch_size,
                            force=force)
        summary = Lifecycle(feed, marker=marker).run(executor, on_progress=on_progress)
    except EditionError:
        raise
    except OSError as exc:
        raise RunError(f"the send stopped: {exc}") from None
    assert isinstance(summary, SendSummary)
    return summary


__all__ = ["SENDS_FOLDER", "SEND_FILE", "ApprovedRows", "ApprovedSender", "SendJob",
           "SendSummary", "SuppressionCheck", "ask_nobody", "health_check", "message_headers",
           "recover_sends", "send_approved", "suppression_for"]
