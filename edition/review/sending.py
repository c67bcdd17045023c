"""Sending an approved run: its files as approved, byte for byte, through the send ledger.

`send_approved` checks the run folder against approval.json (edition/review/approval.py) before
anything leaves: a missing approval, a changed manifest or run.json, or a file changed,
missing or added refuses the whole send; so do approved marketing messages without a
working unsubscribe link, and a mailing other than the one the messages name in their
Feedback-ID (edition/review/sendable.py). Given the run id and the approval a person confirmed,
it also refuses a folder re-rendered or re-approved since. It then delivers each
`rendered` row's files — read once, checked against their approved digest, and handed
to the target as they are (the .eml is not rebuilt) — with the same exactly-once rules
as `run --send`: the ledger's run lock, the mailing the approved messages name (checked
by `edition.send.delivery.choose_mailing`), one claim per (campaign, mailing, customer,
channel) through `edition.send.delivery.Deliverer`. Rows that are not `rendered` are not sent.

Suppression is asked again for every customer at send time (someone may have
unsubscribed since the approval) through a hook, `is_suppressed(customer_id, fields)`,
that answers a reason or None; skipped customers are `suppressed` in the send's manifest.

What was sent goes to `RUN_DIR/sends/<send id>/` (manifest.jsonl, report.md, send.json,
and a local target's outbox/), so the approved files stay as they were and the approval
still verifies after the send.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from edition.addresses import AddressError, normalize
from edition.audience.suppression import Suppression
from edition.content.campaign import Campaign, load_campaign
from edition.content.plugins import has_credentials, target_problem
from edition.errors import (
    ApprovalError,
    DeliveryError,
    EditionError,
    FolderBusy,
    RunError,
    UsageError,
)
from edition.markdown_text import code, text
from edition.naming import CONTENT_TYPES, new_run_id
from edition.outcomes import ManifestRow, Reason
from edition.review.approval import (
    APPROVAL_FILE,
    RunFacts,
    read_approval,
    read_plain,
    require_approved,
    sha256,
)
from edition.review.sendable import MessageCheck
from edition.run.folder import FileWriter, FolderLock, now, owner, write_json
from edition.run.index import record as index_run
from edition.run.manifest import MANIFEST_NAME, ManifestWriter
from edition.run.options import MAILING
from edition.run.report import RunInfo, Tally, render_report, sent_line, sent_words
from edition.send.delivery import Deliverer, channel_of, choose_mailing, ledger_path, run_lock
from edition.send.ledger.location import open_ledger
from edition.send.ledger.sqlite import Mailing

SENDS_FOLDER = "sends"
SEND_FILE = "send.json"
FLUSH_EVERY = 200   # deliveries between ledger flushes and manifest writes

# The suppression hook: (customer id, {"id", "email", "manifest": the approved row}) ->
# the reason this customer must not be mailed now, or None.
SuppressionCheck = Callable[[str, Mapping[str, Any]], "str | None"]


def suppression_for(campaign: Campaign) -> SuppressionCheck | None:
    """The campaign's send-time suppression check: its lists and the unsubscribe store,
    read now, so whoever unsubscribed between approval and send is not mailed.

    Customer columns (`unsubscribed`, `email_status`) were judged when the run rendered;
    the approved row carries only the id and the address, which is what lists and the
    store match on. The one place `edition send` and the approval flow take it from.
    """
    suppression = Suppression.load(campaign)

    def is_suppressed(customer_id: str, fields: Mapping[str, Any]) -> str | None:
        reason = suppression.reason_for({"id": customer_id, "email": fields.get("email")})
        return reason   # a Reason: its code goes in the manifest too

    return is_suppressed


def no_suppression(customer_id: str, fields: Mapping[str, Any]) -> str | None:
    return None


# -- what a send will do ---------------------------------------------------------------


@dataclass
class SendPlan:
    """An approved, verified run and where and as which mailing it would go."""

    folder: Path
    approval: dict[str, Any]
    facts: RunFacts
    campaign: Campaign
    target: str
    channel: str
    mailing: str
    as_of: dt.date
    approval_sha256: str = ""   # approval.json as verified: a send confirmed sends that one

    @property
    def editions(self) -> int:
        return self.facts.rendered

    def describe(self) -> str:
        return (f"{self.editions:,} approved edition(s) of {self.campaign.name} (run "
                f"{self.facts.run_id}, approved by {self.approval.get('approved_by')} at "
                f"{self.approval.get('approved_at')}) to {self.target}, mailing "
                f"{self.mailing}")


def plan_send(run_dir: Path | str, *, to: str | None = None, mailing: str | None = None,
              run_id: str | None = None, approval_sha256: str | None = None) -> SendPlan:
    """Verify the run against its approval; the target, channel and mailing it would use.

    Raises ApprovalError (exit 2) naming every file that differs from the approval, when
    the approved messages cannot be sent as they are (no working unsubscribe link), or
    when the mailing is not the one they name. `run_id` and `approval_sha256`: the run
    and approval someone confirmed; refused if the folder holds others now.
    """
    folder = Path(run_dir)
    messages = MessageCheck.here(str(read_approval(folder).get("campaign") or ""))
    approval_bytes = read_plain(folder / APPROVAL_FILE)
    approval, facts = require_approved(folder, run_id=run_id,
                                       approval_sha256=approval_sha256, messages=messages)
    if sha256(approval_bytes) != sha256(read_plain(folder / APPROVAL_FILE)):
        raise ApprovalError(f"{folder / APPROVAL_FILE} changed while it was being checked; "
                            f"nothing was sent", folder)
    unsendable = messages.problems()
    if unsendable:
        raise ApprovalError(f"run {facts.run_id} cannot be sent as it is: "
                            + "; ".join(unsendable) + "; nothing was sent", folder)
    campaign_file = facts.options.get("campaign") or approval.get("campaign_file")
    if not campaign_file:
        raise ApprovalError(f"{folder}/run.json does not name its campaign file", folder)
    campaign = load_campaign(campaign_file)
    if campaign.name != facts.campaign:
        raise ApprovalError(f"the run is of campaign {facts.campaign}, but {campaign_file} "
                            f"is now campaign {campaign.name}; nothing was sent", folder)
    target = to or campaign.target
    if has_credentials(target):
        raise UsageError("--to must not hold credentials; set them in the environment "
                         "(EDITION_SMTP_USERNAME/PASSWORD, AWS profiles)")
    problem = target_problem(target)
    if problem:
        raise UsageError(f"delivery target {target!r} {problem}")
    wanted = mailing or approved_mailing(facts, approval)
    if not MAILING.match(str(wanted)):
        raise UsageError(f"mailing {wanted!r}: use letters, digits, '.', '_', ':' and '-'")
    other = messages.mailing_problem(str(wanted))
    if other:   # the ledger must record the mailing the messages carry
        raise ApprovalError(f"{other}; nothing was sent", folder)
    as_of = dt.date.fromisoformat(facts.as_of) if facts.as_of else dt.date.today()
    return SendPlan(folder=folder, approval=approval, facts=facts, campaign=campaign,
                    target=target, channel=channel_of(target), mailing=str(wanted),
                    as_of=as_of, approval_sha256=sha256(approval_bytes))


def approved_mailing(facts: RunFacts, approval: Mapping[str, Any] | None = None) -> str:
    """The mailing a send of this run is recorded as: the one its dry run rendered for
    (its messages name it in their Feedback-ID), else its run date."""
    return str((approval or {}).get("mailing") or facts.mailing or facts.as_of
               or dt.date.today().isoformat())


# -- what a send of a run would be, as the ledger knows it now ---------------------------


def ledger_mailings(campaign: Campaign, channel: str) -> list[Mailing] | str:
    """The campaign's mailings on a channel (read-only), or why they cannot be read."""
    location = ledger_path(campaign)
    is_url = isinstance(location, str) and "://" in location
    if not is_url and not Path(location).exists():
        return []   # nothing was ever sent with this ledger
    try:
        with contextlib.closing(open_ledger(location, exclusive=False,
                                            readonly=True)) as ledger:
            return ledger.mailings(campaign.name, channel)
    except (EditionError, OSError) as exc:
        return f"cannot read the send ledger: {exc}"
    except Exception as exc:  # a database driver's own error: a line, not a traceback
        return f"cannot read the send ledger: {type(exc).__name__}: {exc}"


