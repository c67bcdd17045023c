"""One lifecycle for every run, whether its batches are rendered now or were approved.

`edition run` feeds it customer rows to render (edition/run/rendered.py:
`RenderedBatches`); `edition send` of an approved run feeds it the approved rows
(edition/review/sending.py: `ApprovedRows`). The CLI, the `send-campaign` flow and the
approval flow all drive it the same way, with an executor of their choice (this
process, a process pool, Prefect's task runners, Dask):

1. When sending: the send ledger's run lock, and the mailing (which issue of the
   campaign; an unfinished one is resumed, another refused without --new-mailing).
2. The run's context, decided once (`RunContext`): nothing changes it afterwards.
3. The feed's checks (preflight) and its folder: held (one run at a time), resumed,
   cleared with --overwrite, or refused; the mailing opened in the ledger; the run
   document (`run.json`, or a send's `send.json`) says `running`.
4. Batches through the executor in a bounded window, collected in input order into
   the manifest and the tally.
5. The report and the summary, the mailing finished, the document says `finished` —
   or, when the run stops (an error, Ctrl-C, SIGTERM), its folder repaired at once so
   that its manifest has a row for every input row and its report says what happened.
   A run killed outright (kill -9) is repaired by the next one.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from edition.content.campaign import Campaign
from edition.databases import masked
from edition.errors import ApprovalError
from edition.run.context import RunContext
from edition.run.executors import (
    BatchExecutor,
    Drain,
    InlineExecutor,
    process_all,
    settle_seconds,
)
from edition.run.folder import now, owner, write_json
from edition.run.manifest import MANIFEST_NAME, ManifestWriter
from edition.run.pipeline import BatchResult
from edition.run.report import Tally, rendering
from edition.run.summary import RunSummary
from edition.run.workers import Job, close_jobs
from edition.send.delivery import MailingChoice, choose_mailing, ledger_path, run_lock
from edition.send.ledger.location import Ledger
from edition.send.ledger.records import Mailing

log = logging.getLogger("edition.run")


class Feed(Protocol):
    """What a lifecycle runs, and what is particular to it (see the module docstring)."""

    campaign: Campaign
    sending: bool
    document_name: str      # run.json, send.json

    @property
    def summary_type(self) -> type[RunSummary]: ...

    @property
    def resumed(self) -> int:
        """Rows kept from an interrupted run of the same folder."""

    def wanted(self) -> tuple[str, str | None, Any, bool]:
        """(channel, mailing, run date, new mailing) as asked, for the mailing choice."""

    def decide(self, life: Lifecycle, choice: MailingChoice | None) -> RunContext:
        """The run's context (nothing written yet)."""

    def hold(self, life: Lifecycle) -> Path:
        """Checks, then the folder held and made ready; where the manifest goes."""

    def document(self, life: Lifecycle) -> dict[str, Any]: ...

    def started(self, life: Lifecycle) -> None:
        """The run's document is written: publish it where it must be seen at once."""

    def estimate(self) -> int: ...
    def job(self, life: Lifecycle) -> Job: ...
    def batches(self, life: Lifecycle) -> Iterable[list[Any]]: ...

    def report(self, life: Lifecycle) -> tuple[str, dict[str, Any]]:
        """Write the report; (its text, the summary's fields the feed knows)."""

    def finished(self, life: Lifecycle, summary: RunSummary) -> None: ...
    def repair(self, life: Lifecycle, reason: str) -> None: ...
    def release(self) -> None: ...


