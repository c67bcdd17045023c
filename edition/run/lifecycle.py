"""A run's lifecycle, the same for the CLI and the Prefect flow.

1. Load and check the plan (campaign, catalog, templates): a mistake stops the run here.
2. Hold the run folder (one run at a time), refuse a folder that holds another run's
   manifest, resume the same run if it was interrupted, and write `run.json`.
3. Stream the customers in batches through an executor (inline, a process pool, or
   Prefect's task runner) in a bounded window, and collect the results in input order.
4. Finish (report, versions.json, run.json) — or, when the run dies, repair the folder
   so its manifest still has one row per customer and its report says what happened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cachetools import LRUCache

from edition import private
from edition.audience.customers import (
    Row,
    batches,
    count_rows,
    encoding_problem,
    read_customers,
)
from edition.audience.preferences import PreferenceSnapshot
from edition.audience.sources import CustomerSource, customer_source
from edition.audience.suppression import Suppression
from edition.content.campaign import Campaign
from edition.databases import masked
from edition.errors import ApprovalError, ContentError, RunError, UsageError, collect
from edition.markdown_text import text
from edition.outcomes import ManifestRow, Reason
from edition.render.encoding import Encoder
from edition.render.plan import Plan
from edition.render.unsubscribe import UnsubscribeLinks, send_blockers
from edition.run import digests
from edition.run.bundle import Bundle
from edition.run.cadence import Cadence, cadence_of_run
from edition.run.click_table import learn_from_clicks, previous_mailing_clicks
from edition.run.folder import (
    LOCK_FILE,
    RUN_FILE,
    FolderLock,
    alive_here,
    is_remote,
    now,
    open_writer,
    owner,
    read_run_file,
    refuse_links,
    remove_unlisted,
    write_run_file,
)
from edition.run.index import record as index_run
from edition.run.manifest import MANIFEST_NAME, ManifestWriter, read_rows, truncate_rows
from edition.run.options import DEFAULT_BATCH, RunOptions
from edition.run.pipeline import BatchResult, Pipeline
from edition.run.preflight import Preflight, Scan, Scanner, run_preflight, scan_rows
from edition.run.report import RunInfo, Tally, rendering, sent_words, write_report
from edition.run.sender_health import health_or_nothing
from edition.send.delivery import (
    EMAIL_CHANNEL,
    Deliverer,
    MailingChoice,
    channel_of,
    choose_mailing,
    ledger_path,
    run_lock,
)
from edition.send.dkim import DkimSigner
from edition.send.dkim import applies_to as dkim_applies
from edition.send.ledger.location import for_workers, in_worker, this_machine
from edition.send.targets import needs_email as target_needs_email

__all__ = ["DEFAULT_BATCH", "Repair", "Run", "RunOptions", "RunSummary", "execute", "repair"]

INTERRUPTED = "interrupted"
Source = CustomerSource   # where customers come from


def refuse_direct_send(campaign: str) -> ApprovalError:
    """`run --send` of an `approval: required` campaign: what to do instead."""
    return ApprovalError(
        f"campaign {campaign} needs an approved run to send (approval: required): make a "
        f"dry run (edition run without --send), approve it (edition approve RUN_DIR), "
        f"then send it (edition send RUN_DIR)")


# -- what a run reads and where it writes ----------------------------------------------


def customers_file(options: RunOptions, campaign: Campaign) -> Source:
    """`--customers`, else the campaign's `customers`: a CSV/JSONL/Parquet file (relative
    to the content root) or a SQL source (`postgresql://…` + query)."""
    encoding = options.encoding or campaign.customers_encoding
    if options.customers:
        return customer_source(options.customers, from_campaign=False, encoding=encoding)
    if campaign.customers:
        return customer_source(campaign.customers, root=campaign.root, encoding=encoding)
    raise UsageError("no customer file: pass --customers or set `customers` in the campaign")


def source_name(source: Source) -> str:
    """How a source is shown and compared (a SQL source without its password)."""
    return source.label


def out_folder(options: RunOptions, campaign: Campaign) -> Path | str:
    """`--out` (a folder, or s3://bucket/prefix), else out/<campaign>/<run id>/ under the
    content root."""
    if options.out:
        return options.out if is_remote(options.out) else Path(options.out)
    return campaign.root / "out" / campaign.name / str(options.run_id)


def target_of(options: RunOptions, campaign: Campaign) -> str:
    return options.to or campaign.target


def need_email(options: RunOptions, plan: Plan) -> bool:
    """Rows without an address are rejected when the run makes or sends e-mail."""
    return "eml" in plan.formats or (options.send and
                                     target_needs_email(target_of(options, plan.campaign)))


def estimate_rows(source: Source, options: RunOptions) -> int:
    """About how many rows a run over this file reads (for progress bars, pool sizing)."""
    try:
        total = count_rows(source)
    except (OSError, RunError):
        return 0
    return min(total, options.limit) if options.limit is not None else total


def rejections(tally: Tally) -> list[tuple[str, int]]:
    """The reasons rows were rejected, commonest first."""
    return sorted(((reason, entry[0]) for (status, reason), entry in tally.problems.items()
                   if status == "rejected"), key=lambda item: -item[1])


def run_info(options: RunOptions, plan: Plan,
             preflight: Preflight | None = None, unsendable: Iterable[str] = ()) -> RunInfo:
    mode = (f"sent (--send) to {target_of(options, plan.campaign)}" if options.send
            else "dry run (nothing sent)")
    return RunInfo(campaign=plan.campaign.name,
                   segments=tuple((s.name, s.expression) for s in plan.campaign.segments),
                   run_id=str(options.run_id), mode=mode, as_of=plan.as_of,
                   formats=plan.formats,
                   customers=source_name(customers_file(options, plan.campaign)),
                   mailing=options.mailing if options.send else None,
                   preflight=tuple(preflight.table()) if preflight is not None else (),
                   unsendable=tuple(unsendable),
                   sender_health=health_or_nothing(plan.campaign),
                   clicks=previous_mailing_clicks(plan.campaign, options.mailing))


# -- one process per CPU: each worker keeps its own Plan and Pipeline -------------------

# A long-lived process (edition serve, a Dask worker) plans run after run: the last few
# plans stay, each with its bounded caches (edition.plan, edition.editions).
_PLANS: LRUCache[tuple[Any, ...], Plan] = LRUCache(4)
_PIPELINES: dict[RunOptions, Pipeline] = {}
_PIPELINES_LOCK = threading.RLock()


def plan_for(options: RunOptions) -> Plan:
    """The Plan for these options in this process (loaded and checked on first use)."""
    key = (options.campaign, options.formats, options.as_of)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = Plan.load(options.campaign, formats=options.formats,
                                       as_of=options.as_of)
        learn_from_clicks(plan)   # `rank: learn` slots: the click snapshot (run/click_table)
    return plan


@dataclass(frozen=True)
class Work:
    """What a worker on another machine needs besides the rows: the content, packed once
    by the main process, the run's suppression (lists and store read there), and where
    the run's own files are: its send ledger (a worker claims there, never in a ledger
    under its unpacked bundle) and the local folder a `local` target delivers into."""

    bundle: Bundle
    suppression: Suppression
    ledger: str | None = None  # ledger.location.for_workers: a path or URL
    machine: str = ""           # where the main process runs (a SQLite ledger is there)
    local_dir: str = ""         # the run's local folder (outbox), absolute
    cadence: Cadence | None = None   # house settings + send history, read here
    preferences: PreferenceSnapshot | None = None   # the customers' choices, read here

    @classmethod
    def of(cls, options: RunOptions, plan: Plan) -> Work:
        campaign = plan.campaign
        extra = [campaign.root / p for p in campaign.suppression.lists]
        if campaign.dkim is not None and getattr(campaign.dkim, "key_file", None):
            extra.append(campaign.root / str(campaign.dkim.key_file))
        return cls(Bundle.pack(options.campaign, tuple(extra)),
                   Suppression.load(campaign, extra_lists=options.suppression),
                   ledger=for_workers(ledger_path(campaign)) if options.send else None,
                   machine=this_machine(),
                   local_dir=str(_local(out_folder(options, campaign), campaign,
                                        options).resolve()),
                   cadence=cadence_of_run(options, plan),
                   preferences=PreferenceSnapshot.load(campaign, plan.as_of))


def pipeline_for(options: RunOptions, work: Work | None = None) -> Pipeline:
    """The Pipeline for this run in this process (its files, encoder and deliverer)."""
    with _PIPELINES_LOCK:  # a thread-pool task runner asks from several threads
        pipeline = _PIPELINES.get(options)
        if pipeline is None:
            pipeline = _PIPELINES[options] = _pipeline(options, work)
    return pipeline


def _pipeline(options: RunOptions, work: Work | None = None) -> Pipeline:
    plan = plan_for(options)
    campaign = plan.campaign
    out_dir = out_folder(options, campaign)
    target = target_of(options, campaign)
    deliverer = None
    if options.send:
        # a worker with the run's Work has only an unpacked bundle for a content root:
        # the run's ledger and local folder are the main process's, never the bundle's
        ledger = (in_worker(work.ledger, work.machine)
                  if work is not None and work.ledger is not None else None)
        local = Path(work.local_dir) if work is not None and work.local_dir else _local(
            out_dir, campaign, options)
        deliverer = Deliverer.for_campaign(
            campaign, target=target, mailing=str(options.mailing), run_id=str(options.run_id),
            out_dir=local, resend_unknown=options.resend_unknown, ledger=ledger)
    encoder = Encoder(campaign, plan.formats, options.started or dt.datetime.now(dt.UTC),
                      links=unsubscribe_links(options, plan), mailing=options.mailing)
    suppression = (work.suppression if work is not None
                   else Suppression.load(campaign, extra_lists=options.suppression))
    return Pipeline(plan, open_writer(out_dir), encoder, deliverer, suppression,
                    cadence=cadence_of_run(options, plan, work),
                    preferences=work.preferences if work is not None else None)


def _local(out: Path | str, campaign: Campaign, options: RunOptions) -> Path:
    """A local folder for what a remote run folder cannot hold (a local outbox)."""
    if isinstance(out, Path):
        return out
    return campaign.root / "out" / campaign.name / str(options.run_id)


def makes_email(options: RunOptions, plan: Plan) -> bool:
    """Does this run write .eml files or send by e-mail?"""
    return "eml" in plan.formats or (
        options.send and channel_of(target_of(options, plan.campaign)) == EMAIL_CHANNEL)


def unsendable_as_is(options: RunOptions, plan: Plan) -> list[str]:
    """Why a send of this dry run would be refused, as `run --send` would refuse it (no
    unsubscribe_url, no EDITION_UNSUBSCRIBE_SECRET): the dry run says so up front."""
    return send_blockers(plan.campaign, makes_email=makes_email(options.replace(send=True),
                                                                plan))


def unsubscribe_links(options: RunOptions, plan: Plan) -> UnsubscribeLinks | None:
    """The campaign's signed unsubscribe links, when its messages need them.

    Sending marketing e-mail needs `unsubscribe_url` (a content error without it) and
    EDITION_UNSUBSCRIBE_SECRET (a run error); a dry run goes on without either, with
    unsigned links, and preflight says so.
    """
    if not makes_email(options, plan):
        return None
    try:
        return UnsubscribeLinks.for_campaign(plan.campaign, allow_unsigned=not options.send)
    except ContentError:
        if options.send:
            raise
        return None


def process_batch(options: RunOptions, batch: list[Row], work: Work | None = None
                  ) -> BatchResult:
    """Worker entry point (process pools, Prefect tasks, Dask workers with `work`)."""
    if work is not None:  # no content root here: the bundle is it
        options = options.replace(campaign=str(work.bundle.unpack()), suppression=())
    return pipeline_for(options, work).process(batch)


def close_pipelines(options: RunOptions | None = None) -> None:
    """Close this run's pipeline in this process (all of them without options)."""
    for key in [k for k in _PIPELINES if options is None or k == options]:
        _PIPELINES.pop(key).close()


