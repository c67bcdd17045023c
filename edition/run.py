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
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edition.approval import refuse_direct_send
from edition.campaign import Campaign
from edition.config import DEFAULT_BATCH, ENGINE_KEYS, RunOptions
from edition.customers import Row, count_rows, read_customers
from edition.delivery import Deliverer, channel_of, choose_mailing, ledger_path, run_lock
from edition.encoding import Encoder
from edition.errors import RunError, UsageError
from edition.manifest import (
    MANIFEST_NAME,
    ManifestRow,
    ManifestWriter,
    Reason,
    read_rows,
    truncate_rows,
)
from edition.pipeline import BatchResult, Pipeline
from edition.plan import Plan
from edition.report import RunInfo, Tally, write_report
from edition.runfolder import (
    LOCK_FILE,
    RUN_FILE,
    FileWriter,
    FolderLock,
    alive_here,
    now,
    owner,
    read_run_file,
    refuse_links,
    remove_unlisted,
    write_run_file,
)

__all__ = ["DEFAULT_BATCH", "Repair", "Run", "RunOptions", "RunSummary", "execute", "repair"]

INTERRUPTED = "interrupted"


# -- what a run reads and where it writes ----------------------------------------------


def customers_file(options: RunOptions, campaign: Campaign) -> Path:
    """`--customers`, else the campaign's `customers` (relative to the content root)."""
    if options.customers:
        return Path(options.customers)
    if campaign.customers:
        return campaign.root / campaign.customers
    raise UsageError("no customer file: pass --customers or set `customers` in the campaign")


def out_folder(options: RunOptions, campaign: Campaign) -> Path:
    """`--out`, else out/<campaign>/<run id>/ under the content root."""
    if options.out:
        return Path(options.out)
    return campaign.root / "out" / campaign.name / str(options.run_id)


def target_of(options: RunOptions, campaign: Campaign) -> str:
    return options.to or campaign.target


def need_email(options: RunOptions, plan: Plan) -> bool:
    """Rows without an address are rejected when the run makes or sends e-mail."""
    return "eml" in plan.formats or (options.send and target_of(options, plan.campaign) != "local")


def estimate_rows(source: Path, options: RunOptions) -> int:
    """About how many rows a run over this file reads (for progress bars, pool sizing)."""
    try:
        total = count_rows(source)
    except OSError:
        return 0
    return min(total, options.limit) if options.limit is not None else total


def run_info(options: RunOptions, plan: Plan) -> RunInfo:
    mode = (f"sent (--send) to {target_of(options, plan.campaign)}" if options.send
            else "dry run (nothing sent)")
    return RunInfo(campaign=plan.campaign.name,
                   segments=tuple((s.name, s.expression) for s in plan.campaign.segments),
                   run_id=str(options.run_id), mode=mode, as_of=plan.as_of,
                   formats=plan.formats, customers=str(customers_file(options, plan.campaign)),
                   mailing=options.mailing if options.send else None)


# -- one process per CPU: each worker keeps its own Plan and Pipeline -------------------

_PLANS: dict[tuple[Any, ...], Plan] = {}
_PIPELINES: dict[RunOptions, Pipeline] = {}


def plan_for(options: RunOptions) -> Plan:
    """The Plan for these options in this process (loaded and checked on first use)."""
    key = (options.campaign, options.formats, options.as_of)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = Plan.load(options.campaign, formats=options.formats,
                                       as_of=options.as_of)
    return plan


def pipeline_for(options: RunOptions) -> Pipeline:
    """The Pipeline for this run in this process (its files, encoder and deliverer)."""
    pipeline = _PIPELINES.get(options)
    if pipeline is None:
        plan = plan_for(options)
        campaign = plan.campaign
        out_dir = out_folder(options, campaign)
        deliverer = None
        if options.send:
            deliverer = Deliverer(
                target=target_of(options, campaign),
                options={k: v for k, v in campaign.delivery.items() if k not in ENGINE_KEYS},
                ledger=ledger_path(campaign), campaign=campaign.name,
                mailing=str(options.mailing), run_id=str(options.run_id), out_dir=out_dir,
                resend_unknown=options.resend_unknown)
        encoder = Encoder(campaign, plan.formats,
                          options.started or dt.datetime.now(dt.UTC))
        pipeline = _PIPELINES[options] = Pipeline(plan, FileWriter(out_dir), encoder, deliverer)
    return pipeline


def process_batch(options: RunOptions, batch: list[Row]) -> BatchResult:
    """Worker entry point (process pools, Prefect tasks)."""
    return pipeline_for(options).process(batch)


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

    @property
    def exit_code(self) -> int:
        """0, or 3 when more customers failed (or are unknown) than the campaign allows."""
        return 3 if self.failed > self.failure_limit else 0

    def sent_line(self) -> str:
        """`0 sent now, 20 already sent in mailing M`: what a send did, truthfully."""
        line = f"{self.counts.get('sent', 0) - self.already_sent:,} sent now"
        if self.already_sent:
            line += f", {self.already_sent:,} already sent in mailing {self.mailing}"
        return line


@dataclass
class _Resume:
    """Where a run picks up in its folder."""

    after_line: int = 0
    kept: int = 0


