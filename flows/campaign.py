"""Prefect flow `send-campaign`: the engine's run, in batched tasks, with artifacts.

The flow is wiring: `Plan.load` checks the campaign, customers are streamed in the flow
and handed to `render-batch` tasks a batch at a time (a task run costs ~20 ms of
orchestration, so never one per customer), and the results are written in input order
by the same code the CLI uses. The output folder is identical to `edition run`'s.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import deque
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from edition.customers import Row
from edition.report import versions_document
from edition.run import BatchResult, Run, RunOptions, RunSummary, estimate_rows, process_batch

Format = Literal["html", "text", "eml", "pdf"]
Runner = Literal["thread", "process", "dask"]


@task(name="render-batch", cache_policy=NO_CACHE, task_run_name="render-batch-{number}")
def render_batch(options: RunOptions, batch: list[Row], number: int) -> BatchResult:
    """Render (and with send, deliver) one batch of customers."""
    return process_batch(options, batch)


def _task_runner(kind: Runner, workers: int, dask_address: str | None) -> Any:
    if kind == "process":
        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    return ThreadPoolTaskRunner(max_workers=workers)


def artifact_key(prefix: str, campaign: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    slug = "".join(c if c.isalnum() else "-" for c in campaign.lower()).strip("-")
    return f"{prefix}-{slug}"[:64]


def run_batches(options: RunOptions, *, runner: Runner = "thread", workers: int = 0,
                dask_address: str | None = None) -> RunSummary:
    """Stream the customers through `render-batch` tasks and write the run's output."""
    logger = get_run_logger()
    run = Run(options)
    campaign = run.plan.campaign.name
    total = estimate_rows(run.plan)
    logger.info("campaign %s: about %s customers, batches of %s, %s runner; output in %s",
                campaign, f"{total:,}", options.batch_size, runner, run.out_dir)
    progress = create_progress_artifact(0.0, key=artifact_key("progress", campaign),
                                        description=f"{campaign}: share of customers done")
    workers = workers or (os.cpu_count() or 2)
    done = 0
    window: deque = deque()

    def collect() -> None:
        nonlocal done
        size, future = window.popleft()
        run.collect(future.result())
        done += size
        if progress and total:
            update_progress_artifact(progress, min(100.0, 100.0 * done / total))

    try:
        with _task_runner(runner, workers, dask_address) as task_runner:
            for number, batch in enumerate(run.batches(), start=1):
                window.append((len(batch), task_runner.submit(
                    render_batch, {"options": options, "batch": batch, "number": number})))
                while len(window) > workers * 2:  # bounded: memory stays flat
                    collect()
            while window:
                collect()
    finally:
        run.plan.close()
    summary = run.finish()
    if progress:
        update_progress_artifact(progress, 100.0)
    publish_artifacts(run, summary)
    logger.info("%s: %s customers (%s) in %.1f s", campaign, f"{summary.customers:,}",
                ", ".join(f"{n:,} {s}" for s, n in sorted(summary.counts.items())),
                summary.seconds)
    return summary


def publish_artifacts(run: Run, summary: RunSummary) -> None:
    """The report, the versions table and a link to the output, for the Prefect UI."""
    campaign = run.plan.campaign.name
    create_markdown_artifact(summary.report, key=artifact_key("report", campaign),
                             description=f"Run report for {campaign}")
    versions = versions_document(run.tally)["versions"]
    rows = [{"version": v["id"], "customers": v["customers"], "locale": v["locale"],
             "segments": ", ".join(v["segments"]) or "-",
             **{slot: ", ".join(ids) for slot, ids in v["modules"].items()}}
            for v in versions[:500]]
    if rows:
        create_table_artifact(rows, key=artifact_key("versions", campaign),
                              description=f"{len(versions)} versions of {campaign}")
    create_link_artifact(Path(summary.out_dir).resolve().as_uri(),
                         link_text=f"Output folder of run {summary.run_id}",
                         key=artifact_key("output", campaign))


@flow(name="send-campaign", log_prints=True)
def send_campaign(
    campaign: str,
    customers: str | None = None,
    formats: list[Format] | None = None,
    as_of: dt.date | None = None,
    limit: int | None = None,
    dry_run: bool = True,
    to: str | None = None,
    resend_unknown: bool = False,
    batch_size: int = 1000,
    out: str | None = None,
    run_id: str | None = None,
    task_runner: Runner = "thread",
    workers: int = 0,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Render one edition per customer; deliver only when dry_run is false."""
    options = RunOptions(campaign=campaign, customers=customers,
                         formats=tuple(formats) if formats else None, as_of=as_of,
                         limit=limit, send=not dry_run, to=to, resend_unknown=resend_unknown,
                         batch_size=batch_size, out=out, run_id=run_id).resolved()
    summary = run_batches(options, runner=task_runner, workers=workers,
                          dask_address=dask_address)
    return {"run_id": summary.run_id, "out_dir": summary.out_dir, "counts": summary.counts,
            "customers": summary.customers, "versions": summary.versions,
            "seconds": summary.seconds}


def run_through_prefect(options: RunOptions, task_runner: Runner = "thread",
                        workers: int = 0) -> RunSummary:
    """`edition run --via-prefect`: the same run, as a flow run (ephemeral server if no API)."""
    result = send_campaign(
        campaign=options.campaign, customers=options.customers,
        formats=list(options.formats) if options.formats else None, as_of=options.as_of,
        limit=options.limit, dry_run=not options.send, to=options.to,
        resend_unknown=options.resend_unknown, batch_size=options.batch_size,
        out=options.out, run_id=options.run_id, task_runner=task_runner, workers=workers)
    report = (Path(result["out_dir"]) / "report.md").read_text(encoding="utf-8")
    return RunSummary(run_id=result["run_id"], out_dir=result["out_dir"],
                      counts=result["counts"], customers=result["customers"],
                      versions=result["versions"], seconds=result["seconds"], report=report)
