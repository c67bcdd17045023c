"""Where batches are processed: this process, a process pool, or (from flows/) Prefect's
task runners, Dask included. Whatever the executor, results are collected in input order
from a bounded window of batches in flight, so memory stays flat however long the run;
batches keep being submitted as others finish, so one slow batch idles no worker.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from edition.audience.customers import Row
from edition.run.pipeline import BatchResult
from edition.run.preflight import Scan
from edition.run.sharded import ShardRows
from edition.run.workers import Job, RenderJob, process_batch, scan_batch, worker_init


class BatchExecutor(Protocol):
    """Runs `process_batch` somewhere and hands back something with `.result()`."""

    workers: int

    def submit(self, job: Job, batch: list[Any], number: int) -> Any: ...


class InlineExecutor:
    """Batches are processed in this process, one after the other."""

    workers = 1

    def submit(self, job: Job, batch: list[Any], number: int) -> Future[BatchResult]:
        future: Future[BatchResult] = Future()
        try:
            future.set_result(process_batch(job, batch))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class PoolExecutor:
    """Batches are processed in a concurrent.futures pool (processes use `worker_init`)."""

    def __init__(self, pool: Executor, workers: int):
        self.pool = pool
        self.workers = workers

    def submit(self, job: Job, batch: list[Any], number: int) -> Future[BatchResult]:
        return self.pool.submit(process_batch, job, batch)

    def stop(self) -> None:
        """Kill the pool's worker processes (a stopped run's batches still running)."""
        # concurrent.futures has no public way before Python 3.14 (terminate_workers)
        processes = getattr(self.pool, "_processes", None) or {}
        for process in list(processes.values()):
            with contextlib.suppress(Exception):
                process.kill()

    def scan(self, job: RenderJob, batches: Iterable[list[Row]]) -> Iterator[Scan]:
        """Preflight's pass over the rows, batch by batch in the workers, in input order.

        Before this, preflight read every row in the main process while the workers
        waited (about a third of a 20,000-customer run); each worker now renders the
        versions it meets first, and keeps them for the run."""
        return in_order((self.pool.submit(scan_batch, job, batch) for batch in batches),
                        self.workers)


# How many batches may wait, done, behind one still running (times the running window):
# one slow batch (a stalled SMTP reply) no longer idles the other workers, and memory
# stays bounded (a done batch holds its manifest rows only).
AHEAD = 4


@dataclass
class _InFlight:
    future: Any
    done: bool = False


def in_order(futures: Iterable[Any], workers: int, drain: Drain | None = None
             ) -> Generator[Any, None, None]:
    """The futures' results in the order they were made, at most 2 × workers running
    (the rest are not even made yet); the ones left are cancelled when the caller stops,
    and the ones already running are waited for as `drain` says.

    Batches are made as others finish, not as the oldest is handed back: while the
    oldest runs long, up to AHEAD × 2 × workers finished ones wait for it, so the
    other workers keep working (a 100,000-customer send sat idle behind one batch)."""
    limit = max(2, workers * 2)   # bounded: memory stays flat
    ahead = limit * AHEAD
    window: deque[_InFlight] = deque()
    changed = threading.Condition()
    source = iter(futures)
    exhausted = False

    def finished(entry: _InFlight) -> None:
        with changed:
            entry.done = True
            changed.notify_all()

    def room() -> bool:
        return (not exhausted and len(window) < ahead
                and sum(not e.done for e in window) < limit)

    try:
        while True:
            while room():
                try:
                    future = next(source)
                except StopIteration:
                    exhausted = True
                    break
                entry = _InFlight(future)
                window.append(entry)
                # all our futures have it (concurrent, Dask, Prefect's); it runs at once
                # for one already done
                future.add_done_callback(lambda _, entry=entry: finished(entry))
            if not window:
                return
            with changed:
                changed.wait_for(lambda: window[0].done or room())
            while window and window[0].done:
                yield window.popleft().future.result()
    finally:
        running = []
        for entry in window:
            with contextlib.suppress(Exception):
                if not entry.future.cancel():
                    running.append(entry.future)
        (drain or Drain()).wait(running)


# How long a stopped run waits for its running batches when nothing says better (a
# caller of in_order without a Drain): the lifecycle sets the bound from the target.
DRAIN_SECONDS = 120.0
# What a message needs besides its transport's timeouts: recording its outcome in the
# send ledger (one commit), and the worker noticing its batch is over.
SETTLE_MARGIN = 5.0


@dataclass(frozen=True)
class Drain:
    """What a stopped run does with the batches its workers are still running.

    It waits up to `seconds` for them, so that the repair reads their messages' outcomes
    in the send ledger instead of calling customers `failed` whom a worker is still
    sending to; `say` tells the user it is waiting (a stop that seems to hang is killed
    again); then `stop` ends the batches still running (a local pool kills its workers),
    so that nothing leaves after the repair read the ledger: a message in flight then is
    `unknown`, as after kill -9, never sent twice."""

    seconds: float = DRAIN_SECONDS
    say: Callable[[str], None] | None = None
    stop: Callable[[], None] | None = None

    def wait(self, futures: list[Any]) -> None:
        """Wait, bounded, for futures that could not be cancelled (already running)."""
        if not futures:
            return
        if self.say is not None and self.seconds > 0:
            self.say(f"stopping: waiting up to {self.seconds:,.0f} s for {len(futures):,} "
                     f"running batch(es) to settle their messages before the repair")
        deadline = time.monotonic() + self.seconds
        left = []
        for future in futures:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                left.append(future)
            except Exception:   # its outcome is the ledger's to tell
                pass
        if left and self.stop is not None:
            if self.say is not None and self.seconds > 0:
                self.say(f"stopping: {len(left):,} batch(es) still running after "
                         f"{self.seconds:,.0f} s: their workers are stopped (a message in "
                         f"flight is `unknown` in the send ledger, never sent twice)")
            self.stop()


def settle_seconds(options: object, *, sending: bool) -> float:
    """How long a message in flight may take to settle at its target: every attempt up
    to the target's `timeout`, the pauses between attempts, and recording it. A dry run
    sends nothing: its running batches are not waited for (their files are written
    atomically; the repair lists what is there)."""
    if not sending:
        return 0.0
    timeout = getattr(options, "timeout", None)
    if not isinstance(timeout, int | float) or timeout <= 0:
        return SETTLE_MARGIN   # a target without a network wait (a local folder)
    attempts = getattr(options, "attempts", None) or getattr(options, "max_attempts", 1)
    attempts = max(1, int(attempts)) if isinstance(attempts, int) else 1
    pauses = tuple(getattr(options, "backoff", ()) or ())
    return attempts * float(timeout) + float(sum(pauses[:attempts - 1])) + SETTLE_MARGIN


def process_all(executor: BatchExecutor, job: Job, batches: Iterable[list[Any]],
                collect: Callable[[BatchResult], None],
                on_progress: Callable[[int], None] | None = None,
                drain: Drain | None = None) -> None:
    """Every batch through the executor; each result handed to `collect` in input order."""
    sizes: deque[int | None] = deque()

    def submitted() -> Iterator[Any]:
        for number, batch in enumerate(batches, start=1):
            # a shard's rows are counted when they come back (read in the worker)
            sharded = len(batch) == 1 and isinstance(batch[0], ShardRows)
            sizes.append(None if sharded else len(batch))
            yield executor.submit(job, batch, number)

    # closed on the way out, whatever stops the loop: batches not collected are cancelled
    with contextlib.closing(in_order(submitted(), executor.workers, drain)) as results:
        for result in results:
            collect(result)
            size = sizes.popleft()
            if on_progress is not None:
                on_progress(len(result.rows) if size is None else size)


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


def pool_size(workers: int | None, rows: int, batch_size: int) -> int:
    """How many processes a run of about `rows` rows is worth: a pool pays off only when
    there are several batches to spread."""
    count = workers if workers is not None else default_workers()
    return count if rows > batch_size * 2 else 1


__all__ = ["BatchExecutor", "Drain", "InlineExecutor", "Pool", "PoolExecutor", "default_workers",
           "in_order", "pool_size", "process_all", "settle_seconds"]