def mailing_lines(facts: RunFacts, campaign: Campaign | None = None,
                  to: str | None = None) -> list[str]:
    """What a send of this run would be: the mailing it is recorded as, and whether that
    mailing was already sent (customers it reached are not sent again in it)."""
    mailing = approved_mailing(facts)
    why = " (the run date)" if not facts.mailing or facts.mailing == facts.as_of else ""
    if campaign is None:
        try:
            campaign = load_campaign(str(facts.options.get("campaign") or ""))
        except EditionError as exc:
            return [f"- a send goes out as mailing {mailing}{why}; cannot read the campaign "
                    f"to look it up in the send ledger: {exc}"]
    target = to or campaign.target
    lines = [f"- a send to {target} goes out as mailing {mailing}{why}: one message per "
             f"customer per mailing"]
    known = ledger_mailings(campaign, channel_of(target))
    if isinstance(known, str):
        return [*lines, f"- {known}"]
    this = next((m for m in known if m.mailing == mailing), None)
    if this is not None and this.status == "finished":
        lines.append(f"- mailing {mailing} was already sent: {this.sent:,} customer(s), "
                     f"finished {this.finished_at}. A send of this run mails only the "
                     f"customers it did not reach; to send this run as a new issue, make "
                     f"its dry run with --mailing KEY")
    elif this is not None:
        lines.append(f"- mailing {mailing} is unfinished ({this.sent:,} customer(s) sent, "
                     f"started {this.started_at}): a send of this run finishes it")
    for other in known:
        if other.mailing != mailing and other.status == "open":
            lines.append(f"- mailing {other.mailing} is unfinished (about {other.owed:,} "
                         f"customer(s) not yet sent): a send of this run is refused until "
                         f"it is finished, unless with --new-mailing")
    return lines


