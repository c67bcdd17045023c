"""Prefect flow `send-campaign`: the engine's run, in batched tasks, with artifacts.

The flow is wiring: its parameters are checked first (nothing is read or written when
one is wrong, and the run's log says why), `Plan.load` checks the campaign, customers
are streamed in the flow and handed to `render-batch` tasks a batch at a time (a task
run costs ~20 ms of orchestration, so never one per customer), and the results are
written in input order by the same code the CLI uses. The output folder is identical to
`edition run`'s, whichever task runner renders the batches (thread, process or Dask).

The parameters are typed so the Prefect UI draws a form: formats are choices, `as_of` is
a date, `dry_run` is on by default and sending needs a second switch (`confirm_send`).
Options most runs leave alone sit in `advanced` (a `RunSettings` form).

The run's lifecycle (the folder lock, run.json, the bounded window of batches, the
repair of a folder whose run died) is the engine's (edition/run/lifecycle.py), the same as
`edition run`'s; this module adds only what is Prefect's: tasks, artifacts, and the
flow run's state when a run is cancelled or crashes (flows/recovery.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import quote

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
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from edition.audience.customers import Row
from edition.content.campaign import find_root
from edition.databases import held, is_database_url
from edition.errors import EditionError, RunError, UsageError
from edition.naming import artifact_key
from edition.run.folder import is_remote, read_from
from edition.run.lifecycle import (
    Pool,
    PoolExecutor,
    Run,
    RunSummary,
    Work,
    close_pipelines,
    customers_file,
    estimate_rows,
    execute,
    out_folder,
    plan_for,
    process_batch,
    target_of,
)
from edition.run.options import RunOptions
from edition.run.pipeline import BatchResult
from edition.send.delivery import unshared_ledger
from flows import approval, recovery
from flows.refusals import quiet_refusals, refused
from flows.roots import Roots, campaign_problem, resolve_campaign

quiet_refusals()

Format = Literal["html", "text", "eml", "pdf"]
Runner = Literal["thread", "process", "dask"]

# The form draws a field from its JSON schema: `str | None` would be "Property is type
# None" until a type is picked, so the schema says string (integer, array) with a default
# the form can show, while Python callers may still pass None.
Text = Annotated[str | None, WithJsonSchema({"type": "string"})]
Formats = Annotated[list[Format] | None, WithJsonSchema(
    {"type": "array", "items": {"type": "string", "enum": list(get_args(Format))},
     "uniqueItems": True})]
# Dates are plain strings in the form: with `format: date` the UI's own check refuses the
# empty default ("'' is not a 'date-time'") and Submit does nothing; the pattern allows
# empty or the ISO form, and check_parameters says what is wrong with anything else.
DATE_PATTERN = r"^(\d{4}-\d{2}-\d{2})?$"
TIME_PATTERN = (r"^(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
                r"(Z|[+-]\d{2}:?\d{2})?)?)?$")
AsOf = Annotated[dt.date | str | None, WithJsonSchema({"type": "string",
                                                       "pattern": DATE_PATTERN})]
Limit = Annotated[int | None, Field(ge=0), WithJsonSchema({"type": "integer", "minimum": 0})]

# Where `edition serve` publishes the output folders over HTTP (loopback), so the
# artifacts' links open in a browser; without it they are file:// links.
OUTPUT_URL_ENV = "EDITION_OUTPUT_URL"
OUTPUT_ROOT_ENV = "EDITION_OUTPUT_ROOT"


# A flow's batches are bigger than edition run's 500: each is a task run whose state
# changes and logs go through the API (~0.1 s here). 20,000 customers through the thread
# runner took 9.1 s of flow run at 500 a batch, 8.3 s at 1,000, 7.1 s at 2,000.
FLOW_BATCH = 2000


class RunSettings(BaseModel):
    """Options most runs leave alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: Annotated[int, Field(ge=1, description=(
        "Customers per render-batch task (thousands: every task run is a few round trips "
        "to the Prefect API)."))] = FLOW_BATCH
    task_runner: Annotated[Runner, Field(description=(
        "Where batches render: threads of the flow's process, a process pool, or Dask."))
    ] = "thread"
    workers: Annotated[int, Field(ge=0, description=(
        "Threads, processes or Dask workers; 0 means one per CPU."))] = 0
    dask_address: Annotated[str, Field(description=(
        "An existing Dask scheduler (tcp://host:8786); empty starts a local cluster. "
        "Only with task_runner dask."))] = ""
    out: Annotated[str, Field(description=(
        "Output folder; empty means `out/CAMPAIGN/RUN_ID` under the content root."))] = ""
    run_id: Annotated[str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,79})?$",
                                 description="Run id; empty makes one from the time.")] = ""
    # Plain text, not format date-time: the form fills in the whole `advanced` default,
    # and the server's check of the form refuses "" as a date-time.
    started: Annotated[dt.datetime | Literal[""], WithJsonSchema(
        {"type": "string", "pattern": TIME_PATTERN}), Field(description=(
            "The run's clock (the e-mails' Date header); set it with run_id to reproduce "
            "a run byte for byte; ISO 8601 (2026-11-02T08:00:00+00:00); empty means now."))] = ""
    resend_unknown: Annotated[bool, Field(description=(
        "When sending: send again to customers whose earlier delivery outcome is unknown."))
    ] = False
    overwrite: Annotated[bool, Field(description=(
        "Replace an earlier run's output when `out` names a folder that holds one."))] = False
    new_mailing: Annotated[bool, Field(description=(
        "When sending: start this mailing even though an earlier one is unfinished."))] = False
    review_before_send: Annotated[bool, Field(description=(
        "When sending: render as a dry run first, then wait for an approver to resume the "
        "run from the UI; only then send exactly what was rendered. Campaigns with "
        "`approval: required` always wait."))] = True
    approval_timeout_hours: Annotated[float, Field(gt=0, description=(
        "How long a run waits for its approver; unanswered, it ends Cancelled and nothing "
        "is sent."))] = 24.0

    @field_validator("dask_address", "out", "run_id", "started", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return "" if value is None else value  # None, as before the form had defaults


class Batch:
    """A batch of customer rows handed to a task as one opaque value.

    Prefect walks task parameters (lists, dicts, dataclasses) to track dependencies; for
    a thousand rows that walk costs more than rendering them. It does not look inside a
    plain object, in the flow or in a task runner's worker process.
    """

    __slots__ = ("rows",)

    def __init__(self, rows: list[Row]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)


class Opaque:
    """A value Prefect hands to a task without walking it (see Batch)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


@task(name="render-batch", cache_policy=NO_CACHE, task_run_name="render-batch-{number}")
def render_batch(options: RunOptions, batch: Batch, number: int,
                 work: Opaque | None = None, processes: Opaque | None = None) -> BatchResult:
    """Render (and with send, deliver) one batch of customers.

    With `processes` (the thread runner's local process pool) the task run is the
    Prefect side of the batch, in a thread, and the work happens in a forked process:
    threads alone would keep the whole run on one core (the GIL)."""
    if processes is not None:
        return processes.value.pool.submit(process_batch, options, batch.rows).result()
    return process_batch(options, batch.rows, work.value if work is not None else None)


class TaskRunnerExecutor:
    """The engine's BatchExecutor on a Prefect task runner: one task run per batch.

    With `work` (the content bundle and the run's suppression) the workers need nothing
    but the installed package: a Dask cluster's machines have no content root. With
    `processes` (a PoolExecutor) each task hands its batch to that pool, and preflight's
    pass over the rows runs there too (`scan`), as in `edition run`.
    """

    def __init__(self, task_runner: Any, workers: int, work: Work | None = None,
                 processes: PoolExecutor | None = None):
        self.task_runner = task_runner
        self.workers = workers
        self.work = Opaque(work) if work is not None else None
        self.processes = Opaque(processes) if processes is not None else None
        if processes is not None:
            self.scan = processes.scan

    def submit(self, options: RunOptions, batch: list[Row], number: int) -> Any:
        return self.task_runner.submit(render_batch, {
            "options": options, "batch": Batch(batch), "number": number, "work": self.work,
            "processes": self.processes})


def _task_runner(kind: Runner, workers: int, dask_address: str | None,
                 api: dict[str, str] | None = None) -> Any:
    if kind == "process":
        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        # the local cluster's worker processes get the flow's API in their environment
        # too, for what they send outside a task (logs, events)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None,
                                              "env": dict(api or {})})
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


def dask_problems(options: RunOptions, runner: str, dask_address: str | None) -> list[str]:
    """What stops a run on a Dask scheduler's workers before any work, in words.

    They may run on other machines: they cannot reach Prefect's temporary server (no
    PREFECT_API_URL), and a send cannot share a SQLite ledger with them (finding its
    claims in a file of their own, they would send everyone again on the next send).
    A local cluster (no address) runs on this machine: it may use both.
    """
    if runner != "dask" or not dask_address:
        return []
    from prefect.settings import PREFECT_API_URL

    problems = []
    if not PREFECT_API_URL.value():
        problems.append(
            f"the Dask scheduler {dask_address}'s workers report their task runs to the "
            f"flow's Prefect server, and without PREFECT_API_URL that is Prefect's "
            f"temporary server on this machine's loopback, which they cannot reach: start "
            f"a server (prefect server start) and set PREFECT_API_URL, or leave the Dask "
            f"address empty to run on a local cluster")
    if options.send:
        problem = unshared_ledger(plan_for(options).campaign, f"the Dask scheduler "
                                                              f"{dask_address}")
        if problem:
            problems.append(problem)
    return problems


def output_link(path: Path | str) -> str:
    """A link a person can open: over `edition serve`'s HTTP server when the path is
    under its folder, else a file:// URI."""
    target = Path(path).resolve()
    base, root = os.environ.get(OUTPUT_URL_ENV), os.environ.get(OUTPUT_ROOT_ENV)
    if base and root:
        try:
            rel = target.relative_to(Path(root).resolve())
        except ValueError:
            pass
        else:
            suffix = "/" if target.is_dir() else ""
            return base.rstrip("/") + "/" + quote(rel.as_posix()) + suffix
    return target.as_uri()


# -- parameters --------------------------------------------------------------------

def resolve_customers(customers: str | None, root: Path | None) -> tuple[str | None, list[str]]:
    """A customer file relative to the content root first, then the working directory;
    a SQL source as it is (checked when it is read). (location, problems)"""
    if not customers:
        return None, []
    if is_database_url(customers):
        return customers, []
    candidate = Path(customers).expanduser()
    if not candidate.is_absolute() and root is not None:
        in_root = root / candidate
        candidate = in_root if in_root.exists() or not candidate.exists() else candidate
    problems = [] if candidate.is_file() else [f"customer file not found: {customers!r}"]
    return str(candidate.resolve()), problems


def run_date(as_of: dt.date | str | None) -> tuple[dt.date | None, list[str]]:
    """The form's `as_of` ("" or YYYY-MM-DD; a date from Python): (date or None, problems)."""
    if not isinstance(as_of, str):
        return as_of, []
    try:
        return (dt.date.fromisoformat(as_of.strip()) if as_of.strip() else None), []
    except ValueError:
        return None, [f"as_of {as_of!r} is not a date (YYYY-MM-DD)"]


def check_parameters(
    campaign: str,
    customers: str | None = None,
    formats: Sequence[str] | None = None,
    as_of: dt.date | str | None = None,
    limit: int | None = None,
    dry_run: bool = True,
    confirm_send: bool = False,
    to: str | None = None,
    advanced: RunSettings | None = None,
    mailing: str | None = None,
) -> RunOptions:
    """Refuse bad parameters before any work, every problem in one readable message.

    Empty values (None, "", an empty list, a limit of 0) mean the campaign's or the
    default: the form draws them, the API and older callers send None.
    """
    advanced = advanced or RunSettings()
    problems: list[str] = []
    path = resolve_campaign(campaign)
    if path is None:
        problems.append(campaign_problem(campaign))
    root = find_root(path) if path else None
    customers_path, missing = resolve_customers(customers, root)
    problems += missing
    out = advanced.out or None
    if out and "://" not in out and not Path(out).is_absolute() and root:
        out = str(root / out)  # relative to the content root, like customers
    as_of, wrong = run_date(as_of)
    problems += wrong
    roots = Roots.from_env()
    if roots is not None:
        problems += roots.problems(campaign=path, customers=customers_path, out=out,
                                   to=to or None, own_target=_own_target(path),
                                   dask_address=advanced.dask_address or None)
    if advanced.dask_address and advanced.task_runner != "dask":
        problems.append("dask_address needs task_runner dask")
    if not dry_run and not confirm_send:
        problems.append("sending needs two switches: dry_run off AND confirm_send on "
                        "(nothing was rendered or sent)")
    try:
        options = RunOptions.build(
            campaign=str(path), customers=customers_path,
            formats=tuple(formats) if formats else None, as_of=as_of, limit=limit or None,
            send=not dry_run, to=to or None, resend_unknown=advanced.resend_unknown,
            batch_size=advanced.batch_size, out=out, run_id=advanced.run_id or None,
            started=advanced.started or None, mailing=mailing or None,
            new_mailing=advanced.new_mailing)
    except UsageError as exc:
        problems.append(exc.message)
    if problems:
        raise UsageError("; ".join(problems))
    options = options.resolved()
    plan_for(options)  # campaign, catalog and templates: a ContentError names file and line
    problems = dask_problems(options, advanced.task_runner, advanced.dask_address or None)
    if problems:
        raise UsageError("; ".join(problems))
    return options


def _own_target(path: Path | None) -> str | None:
    """The campaign's delivery target (a `to` equal to it needs no --allow)."""
    if path is None:
        return None
    from edition.content.campaign import load_campaign

    try:
        return load_campaign(path).target
    except Exception:  # an invalid campaign is reported by plan_for, with file and line
        return None


def _run_name() -> str:
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


# -- the run -----------------------------------------------------------------------

_ARTIFACT_LOCK = threading.Lock()


def run_batches(options: RunOptions, *, runner: Runner = "thread", workers: int = 0,
                dask_address: str | None = None, overwrite: bool = False) -> RunSummary:
    """Stream the customers through `render-batch` tasks and write the run's output."""
    from prefect.runtime import flow_run
    from prefect.settings import PREFECT_API_URL

    logger = get_run_logger()
    campaign = plan_for(options).campaign.name
    workers = workers or (os.cpu_count() or 2)
    progress = create_progress_artifact(0.0, key=artifact_key("progress", campaign),
                                        description=f"{campaign}: share of customers done")
    state = {"done": 0, "total": 0}

    def started(run: Run) -> None:
        state["total"] = run.estimate()
        logger.info("campaign %s: about %s customers, batches of %s, %s runner; output in %s",
                    campaign, f"{state['total']:,}", options.batch_size, runner, run.location)
        if run.resume.kept:
            logger.warning("resuming an interrupted run: %s rows were done before",
                           f"{run.resume.kept:,}")

    def advance(size: int) -> None:
        state["done"] += size
        if progress and state["total"]:
            with _ARTIFACT_LOCK:
                update_progress_artifact(progress, min(100.0, 100.0 * state["done"]
                                                       / state["total"]))

    for repaired in recovery.recover_runs(plan_for(options).campaign):
        logger.warning("earlier run interrupted, folder repaired: %s", repaired)
    # a Dask cluster may live on machines without the content: the work travels with it
    work = Work.of(options, plan_for(options)) if runner == "dask" else None
    # the thread runner's batches render in a pool of processes forked from this one
    # (when there are enough batches to spread): the same work as `edition run`'s pool
    forked = workers if runner == "thread" and _several_batches(options) else 1
    api = workers_api(runner)
    try:
        with _reporting_to(api), _task_runner(runner, workers, dask_address, api) as task_runner, \
                Pool(forked) as processes:
            executor = TaskRunnerExecutor(
                task_runner, workers, work,
                processes if isinstance(processes, PoolExecutor) else None)
            summary = execute(options, executor=executor,
                              on_progress=advance, on_start=started, overwrite=overwrite,
                              on_repaired=recovery.crashed,
                              flow_run_id=flow_run.get_id(), api_url=PREFECT_API_URL.value())
    except BaseException as exc:
        logger.error("run stopped (%s: %s); its output folder was made consistent",
                     type(exc).__name__, exc)
        raise
    finally:
        close_pipelines(options)  # the thread runner's pipelines live in this process
    if progress:
        update_progress_artifact(progress, 100.0)
    publish_artifacts(campaign, summary)
    for note in summary.notes:
        logger.warning(note)
    logger.info("%s: %s customers (%s) in %.1f s", campaign, f"{summary.customers:,}",
                ", ".join(f"{n:,} {s}" for s, n in sorted(summary.counts.items())),
                summary.seconds)
    if options.send:
        logger.info("mailing %s: %s", summary.mailing, summary.sent_line())
    return summary


def _several_batches(options: RunOptions) -> bool:
    campaign = plan_for(options).campaign
    return estimate_rows(customers_file(options, campaign), options) > options.batch_size * 2


def publish_artifacts(campaign: str, summary: RunSummary) -> None:
    """The report, the versions table and a link to the output, for the Prefect UI.

    The run folder is read through edition.runfolder (a path or s3://…); sample links
    to editions are given for a local folder only."""
    location = summary.out_dir
    remote = is_remote(location)
    out_dir = Path(location)
    samples = []
    for fmt in ("html", "text", "pdf"):
        folder = out_dir / fmt
        if not remote and folder.is_dir():
            samples = sorted(folder.iterdir())[:3]
            break
    links = [f"- [{p.parent.name}/{p.name}]({output_link(p)})" for p in samples]
    report = summary.report
    if links:
        report += ("\n## Open an edition\n\n" + "\n".join(links)
                   + f"\n\nAll files: [{out_dir.name}]({output_link(out_dir)})\n")
    create_markdown_artifact(report, key=artifact_key("report", campaign),
                             description=f"Run report for {campaign}")
    try:
        versions = json.loads(read_from(location, "versions.json") or b"{}")["versions"]
    except (RunError, ValueError, KeyError):
        versions = []
    rows = [{"version": v["id"], "customers": v["customers"], "locale": v["locale"],
             "segments": ", ".join(v["segments"]) or "-",
             **{slot: ", ".join(ids) for slot, ids in v["modules"].items()}}
            for v in versions[:500]]
    if summary.preflight:
        create_table_artifact([{"level": level, "finding": message}
                               for level, message in summary.preflight],
                              key=artifact_key("preflight", campaign),
                              description=f"Preflight of {campaign}: warnings and audience")
    if rows:
        create_table_artifact(rows, key=artifact_key("versions", campaign),
                              description=f"{len(versions)} versions of {campaign}")
    create_link_artifact(location if remote else output_link(out_dir),
                         link_text=f"Output folder of run {summary.run_id}",
                         key=artifact_key("output", campaign),
                         description=f"manifest.jsonl, report.md and the editions of {campaign}")


@flow(name="send-campaign", log_prints=True, flow_run_name=_run_name,
      on_cancellation=[recovery.on_stopped], on_crashed=[recovery.on_stopped])
def send_campaign(
    campaign: str,
    customers: Text = "",
    formats: Formats = (),
    as_of: AsOf = "",
    limit: Limit = 0,
    dry_run: bool = True,
    confirm_send: bool = False,
    to: Text = "",
    mailing: Text = "",
    advanced: RunSettings = RunSettings(),
) -> Any:
    """Render one edition per customer; deliver only with dry_run off AND confirm_send on.

    Args:
        campaign: The campaign: its name (weekly-newsletter), or its file
            (campaigns/NAME.yaml, relative to the content root).
        dry_run: On (the default) nothing leaves the machine: files are written only.
        confirm_send: Must also be on to really send (with dry_run off).
        customers: Customers instead of the campaign's: a CSV, JSONL or Parquet file, or a
            `postgresql://` URL (`postgresql://host/db?table=customers`); a relative path
            is looked up from the content root, then from the working directory. Empty
            means the campaign's.
        formats: What to make for each customer; empty means the campaign's formats.
        as_of: The run date (YYYY-MM-DD) modules' valid_from/valid_until are checked
            against; empty means today.
        limit: Only the first N customer rows; 0 means every row.
        to: Delivery target instead of the campaign's (local, s3://bucket/prefix,
            smtp://host:port, ses); empty means the campaign's.
        mailing: Which issue of the campaign a send is; empty means the scheduled date
            (in the campaign's time zone) for a scheduled run, else the run date. A
            customer is sent at most once per mailing, whatever reruns or crashes.
        advanced: Batch size, task runner (thread, process, Dask), output folder, run id.
    """
    logger = get_run_logger()
    try:
        options = check_parameters(campaign, customers, list(formats) if formats else None,
                                   as_of, limit, dry_run, confirm_send, to, advanced,
                                   mailing or scheduled_mailing(resolve_campaign(campaign)))
    except EditionError as exc:
        logger.error("refused before any work: %s", exc)
        return refused(exc)
    except Exception as exc:
        logger.error("refused before any work: %s", exc)
        raise
    plan_campaign = plan_for(options).campaign
    if approval.needs_review(options, plan_campaign, review=advanced.review_before_send):
        if is_remote(out_folder(options, plan_campaign)):
            # the approval hashes and the approved send read the run folder on this machine
            raise UsageError("review_before_send needs a run folder on this machine, not "
                             f"{out_folder(options, plan_campaign)}; set out to a local "
                             "folder, or turn review_before_send off")
        logger.warning("rendering as a dry run; it is sent to %s only once an approver "
                       "resumes this run", target_of(options, plan_campaign))
        rendered = run_batches(approval.dry_run_of(options), runner=advanced.task_runner,
                               workers=advanced.workers, dask_address=advanced.dask_address,
                               overwrite=advanced.overwrite)
        return approval.review_then_send(options, plan_campaign, Path(rendered.out_dir),
                                         timeout_hours=advanced.approval_timeout_hours,
                                         link=output_link)
    if dry_run:
        logger.info("dry run: nothing will be sent (turn dry_run off and confirm_send on "
                    "to deliver)")
    else:
        logger.warning("SENDING for real to %s", target_of(options, plan_campaign))
    summary = run_batches(options, runner=advanced.task_runner, workers=advanced.workers,
                          dask_address=advanced.dask_address, overwrite=advanced.overwrite)
    result = {"run_id": summary.run_id, "out_dir": summary.out_dir, "counts": summary.counts,
              "customers": summary.customers, "versions": summary.versions,
              "seconds": summary.seconds, "mailing": summary.mailing,
              "already_sent": summary.already_sent, "failed": summary.failed,
              "failure_limit": summary.failure_limit, "exit_code": summary.exit_code,
              "rejected": summary.rejected, "rejection_limit": summary.rejection_limit,
              "rejections": summary.rejections, "wrong_encoding": summary.wrong_encoding,
              "notes": summary.notes}
    if summary.exit_code:
        from prefect.states import Failed

        return Failed(message="; ".join(summary.over_limits()) + "; see the report artifact",
                      data=result)
    return result


def scheduled_mailing(campaign: Path | str | None) -> str | None:
    """A scheduled run's mailing: its scheduled date in the campaign's time zone."""
    import zoneinfo

    from prefect.runtime import flow_run

    try:
        if campaign is None or "auto-scheduled" not in (flow_run.get_tags() or []):
            return None
        when = flow_run.get_scheduled_start_time()
        from edition.content.campaign import load_campaign

        schedule = load_campaign(campaign).schedule or {}
        zone = zoneinfo.ZoneInfo(schedule.get("timezone") or "UTC")
        return when.astimezone(zone).date().isoformat() if when else None
    except Exception:  # a campaign that cannot load is reported by check_parameters
        return None


def run_through_prefect(options: RunOptions, task_runner: Runner = "thread",
                        workers: int = 0, dask_address: str | None = None,
                        overwrite: bool = False, batch_size: int | None = None
                        ) -> RunSummary:
    """`edition run --via-prefect`: the same run, as a flow run (ephemeral server if no API).

    The CLI has asked for confirmation (or --yes) before it gets here, so `--send` is
    passed on as dry_run off plus confirm_send on.
    """
    if options.limit == 0:  # the flow's 0 is the form's "every row": never widen a run
        raise UsageError("--limit 0 with --via-prefect: the flow reads 0 as every row; "
                         "give a limit of 1 or more, or leave --via-prefect off")
    problems = dask_problems(options, task_runner, dask_address)   # before Prefect starts
    if problems:
        raise UsageError("; ".join(problems))
    # Prefect stores a flow run's parameters: the customers URL goes without its password
    # (this process keeps it to connect with)
    state = send_campaign(
        campaign=options.campaign,
        customers=held(options.customers) if options.customers else options.customers,
        formats=list(options.formats) if options.formats else None, as_of=options.as_of,
        limit=options.limit, dry_run=not options.send, confirm_send=options.send,
        to=options.to, mailing=options.mailing,
        advanced=RunSettings(batch_size=batch_size or FLOW_BATCH,
                             task_runner=task_runner, workers=workers,
                             dask_address=dask_address, out=options.out,
                             run_id=options.run_id, started=options.started,
                             resend_unknown=options.resend_unknown, overwrite=overwrite,
                             new_mailing=options.new_mailing,
                             review_before_send=False),  # the CLI asked already
        return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, dict):  # a Failed state carries the summary as its data
        result = state.data if isinstance(state.data, dict) else result
    notes = list(result.get("notes") or [])
    try:  # through the run-folder abstraction: out_dir may be s3://…
        report = (read_from(result["out_dir"], "report.md") or b"").decode("utf-8")
    except RunError as exc:  # the run is done: its summary stands, with a word about it
        report = ""
        notes.append(f"report.md could not be read back: {exc}")
    return RunSummary(run_id=result["run_id"], out_dir=result["out_dir"],
                      counts=result["counts"], customers=result["customers"],
                      versions=result["versions"], seconds=result["seconds"], report=report,
                      mailing=result.get("mailing"), already_sent=result.get("already_sent", 0),
                      failed=result.get("failed", 0),
                      failure_limit=result.get("failure_limit", 0),
                      rejected=result.get("rejected", 0),
                      rejection_limit=result.get("rejection_limit"),
                      rejections=[tuple(r) for r in result.get("rejections") or []],
                      wrong_encoding=result.get("wrong_encoding"),
                      notes=notes)