def worker_init() -> None:
    """Pool worker set-up: die with the parent.

    A killed run must not leave orphan workers still sending while a rerun starts; on
    Linux the kernel kills the worker when its parent dies.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


# -- executors: where batches render ----------------------------------------------------


class BatchExecutor(Protocol):
    """Runs `process_batch` somewhere and hands back something with `.result()`."""

    workers: int

    def submit(self, options: RunOptions, batch: list[Row], number: int) -> Any: ...


class InlineExecutor:
    """Batches render in this process, one after the other."""

    workers = 1

    def submit(self, options: RunOptions, batch: list[Row], number: int) -> Future:
        future: Future = Future()
        try:
            future.set_result(process_batch(options, batch))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class PoolExecutor:
    """Batches render in a concurrent.futures pool (processes use `worker_init`)."""

    def __init__(self, pool: Executor, workers: int):
        self.pool = pool
        self.workers = workers

    def submit(self, options: RunOptions, batch: list[Row], number: int) -> Future:
        return self.pool.submit(process_batch, options, batch)

    def scan(self, options: RunOptions, batches: Iterable[list[Row]]) -> Iterator[Scan]:
        """Preflight's pass over the rows, batch by batch in the workers, in input order.

        Before this, preflight read every row in the main process while the workers
        waited (about a third of a 20,000-customer run); each worker now renders the
        versions it meets first, and keeps them for the run."""
        window: deque[Future] = deque()
        try:
            for batch in batches:
                window.append(self.pool.submit(scan_batch, options, batch))
                while len(window) >= max(2, self.workers * 2):   # bounded: flat memory
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:
                future.cancel()


# -- the run ----------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What the CLI prints and the flow returns."""

    run_id: str
    out_dir: str
    counts: dict[str, int]
    customers: int
    versions: int
    seconds: float
    report: str
    resumed: int = 0        # rows kept from an interrupted run of the same folder
    mailing: str | None = None
    notes: list[str] = field(default_factory=list)
    already_sent: int = 0   # `sent` rows that an earlier run of the mailing sent
    failed: int = 0         # failed + unknown
    failure_limit: int = 0  # the campaign's max_failed for this many rows
    preflight: list[tuple[str, str]] = field(default_factory=list)   # (level, message)
    rejected: int = 0
    rejection_limit: int | None = None   # the campaign's max_rejected (None: any number)
    rejections: list[tuple[str, int]] = field(default_factory=list)  # the commonest whys
    wrong_encoding: str | None = None    # the file is not in the encoding it was read in

    @property
    def exit_code(self) -> int:
        """0, or 3 when more customers failed (or are unknown) than the campaign allows,
        or more rows were rejected."""
        return 3 if self.over_limits() else 0

    def over_limits(self) -> list[str]:
        """Why the run exits 3, in words (empty: it does not)."""
        found = []
        if self.failed > self.failure_limit:
            found.append(f"{self.failed:,} customer(s) failed or are unknown, more than the "
                         f"campaign allows (max_failed: {self.failure_limit:,})")
        if self.wrong_encoding:
            found.append(self.wrong_encoding)
        if self.rejection_limit is not None and self.rejected > self.rejection_limit:
            why = "; ".join(f"{n:,} × {reason}" for reason, n in self.rejections[:3])
            found.append(f"{self.rejected:,} of {self.customers:,} row(s) were rejected, more "
                         f"than the campaign allows (max_rejected: {self.rejection_limit:,})"
                         + (f": {why}" if why else ""))
        return found

    def sent_line(self) -> str:
        """`0 sent now, 20 already sent in mailing M`: what a send did, truthfully."""
        return sent_words(self.counts.get("sent", 0), self.already_sent, self.mailing)