class Lifecycle:
    """One run from its locks to its summary (see the module docstring)."""

    def __init__(self, feed: Feed, *, marker: dict[str, Any] | None = None):
        self.feed = feed
        self.marker = marker or {}      # into the run document (a flow run's id)
        self.ledger: Ledger | None = None
        self.earlier: Mailing | None = None   # the mailing as the ledger knew it before
        self.context: RunContext
        self.folder: Path | None = None
        self.manifest: ManifestWriter | None = None
        self.tally = Tally()
        self.notes: list[str] = []      # what the user should hear (a mailing resumed...)
        self.document: dict[str, Any] = {}
        self.clock = time.monotonic()

    @property
    def location(self) -> str:
        return self.context.location

    @property
    def resumed(self) -> int:
        return self.feed.resumed

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.clock

    def estimate(self) -> int:
        """About how many rows the run will process (for progress bars)."""
        return self.feed.estimate()

    # -- the whole run ------------------------------------------------------------

    def run(self, executor: BatchExecutor | None = None, *,
            on_start: Callable[[Lifecycle], None] | None = None,
            on_progress: Callable[[int], None] | None = None,
            on_stopping: Callable[[str], None] | None = None) -> RunSummary:
        """Start, process every batch in the executor, finish; repair when stopped.

        `on_stopping` hears what a stopped run waits for before its repair (the CLI
        prints it); without it, the `edition.run` logger says it."""
        executor = executor or InlineExecutor()
        self.start()
        job = self.feed.job(self)
        # what is alive now (imports, plan, preflight's findings) lives to the end: the
        # full collections that a run's many rows trigger skip it (gc.freeze is O(1));
        # thawed at the end, so a long-lived process (edition serve) frees it as usual
        gc.freeze()
        try:
            if on_start is not None:
                on_start(self)
            process_all(executor, job, self.feed.batches(self), self.collect, on_progress,
                        self.drain(executor, on_stopping or log.warning))
        except BaseException as exc:
            self.abort(stop_reason(exc))
            raise
        finally:
            gc.unfreeze()
            close_jobs(job)   # this process's workers (inline, a thread runner's tasks)
        return self.finish()

    def drain(self, executor: BatchExecutor, say: Callable[[str], None]) -> Drain:
        """What this run does, when stopped, with its batches still running: waits as
        long as a message in flight may take at the target (its timeout, attempts and
        pauses: executors.settle_seconds), then ends them where it can (a local pool)."""
        options = getattr(self.feed.campaign.delivery, "options", None)
        return Drain(settle_seconds(options, sending=self.feed.sending), say=say,
                     stop=getattr(executor, "stop", None))

    # -- start --------------------------------------------------------------------

    def start(self) -> Lifecycle:
        """Ledger and mailing, context, checks and folder, then `running`; nothing is
        left held when this fails."""
        try:
            choice = self._mailing() if self.feed.sending else None
            self.context = self.feed.decide(self, choice)
            self.folder = self.feed.hold(self)
            if self.ledger is not None:
                self._open_mailing(choice)
            self.manifest = ManifestWriter(self.folder / MANIFEST_NAME,
                                           append=self.feed.resumed > 0)
            self.document = {"status": "running", **self.feed.document(self),
                             "started": now(), **owner(),
                             # a marker may be a URL (the Prefect API's): never its password
                             **{k: masked(v) if isinstance(v, str) else v
                                for k, v in self.marker.items()}}
            write_json(self.folder / self.feed.document_name, self.document)
            self.feed.started(self)
        except BaseException:
            self.release()
            raise
        return self

    def _mailing(self) -> MailingChoice:
        """The ledger's run lock, and which issue of the campaign this send is."""
        campaign = self.feed.campaign
        self.ledger = run_lock(ledger_path(campaign), campaign.name)
        channel, mailing, as_of, new_mailing = self.feed.wanted()
        choice = choose_mailing(self.ledger, campaign.name, channel, mailing=mailing,
                                as_of=as_of, new_mailing=new_mailing)
        if choice.note:
            self.notes.append(choice.note)
        self.earlier = next((m for m in self.ledger.mailings(campaign.name, channel)
                             if m.mailing == choice.mailing), None)
        return choice

    def _open_mailing(self, choice: MailingChoice | None) -> None:
        """The send starts: the ledger knows its mailing is open until the run finishes."""
        assert self.ledger is not None and choice is not None
        context = self.context
        self.ledger.open_mailing(context.campaign, context.mailing, context.channel,
                                 as_of=choice.as_of.isoformat(), run_id=context.run_id,
                                 expected=self.feed.estimate())

    # -- batches ------------------------------------------------------------------

    def collect(self, result: BatchResult) -> None:
        """A batch's rows into the manifest (input order) and the tally."""
        assert self.manifest is not None
        self.manifest.write(result.rows)
        self.tally.add(result.rows, versions=result.versions, missing=result.missing,
                       short=result.short, sharing=result.sharing, paths=result.paths)

    # -- end ----------------------------------------------------------------------

    def finish(self) -> RunSummary:
        """Manifest closed, report written, mailing finished, the document `finished`."""
        assert self.manifest is not None and self.folder is not None
        self.manifest.close()
        report, fields = self.feed.report(self)
        if self.ledger is not None:
            self.ledger.finish_mailing(self.context.campaign, self.context.mailing,
                                       self.context.channel)
        summary = self.feed.summary_type.of(
            self.tally, run_id=self.context.run_id,
            out_dir=self.context.location, seconds=self.seconds, report=report,
            campaign=self.context.campaign, target=self.context.target,
            resumed=self.feed.resumed, mailing=self.context.mailing, notes=self.notes,
            **fields)
        self.document |= {"status": "finished", "finished": now(),
                          "customers": summary.customers, "counts": summary.counts,
                          "rendering": rendering(self.tally)}
        write_json(self.folder / self.feed.document_name, self.document)
        self.feed.finished(self, summary)
        self.release()
        return summary

    def abort(self, reason: str) -> None:
        """The run stopped: make its folder consistent (every row listed, a report) and
        let go of everything."""
        with ignoring_sigterm():   # a second SIGTERM must not cut the repair short
            try:
                if self.manifest is not None:
                    with contextlib.suppress(OSError):
                        self.manifest.close()
                if self.folder is not None:
                    self.feed.repair(self, reason)
            finally:
                self.release()

    def release(self) -> None:
        """Let go of the folder and the ledger (idempotent)."""
        try:
            self.feed.release()
        finally:
            if self.ledger is not None:
                self.ledger.close()
                self.ledger = None


