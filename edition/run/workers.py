"""The worker side of a run: what one process keeps between batches, and its entry points.

A worker (this process, a pool process, a Prefect task, a Dask worker) is handed a
`Job` and a batch. The job says what to do with the batch (render it, or send approved
rows) and has a `key`: a digest of everything it decides. The worker opens what the job
needs once per key (a `Pipeline`: plan, files, encoder, deliverer) and keeps it for the
job's later batches; `close_jobs` lets go of it when the run ends. A long-lived process
(edition serve, a Dask worker) keeps the last few plans (`plan_for`), each with its
bounded caches.

A worker on another machine has no content root: with `Work`, the content comes as a
bundle packed once by the main process, with the run's suppression, its send ledger and
its local folder (a worker claims in the run's ledger, never in one of its own).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cachetools import LRUCache

from edition.audience.customers import Row
from edition.audience.experiments import Rest
from edition.audience.preferences import PreferenceSnapshot
from edition.audience.suppression import Suppression
from edition.content.campaign import Campaign
from edition.errors import ContentError
from edition.render.encoding import Encoder
from edition.render.plan import Plan
from edition.render.unsubscribe import (
    UnsubscribeLinks,
    UnsubscribeSecretError,
    send_blockers,
)
from edition.run.bundle import Bundle
from edition.run.cadence import Cadence, cadence_of_run
from edition.run.click_table import learn_from_clicks
from edition.run.context import local_folder, makes_email, options_key, out_folder, target_of
from edition.run.experiment_verdict import rest_decision
from edition.run.folder import open_writer
from edition.run.options import RunOptions
from edition.run.pipeline import BatchResult, Pipeline
from edition.run.preflight import Scan, scan_rows
from edition.run.sharded import expand
from edition.send.delivery import Deliverer, ledger_path
from edition.send.dkim import DkimSigner
from edition.send.dkim import applies_to as dkim_applies
from edition.send.ledger.location import for_workers, in_worker, this_machine


class BatchWorker(Protocol):
    """What a job opens in a worker: it processes batches, then lets go."""

    def process(self, batch: list[Any]) -> BatchResult: ...
    def close(self) -> None: ...


class Job(Protocol):
    """What a worker needs besides the rows; small, frozen and picklable."""

    @property
    def kind(self) -> str:
        """"render" or "send": how a task runner names its tasks."""

    @property
    def key(self) -> str: ...

    def open(self, work: Work | None) -> BatchWorker: ...


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
    rest: Rest | None = None   # a test-then-winner experiment's rest, decided here
    preferences: PreferenceSnapshot | None = None   # the customers' choices, read here

    @classmethod
    def pack(cls, campaign: Campaign, campaign_file: str, *, sending: bool, local_dir: str,
             extra_lists: tuple[str, ...] = ()) -> Work:
        extra = [campaign.root / p for p in campaign.suppression.lists]
        if campaign.dkim is not None and getattr(campaign.dkim, "key_file", None):
            extra.append(campaign.root / str(campaign.dkim.key_file))
        return cls(Bundle.pack(campaign_file, tuple(extra)),
                   Suppression.load(campaign, extra_lists=extra_lists),
                   ledger=for_workers(ledger_path(campaign)) if sending else None,
                   machine=this_machine(), local_dir=local_dir)

    @classmethod
    def of(cls, options: RunOptions, plan: Plan) -> Work:
        """The work of a run with these options."""
        campaign = plan.campaign
        work = cls.pack(campaign, options.campaign, sending=options.send,
                        local_dir=str(local_folder(options, campaign).resolve()),
                        extra_lists=options.suppression)
        preferences = PreferenceSnapshot.load(campaign, plan.as_of)   # read once, here
        return dataclasses.replace(work, cadence=cadence_of_run(options, plan,
                                                                preferences=preferences),
                                   rest=plan.rest, preferences=preferences)

    def ledger_here(self) -> Any:
        """The run's ledger as this worker reaches it (edition.send.ledger.location)."""
        return in_worker(self.ledger, self.machine) if self.ledger is not None else None


# -- what a worker keeps --------------------------------------------------------------

class _Rendered(LRUCache[str, bool]):
    """The versions a worker rendered in preflight's scan, the oldest forgotten past the
    bound: forgetting one costs one more render, never a wrong count (absorb dedups)."""

    def add(self, version: str) -> None:
        self[version] = True


# Plans by (campaign file, formats, run date); open jobs by key; preflight's renders by key.
_PLANS: LRUCache[tuple[Any, ...], Plan] = LRUCache(4)
_REST_AT: dict[tuple[Any, ...], dt.datetime] = {}   # the clock each plan's `rest` is of
_OPEN: dict[str, BatchWorker] = {}
_OPEN_LOCK = threading.RLock()   # a thread-pool task runner asks from several threads
SCANNED_VERSIONS = 65_536
_SCANNED: LRUCache[str, _Rendered] = LRUCache(4)


