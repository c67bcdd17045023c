"""Runs that stopped: a folder made consistent, and where the next run picks up.

A run that dies (kill -9, a machine gone) leaves its folder marked `running`; the next
run of its campaign repairs it (`recover_runs`): a torn last manifest line is cut,
customer files no row names are removed, every input row the manifest does not cover
gets a row, report.md and versions.json are written with a note, and run.json says
`interrupted`. A run stopped in its own process (Ctrl-C, SIGTERM, an error) repairs its
folder itself before it exits. A rerun on the same folder resumes it (`resume_point`).

The row of a customer the run did not get to record says what the send ledger knows
when the run was sending and its ledger is at hand: `sent` (acknowledged), `unknown`
(claimed, no outcome: the provider may have it), `failed` (refused, or never claimed).
Without the ledger, a customer whose files were written is `unknown` and the others
`failed`; "written" is asked of the folder's own store (`unlisted`: an S3 folder's
listing), never only of the local disk, where an S3 run keeps none of them.
All these rows carry reason code `interrupted`: the rerun redoes them (the ledger keeps
every customer at one message).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edition import private
from edition.audience.customers import Row, read_customers
from edition.content.campaign import Campaign
from edition.naming import relative_path
from edition.outcomes import ManifestRow, Reason
from edition.render.plan import Plan
from edition.run.click_table import previous_mailing_clicks
from edition.run.context import customers_file, need_email
from edition.run.folder import (
    RUN_FILE,
    FolderLock,
    alive_here,
    now,
    read_run_file,
    remove_unlisted,
    write_run_file,
)
from edition.run.manifest import MANIFEST_NAME, ManifestWriter, read_rows, truncate_rows
from edition.run.options import RunOptions
from edition.run.report import RunInfo, Tally, write_report
from edition.run.sender_health import health_or_nothing
from edition.run.workers import plan_for
from edition.send.ledger.records import LedgerEntry, send_key

if TYPE_CHECKING:
    from edition.send.ledger.location import Ledger

INTERRUPTED = "interrupted"

# Whether a run that another host started is over, when this host cannot tell (a flow
# run's state in the Prefect API): (run.json) -> bool.
OverElsewhere = Callable[[dict[str, Any]], bool]
OnRepaired = Callable[[dict[str, Any], "Repair"], None]
# The run folder's own store, for a folder kept elsewhere (S3): deletes the customer
# files no manifest row names and returns them (relative paths).
Unlisted = Callable[[set[str]], list[str]]
# What the send ledger holds for one customer of the dead run's mailing.
Sent = Callable[[str], LedgerEntry | None]


@dataclass
class Repair:
    """What `repair` did to one run folder."""

    folder: str
    kept: int = 0                                       # manifest rows that were there
    added: Counter[str] = field(default_factory=Counter)   # status -> rows added
    removed: list[str] = field(default_factory=list)    # files no row named
    torn_line: bool = False
    note: str = ""

    def describe(self) -> str:
        added = ", ".join(f"{n:,} {s}" for s, n in sorted(self.added.items())) or "none"
        return (f"{self.folder}: {self.kept:,} manifest rows kept, rows added: {added}, "
                f"{len(self.removed):,} unlisted file(s) removed"
                + (", torn last manifest line cut" if self.torn_line else "")
                + (f" ({self.note})" if self.note else ""))

    def __str__(self) -> str:
        return self.describe()


def repair(folder: Path | str, *, reason: str = "run interrupted", plan: Plan | None = None,
           options: RunOptions | None = None, info: RunInfo | None = None,
           ledger: Ledger | None = None, unlisted: Unlisted | None = None) -> Repair:
    """Make an interrupted run folder consistent; return what was done, in words (see the
    module docstring). `info` is the report's header for the run (made from run.json's
    options when not given); `ledger`: the campaign's send ledger, open; `unlisted`: the
    folder's own store when it is not this disk."""
    folder = Path(folder)
    document = read_run_file(folder) or {}
    manifest = folder / MANIFEST_NAME
    rows, torn = read_rows(manifest, cut_torn=True)
    if not manifest.exists():
        private.create_file(manifest)
    named = {rel for r in rows for rel in (r.get("files") or {}).values()}
    removed = remove_unlisted(folder, named)
    if unlisted is not None:
        removed += unlisted(named)
    result = Repair(str(folder), kept=len(rows), torn_line=torn, removed=removed)
    options, plan, result.note = _run_of(document, options, plan)
    added: list[ManifestRow] = []
    if plan is not None and options is not None:
        added, problem = _rows_not_done(rows, reason, options, plan, set(result.removed),
                                        _ledger_of(ledger, options, plan))
        result.note = problem or result.note
    if added:
        with ManifestWriter(manifest, append=True) as writer:
            writer.write(added)
    result.added.update(r.status for r in added)
    if plan is not None and options is not None:
        tally = Tally()
        kept = [ManifestRow.from_dict(r) for r in rows]
        tally.add(kept + added, versions={r.version_digest or r.version: {
            "modules": r.modules, "segments": r.segments} for r in kept if r.version})
        text = (f"> **{reason.capitalize()}.** {len(rows):,} customer rows were done before "
                f"the run stopped; the other {len(added):,} are listed with reason code "
                f"`{INTERRUPTED}`. Run the campaign again on this folder to finish them.")
        write_report(tally, info or run_info(options, plan), folder, seconds_since(document),
                     note=text)
    write_run_file(folder, document | {"status": INTERRUPTED, "reason": reason,
                                       "repaired": now(), "repair": result.describe()})
    return result