@dataclass
class _Resume:
    """Where a run picks up in its folder."""

    after_line: int = 0
    kept: int = 0


class Run:
    """The main-process side of one run: holds the folder, streams rows, collects results."""

    def __init__(self, options: RunOptions, *, overwrite: bool = False,
                 on_repaired: Callable[[dict[str, Any], Repair], None] | None = None,
                 scanner: Scanner | None = None):
        self.scanner = scanner
        options = options.resolved()
        self.plan = plan_for(options)
        self.campaign = self.plan.campaign
        if options.send and self.campaign.approval_required:
            raise refuse_direct_send(self.campaign.name)  # only `edition send` may send it
        out = out_folder(options, self.campaign)
        # a run folder in object storage: the run's own files are staged here and put
        # there when it ends; the workers upload the customers' files themselves
        self.remote = open_writer(out) if is_remote(out) else None
        self.location = str(out)
        self.out_dir = Path(tempfile.mkdtemp(prefix="edition-stage-")) if self.remote else Path(
            out)
        options = options.replace(out=self.location)  # workers write where this run decides
        self.source = customers_file(options, self.campaign)
        self.overwrite = overwrite
        self.on_repaired = on_repaired
        self.options = options
        self.tally = Tally()
        self.lock: FolderLock | None = None
        self.ledger: Any = None
        self.manifest: ManifestWriter | None = None
        self.resume = _Resume()
        self.resumes = ""          # the run id this run finishes, when it resumes one
        self.notes: list[str] = []  # what the user should hear (a mailing resumed...)
        self.started = time.monotonic()
        self.remote_locked = False
        self.document: dict[str, Any] = {}
        self.preflight: Preflight | None = None
        self.unsendable: list[str] = []   # why a send of this dry run would be refused

    # -- start --------------------------------------------------------------------

    def start(self, **marker: Any) -> Run:
        """Preflight, then hold the folder, repair dead runs of the campaign, write run.json.

        Nothing is written (not even the folder) when preflight finds an error.
        """
        self.source.check()
        try:
            choice = None
            if self.options.send:
                self.ledger = run_lock(ledger_path(self.campaign), self.campaign.name)
                choice = self._pick_mailing()
            else:
                as_of = self.options.as_of or dt.date.today()
                # the mailing a send of this run would be: its messages' Feedback-ID
                self.options = self.options.replace(
                    as_of=as_of, mailing=self.options.mailing or as_of.isoformat())
            self.plan = plan_for(self.options)  # the run date may be the mailing's
            if self.options.send:
                _pipeline_checks(self.options, self.plan)
            else:
                self.unsendable = unsendable_as_is(self.options, self.plan)
                self.notes += [f"this dry run cannot be sent as it is: {why}"
                               for why in self.unsendable]
            self.preflight = preflight_for(self.options, self.plan, scanner=self.scanner)
            collect(self.preflight.errors)
            self.notes += [f"preflight: {w}" for w in self.preflight.warnings[:20]]
            if self.remote is not None:
                self._take_remote()
            else:
                # runs of this campaign that died: in its default out folder and beside it
                for parent in {self.campaign.root / "out" / self.campaign.name,
                               self.out_dir.parent}:
                    recover_runs(parent, skip=self.out_dir, on_repaired=self.on_repaired)
                if self.out_dir.is_symlink() is False and self.out_dir.exists():
                    refuse_links(self.out_dir, (LOCK_FILE,))
                self.lock = FolderLock(self.out_dir).acquire()
                self._prepare()
                refuse_links(self.out_dir)
            if choice is not None:
                self._open_mailing(choice)
            self.manifest = ManifestWriter(self.out_dir / MANIFEST_NAME,
                                           append=self.resume.kept > 0)
            self.document = {"status": "running", "run_id": self.options.run_id,
                             "campaign": self.campaign.name,
                             "options": self.options.recorded(),
                             "started": now(), **owner(),
                             # a marker may be a URL (the Prefect API's): never its password
                             **{k: masked(v) if isinstance(v, str) else v
                                for k, v in marker.items()}}
            self.document |= digests.record(self.options, self.plan, self.source)
            if self.resumes:
                self.document["resumes"] = self.resumes
            if self.unsendable:
                self.document["unsendable"] = self.unsendable
            if self.preflight is not None:
                self.document["preflight"] = {
                    "errors": [str(e) for e in self.preflight.errors],
                    "warnings": self.preflight.warnings, "facts": self.preflight.facts()}
            write_run_file(self.out_dir, self.document)
            if self.remote is not None:  # says whose folder it is, should this run die
                self.remote.put(RUN_FILE, (self.out_dir / RUN_FILE).read_bytes())
        except BaseException:
            self._release()
            raise
        return self

    def _take_remote(self) -> None:
        """Hold an object-store run folder (a dead run's lock is taken over), then: a fresh
        folder, the same interrupted run finished, --overwrite, or a refusal."""
        remote = self.remote
        remote.lock({"run_id": self.options.run_id, **owner()})
        self.remote_locked = True
        if remote.taken_over:
            self.notes.append(f"took {self.location} over from run "
                              f"{remote.taken_over.get('run_id', '?')}, which died holding it")
        info = remote.read_json(RUN_FILE)
        if info is None and not remote.exists(MANIFEST_NAME):
            return
        if self.overwrite:
            remote.clear()
        elif self._same_run(info):
            # its manifest went up only at its end: the rows are made again (the send
            # ledger keeps every customer at one message), stray files go at the end
            self.resumes = str(info.get("run_id") or "")
            previous = info.get("options") or {}
            if previous.get("started"):
                self.options = self.options.replace(
                    started=dt.datetime.fromisoformat(previous["started"]))
        else:
            whose = (f"run {info.get('run_id')} of {info.get('campaign')}" if info
                     else "an earlier run")
            raise RunError(f"{self.location} holds the output of {whose}; choose another "
                           f"--out or pass --overwrite to replace it")

    def _pick_mailing(self) -> MailingChoice:
        """Which issue of the campaign this send is, and its run date (nothing written)."""
        options = self.options
        channel = channel_of(target_of(options, self.campaign))
        choice = choose_mailing(self.ledger, self.campaign.name, channel,
                                mailing=options.mailing, as_of=options.as_of,
                                new_mailing=options.new_mailing)
        self.options = options.replace(mailing=choice.mailing, as_of=choice.as_of)
        if choice.note:
            self.notes.append(choice.note)
        return choice

    def _open_mailing(self, choice: MailingChoice) -> None:
        """The send starts: the ledger knows its mailing is open until the run finishes."""
        self.ledger.open_mailing(self.campaign.name, choice.mailing,
                                 channel_of(target_of(self.options, self.campaign)),
                                 as_of=choice.as_of.isoformat(),
                                 run_id=str(self.options.run_id),
                                 expected=estimate_rows(self.source, self.options))

    def _prepare(self) -> None:
        """A fresh folder, the same interrupted run resumed, or a refusal."""
        manifest = self.out_dir / MANIFEST_NAME
        info = read_run_file(self.out_dir)
        if not manifest.exists() and info is None:
            return
        if self.overwrite:
            clear_folder(self.out_dir)
            return
        if not self._same_run(info):
            whose = (f"run {info.get('run_id')} of {info.get('campaign')}" if info
                     else "an earlier run")
            raise RunError(f"{self.out_dir} holds the manifest of {whose}; choose another "
                             f"--out or pass --overwrite to replace it")
        self.resume = resume_point(self.out_dir)
        self.resumes = str(info.get("run_id") or "")
        previous = info.get("options") or {}
        # The resumed run keeps the clock of the run it finishes (the messages' Date), but
        # not its id: the send ledger must see the dead run's claims as another run's.
        if previous.get("started"):
            self.options = self.options.replace(
                started=dt.datetime.fromisoformat(previous["started"]))

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

    # -- rows and results ------------------------------------------------------------

    def estimate(self) -> int:
        """About how many rows the run will read (for progress bars)."""
        return max(0, estimate_rows(self.source, self.options) - self.resume.kept)

    def rows(self) -> Iterator[Row]:
        rows = read_customers(self.source, need_email=need_email(self.options, self.plan),
                              declared=self.campaign.fields, limit=self.options.limit)
        return (r for r in rows if r.line > self.resume.after_line)

    def batches(self) -> Iterator[list[Row]]:
        return batches(self.rows(), self.options.batch_size)

    def collect(self, result: BatchResult) -> None:
        assert self.manifest is not None
        self.manifest.write(result.rows)
        self.tally.add(result.rows, versions=result.versions, missing=result.missing,
                       short=result.short, sharing=result.sharing, paths=result.paths)

    # -- end -------------------------------------------------------------------------

    def finish(self) -> RunSummary:
        """Manifest closed, report and versions.json written, run.json says finished."""
        if self.resume.kept:
            self._count_kept()
        if self.manifest is not None:
            self.manifest.close()
        seconds = time.monotonic() - self.started
        # rows rejected because the whole file is in another encoding: the run says so
        wrong_encoding = (encoding_problem(self.source)
                          if self.tally.codes.get(("rejected", "not_utf8")) else None)
        report = write_report(self.tally, run_info(self.options, self.plan, self.preflight,
                                                   self.unsendable),
                              self.out_dir, seconds,
                              note=f"> **{text(wrong_encoding)}**" if wrong_encoding else "")
        if self.ledger is not None and self.options.mailing:
            self.ledger.finish_mailing(self.campaign.name, self.options.mailing,
                                       channel_of(target_of(self.options, self.campaign)))
        failed = self.tally.status.get("failed", 0) + self.tally.status.get("unknown", 0)
        summary = RunSummary(run_id=str(self.options.run_id), out_dir=self.location,
                             counts=dict(self.tally.status), customers=self.tally.rows,
                             versions=len(self.tally.versions), seconds=seconds,
                             report=report, resumed=self.resume.kept,
                             mailing=self.options.mailing, notes=list(self.notes),
                             already_sent=self.tally.codes.get(("sent", "already_sent"), 0),
                             failed=failed,
                             failure_limit=self.campaign.failure_limit(self.tally.rows),
                             rejected=self.tally.status.get("rejected", 0),
                             rejection_limit=self.campaign.rejection_limit(self.tally.rows),
                             rejections=rejections(self.tally),
                             wrong_encoding=wrong_encoding,
                             preflight=self.preflight.table() if self.preflight else [])
        write_run_file(self.out_dir, self.document | {
            "status": "finished", "finished": now(), "customers": summary.customers,
            "counts": summary.counts, "rendering": rendering(self.tally)})
        if self.options.send and self.remote is None:
            # approve and diff of the campaign's next run find this one wherever it is
            problem = index_run(self.campaign.root, self.campaign.name,
                                run_id=str(self.options.run_id), folder=self.out_dir,
                                event="sent")
            if problem:
                summary.notes.append(problem)
        self._upload()
        self._release()
        return summary

    def _upload(self) -> None:
        """A remote run folder gets the run's own files (after the customers' files)."""
        if self.remote is None:
            return
        if self.resumes:  # a dead run's batches that this run did not make again
            rows, _ = read_rows(self.out_dir / MANIFEST_NAME)
            self.remote.remove_unlisted({rel for r in rows
                                         for rel in (r.get("files") or {}).values()})
        for name in (MANIFEST_NAME, "versions.json", "report.md", RUN_FILE):
            if (self.out_dir / name).is_file():
                self.remote.put(name, (self.out_dir / name).read_bytes())

    def abort(self, reason: str) -> None:
        """The run died: make its folder consistent (every row listed, a report) and let go."""
        if self.manifest is not None:
            self.manifest.close()
        try:
            repair(self.out_dir, reason=reason, plan=self.plan, options=self.options)
            self._upload()
        finally:
            self._release()

    def _count_kept(self) -> None:
        rows, _ = read_rows(self.out_dir / MANIFEST_NAME)
        kept = [ManifestRow.from_dict(r) for r in rows[:self.resume.kept]]
        self.tally.add(kept, versions={r.version_digest or r.version: {
            "modules": r.modules, "segments": r.segments} for r in kept if r.version})

    def _release(self) -> None:
        if self.remote is not None and self.remote_locked:
            self.remote_locked = False
            with contextlib.suppress(Exception):
                self.remote.unlock()
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def preflight_for(options: RunOptions, plan: Plan | None = None, *,
                  scanner: Scanner | None = None) -> Preflight:
    """Preflight of a run over its customer file (edition.preflight); with `scanner`,
    the rows are scanned by an executor's workers (PoolExecutor.scan)."""
    plan = plan or plan_for(options)
    dry = options.replace(send=False)
    return run_preflight(options, plan, source=customers_file(options, plan.campaign),
                         pipeline=pipeline_for(dry), email=need_email(options, plan),
                         makes_email=makes_email(options, plan), scanner=scanner,
                         scan_options=dry)