class Run:
    """The main-process side of one run: holds the folder, streams rows, collects results."""

    def __init__(self, options: RunOptions, *, overwrite: bool = False,
                 on_repaired: Callable[[dict[str, Any], Repair], None] | None = None):
        options = options.resolved()
        self.plan = plan_for(options)
        self.campaign = self.plan.campaign
        if options.send and self.campaign.approval_required:
            raise refuse_direct_send(self.campaign.name)  # only `edition send` may send it
        self.out_dir = out_folder(options, self.campaign)
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
        self.document: dict[str, Any] = {}

    # -- start --------------------------------------------------------------------

    def start(self, **marker: Any) -> Run:
        """Hold the folder, repair dead runs of the campaign, write run.json."""
        if not self.source.is_file():
            raise RunError(f"customer file not found: {self.source}", self.source)
        # runs of this campaign that died: in its default out folder and beside this one
        for parent in {self.campaign.root / "out" / self.campaign.name, self.out_dir.parent}:
            recover_runs(parent, skip=self.out_dir, on_repaired=self.on_repaired)
        if self.out_dir.is_symlink() is False and self.out_dir.exists():
            refuse_links(self.out_dir, (LOCK_FILE,))
        self.lock = FolderLock(self.out_dir).acquire()
        try:
            self._prepare()
            refuse_links(self.out_dir)
            if self.options.send:
                self.ledger = run_lock(ledger_path(self.campaign))
                self._choose_mailing()
            else:
                self.options = self.options.replace(as_of=self.options.as_of
                                                    or dt.date.today())
            self.plan = plan_for(self.options)  # the run date may be the mailing's
            self.manifest = ManifestWriter(self.out_dir / MANIFEST_NAME,
                                           append=self.resume.kept > 0)
            self.document = {"status": "running", "run_id": self.options.run_id,
                             "campaign": self.campaign.name,
                             "options": self.options.model_dump(mode="json"),
                             "started": now(), **owner(), **marker}
            if self.resumes:
                self.document["resumes"] = self.resumes
            write_run_file(self.out_dir, self.document)
        except BaseException:
            self._release()
            raise
        return self

    def _choose_mailing(self) -> None:
        """Which issue of the campaign this send is (and its run date); open it."""
        options = self.options
        channel = channel_of(target_of(options, self.campaign))
        choice = choose_mailing(self.ledger, self.campaign.name, channel,
                                mailing=options.mailing, as_of=options.as_of,
                                new_mailing=options.new_mailing)
        self.options = options.replace(mailing=choice.mailing, as_of=choice.as_of)
        if choice.note:
            self.notes.append(choice.note)
        self.ledger.open_mailing(self.campaign.name, choice.mailing, channel,
                                 as_of=choice.as_of.isoformat(), run_id=str(options.run_id),
                                 expected=estimate_rows(self.source, options))

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
        except (ValueError, UsageError):
            return False
        return source.resolve() == self.source.resolve()

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
                       short=result.short, sharing=result.sharing)

    # -- end -------------------------------------------------------------------------

    def finish(self) -> RunSummary:
        """Manifest closed, report and versions.json written, run.json says finished."""
        if self.resume.kept:
            self._count_kept()
        if self.manifest is not None:
            self.manifest.close()
        seconds = time.monotonic() - self.started
        report = write_report(self.tally, run_info(self.options, self.plan), self.out_dir,
                              seconds)
        if self.ledger is not None and self.options.mailing:
            self.ledger.finish_mailing(self.campaign.name, self.options.mailing,
                                       channel_of(target_of(self.options, self.campaign)))
        failed = self.tally.status.get("failed", 0) + self.tally.status.get("unknown", 0)
        summary = RunSummary(run_id=str(self.options.run_id), out_dir=str(self.out_dir),
                             counts=dict(self.tally.status), customers=self.tally.rows,
                             versions=len(self.tally.versions), seconds=seconds,
                             report=report, resumed=self.resume.kept,
                             mailing=self.options.mailing, notes=list(self.notes),
                             already_sent=self.tally.codes.get(("sent", "already_sent"), 0),
                             failed=failed,
                             failure_limit=self.campaign.failure_limit(self.tally.rows))
        write_run_file(self.out_dir, self.document | {
            "status": "finished", "finished": now(), "customers": summary.customers,
            "counts": summary.counts})
        self._release()
        return summary

    def abort(self, reason: str) -> None:
        """The run died: make its folder consistent (every row listed, a report) and let go."""
        if self.manifest is not None:
            self.manifest.close()
        try:
            repair(self.out_dir, reason=reason, plan=self.plan, options=self.options)
        finally:
            self._release()

    def _count_kept(self) -> None:
        rows, _ = read_rows(self.out_dir / MANIFEST_NAME)
        kept = [ManifestRow.from_dict(r) for r in rows[:self.resume.kept]]
        self.tally.add(kept, versions={r.version: {"modules": r.modules,
                                                   "segments": r.segments}
                                       for r in kept if r.version})

    def _release(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def execute(options: RunOptions, *, executor: BatchExecutor | None = None,
            on_progress: Callable[[int], None] | None = None, overwrite: bool = False,
            on_start: Callable[[Run], None] | None = None,
            on_repaired: Callable[[dict[str, Any], Repair], None] | None = None,
            **marker: Any) -> RunSummary:
    """Run a campaign: batches render in the executor's workers, collected in order.

    `marker` goes into run.json (a flow run's id); `on_repaired` hears of every dead
    run of the campaign whose folder this run repaired first.
    """
    run = Run(options, overwrite=overwrite, on_repaired=on_repaired).start(**marker)
    if on_start is not None:
        on_start(run)
    executor = executor or InlineExecutor()
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
        manifest.write_text("", encoding="utf-8")
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
        tally.add(kept + added, versions={r.version: {"modules": r.modules,
                                                      "segments": r.segments}
                                          for r in kept if r.version})
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
