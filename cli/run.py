"""`edition run`: render a campaign for every customer (a dry run unless --send)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.console import counts_text, err, exit_if_too_many_failed, user_errors
from cli.console import out as console
from cli.options import CUSTOMERS_HELP, parse_date
from edition.errors import EditionError, RunError, UsageError
from edition.run.context import customers_file, estimate_rows, target_of
from edition.run.executors import Pool, pool_size
from edition.run.lifecycle import Lifecycle, execute, refuse_direct_send, stopping_on_sigterm
from edition.run.options import DEFAULT_BATCH, RunOptions
from edition.run.summary import RunSummary
from edition.run.workers import plan_for, unsendable_as_is


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    campaign: Annotated[str, typer.Argument(help="Campaign file, e.g. campaigns/weekly.yaml")],
    customers: Annotated[str | None, typer.Option(help=CUSTOMERS_HELP)] = None,
    out: Annotated[str | None, typer.Option(help="Output folder (default out/<campaign>/<run>)")
                   ] = None,
    encoding: Annotated[str | None, typer.Option(
        help="The customer file's encoding when it is not UTF-8, e.g. windows-1252")] = None,
    formats: Annotated[str | None, typer.Option(help="Comma list: html,text,eml,pdf")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Run date YYYY-MM-DD")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows")] = None,
    send: Annotated[bool, typer.Option("--send", help="Really deliver (default: dry run)")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before sending")] = False,
    to: Annotated[str | None, typer.Option(help="Delivery target, overrides the campaign")] = None,
    resend_unknown: Annotated[bool, typer.Option(
        "--resend-unknown", help="Re-send editions whose outcome is unknown")] = False,
    mailing: Annotated[str | None, typer.Option(
        help="Which issue of the campaign this send is (default: the run date)")] = None,
    new_mailing: Annotated[bool, typer.Option(
        "--new-mailing", help="Start another mailing while one is unfinished")] = False,
    suppression: Annotated[list[str] | None, typer.Option(
        "--suppression", help="Another suppression list (CSV/text of addresses or ids)")
    ] = None,
    test_to: Annotated[str | None, typer.Option(
        "--test-to", help="With --send: send --customer's edition to this address, [TEST]")
    ] = None,
    customer: Annotated[list[str] | None, typer.Option(
        "--customer", help="With --test-to: the customer(s) whose edition to send")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an earlier run's output in --out")] = False,
    via_prefect: Annotated[bool, typer.Option("--via-prefect",
                                              help="Run through the Prefect flow")] = False,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: CPUs)")] = None,
    task_runner: Annotated[str, typer.Option(
        "--task-runner", help="With --via-prefect: thread, process or dask")] = "thread",
    dask_address: Annotated[str | None, typer.Option(
        "--dask-address", help="With --task-runner dask: an existing scheduler tcp://host:8786")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Customers per batch (default 500; 2,000 with --via-prefect)")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="With --send: send although the last mailing's complaint rate "
                        "reached 0.3 %")] = False,
) -> None:
    """Render (and with --send, deliver) one edition per customer."""
    with user_errors():
        if yes and not send:
            raise UsageError("--yes only makes sense with --send")
        if (test_to or customer) and not (test_to and customer and send):
            raise UsageError("a test send needs --send --test-to ADDRESS --customer ID")
        options = RunOptions.build(campaign=campaign, customers=customers, out=out,
                                   formats=formats, as_of=parse_date(as_of), limit=limit,
                                   send=send, to=to, resend_unknown=resend_unknown,
                                   batch_size=batch_size or DEFAULT_BATCH, mailing=mailing,
                                   new_mailing=new_mailing, encoding=encoding,
                                   suppression=tuple(suppression or ()),
                                   force=force).resolved()
        if test_to:
            _test_send(options, customer or [], test_to, yes)
            return
        plan = plan_for(options)  # checks everything before a single file is written
        if send and plan.campaign.approval_required:   # before asking, and --via-prefect too
            raise refuse_direct_send(plan.campaign.name)
        target = target_of(options, plan.campaign)
        if send and not yes and sys.stdin.isatty():
            typer.confirm(f"Send {plan.campaign.name} to {target} for real?", abort=True)
        if not send:
            err.print(f"Dry run: nothing will be sent{f' to {to}' if to else ''} "
                      f"(add --send to deliver).", style="dim")
            for why in unsendable_as_is(options, plan):   # before an hour of rendering
                err.print(f"This dry run cannot be sent as it is: {why}", markup=False)
        if task_runner not in {"thread", "process", "dask"}:
            raise UsageError(f"--task-runner {task_runner!r}: choose thread, process or dask")
        if (task_runner != "thread" or dask_address) and not via_prefect:
            raise UsageError("--task-runner and --dask-address go with --via-prefect")
        if dask_address and task_runner != "dask":
            raise UsageError("--dask-address needs --task-runner dask")
        if encoding and via_prefect:  # the flow's form has no such field: the campaign's
            raise UsageError("--encoding does not go with --via-prefect: set "
                             "`customers_encoding` in the campaign instead")
        if via_prefect:
            summary = _run_in_prefect(options, overwrite, task_runner, workers or 0,
                                      dask_address, batch_size)
        else:
            with stopping_on_sigterm():   # SIGTERM stops like Ctrl-C: the folder repaired
                summary = _run_locally(options, workers, overwrite)
        show_summary(summary, send)


def show_summary(summary: RunSummary, send: bool) -> None:
    """What a run did, the same whether it ran here or through Prefect."""
    for note in summary.notes:
        err.print(note, markup=False)
    if summary.resumed:
        console.print(f"resumed an interrupted run: {summary.resumed:,} rows were done "
                      f"before", markup=False)
    console.print(f"[bold]{summary.campaign}[/]: {summary.customers:,} customers "
                  f"({counts_text(summary.counts, summary.already_sent)}) in "
                  f"{summary.seconds:.1f} s, {summary.versions:,} versions")
    if send:
        console.print(f"mailing {summary.mailing}: {summary.sent_line()}", markup=False)
    console.print(f"report:   {summary.out_dir}/report.md", markup=False)
    console.print(f"manifest: {summary.out_dir}/manifest.jsonl", markup=False)
    exit_if_too_many_failed(summary)


def _test_send(options: RunOptions, customers: list[str], address: str, yes: bool) -> None:
    from edition.review.testsend import test_send

    plan = plan_for(options)
    target = target_of(options, plan.campaign)
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Send {len(customers)} test message(s) of {plan.campaign.name} to "
                      f"{address} through {target}?", abort=True)
    results = test_send(options, customers, address)
    for result in results:
        console.print(f"{result.customer_id}: {result.status} — {result.detail}", markup=False)
    console.print(f"test send: {sum(r.status == 'sent' for r in results)} of {len(results)} "
                  f"to {address}, marked [TEST]; nothing recorded in the send ledger",
                  markup=False)
    if any(r.status != "sent" for r in results):
        raise typer.Exit(3)


def _run_in_prefect(options: RunOptions, overwrite: bool, task_runner: str, workers: int,
                    dask_address: str | None, batch_size: int | None) -> RunSummary:
    from flows.campaign import run_through_prefect

    try:
        return run_through_prefect(options, task_runner=task_runner,  # type: ignore[arg-type]
                                   workers=workers, dask_address=dask_address,
                                   overwrite=overwrite, batch_size=batch_size)
    except EditionError:
        raise
    except Exception as exc:  # Prefect's own failures: a message, not a traceback
        raise RunError(f"the Prefect run failed: {type(exc).__name__}: {exc}") from None


def _run_locally(options: RunOptions, workers: int | None, overwrite: bool) -> RunSummary:
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                  console=err, disable=not err.is_terminal) as progress:
        task = progress.add_task(plan_for(options).campaign.name, total=None, rate="")
        state = {"total": 0, "logged": 0}

        def started(run: Lifecycle) -> None:
            state["total"] = run.estimate()
            progress.update(task, total=state["total"] or None)

        def advance(n: int) -> None:
            progress.advance(task, n)
            done = progress.tasks[0]
            if done.elapsed:
                progress.update(task, rate=f"{done.completed / done.elapsed:,.0f}/s")
            total = state["total"]
            if not err.is_terminal and total and done.completed * 10 // total > state["logged"]:
                state["logged"] = int(done.completed * 10 // total)
                err.print(f"progress: {int(done.completed):,}/{total:,} customers")

        total = estimate_rows(customers_file(options, plan_for(options).campaign), options)
        with Pool(pool_size(workers, total, options.batch_size)) as executor:
            return execute(options, executor=executor, on_progress=advance, on_start=started,
                           overwrite=overwrite,
                           on_stopping=lambda text: err.print(text, markup=False))