# -- what a send did ---------------------------------------------------------------------


@dataclass
class SendSummary:
    """What `edition send` prints and the approval flow returns."""

    send_id: str
    run_id: str
    run_dir: str
    send_dir: str
    campaign: str
    target: str
    mailing: str
    counts: dict[str, int]
    customers: int
    seconds: float
    report: str
    already_sent: int = 0
    suppressed: int = 0       # suppressed at send time
    failed: int = 0           # failed or unknown in this send
    failure_limit: int = 0
    verified: int = 0         # approved files checked before the first message left
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 3 if self.failed > self.failure_limit else 0

    def sent_line(self) -> str:
        return sent_words(self.counts.get("sent", 0), self.already_sent, self.mailing)

    def to_dict(self) -> dict[str, Any]:
        return {"send_id": self.send_id, "run_id": self.run_id, "run_dir": self.run_dir,
                "send_dir": self.send_dir, "campaign": self.campaign, "target": self.target,
                "mailing": self.mailing, "counts": self.counts, "customers": self.customers,
                "seconds": self.seconds, "already_sent": self.already_sent,
                "suppressed": self.suppressed, "failed": self.failed,
                "failure_limit": self.failure_limit, "verified": self.verified,
                "exit_code": self.exit_code}


# -- the send ------------------------------------------------------------------------------


