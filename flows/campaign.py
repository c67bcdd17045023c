"""Prefect flow `send-campaign`: the engine's run lifecycle, in batched tasks, with artifacts.

The flow is wiring. Its parameters are the form (flows/form.py), checked into run
options before any work (a refused run ends Failed with the reason, nothing written).
The run is the engine's lifecycle (edition/run/lifecycle.py), the same as `edition
run`'s: folder lock, run.json, resume, the repair of the campaign's dead runs (once,
asking Prefect about runs of other hosts: flows/recovery.py), batches in a bounded
window; here they are task runs on the task runner the form chose (flows/tasks.py),
and the output folder is identical whichever renders them. This module adds only what
is Prefect's: progress and artifacts, the approval pause when sending (flows/
approval.py), and the flow run's state. The flow returns the lifecycle's `RunSummary`
itself (a Failed state carries it as its data), so `edition run --via-prefect` prints
the same summary as a local run.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from edition.errors import EditionError, RunError, UsageError
from edition.naming import artifact_key
from edition.run.context import customers_file, estimate_rows
from edition.run.folder import is_remote
from edition.run.lifecycle import Lifecycle, execute
from edition.run.options import RunOptions
from edition.run.roots import resolve_campaign
from edition.run.run_page import output_link, report_with_samples, version_rows
from edition.run.summary import RunSummary
from edition.run.workers import Work, plan_for
from flows import approval, recovery
from flows.ending import ended, quiet_refusals, refused
from flows.experiments import publish_experiment
from flows.form import FLOW_BATCH, RunForm, Runner, RunSettings, dask_problems, form_parameters
from flows.tasks import executor_for

quiet_refusals()

def run_name() -> str:
    """`<campaign>-dry-run` or `<campaign>-send` instead of the two words Prefect makes
    up; a name someone typed (the form's Run Name) is kept."""
    from prefect.runtime import flow_run

    given = flow_run.get_name()
    if given and not made_up_name(given):
        return given
    params = flow_run.get_parameters() or {}
    name = Path(str(params.get("campaign") or "campaign")).stem
    return f"{name}-{'dry-run' if params.get('dry_run', True) else 'send'}"


@functools.lru_cache(maxsize=1)
def _coolname_words() -> tuple[frozenset[str], frozenset[str]]:
    """The adjectives and nouns Prefect draws run names from (coolname's two-word slugs)."""
    from coolname.data import config

    def words(name: str) -> set[str]:
        entry = config[name]
        if entry["type"] in {"words", "phrases"}:
            return {w if isinstance(w, str) else "-".join(w) for w in entry["words"]
                    if isinstance(w, str | list | tuple)}
        return set().union(*(words(part) for part in entry.get("lists", [])))

    first, second = config["an"]["lists"]
    return frozenset(words(first)), frozenset(words(second))


def made_up_name(name: str) -> bool:
    """Whether a flow run's name is one Prefect generated (`adjective-animal`), not typed."""
    adjectives, nouns = _coolname_words()
    head, _, tail = name.partition("-")
    return head in adjectives and tail in nouns


def scheduled_mailing(campaign: Path | str | None) -> str | None:
    """A scheduled run's mailing: its scheduled date in the campaign's time zone."""
    from prefect.runtime import flow_run

    from edition.content.campaign import load_campaign
    from edition.content.schedule import scheduled_mailing as mailing_of

    try:
        if campaign is None or not approval.is_scheduled():
            return None
        when = flow_run.get_scheduled_start_time()
        return mailing_of(load_campaign(campaign).schedule, when) if when else None
    except Exception:  # a campaign that cannot load is reported by the form's check
        return None


# -- the flow ------------------------------------------------------------------------


@flow(name="send-campaign", log_prints=True, flow_run_name=run_name,
      on_cancellation=[recovery.on_stopped], on_crashed=[recovery.on_stopped])
@form_parameters(RunForm)
def send_campaign(**parameters: Any) -> Any:
    """Render one edition per customer; deliver only with dry_run off AND confirm_send on.

    Args:
        campaign: The campaign: its name (weekly-newsletter), or its file
            (campaigns/NAME.yaml, relative to the content root).
    """
    logger = get_run_logger()
    form = RunForm(**parameters)
    try:
        options = form.options(scheduled=scheduled_mailing(resolve_campaign(form.campaign)))
        campaign = plan_for(options).campaign
        if approval.needs_review(options, campaign, review=form.advanced.review_before_send):
            rendered = run_batches(approval.dry_run_of(options, campaign), form.advanced)
            return approval.review_then_send(options, campaign, Path(rendered.out_dir),
                                             form.advanced)
    except EditionError as exc:
        logger.error("refused before any work: %s", exc)
        return refused(exc)
    if options.send:
        logger.warning("SENDING for real to %s", options.to or campaign.target)
    else:
        logger.info("dry run: nothing will be sent (turn dry_run off and confirm_send on "
                    "to deliver)")
    return ended(run_batches(options, form.advanced))


_ARTIFACT_LOCK = threading.Lock()


def run_batches(options: RunOptions, settings: RunSettings) -> RunSummary:
    """The lifecycle, its batches as task runs; progress, artifacts and logs."""
    from prefect.runtime import flow_run
    from prefect.settings import PREFECT_API_URL

    logger = get_run_logger()
    campaign = plan_for(options).campaign
    name = campaign.name
    progress = create_progress_artifact(0.0, key=artifact_key("progress", name),
                                        description=f"{name}: share of customers done")
    state = {"done": 0, "total": 0}

    def started(run: Lifecycle) -> None:
        state["total"] = run.estimate()
        logger.info("campaign %s: about %s customers, batches of %s, %s runner; output in %s",
                    name, f"{state['total']:,}", options.batch_size, settings.task_runner,
                    run.location)
        if run.resumed:
            logger.warning("resuming an interrupted run: %s rows were done before",
                           f"{run.resumed:,}")

    def advance(size: int) -> None:
        state["done"] += size
        if progress and state["total"]:
            with _ARTIFACT_LOCK:
                update_progress_artifact(progress, min(100.0, 100.0 * state["done"]
                                                       / state["total"]))

    # a Dask cluster may live on machines without the content: the work travels with it
    work = Work.of(options, plan_for(options)) if settings.task_runner == "dask" else None
    rows = estimate_rows(customers_file(options, campaign), options)
    try:
        with executor_for(settings, rows=rows, batch_size=options.batch_size,
                          work=work) as executor:
            summary = execute(options, executor=executor, on_progress=advance,
                              on_start=started, overwrite=settings.overwrite,
                              on_repaired=recovery.crashed,
                              over_elsewhere=recovery.over_elsewhere,
                              flow_run_id=flow_run.get_id(), api_url=PREFECT_API_URL.value())
    except BaseException as exc:
        logger.error("run stopped (%s: %s); its output folder was made consistent",
                     type(exc).__name__, exc)
        raise
    if progress:
        update_progress_artifact(progress, 100.0)
    publish_artifacts(name, summary)
    publish_experiment(campaign)
    for note in summary.notes:
        logger.warning(note)
    logger.info("%s: %s customers (%s) in %.1f s", name, f"{summary.customers:,}",
                ", ".join(f"{n:,} {s}" for s, n in sorted(summary.counts.items())),
                summary.seconds)
    if options.send:
        logger.info("mailing %s: %s", summary.mailing, summary.sent_line())
    return summary


def publish_artifacts(campaign: str, summary: RunSummary) -> None:
    """The report, the versions table, preflight's findings and a link to the output,
    for the Prefect UI. The run folder is read where it is (a path or s3://…); sample
    links to editions are given for a local folder only."""
    location = summary.out_dir
    remote = is_remote(location)
    create_markdown_artifact(report_with_samples(summary, output_link),
                             key=artifact_key("report", campaign),
                             description=f"Run report for {campaign}")
    total, rows = version_rows(location)
    if summary.preflight:
        create_table_artifact([{"level": level, "finding": message}
                               for level, message in summary.preflight],
                              key=artifact_key("preflight", campaign),
                              description=f"Preflight of {campaign}: warnings and audience")
    if rows:
        create_table_artifact(rows, key=artifact_key("versions", campaign),
                              description=f"{total} versions of {campaign}")
    create_link_artifact(location if remote else output_link(location),
                         link_text=f"Output folder of run {summary.run_id}",
                         key=artifact_key("output", campaign),
                         description=f"manifest.jsonl, report.md and the editions of {campaign}")


# -- edition run --via-prefect -------------------------------------------------------


def run_through_prefect(options: RunOptions, task_runner: Runner = "thread",
                        workers: int = 0, dask_address: str | None = None,
                        overwrite: bool = False, batch_size: int | None = None
                        ) -> RunSummary:
    """`edition run --via-prefect`: the same run, as a flow run (ephemeral server if no
    API); the flow's RunSummary, as it returned it.

    The CLI has asked for confirmation (or --yes) before it gets here, so `--send` is
    passed on as dry_run off plus confirm_send on.
    """
    if options.limit == 0:  # the flow's 0 is the form's "every row": never widen a run
        raise UsageError("--limit 0 with --via-prefect: the flow reads 0 as every row; "
                         "give a limit of 1 or more, or leave --via-prefect off")
    problems = dask_problems(options, task_runner, dask_address)   # before Prefect starts
    if problems:
        raise UsageError("; ".join(problems))
    form = RunForm.of(options, {"batch_size": batch_size or FLOW_BATCH,
                                "task_runner": task_runner, "workers": workers,
                                "dask_address": dask_address or "", "overwrite": overwrite,
                                "review_before_send": False})   # the CLI asked already
    state = send_campaign(**dict(form), return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, RunSummary):
        return result
    if isinstance(state.data, RunSummary):   # a Failed state carries the summary as its data
        return state.data
    if isinstance(result, BaseException):
        raise result
    raise RunError(f"the flow run ended {state.name} without a summary: {state.message}")


__all__ = ["RunSettings", "made_up_name", "run_batches", "run_through_prefect", "send_campaign"]