def plan_for(options: RunOptions) -> Plan:
    """The Plan for these options in this process (loaded and checked on first use)."""
    key = (options.campaign, options.formats, options.as_of)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = Plan.load(options.campaign, formats=options.formats,
                                       as_of=options.as_of)
        learn_from_clicks(plan)   # `rank: learn` slots: the click snapshot (run/click_table)
    experiment = plan.campaign.experiment
    if experiment is not None and experiment.then_winner:
        # the verdict as it is at the run's clock (a plan outlives one run in a flow)
        now = options.started or dt.datetime.now(dt.UTC)
        if _REST_AT.get(key) != now:
            plan.rest = rest_decision(plan.campaign, now)
            _REST_AT[key] = now
    return plan


def worker_for(job: Job, work: Work | None = None) -> BatchWorker:
    """The job's worker in this process (opened on its first batch)."""
    key = job.key if work is None else f"{job.key}:{work.bundle.digest}"
    with _OPEN_LOCK:
        worker = _OPEN.get(key)
        if worker is None:
            worker = _OPEN[key] = job.open(work)
    return worker


def process_batch(job: Job | RunOptions, batch: list[Any], work: Work | None = None
                  ) -> BatchResult:
    """Worker entry point (process pools, Prefect tasks, Dask workers with `work`); a
    run's options stand for the job of rendering its rows."""
    doing = RenderJob(job) if isinstance(job, RunOptions) else job
    result = worker_for(doing, work).process(expand(batch))   # a shard is read here
    if _POOL["worker"] and not _POOL["frozen"]:
        # a pool process lives for one run: what its first batch warmed (plan, versions,
        # shapes) stays to the end, so the full collections its rows trigger need not walk
        # it (gc.freeze is O(1); measured ~0.1 s per full collection in the main process)
        _POOL["frozen"] = True
        gc.freeze()
    return result


def close_jobs(job: Job | None = None) -> None:
    """Close this job's worker in this process (every job's without one)."""
    with _OPEN_LOCK:
        keys = [k for k in _OPEN if job is None or k.split(":")[0] == job.key]
        for key in keys:
            _OPEN.pop(key).close()


_POOL = {"worker": False, "frozen": False}   # this process is a run's pool worker


def worker_init() -> None:
    """Pool worker set-up: die with the parent.

    A killed run must not leave orphan workers still sending while a rerun starts; on
    Linux the kernel kills the worker when its parent dies.
    """
    _POOL["worker"] = True
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


# -- rendering a run's batches ---------------------------------------------------------


@dataclass(frozen=True)
class RenderJob:
    """Render (and when sending, deliver) batches of customer rows with these options."""

    options: RunOptions
    kind: str = "render"
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", options_key(self.options))

    def open(self, work: Work | None) -> Pipeline:
        options = self.options
        if work is not None:  # no content root here: the bundle is it
            options = options.replace(campaign=str(work.bundle.unpack()), suppression=())
        return open_pipeline(options, work)


def open_pipeline(options: RunOptions, work: Work | None = None) -> Pipeline:
    """A run's pipeline in this process: its files, encoder and deliverer."""
    plan = plan_for(options)
    if work is not None and work.rest is not None:
        plan.rest = work.rest   # the verdict the main process read (it has the run folders)
    campaign = plan.campaign
    deliverer = None
    if options.send:
        # a worker with the run's Work has only an unpacked bundle for a content root:
        # the run's ledger and local folder are the main process's, never the bundle's
        deliverer = Deliverer.for_campaign(
            campaign, target=target_of(options, campaign), mailing=str(options.mailing),
            run_id=str(options.run_id), resend_unknown=options.resend_unknown,
            out_dir=local_folder(options, campaign) if work is None or not work.local_dir
            else Path(work.local_dir),
            ledger=work.ledger_here() if work is not None else None)
    encoder = Encoder(campaign, plan.formats, options.started or dt.datetime.now(dt.UTC),
                      links=unsubscribe_links(options, plan), mailing=options.mailing)
    suppression = (work.suppression if work is not None
                   else Suppression.load(campaign, extra_lists=options.suppression))
    # one snapshot of the customers' choices for the pipeline and its cadence
    preferences = (work.preferences if work is not None and work.preferences is not None
                   else PreferenceSnapshot.load(campaign, plan.as_of))
    cadence = cadence_of_run(options, plan, work, preferences)
    if deliverer is not None and cadence is not None:
        deliverer.gate = cadence.gate()   # the cap's slots, taken as each message leaves
    return Pipeline(plan, open_writer(out_folder(options, campaign)), encoder, deliverer,
                    suppression, cadence=cadence, preferences=preferences)