def message_headers(eml: bytes) -> tuple[str | None, str]:
    """(the To address, the Message-ID) of an approved message."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(eml)
    message_id = str(headers.get("Message-ID") or "").strip()
    try:
        found = headers["To"].addresses if headers.get("To") is not None else ()
    except (AttributeError, ValueError, IndexError):
        return None, message_id
    if len(found) != 1:
        return None, message_id
    # a UTF-8 address (RFC 6532) comes out of the parser with its bytes escaped
    address = found[0].addr_spec.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        return normalize(address), message_id
    except AddressError:
        return None, message_id


class _Send:
    """One send of one approved run, holding the run folder and the ledger's run lock."""

    def __init__(self, folder: Path, *, to: str | None, mailing: str | None, send_id: str,
                 new_mailing: bool, resend_unknown: bool,
                 is_suppressed: SuppressionCheck | None,
                 on_progress: Callable[[int], None] | None,
                 run_id: str | None = None, approval_sha256: str | None = None):
        self.folder = folder
        self.to = to
        self.mailing = mailing
        self.run_id = run_id                     # the run and approval someone confirmed
        self.approval_sha256 = approval_sha256
        self.earlier: Mailing | None = None      # the mailing as the ledger knew it before
        self.send_id = send_id
        self.new_mailing = new_mailing
        self.resend_unknown = resend_unknown
        self.is_suppressed = is_suppressed   # None: the campaign's (suppression_for)
        self.on_progress = on_progress
        self.send_dir = folder / SENDS_FOLDER / send_id
        self.plan: SendPlan
        self.approved: dict[str, str] = {}
        self.tally = Tally()
        self.counts: Counter[str] = Counter()    # this send's outcomes (not carried rows)
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.document: dict[str, Any] = {}

    def run(self) -> SendSummary:
        with holding(self.folder):
            # verified under the lock: no run or send changes the folder meanwhile
            plan = self.plan = plan_send(self.folder, to=self.to, mailing=self.mailing,
                                         run_id=self.run_id,
                                         approval_sha256=self.approval_sha256)
            self.approved = dict(plan.approval["files"])
            campaign = plan.campaign
            if self.is_suppressed is None:
                self.is_suppressed = suppression_for(campaign) or no_suppression
            ledger = run_lock(ledger_path(campaign), campaign.name)
            try:
                choice = choose_mailing(ledger, campaign.name, plan.channel,
                                        mailing=plan.mailing, as_of=plan.as_of,
                                        new_mailing=self.new_mailing)
                if choice.note:
                    self.notes.append(choice.note)
                if choice.mailing != plan.mailing:  # cannot happen with a mailing named
                    raise ApprovalError(f"the send would be recorded as mailing "
                                        f"{choice.mailing}, but the approved messages are of "
                                        f"mailing {plan.mailing}; nothing was sent", self.folder)
                self.earlier = next((m for m in ledger.mailings(campaign.name, plan.channel)
                                     if m.mailing == plan.mailing), None)
                self._start()
                ledger.open_mailing(campaign.name, plan.mailing, plan.channel,
                                    as_of=choice.as_of.isoformat(), run_id=self.send_id,
                                    expected=plan.editions)
                self._deliver_all()
                ledger.finish_mailing(campaign.name, plan.mailing, plan.channel)
                return self._finish("finished")
            finally:
                ledger.close()

    def _start(self) -> None:
        sends = self.folder / SENDS_FOLDER
        for path in (sends, self.send_dir):
            if path.is_symlink():
                raise RunError(f"{path} is a symbolic link; edition writes nothing through "
                               f"links", path)
        self.send_dir.mkdir(parents=True, exist_ok=False)
        approval_bytes = read_plain(self.folder / APPROVAL_FILE)
        self.document = {
            "status": "running", "send_id": self.send_id, "run_id": self.plan.facts.run_id,
            "campaign": self.plan.campaign.name, "target": self.plan.target,
            "channel": self.plan.channel, "mailing": self.plan.mailing,
            "approval": {"approved_by": self.plan.approval.get("approved_by"),
                         "approved_at": self.plan.approval.get("approved_at"),
                         "sha256": sha256(approval_bytes)},
            "started": now(), **owner()}
        write_json(self.send_dir / SEND_FILE, self.document)

    def _deliver_all(self) -> None:
        plan = self.plan
        deliverer = Deliverer.for_campaign(
            plan.campaign, target=plan.target, mailing=plan.mailing, run_id=self.send_id,
            out_dir=self.send_dir, resend_unknown=self.resend_unknown)
        writer = ManifestWriter(self.send_dir / MANIFEST_NAME)
        done: list[ManifestRow] = []
        rows = plan.facts.rows
        reached = 0   # rows handled so far; rows[reached] is the one in hand
        try:
            for row in rows:
                done.append(self._one(deliverer, row))
                reached += 1
                if len(done) >= FLUSH_EVERY:
                    self._write(deliverer, writer, done)
            self._write(deliverer, writer, done)
        except BaseException as exc:
            stopped = ("send cancelled" if isinstance(exc, KeyboardInterrupt | SystemExit)
                       else f"send stopped: {exc}")
            # the edition in hand did not leave when the target refused it (the ledger
            # says failed); after anything else it may have: the ledger decides next time
            in_hand = "failed" if isinstance(exc, DeliveryError) else "unknown"
            rest = [_stopped_row(row, stopped, in_hand if i == 0 else "failed")
                    for i, row in enumerate(rows[reached:])]
            with contextlib.suppress(Exception):  # the ledger keeps its claims regardless
                deliverer.flush()
            writer.write(done + rest)
            self._count(done + rest)
            writer.close()
            deliverer.close()
            self._finish("stopped", reason=stopped)
            raise
        writer.close()
        deliverer.close()

    def _write(self, deliverer: Deliverer, writer: ManifestWriter,
               done: list[ManifestRow]) -> None:
        deliverer.flush()  # outcomes committed before the manifest says so
        writer.write(done)
        self._count(done)
        if self.on_progress is not None:
            self.on_progress(len(done))
        done.clear()

    def _count(self, rows: list[ManifestRow]) -> None:
        versions = {v.get("digest") or v["id"]: {k: v.get(k) for k in ("id", "modules",
                                                                         "segments", "locale")}
                    for v in self.plan.facts.versions if v.get("id")}
        self.tally.add(rows, versions=versions)

    def _one(self, deliverer: Deliverer, row: dict[str, Any]) -> ManifestRow:
        if row.get("status") != "rendered":
            return ManifestRow.from_dict(row)   # not sent: as the approved manifest says
        customer_id = str(row.get("customer_id"))
        files, problem = self._files(row)
        if problem is not None:
            return self._row(row, "failed", problem)
        eml = files.get("eml")
        recipient, message_id = message_headers(eml[1]) if eml else (None, "")
        assert self.is_suppressed is not None
        why = self.is_suppressed(customer_id, {"id": customer_id, "email": recipient,
                                               "manifest": row})
        if why:
            return self._row(row, "suppressed", Reason(
                "suppressed", f"suppressed at send time: {why}", "suppressed at send time"))
        if eml is not None:
            digest = self.approved[eml[0]]
        else:
            digest = sha256("\0".join(self.approved[rel] for rel, _, _ in files.values())
                            .encode())
        sent = deliverer.deliver(customer_id=customer_id, recipient=recipient, digest=digest,
                                 message_id=message_id, files=files)
        return self._row(row, sent.status, sent.reason, **sent.extra)

    def _files(self, row: dict[str, Any]) -> tuple[dict[str, tuple[str, bytes, str]],
                                                   Reason | None]:
        """The row's files as approved (format -> key, bytes, type), or why not."""
        files = {}
        for fmt, rel in (row.get("files") or {}).items():
            try:
                data = read_plain(self.folder / rel)
            except ApprovalError as exc:
                return {}, Reason("changed_since_approval", f"{rel}: {exc.message}; not sent",
                                  "file unreadable since the approval")
            if sha256(data) != self.approved.get(rel):
                return {}, Reason("changed_since_approval",
                                  f"{rel} changed after it was verified; not sent",
                                  "file changed since the approval")
            files[fmt] = (rel, data, CONTENT_TYPES.get(fmt, "application/octet-stream"))
        return files, None

    def _row(self, row: dict[str, Any], status: str, reason: Reason | None,
             **extra: Any) -> ManifestRow:
        self.counts[status] += 1
        if reason is not None and reason.code == "already_sent":
            self.counts["already_sent"] += 1
        base = ManifestRow.from_dict(row)
        return ManifestRow(customer_id=base.customer_id, status=status, line=base.line,
                           version=base.version, segments=base.segments, modules=base.modules,
                           reason=reason, files=base.files,
                           extra={**base.extra, **extra, "send_id": self.send_id})

    def _finish(self, status: str, reason: str | None = None) -> SendSummary:
        plan = self.plan
        seconds = time.monotonic() - self.started
        approval = plan.approval
        note = (f"> **Approved run sent.** Run {code(plan.facts.run_id)}, approved by "
                f"{text(approval.get('approved_by'))} at {text(approval.get('approved_at'))}"
                + (f" (\u201c{text(approval.get('note'))}\u201d)" if approval.get("note")
                   else "")
                + f"; {len(self.approved):,} approved files verified before sending.")
        if reason:
            note += f"\n>\n> **{reason.capitalize()}.** Rows not reached are `failed` with " \
                    f"reason code `send_stopped`; send again to finish the mailing."
        already = self.counts.get("already_sent", 0)
        if already:
            self.notes.append(self._already_note(already))
        info = RunInfo(campaign=plan.campaign.name,
                       segments=tuple((s.name, s.expression) for s in plan.campaign.segments),
                       run_id=self.send_id,
                       mode=f"edition send of approved run {plan.facts.run_id} to "
                            f"{plan.target}",
                       as_of=plan.as_of,
                       formats=tuple(approval.get("formats") or ()) or tuple(sorted(
                           {f for r in plan.facts.rows for f in (r.get("files") or {})})),
                       customers=customers_of(plan.facts), mailing=plan.mailing)
        if already:
            note += f"\n>\n> {self.notes[-1]}"
        report = render_report(self.tally, info, seconds, note)
        FileWriter(self.send_dir).write("report.md", report.encode("utf-8"))
        failed = self.counts.get("failed", 0) + self.counts.get("unknown", 0)
        counts = dict(self.tally.status)
        write_json(self.send_dir / SEND_FILE, self.document | {
            "status": status, "finished": now(), "reason": reason, "counts": counts,
            "line": sent_line(self.tally, plan.mailing)})
        problem = index_run(plan.campaign.root, plan.campaign.name, run_id=plan.facts.run_id,
                            folder=self.folder, event="sent")
        if problem:
            self.notes.append(problem)
        return SendSummary(
            send_id=self.send_id, run_id=plan.facts.run_id, run_dir=str(self.folder),
            send_dir=str(self.send_dir), campaign=plan.campaign.name, target=plan.target,
            mailing=plan.mailing, counts=counts, customers=self.tally.rows, seconds=seconds,
            report=report, already_sent=self.counts.get("already_sent", 0),
            suppressed=self.counts.get("suppressed", 0), failed=failed,
            failure_limit=plan.campaign.failure_limit(plan.editions), notes=self.notes,
            verified=len(self.approved))


    def _already_note(self, already: int) -> str:
        """Customers skipped because the mailing reached them before, said out loud."""
        mailing = self.plan.mailing
        earlier = self.earlier
        when = (f" (its earlier send finished {earlier.finished_at})"
                if earlier is not None and earlier.finished_at else "")
        line = (f"{already:,} customer(s) already had mailing {mailing}{when}; they were not "
                f"sent again")
        if self.counts.get("sent", 0) == already:
            line += (". Nothing new was sent: to send this run as a new issue, make its "
                     "dry run with --mailing KEY, approve it and send that")
        return line


