"""`edition run`'s feed for the lifecycle: customer rows, rendered (and sent) in batches.

What is particular to a run (edition/run/lifecycle.py does the rest): preflight before
anything is written; the run folder, local or in object storage (s3://), surveyed before
preflight and held after it: a fresh folder, the same interrupted run resumed (its
clock kept), an earlier run's output cleared with --overwrite, or a refusal; the dead
runs of the campaign repaired first; the report with versions.json; the run index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edition.audience.customers import batches, encoding_problem, read_customers
from edition.errors import ApprovalError, ContentError, RunError, UsageError, collect
from edition.markdown_text import text
from edition.run import digests
from edition.run.context import (
    RunContext,
    customers_file,
    estimate_rows,
    makes_email,
    need_email,
    out_folder,
    source_name,
    target_of,
)
from edition.run.executors import in_order
from edition.run.folder import (
    LOCK_FILE,
    RUN_FILE,
    FolderLock,
    is_remote,
    open_writer,
    owner,
    read_run_file,
    refuse_links,
)
from edition.run.index import record as index_run
from edition.run.manifest import MANIFEST_NAME, read_rows
from edition.run.options import RunOptions
from edition.run.preflight import Preflight, Scanner, run_preflight
from edition.run.repair import (
    INTERRUPTED,
    OnRepaired,
    OverElsewhere,
    Resume,
    clear_folder,
    kept_rows,
    listed,
    recover_runs,
    repair,
    resume_point,
    run_info,
)
from edition.run.report import RunInfo, write_report
from edition.run.sharded import shard_batches, shardable
from edition.run.summary import RunSummary
from edition.run.workers import (
    RenderJob,
    close_jobs,
    pipeline_for,
    plan_for,
    send_checks,
    unsendable_as_is,
)
from edition.send.delivery import MailingChoice
from edition.send.targets import channel_of

if TYPE_CHECKING:
    from edition.run.executors import BatchExecutor
    from edition.run.lifecycle import Lifecycle


def refuse_direct_send(campaign: str) -> ApprovalError:
    """`run --send` of an `approval: required` campaign: what to do instead."""
    return ApprovalError(
        f"campaign {campaign} needs an approved run to send (approval: required): make a "
        f"dry run (edition run without --send), approve it (edition approve RUN_DIR), "
        f"then send it (edition send RUN_DIR)")


# Up to this many rows, preflight's pass runs in this process, before a local pool has
# started its workers: they fork from it (Linux's start method; executors.Pool) and inherit every
# version it rendered, instead of each worker rendering every version again (~4 ms a
# version, 100-2,400 versions). Its serial pass over the rows (~40 µs a row) costs less
# than that below here; above, the workers scan side by side (PoolExecutor.scan).
# Measured (2 workers, sample newsletter, CPU of the process tree, loaded machine): CPU
# per customer 1,000 → 5,000 rows 1.10 → 0.67 ms, 5,000 → 20,000 0.70 → 0.66 ms.
SCAN_HERE_UP_TO = 50_000


@dataclass(frozen=True)
class Survey:
    """What a run folder held before this run took it (read, not yet held)."""

    info: dict[str, Any] | None       # its run.json
    outcome: str                      # "fresh", "resume", "overwrite"


class RenderedBatches:
    """A run's customer rows, for the lifecycle (see the module docstring)."""

    document_name = RUN_FILE
    summary_type = RunSummary

    def __init__(self, options: RunOptions, *, overwrite: bool = False,
                 scanner: Scanner | None = None, on_repaired: OnRepaired | None = None,
                 over_elsewhere: OverElsewhere | None = None,
                 shards: BatchExecutor | None = None):
        self.options = options.resolved()
        self.shards = shards   # workers that read the customer source in shards (Dask)
        self.campaign = plan_for(self.options).campaign
        self.sending = self.options.send
        if self.sending and self.campaign.approval_required:
            raise refuse_direct_send(self.campaign.name)  # only `edition send` may send it
        self.source = customers_file(self.options, self.campaign)
        self.overwrite, self.scanner = overwrite, scanner
        self.on_repaired, self.over_elsewhere = on_repaired, over_elsewhere
        out = out_folder(self.options, self.campaign)
        # a run folder in object storage: the run's own files are staged here and put
        # there when it ends; the workers upload the customers' files themselves
        self.remote = open_writer(out) if is_remote(out) else None
        self.remote_locked = False
        self.folder = (Path(tempfile.mkdtemp(prefix="edition-stage-")) if self.remote
                       else Path(out))
        self.lock: FolderLock | None = None
        self.survey = Survey(None, "fresh")
        self.resume = Resume()
        self.preflight: Preflight | None = None
        self.unsendable: list[str] = []   # why a send of this dry run would be refused

    @property
    def resumed(self) -> int:
        return self.resume.kept

    @property
    def resumes(self) -> str:
        """The run id this run finishes, when it resumes one."""
        info = self.survey.info or {}
        return str(info.get("run_id") or "") if self.survey.outcome == "resume" else ""

    def wanted(self) -> tuple[str, str | None, Any, bool]:
        options = self.options
        return (channel_of(target_of(options, self.campaign)), options.mailing,
                options.as_of, options.new_mailing)

    # -- deciding --------------------------------------------------------------------

    def decide(self, life: Lifecycle, choice: MailingChoice | None) -> RunContext:
        """The mailing and run date (a dry run's: the send it would be), the clock (a
        resumed run keeps the clock of the run it finishes: the messages' Date)."""
        self.source.check()
        self.survey = self._survey()
        if choice is not None:
            mailing, as_of = choice.mailing, choice.as_of
        else:
            as_of = self.options.as_of or dt.date.today()
            mailing = self.options.mailing or as_of.isoformat()
        started = self.options.started or dt.datetime.now(dt.UTC)
        previous = (self.survey.info or {}).get("options") or {}
        if self.survey.outcome == "resume" and previous.get("started"):
            # not its id: the send ledger must see the dead run's claims as another run's
            started = dt.datetime.fromisoformat(previous["started"])
        return RunContext.of(self.options, self.campaign, mailing=mailing, as_of=as_of,
                             started=started, source=self.source)

    def _survey(self) -> Survey:
        """What the folder holds: nothing, this interrupted run, or another run's output
        (refused unless --overwrite). Read only: the folder is held after preflight."""
        if self.remote is not None:
            info = self.remote.read_json(RUN_FILE)
            holds = info is not None or self.remote.exists(MANIFEST_NAME)
        else:
            info = read_run_file(self.folder)
            holds = info is not None or (self.folder / MANIFEST_NAME).exists()
        if not holds:
            return Survey(info, "fresh")
        if self.overwrite:
            return Survey(info, "overwrite")
        if self._same_run(info):
            return Survey(info, "resume")
        whose = (f"run {info.get('run_id')} of {info.get('campaign')}" if info
                 else "an earlier run")
        what = "output" if self.remote is not None else "manifest"
        where = out_folder(self.options, self.campaign)
        raise RunError(f"{where} holds the {what} of {whose}; choose another --out or pass "
                       f"--overwrite to replace it")

    def _same_run(self, info: dict[str, Any] | None) -> bool:
        """Is the folder's run an unfinished run of this campaign over the same customers?"""
        if not info or info.get("status") not in {"running", INTERRUPTED}:
            return False
        if info.get("campaign") != self.campaign.name:
            return False
        try:
            previous = RunOptions.model_validate(info.get("options") or {})
            source = customers_file(previous, self.campaign)
        except (ValueError, UsageError, ContentError):
            return False
        return source_name(source) == source_name(self.source)

    # -- checks and the folder ----------------------------------------------------------

    def hold(self, life: Lifecycle) -> Path:
        """Preflight (nothing is written, not even the folder, when it finds an error),
        then the folder held as surveyed."""
        context = life.context
        if context.sending:
            send_checks(context.options, plan_for(context.options))
        else:
            self.unsendable = unsendable_as_is(context.options, plan_for(context.options))
            life.notes += [f"this dry run cannot be sent as it is: {why}"
                           for why in self.unsendable]
        self.preflight = preflight_for(context.options, scanner=self._scanner())
        if context.sending:  # the dry pipeline preflight opened here is not the run's
            close_jobs(dry_job(context.options))
        collect(self.preflight.errors)
        life.notes += [f"preflight: {w}" for w in self.preflight.warnings[:20]]
        if self.remote is not None:
            self._take_remote(life, self.remote)
        else:
            self._take_local(life)
        return self.folder

    def _scanner(self) -> Scanner | None:
        """Who makes preflight's pass over the rows: this process up to SCAN_HERE_UP_TO
        rows, the executor's workers (when it has them) above."""
        if self.scanner is None or self.estimate() <= SCAN_HERE_UP_TO:
            return None
        return self.scanner

    def _take_local(self, life: Lifecycle) -> None:
        campaign = self.campaign
        # runs of this campaign that died: in its default out folder and beside this one
        for parent in {campaign.root / "out" / campaign.name, self.folder.parent}:
            recover_runs(parent, skip=self.folder, on_repaired=self.on_repaired,
                         over_elsewhere=self.over_elsewhere, ledger=life.ledger)
        if self.folder.is_symlink() is False and self.folder.exists():
            refuse_links(self.folder, (LOCK_FILE,))
        self.lock = FolderLock(self.folder).acquire()
        self._confirm(read_run_file(self.folder))
        if self.survey.outcome == "overwrite":
            clear_folder(self.folder)
        elif self.survey.outcome == "resume":
            self.resume = resume_point(self.folder)
        refuse_links(self.folder)

    # Any: open_writer's folder, a plugin's (edition.folders entry point) for s3://…
    def _take_remote(self, life: Lifecycle, remote: Any) -> None:
        """An object-store run folder: its lock (a dead run's is taken over); a resumed
        run makes every row again (its manifest went up only at its end; the send
        ledger keeps every customer at one message), stray files go at the end."""
        remote.lock({"run_id": life.context.run_id, **owner()})
        self.remote_locked = True
        if remote.taken_over:
            life.notes.append(f"took {life.location} over from run "
                              f"{remote.taken_over.get('run_id', '?')}, which died holding it")
        self._confirm(remote.read_json(RUN_FILE))
        if self.survey.outcome == "overwrite":
            remote.clear()

    def _confirm(self, info: dict[str, Any] | None) -> None:
        """The folder, now held, still holds what the survey saw."""
        if info != self.survey.info:
            raise RunError(f"{out_folder(self.options, self.campaign)} changed while this "
                           f"run was starting (another run wrote it); run again")

    # -- the run's document and rows ----------------------------------------------------

    def document(self, life: Lifecycle) -> dict[str, Any]:
        context = life.context
        document: dict[str, Any] = {"run_id": context.run_id, "campaign": context.campaign,
                                    "options": context.options.recorded()}
        document |= digests.record(context.options, plan_for(context.options), self.source)
        if self.resumes:
            document["resumes"] = self.resumes
        if self.unsendable:
            document["unsendable"] = self.unsendable
        if self.preflight is not None:
            document["preflight"] = {
                "errors": [str(e) for e in self.preflight.errors],
                "warnings": self.preflight.warnings, "facts": self.preflight.facts()}
        return document

    def started(self, life: Lifecycle) -> None:
        """A remote run folder gets run.json at once: it says whose folder it is, should
        this run die (the next run resumes it, or clears it with --overwrite)."""
        if self.remote is not None:
            self.remote.put(RUN_FILE, (self.folder / RUN_FILE).read_bytes())

    def estimate(self) -> int:
        return max(0, estimate_rows(self.source, self.options) - self.resume.kept)

    def job(self, life: Lifecycle) -> RenderJob:
        return RenderJob(life.context.options)

    def batches(self, life: Lifecycle) -> Iterator[list[Any]]:
        options = life.context.options
        plan = plan_for(options)
        after = self.resume.after_line
        if self.shards is not None and options.limit is None and shardable(self.source):
            # the workers read the source, shard by shard (edition/run/sharded.py)
            life.notes.append(f"the workers read the customer source in shards of about "
                              f"{options.batch_size:,} rows; the main process did not "
                              f"ship its rows")
            return shard_batches(self.source, self.shards, rows=self.estimate(),
                                 batch_size=options.batch_size,
                                 declared=dict(self.campaign.fields or {}),
                                 need_email=need_email(options, plan), after_line=after,
                                 gather=in_order)
        rows = read_customers(self.source, need_email=need_email(options, plan),
                              declared=self.campaign.fields, limit=options.limit)
        return batches((r for r in rows if r.line > after), options.batch_size)

    # -- the end -------------------------------------------------------------------

    def report(self, life: Lifecycle) -> tuple[str, dict[str, Any]]:
        """report.md and versions.json (rows kept from the run it finishes counted too)."""
        if self.resume.kept:
            kept = kept_rows(self.folder, self.resume)
            life.tally.add(kept, versions={r.version_digest or r.version: {
                "modules": r.modules, "segments": r.segments} for r in kept if r.version})
        tally = life.tally
        # rows rejected because the whole file is in another encoding: the run says so
        wrong_encoding = (encoding_problem(self.source)
                          if tally.codes.get(("rejected", "not_utf8")) else None)
        report = write_report(tally, self.info(life), self.folder, life.seconds,
                              note=f"> **{text(wrong_encoding)}**" if wrong_encoding else "")
        return report, {"failure_limit": self.campaign.failure_limit(tally.rows),
                        "rejection_limit": self.campaign.rejection_limit(tally.rows),
                        "wrong_encoding": wrong_encoding,
                        "preflight": self.preflight.table() if self.preflight else []}

    def info(self, life: Lifecycle) -> RunInfo:
        """The report's header: the run, its preflight, why a send would be refused."""
        return dataclasses.replace(
            run_info(life.context.options, plan_for(life.context.options)),
            preflight=tuple(self.preflight.table()) if self.preflight else (),
            unsendable=tuple(self.unsendable))

    def finished(self, life: Lifecycle, summary: RunSummary) -> None:
        if self.sending and self.remote is None:
            # approve and diff of the campaign's next run find this one wherever it is
            problem = index_run(self.campaign.root, self.campaign.name,
                                run_id=life.context.run_id, folder=self.folder, event="sent")
            if problem:
                summary.notes.append(problem)
        self._upload()

    def repair(self, life: Lifecycle, reason: str) -> None:
        options = life.context.options
        # the customers' files of an S3 folder are there, not in the local staging folder
        unlisted = self.remote.remove_unlisted if self.remote is not None else None
        repair(self.folder, reason=reason, plan=plan_for(options), options=options,
               ledger=life.ledger, unlisted=unlisted)
        self._upload()

    def _upload(self) -> None:
        """A remote run folder gets the run's own files (after the customers' files)."""
        if self.remote is None:
            return
        if self.resumes:  # a dead run's batches that this run did not make again
            rows, _ = read_rows(self.folder / MANIFEST_NAME)
            self.remote.remove_unlisted(listed(rows))
        for name in (MANIFEST_NAME, "versions.json", "report.md", RUN_FILE):
            if (self.folder / name).is_file():
                self.remote.put(name, (self.folder / name).read_bytes())

    def release(self) -> None:
        if self.remote is not None and self.remote_locked:
            self.remote_locked = False
            with contextlib.suppress(Exception):  # the lease runs out by itself
                self.remote.unlock()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def dry_job(options: RunOptions) -> RenderJob:
    """The same run sending nothing: what preflight renders and counts with."""
    return RenderJob(options.replace(send=False, resend_unknown=False, new_mailing=False))


def preflight_for(options: RunOptions, *, scanner: Scanner | None = None) -> Preflight:
    """Preflight of a run over its customer file (edition/run/preflight.py); with
    `scanner`, the rows are scanned by an executor's workers (PoolExecutor.scan)."""
    plan = plan_for(options)
    dry = dry_job(options)
    return run_preflight(options, plan, source=customers_file(options, plan.campaign),
                         pipeline=pipeline_for(dry.options), email=need_email(options, plan),
                         makes_email=makes_email(options, plan), scanner=scanner,
                         scan_job=dry)


__all__ = ["RenderedBatches", "Survey", "preflight_for", "refuse_direct_send"]