class _Rendered(LRUCache):
    """The versions a worker rendered in its scan, the oldest forgotten past the bound:
    forgetting one costs one more render, never a wrong count (absorb dedups)."""

    def add(self, version: str) -> None:
        self[version] = True


SCANNED_VERSIONS = 65_536
_SCANNED: LRUCache[RunOptions, _Rendered] = LRUCache(4)   # per run, the last few runs


def scan_batch(options: RunOptions, batch: list[Row]) -> Scan:
    """Worker entry point of a parallel preflight: one batch counted, new versions
    rendered once here (and kept for the run's batches that follow in this worker)."""
    pipeline = pipeline_for(options)
    rendered = _SCANNED.get(options)
    if rendered is None:
        rendered = _SCANNED[options] = _Rendered(SCANNED_VERSIONS)
    return scan_rows(pipeline.plan, pipeline, batch, rendered)


def _pipeline_checks(options: RunOptions, plan: Plan) -> None:
    """What would stop a send, found before the first message: the unsubscribe links
    (url and secret), the DKIM key, the suppression lists."""
    unsubscribe_links(options, plan)
    campaign = plan.campaign
    if campaign.dkim is not None and dkim_applies(target_of(options, campaign)):
        DkimSigner.load(campaign.dkim, root=campaign.root)
    Suppression.load(campaign, extra_lists=options.suppression)