def customers_of(facts: RunFacts) -> str:
    """The customer file the approved run read, as its own report names it."""
    for line in facts.report.splitlines():
        if line.startswith("- customers file: `") and line.endswith("`"):
            named = line[len("- customers file: `"):-1]
            if named:
                return named
    named = facts.options.get("customers")
    return str(named) if named else "the campaign's customers file"


def _stopped_row(row: dict[str, Any], why: str, status: str) -> ManifestRow:
    base = ManifestRow.from_dict(row)
    if row.get("status") != "rendered":
        return base
    reason = (Reason("send_stopped", f"{why}; not sent", "send stopped") if status == "failed"
              else Reason("outcome_unknown", f"{why} while this edition was being sent; it "
                          f"may have left (the ledger decides on the next send)",
                          "outcome unknown"))
    return ManifestRow(customer_id=base.customer_id, status=status, line=base.line,
                       version=base.version, segments=base.segments, modules=base.modules,
                       reason=reason, files=base.files, extra=base.extra)


@contextlib.contextmanager
def holding(folder: Path) -> Iterator[None]:
    """The run folder's lock for the length of a send: no run or send changes it meanwhile."""
    lock = FolderLock(folder)
    try:
        lock.acquire()
    except FolderBusy:
        raise FolderBusy(f"another run or send is using {folder}; wait for it to finish, "
                         f"then send again (already-sent customers are skipped)",
                         folder) from None
    try:
        yield
    finally:
        lock.release()