def run_info(options: RunOptions, plan: Plan) -> RunInfo:
    """The report's header for a run (a repaired one: without preflight)."""
    from edition.run.context import source_name, target_of

    campaign = plan.campaign
    mode = (f"sent (--send) to {target_of(options, campaign)}" if options.send
            else "dry run (nothing sent)")
    return RunInfo(campaign=campaign.name,
                   segments=tuple((s.name, s.expression) for s in campaign.segments),
                   run_id=str(options.run_id), mode=mode, as_of=plan.as_of,
                   formats=plan.formats,
                   customers=source_name(customers_file(options, campaign)),
                   mailing=options.mailing if options.send else None,
                   sender_health=health_or_nothing(campaign),
                   clicks=previous_mailing_clicks(campaign, options.mailing))


def _run_of(document: dict[str, Any], options: RunOptions | None, plan: Plan | None
            ) -> tuple[RunOptions | None, Plan | None, str]:
    """The dead run's options and plan (from run.json when not given), or why not."""
    if options is None and document.get("options"):
        try:
            options = RunOptions.model_validate(document["options"])
        except ValueError as exc:
            return None, None, f"rows not completed: the run's options cannot be read ({exc})"
    if plan is None and options is not None:
        try:
            plan = plan_for(options)
        except Exception as exc:  # campaign edited or broken since: account for what we can
            return options, None, f"rows not completed: cannot read the campaign ({exc})"
    return options, plan, ""


def _ledger_of(ledger: Ledger | None, options: RunOptions, plan: Plan) -> Sent | None:
    """What the ledger holds per customer for the run's mailing (None: not sending, no
    ledger, or no mailing recorded)."""
    if ledger is None or not options.send or not options.mailing:
        return None
    from edition.run.context import target_of
    from edition.send.targets import channel_of

    key = send_key(options.mailing, channel_of(target_of(options, plan.campaign)))
    ledger.flush()   # outcomes this process still holds for a group commit
    campaign = plan.campaign.name
    return lambda customer_id: ledger.lookup(campaign, customer_id, key)