def execute(options: RunOptions, *, executor: BatchExecutor | None = None,
            on_progress: Callable[[int], None] | None = None, overwrite: bool = False,
            on_start: Callable[[Run], None] | None = None,
            on_repaired: Callable[[dict[str, Any], Repair], None] | None = None,
            **marker: Any) -> RunSummary:
    """Run a campaign: batches render in the executor's workers, collected in order.

    `marker` goes into run.json (a flow run's id); `on_repaired` hears of every dead
    run of the campaign whose folder this run repaired first.
    """
    executor = executor or InlineExecutor()
    run = Run(options, overwrite=overwrite, on_repaired=on_repaired,
              scanner=getattr(executor, "scan", None)).start(**marker)
    if on_start is not None:
        on_start(run)
    window: deque[tuple[int, Any]] = deque()
    limit = max(2, executor.workers * 2)   # bounded: memory stays flat

    def collect_one() -> None:
        size, future = window.popleft()
        run.collect(future.result())
        if on_progress:
            on_progress(size)

    try:
        for number, batch in enumerate(run.batches(), start=1):
            window.append((len(batch), executor.submit(run.options, batch, number)))
            while len(window) >= limit:
                collect_one()
        while window:
            collect_one()
    except BaseException as exc:
        for _, future in window:
            with contextlib.suppress(Exception):
                future.cancel()
        stopped = isinstance(exc, KeyboardInterrupt | SystemExit)
        run.abort("run cancelled" if stopped else f"run stopped: {exc}")
        raise
    finally:
        close_pipelines(run.options)
    return run.finish()