def send_approved(run_dir: Path | str, *, to: str | None = None, mailing: str | None = None,
                  new_mailing: bool = False, resend_unknown: bool = False,
                  is_suppressed: SuppressionCheck | None = None, send_id: str | None = None,
                  on_progress: Callable[[int], None] | None = None,
                  run_id: str | None = None, approval_sha256: str | None = None
                  ) -> SendSummary:
    """Send an approved run's files, exactly as approved, once per mailing and channel.

    `to` overrides the campaign's target; `mailing` must be the approved run's mailing
    (the one its messages name; the default). `is_suppressed` is asked for every
    customer before their edition leaves; None means the campaign's own check
    (`suppression_for`), `no_suppression` none. `run_id` and `approval_sha256` are the
    run and the approval someone confirmed (a plan's): another run or approval in the
    folder now is refused. Raises ApprovalError (exit 2, nothing sent) when the folder
    differs from its approval or its messages cannot be sent as they are.
    """
    send = _Send(Path(run_dir), to=to, mailing=mailing, send_id=send_id or new_run_id(),
                 new_mailing=new_mailing, resend_unknown=resend_unknown,
                 is_suppressed=is_suppressed, on_progress=on_progress, run_id=run_id,
                 approval_sha256=approval_sha256)
    try:
        return send.run()
    except EditionError:
        raise
    except OSError as exc:
        raise RunError(f"the send stopped: {exc}") from None


__all__ = ["SENDS_FOLDER", "SEND_FILE", "SendPlan", "SendSummary", "SuppressionCheck",
           "approved_mailing", "customers_of", "ledger_mailings", "mailing_lines",
           "message_headers", "no_suppression", "plan_send", "send_approved",
           "suppression_for"]