def _rows_not_done(rows: list[dict[str, Any]], reason: str, options: RunOptions, plan: Plan,
                   removed: set[str], sent: Sent | None = None
                   ) -> tuple[list[ManifestRow], str]:
    """A row for every input row after the manifest's last, or why none could be made."""
    last = max((int(r.get("line") or 0) for r in rows), default=0)
    try:
        source = read_customers(customers_file(options, plan.campaign),
                                need_email=need_email(options, plan),
                                declared=plan.campaign.fields, limit=options.limit)
        return [_interrupted_row(row, reason, options, removed, sent) for row in source
                if row.line > last], ""
    except Exception as exc:
        return [], f"customer file unreadable ({exc}); manifest left as it was"


def _interrupted_row(row: Row, reason: str, options: RunOptions,
                     removed: set[str], sent: Sent | None = None) -> ManifestRow:
    if row.rejected:
        return ManifestRow(customer_id=row.customer_id, status="rejected", line=row.line,
                           reason=row.reason)
    if options.send and sent is not None:
        return _ledger_row(row, reason, sent(str(row.customer_id)))
    rendered = any(relative_path(f, str(row.customer_id)) in removed
                   for f in ("html", "text", "eml", "pdf"))
    if options.send and rendered:
        # its batch ran, so it may have been delivered: the ledger knows
        return ManifestRow(customer_id=row.customer_id, status="unknown", line=row.line,
                           reason=Reason(INTERRUPTED, f"{reason}; delivery outcome not "
                                                      f"recorded", "run interrupted"))
    return ManifestRow(customer_id=row.customer_id, status="failed", line=row.line,
                       reason=Reason(INTERRUPTED, reason, "run interrupted"))


def _ledger_row(row: Row, reason: str, entry: LedgerEntry | None) -> ManifestRow:
    """A customer the run did not record, as the send ledger knows it."""
    def made(status: str, detail: str, **extra: object) -> ManifestRow:
        return ManifestRow(customer_id=row.customer_id, status=status, line=row.line,
                           reason=Reason(INTERRUPTED, detail, "run interrupted"),
                           extra=dict(extra))

    if entry is None:
        return made("failed", f"{reason}; not sent")
    if entry.state == "sent":
        return made("sent", f"{reason} after this message was sent (send ledger)",
                    provider_id=entry.provider_id)
    if entry.state == "failed":
        return made("failed", f"{reason}; delivery failed: {entry.reason or 'refused'}")
    return made("unknown", f"{reason}; delivery outcome not recorded")


def seconds_since(document: dict[str, Any]) -> float:
    """Seconds since a run document's `started` (0 when it does not say)."""
    try:
        started = dt.datetime.fromisoformat(document["started"])
        return max(0.0, (dt.datetime.now(dt.UTC) - started).total_seconds())
    except (KeyError, ValueError, TypeError):
        return 0.0


# -- finding the runs that died ---------------------------------------------------------


def is_dead(info: dict[str, Any], folder: Path, over_elsewhere: OverElsewhere | None = None
            ) -> bool:
    """Whether the run that owns a folder marked running is gone.

    The folder's lock answers for runs on this machine (the OS drops it when the holder
    dies); the pid check covers folders written before the lock existed. A run of
    another host is over only when `over_elsewhere` says so (its orchestrator knows).
    """
    here = alive_here(info)
    if here is None:
        return over_elsewhere is not None and over_elsewhere(info)
    if here:
        return False
    lock = FolderLock(folder)
    try:
        lock.acquire()
    except Exception:
        return False
    lock.release()
    return True


def recover_runs(campaign_out: Path | str, *, skip: Path | None = None,
                 on_repaired: OnRepaired | None = None,
                 over_elsewhere: OverElsewhere | None = None,
                 ledger: Ledger | None = None) -> list[Repair]:
    """Repair every run folder under `out/<campaign>/` whose run died mid-way (`ledger`:
    the campaign's send ledger, open, to tell what the dead runs sent)."""
    campaign_out = Path(campaign_out)
    repaired: list[Repair] = []
    if not campaign_out.is_dir():
        return repaired
    for folder in sorted(p for p in campaign_out.iterdir() if p.is_dir()):
        if skip is not None and folder.resolve() == Path(skip).resolve():
            continue
        info = read_run_file(folder)
        if not info or info.get("status") != "running" or not is_dead(info, folder,
                                                                       over_elsewhere):
            continue
        summary = _repair_held(folder, ledger)
        if summary is None:
            continue
        if on_repaired is not None:
            on_repaired(info, summary)
        repaired.append(summary)
    return repaired