# -- interrupted runs -------------------------------------------------------------------


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


def resume_point(folder: Path) -> _Resume:
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
    return _Resume(after_line=max((int(r.get("line") or 0) for r in rows), default=0),
                   kept=keep)


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
           options: RunOptions | None = None) -> Repair:
    """Make an interrupted run folder consistent; return what was done, in words.

    A torn last manifest line is cut; customer files no row names are removed; every
    input row the manifest does not cover gets a row (`failed` with this reason, or
    `unknown` when the run was sending and that customer's files had been written: the
    provider may have the message, and the send ledger decides on the rerun); report.md
    and versions.json are written with a note; run.json says `interrupted`.
    """
    folder = Path(folder)
    info = read_run_file(folder) or {}
    manifest = folder / MANIFEST_NAME
    rows, torn = read_rows(manifest, cut_torn=True)
    if not manifest.exists():
        private.create_file(manifest)
    named = {rel for r in rows for rel in (r.get("files") or {}).values()}
    result = Repair(str(folder), kept=len(rows), torn_line=torn,
                    removed=remove_unlisted(folder, named))
    removed = set(result.removed)
    note = ""
    if options is None and info.get("options"):
        try:
            options = RunOptions.model_validate(info["options"])
        except ValueError as exc:
            note = f"rows not completed: the run's options cannot be read ({exc})"
    if plan is None and options is not None:
        try:
            plan = plan_for(options)
        except Exception as exc:  # campaign edited or broken since: account for what we can
            note = f"rows not completed: cannot read the campaign ({exc})"
    added: list[ManifestRow] = []
    if plan is not None and options is not None:
        last = max((int(r.get("line") or 0) for r in rows), default=0)
        try:
            source = read_customers(customers_file(options, plan.campaign),
                                    need_email=need_email(options, plan),
                                    declared=plan.campaign.fields, limit=options.limit)
            for row in source:
                if row.line <= last:
                    continue
                added.append(_interrupted_row(row, reason, options, removed))
        except Exception as exc:
            note = f"customer file unreadable ({exc}); manifest left as it was"
            added = []
    if added:
        writer = ManifestWriter(manifest, append=True)
        writer.write(added)
        writer.close()
    result.added.update(r.status for r in added)
    result.note = note
    if plan is not None and options is not None:
        tally = Tally()
        kept = [ManifestRow.from_dict(r) for r in rows]
        tally.add(kept + added, versions={r.version_digest or r.version: {
            "modules": r.modules, "segments": r.segments} for r in kept if r.version})
        text = (f"> **{reason.capitalize()}.** {len(rows):,} customer rows were done before "
                f"the run stopped; the other {len(added):,} are listed with reason code "
                f"`{INTERRUPTED}`. Run the campaign again on this folder to finish them.")
        write_report(tally, run_info(options, plan), folder, _seconds(info), note=text)
    write_run_file(folder, info | {"status": INTERRUPTED, "reason": reason,
                                   "repaired": now(), "repair": result.describe()})
    return result


