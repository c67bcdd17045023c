"""Batches as Prefect task runs: the lifecycle's executor on Prefect's task runners.

A run's batches (render-batch) and an approved send's (send-batch) are task runs,
one per batch (a task run costs ~20 ms of orchestration here, never one per customer),
on the task runner the form chose: threads of the flow's process (whose batches are
handed to a local process pool when there are several: threads alone would keep the
work on one core), a process pool, or Dask (a local cluster, or a scheduler's workers,
which get the content as a bundle and the run's ledger by name).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from edition.run.executors import Pool, PoolExecutor
from edition.run.pipeline import BatchResult
from edition.run.workers import Job, Work, process_batch
from flows.form import Runner, RunSettings


class Opaque:
    """A value Prefect hands to a task without walking it.

    Prefect walks task parameters (lists, dicts, dataclasses) to track dependencies; for
    a thousand rows that walk costs more than rendering them. It does not look inside a
    plain object, in the flow or in a task runner's worker process.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _process(job: Opaque, batch: Opaque, work: Opaque | None,
             processes: Opaque | None) -> BatchResult:
    if processes is not None:   # this thread hands the batch to a forked process
        return processes.value.pool.submit(process_batch, job.value, batch.value).result()
    if work is None:
        return process_batch(job.value, batch.value)
    try:
        return process_batch(job.value, batch.value, work.value)
    finally:
        trim_heap()   # a Dask worker: the batch's garbage goes back to the system


def trim_heap() -> bool:
    """Give the heap's free pages back to the system (glibc `malloc_trim`); True when
    some were. A batch frees most of what it allocated (rendered documents, MIME
    messages, S3 request buffers), but glibc keeps freed pages that lie between live
    ones, and Dask's MALLOC_TRIM_THRESHOLD_ only returns the top of the heap: a worker
    kept ~60 MB more than it used between batches (bench/scale.py). No-op elsewhere."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):   # not glibc (musl has no malloc_trim)
        return False


@task(name="render-batch", cache_policy=NO_CACHE, task_run_name="render-batch-{number}")
def render_batch(job: Opaque, batch: Opaque, number: int, work: Opaque | None = None,
                 processes: Opaque | None = None) -> BatchResult:
    """Render (and with send, deliver) one batch of customers."""
    return _process(job, batch, work, processes)


@task(name="send-batch", cache_policy=NO_CACHE, task_run_name="send-batch-{number}")
def send_batch(job: Opaque, batch: Opaque, number: int, work: Opaque | None = None,
               processes: Opaque | None = None) -> BatchResult:
    """Deliver one batch of approved editions, as approved."""
    return _process(job, batch, work, processes)


TASKS = {"render": render_batch, "send": send_batch}


class TaskRunnerExecutor:
    """The engine's BatchExecutor on a Prefect task runner: one task run per batch.

    With `work` (the content bundle, the run's suppression and ledger) the workers need
    nothing but the installed package: a Dask cluster's machines have no content root.
    With `processes` (a PoolExecutor) each task hands its batch to that pool, and
    preflight's pass over the rows runs there too (`scan`), as in `edition run`.
    """

    def __init__(self, task_runner: Any, workers: int, work: Work | None = None,
                 processes: PoolExecutor | None = None):
        self.task_runner = task_runner
        self.workers = workers
        self.work = Opaque(work) if work is not None else None
        self.processes = Opaque(processes) if processes is not None else None
        if processes is not None:
            self.scan = processes.scan
        # a local Dask cluster's workers read the customer source in shards themselves
        # (edition/run/sharded.py); a scheduler's machines may not reach the file
        self.reads_shards = False

    def submit(self, job: Job, batch: list[Any], number: int) -> Any:
        return self.task_runner.submit(TASKS[job.kind], {
            "job": Opaque(job), "batch": Opaque(batch), "number": number, "work": self.work,
            "processes": self.processes})


@contextlib.contextmanager
def executor_for(settings: RunSettings, *, rows: int, batch_size: int,
                 work: Work | None = None) -> Iterator[TaskRunnerExecutor]:
    """The task runner the form chose, as an executor for the lifecycle; `work` is given
    to Dask's workers (their machines may have no content root)."""
    runner = settings.task_runner
    workers = settings.workers or (os.cpu_count() or 2)
    # the thread runner's batches go to a pool of processes forked from this one (when
    # there are enough to spread): the same work as `edition run`'s pool
    forked = workers if runner == "thread" and rows > batch_size * 2 else 1
    api = workers_api(runner)
    with _reporting_to(api), \
            _task_runner(runner, workers, settings.dask_address or None, api) as task_runner, \
            Pool(forked) as processes:
        executor = TaskRunnerExecutor(task_runner, workers, work if runner == "dask" else None,
                                      processes if isinstance(processes, PoolExecutor) else None)
        executor.reads_shards = runner == "dask" and not settings.dask_address
        yield executor


# Dask's statistical profiler samples every worker thread's stack (sys._current_frames)
# every 10 ms. On CPython before 3.11.9 (gh-106883) a garbage collection that starts
# inside that call and frees a threading.local (tenacity's Retrying holds one; a send
# makes one per message) takes the interpreter's head lock twice: the worker freezes with
# every thread waiting, its batch never ends (bench/scale.py at 20,000 customers: all
# three workers stopped within minutes). A run has no use for the profile (the dashboard
# is off), so the local cluster's workers do not take it; the Nanny hands this config to
# each worker process it starts. docs/scale.md says what to set on a cluster of your own.
# (a dotted key: the worker applies it with dask.config.set after the whole config)
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


def _task_runner(kind: Runner, workers: int, dask_address: str | None,
                 api: dict[str, str] | None = None) -> Any:
    if kind == "process":
        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        # the local cluster's worker processes get the flow's API in their environment
        # too, for what they send outside a task (logs, events), and LOCAL_WORKER_CONFIG
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None,
                                              "env": dict(api or {}),
                                              "config": LOCAL_WORKER_CONFIG})
    return ThreadPoolTaskRunner(max_workers=workers)


# -- where the workers report ------------------------------------------------------


def workers_api(runner: Runner) -> dict[str, str]:
    """The flow's Prefect API, for task runners whose tasks run in other processes.

    Without PREFECT_API_URL the flow talks to Prefect's temporary server, and a worker
    process that is not told where it is starts a temporary server of its own: its task
    runs land where no UI looks, every worker pays the start-up, and a killed worker
    leaves its server running. So the workers get the flow's: the temporary server's URL
    when there is no other (it listens on this machine's loopback: local workers reach
    it; a Dask scheduler's are refused, see `dask_problems`), and the auth string and
    API key when set. Empty for the thread runner (its tasks run in the flow's process).
    """
    if runner == "thread":
        return {}
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL

    url = PREFECT_API_URL.value()
    context = FlowRunContext.get()
    if not url and context is not None and context.client is not None:
        url = str(context.client.api_url).rstrip("/")
    found = {"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": PREFECT_API_AUTH_STRING.value(),
             "PREFECT_API_KEY": PREFECT_API_KEY.value()}
    return {name: value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            for name, value in found.items() if value}


def _reporting_to(api: dict[str, str]) -> Any:
    """The flow's settings with the workers' API made explicit: Prefect hands its
    settings to each task it sends to another process (Dask, a process pool)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not api.get("PREFECT_API_URL") or PREFECT_API_URL.value():
        return contextlib.nullcontext()
    return temporary_settings(updates={PREFECT_API_URL: api["PREFECT_API_URL"]})


__all__ = ["Opaque", "TaskRunnerExecutor", "executor_for", "render_batch", "send_batch",
           "trim_heap", "workers_api"]