@contextlib.contextmanager
def campaign_ledger(campaign: Campaign) -> Iterator[Ledger | None]:
    """The campaign's send ledger, open beside whatever run holds its lock, for a repair
    outside a run (serve's start, a flow's crash hook); None when it never sent (no file
    is created for it)."""
    from edition.send.delivery import ledger_path
    from edition.send.ledger.location import open_ledger

    location = ledger_path(campaign)
    if isinstance(location, Path) and not location.is_file():
        yield None
        return
    with open_ledger(location, exclusive=False) as ledger:
        yield ledger


def recover_campaign_runs(campaign: Campaign, *, on_repaired: OnRepaired | None = None,
                          over_elsewhere: OverElsewhere | None = None) -> list[Repair]:
    """`recover_runs` on the campaign's own out folder, its send ledger at hand: what a
    dead send delivered is `sent`, not `failed`, however its folder is kept."""
    with campaign_ledger(campaign) as ledger:
        return recover_runs(campaign.root / "out" / campaign.name, on_repaired=on_repaired,
                            over_elsewhere=over_elsewhere, ledger=ledger)


def _repair_held(folder: Path, ledger: Ledger | None = None) -> Repair | None:
    """Repair a dead run's folder under its lock (None: someone else holds it now)."""
    lock = FolderLock(folder)
    try:
        lock.acquire()
    except Exception:
        return None
    try:
        return repair(folder, ledger=ledger)
    except Exception as exc:  # never let one folder stop a run or serve
        return Repair(str(folder), note=f"could not repair: {exc}")
    finally:
        lock.release()


# -- resuming a run on its own folder -----------------------------------------------------


@dataclass(frozen=True)
class Resume:
    """Where a run picks up in its folder."""

    after_line: int = 0
    kept: int = 0


def resume_point(folder: Path) -> Resume:
    """Cut what an interrupted run left half-done; where the next run picks up."""
    path = folder / MANIFEST_NAME
    rows, _ = read_rows(path, cut_torn=True)
    keep = len(rows)
    while keep and rows[keep - 1].get("reason_code") == INTERRUPTED:
        keep -= 1
    if keep < len(rows):  # rows the repair added for the rest of the input: redone now
        truncate_rows(path, keep)
    rows = rows[:keep]
    remove_unlisted(folder, {rel for r in rows for rel in (r.get("files") or {}).values()})
    return Resume(after_line=max((int(r.get("line") or 0) for r in rows), default=0),
                  kept=keep)


def kept_rows(folder: Path, resume: Resume) -> list[ManifestRow]:
    """The rows a resumed run kept from the run it finishes."""
    rows, _ = read_rows(folder / MANIFEST_NAME)
    return [ManifestRow.from_dict(r) for r in rows[:resume.kept]]


def clear_folder(folder: Path) -> None:
    """What a run wrote, gone (for --overwrite): manifest, report, run.json, files."""
    for name in (MANIFEST_NAME, "report.md", "versions.json", RUN_FILE):
        (folder / name).unlink(missing_ok=True)
    for fmt in ("html", "text", "eml", "pdf", "outbox"):
        path = folder / fmt
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def listed(rows: Iterable[dict[str, Any]]) -> set[str]:
    """The files a manifest's rows name."""
    return {rel for r in rows for rel in (r.get("files") or {}).values()}


__all__ = ["INTERRUPTED", "Repair", "Resume", "clear_folder", "is_dead", "kept_rows",
           "listed", "recover_runs", "repair", "resume_point", "run_info", "seconds_since"]