def _interrupted_row(row: Row, reason: str, options: RunOptions,
                     removed: set[str]) -> ManifestRow:
    if row.rejected:
        return ManifestRow(customer_id=row.customer_id, status="rejected", line=row.line,
                           reason=row.reason)
    from edition.naming import relative_path

    rendered = any(relative_path(f, str(row.customer_id)) in removed
                   for f in ("html", "text", "eml", "pdf"))
    if options.send and rendered:
        # its batch ran, so it may have been delivered: the ledger knows
        return ManifestRow(customer_id=row.customer_id, status="unknown", line=row.line,
                           reason=Reason(INTERRUPTED, f"{reason}; delivery outcome not "
                                                      f"recorded", "run interrupted"))
    return ManifestRow(customer_id=row.customer_id, status="failed", line=row.line,
                       reason=Reason(INTERRUPTED, reason, "run interrupted"))


def _seconds(info: dict[str, Any]) -> float:
    try:
        started = dt.datetime.fromisoformat(info["started"])
        return max(0.0, (dt.datetime.now(dt.UTC) - started).total_seconds())
    except (KeyError, ValueError, TypeError):
        return 0.0


def is_dead(info: dict[str, Any], folder: Path) -> bool:
    """Whether the run that owns a folder marked running is gone.

    The folder's lock answers for runs on this machine (the OS drops it when the holder
    dies); the pid check covers folders written before the lock existed.
    """
    if alive_here(info) is not False:
        return False  # alive, or another host's run: only its orchestrator can say
    lock = FolderLock(folder)
    try:
        lock.acquire()
    except RunError:
        return False
    lock.release()
    return True