def pipeline_for(options: RunOptions) -> Pipeline:
    """The pipeline of a run with these options in this process (preview, census)."""
    worker = worker_for(RenderJob(options))
    assert isinstance(worker, Pipeline)
    return worker


def scan_batch(job: RenderJob, batch: list[Row]) -> Scan:
    """Worker entry point of a parallel preflight: one batch counted, new versions
    rendered once here (and kept for the run's batches that follow in this worker)."""
    pipeline = worker_for(job)
    assert isinstance(pipeline, Pipeline)
    rendered = _SCANNED.get(job.key)
    if rendered is None:
        rendered = _SCANNED[job.key] = _Rendered(SCANNED_VERSIONS)
    return scan_rows(pipeline.plan, pipeline, batch, rendered)  # type: ignore[arg-type]


# -- what would stop a send ------------------------------------------------------------


def unsubscribe_links(options: RunOptions, plan: Plan) -> UnsubscribeLinks | None:
    """The campaign's signed unsubscribe (and preference-center) links.

    Sending marketing e-mail needs `unsubscribe_url` (a content error without it) and
    EDITION_UNSUBSCRIBE_SECRET (a run error); a dry run goes on without either, with
    unsigned links, and preflight says so. An edition that is not e-mail (an html page,
    a PDF letter) carries the customer's own links too, whatever `--formats` says
    (design.md: `customer.unsubscribe_url` is the customer's signed link): when the
    campaign has them, signed, or unsigned for a dry run; a send that is not e-mail
    without the secret leaves them out (the template's fallback, or preflight's error).
    """
    email = makes_email(options, plan)
    if not email and not (plan.campaign.unsubscribe_url or plan.campaign.preferences):
        return None
    try:
        return UnsubscribeLinks.for_campaign(plan.campaign, allow_unsigned=not options.send)
    except ContentError:
        if options.send and email:
            raise
        return None
    except UnsubscribeSecretError:
        if email:
            raise
        return None


def unsendable_as_is(options: RunOptions, plan: Plan) -> list[str]:
    """Why a send of this dry run would be refused, as `run --send` would refuse it (no
    unsubscribe_url, no EDITION_UNSUBSCRIBE_SECRET): the dry run says so up front."""
    return send_blockers(plan.campaign, makes_email=makes_email(options.replace(send=True),
                                                                plan))


def send_checks(options: RunOptions, plan: Plan) -> None:
    """What would stop a send, found before the first message: the unsubscribe links
    (url and secret), the DKIM key, the suppression lists."""
    unsubscribe_links(options, plan)
    campaign = plan.campaign
    if campaign.dkim is not None and dkim_applies(target_of(options, campaign)):
        DkimSigner.load(campaign.dkim, root=campaign.root)
    Suppression.load(campaign, extra_lists=options.suppression)


__all__ = ["BatchWorker", "Job", "RenderJob", "Work", "close_jobs", "open_pipeline",
           "pipeline_for", "plan_for", "process_batch", "scan_batch", "send_checks",
           "unsendable_as_is", "unsubscribe_links", "worker_for", "worker_init"]


def unshared_stores(campaign: Campaign, where: str) -> list[str]:
    """Why a send through `where` (a Dask scheduler: its workers may run on other
    machines) cannot share the stores its messages claim in, in words: the send ledger,
    and the house store with the frequency cap's slots when a cap is in force. A SQLite
    file is this machine's: each worker would claim in a file of its own (and send
    everyone again next time, or let two campaigns both pass the cap). PostgreSQL is
    shared."""
    from edition.databases import is_database_url
    from edition.run.cadence import cap_in_force
    from edition.send.delivery import ledger_path
    from edition.send.ledger.location import LEDGER_URL_ENV
    from edition.store.cap_slots import house_store_location

    stores = [("a send ledger", ledger_path(campaign),
               f"{LEDGER_URL_ENV}=postgresql://… (or the campaign's delivery.ledger)")]
    if cap_in_force(campaign):
        stores.append(("the house store that holds the frequency cap's slots",
                       house_store_location(campaign.root), "EDITION_STORE=postgresql://…"))
    return [f"a send through {where} needs {what} every worker reaches: they may run on "
            f"other machines, which can neither see nor lock the SQLite file "
            f"{str(location).removeprefix('sqlite:///')}; set {fix}, or leave the Dask "
            f"address empty to run on a local cluster"
            for what, location, fix in stores if not is_database_url(location)]