def stop_reason(exc: BaseException) -> str:
    """Why a run stopped, as its report and run.json say it."""
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return "run cancelled"
    return f"run stopped: {exc}"


# -- SIGTERM: stop like Ctrl-C ----------------------------------------------------------


class Terminated(SystemExit):
    """SIGTERM arrived: the run stops as on Ctrl-C (its folder repaired), exit 143."""

    def __init__(self) -> None:
        super().__init__(143)


_STOPPING = threading.Event()


@contextlib.contextmanager
def stopping_on_sigterm() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread while this is entered, once: the
    lifecycle then repairs the folder before the process ends (a service manager's stop,
    `kill`). Elsewhere than the main thread (a flow run's worker thread), nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        if not _STOPPING.is_set():
            _STOPPING.set()
            raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _STOPPING.clear()


@contextlib.contextmanager
def ignoring_sigterm() -> Iterator[None]:
    """While a stopped run repairs its folder, a second SIGTERM waits for the repair."""
    already = _STOPPING.is_set()
    _STOPPING.set()
    try:
        yield
    finally:
        if not already:
            _STOPPING.clear()


def refuse_direct_send(campaign: str) -> ApprovalError:
    """`run --send` of an `approval: required` campaign: what to do instead."""
    return ApprovalError(
        f"campaign {campaign} needs an approved run to send (approval: required): make a "
        f"dry run (edition run without --send), approve it (edition approve RUN_DIR), "
        f"then send it (edition send RUN_DIR)")


def execute(options: Any, *, executor: BatchExecutor | None = None,
            on_progress: Callable[[int], None] | None = None, overwrite: bool = False,
            on_start: Callable[[Lifecycle], None] | None = None,
            on_repaired: Callable[..., None] | None = None,
            over_elsewhere: Callable[[dict[str, Any]], bool] | None = None,
            on_stopping: Callable[[str], None] | None = None,
            **marker: Any) -> RunSummary:
    """Run a campaign with these options: its batches rendered in the executor's workers.

    `marker` goes into run.json (a flow run's id); `on_repaired` hears of every dead
    run of the campaign whose folder this run repaired first; `over_elsewhere` says
    whether a run another host started is over (flows/recovery.py asks Prefect).
    """
    from edition.run.rendered import RenderedBatches

    feed = RenderedBatches(options, overwrite=overwrite,
                           scanner=getattr(executor, "scan", None),
                           shards=executor if getattr(executor, "reads_shards", False) else None,
                           on_repaired=on_repaired, over_elsewhere=over_elsewhere)
    return Lifecycle(feed, marker=marker).run(executor, on_start=on_start,
                                              on_progress=on_progress,
                                              on_stopping=on_stopping)


__all__ = ["Feed", "Lifecycle", "Terminated", "execute", "refuse_direct_send",
           "stop_reason", "stopping_on_sigterm"]