def recover_runs(campaign_out: Path | str, *, skip: Path | None = None,
                 on_repaired: Callable[[dict[str, Any], Repair], None] | None = None
                 ) -> list[Repair]:
    """Repair every run folder under `out/<campaign>/` whose run died mid-way."""
    campaign_out = Path(campaign_out)
    repaired: list[Repair] = []
    if not campaign_out.is_dir():
        return repaired
    for folder in sorted(p for p in campaign_out.iterdir() if p.is_dir()):
        if skip is not None and folder.resolve() == Path(skip).resolve():
            continue
        info = read_run_file(folder)
        if not info or info.get("status") != "running" or not is_dead(info, folder):
            continue
        lock = FolderLock(folder)
        try:
            lock.acquire()
        except RunError:
            continue
        try:
            summary = repair(folder)
        except Exception as exc:  # never let one folder stop a run or serve
            summary = Repair(str(folder), note=f"could not repair: {exc}")
        finally:
            lock.release()
        if on_repaired is not None:
            on_repaired(info, summary)
        repaired.append(summary)
    return repaired


@dataclass
class Pool:
    """A process pool sized for a run, or none when one process is enough."""

    workers: int
    executor: Any = field(default=None)

    def __enter__(self) -> BatchExecutor:
        if self.workers <= 1:
            return InlineExecutor()
        from concurrent.futures import ProcessPoolExecutor

        self.executor = ProcessPoolExecutor(max_workers=self.workers, initializer=worker_init)
        return PoolExecutor(self.executor, self.workers)

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    return os.cpu_count() or 1
