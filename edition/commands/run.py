"""`edition run`: render a campaign for every customer (a dry run unless --send)."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edition.commands.options import parse_date, parse_formats
from edition.errors import UsageError
from edition.run import (
    RunOptions,
    RunSummary,
    close_plans,
    estimate_rows,
    execute,
    plan_for,
    worker_init,
)


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    campaign: Annotated[str, typer.Argument(help="Campaign file, e.g. campaigns/weekly.yaml")],
    customers: Annotated[str | None, typer.Option(help="Customer file (CSV or JSONL)")] = None,
    out: Annotated[str | None, typer.Option(help="Output folder (default out/<campaign>/<run>)")
                   ] = None,
    formats: Annotated[str | None, typer.Option(help="Comma list: html,text,eml,pdf")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Run date YYYY-MM-DD")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows")] = None,
    send: Annotated[bool, typer.Option("--send", help="Really deliver (default: dry run)")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before sending")] = False,
    to: Annotated[str | None, typer.Option(help="Delivery target, overrides the campaign")] = None,
    resend_unknown: Annotated[bool, typer.Option(
        "--resend-unknown", help="Re-send editions whose outcome is unknown")] = False,
    via_prefect: Annotated[bool, typer.Option("--via-prefect",
                                              help="Run through the Prefect flow")] = False,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: CPUs)")] = None,
    batch_size: Annotated[int, typer.Option(help="Customers per batch")] = 500,
) -> None:
    """Render (and with --send, deliver) one edition per customer."""
    from edition.cli import err, user_errors
    from edition.cli import out as console

    with user_errors():
        if (resend_unknown or yes) and not send:
            raise UsageError("--yes and --resend-unknown only make sense with --send")
        if limit is not None and limit < 0:
            raise UsageError("--limit must be 0 or more")
        if batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        options = RunOptions(campaign=campaign, customers=customers, out=out,
                             formats=parse_formats(formats), as_of=parse_date(as_of),
                             limit=limit, send=send, to=to, resend_unknown=resend_unknown,
                             batch_size=batch_size).resolved()
        plan = plan_for(options)  # checks everything before a single file is written
        if send and not yes and sys.stdin.isatty():
            typer.confirm(f"Send {plan.campaign.name} to {plan.target} for real?", abort=True)
        if not send:
            err.print(f"Dry run: nothing will be sent{f' to {to}' if to else ''} "
                      f"(add --send to deliver).", style="dim")
        summary = _run_in_prefect(options) if via_prefect else _run_locally(options, workers)
        close_plans()
        counts = ", ".join(f"{n:,} {s}" for s, n in sorted(summary.counts.items())) or "0 rows"
        console.print(f"[bold]{plan.campaign.name}[/]: {summary.customers:,} customers "
                      f"({counts}) in {summary.seconds:.1f} s, {summary.versions:,} versions")
        console.print(f"report:   {summary.out_dir}/report.md")
        console.print(f"manifest: {summary.out_dir}/manifest.jsonl")


def _run_in_prefect(options: RunOptions) -> RunSummary:
    from edition.errors import EditionError, RunError
    from flows.campaign import run_through_prefect

    try:
        return run_through_prefect(options)
    except EditionError:
        raise
    except Exception as exc:  # Prefect's own failures: a message, not a traceback
        raise RunError(f"the Prefect run failed: {type(exc).__name__}: {exc}") from None


def _run_locally(options: RunOptions, workers: int | None) -> RunSummary:
    from edition.cli import err

    total = estimate_rows(plan_for(options))
    count = workers if workers is not None else (os.cpu_count() or 1)
    # a pool pays off only when there are several batches to spread
    use_pool = count > 1 and total > options.batch_size * 2
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                  console=err, disable=not err.is_terminal) as progress:
        task = progress.add_task(plan_for(options).campaign.name, total=total or None, rate="")
        logged = [0]

        def advance(n: int) -> None:
            progress.advance(task, n)
            state = progress.tasks[0]
            if state.elapsed:
                progress.update(task, rate=f"{state.completed / state.elapsed:,.0f}/s")
            if not err.is_terminal and total and state.completed * 10 // total > logged[0]:
                logged[0] = int(state.completed * 10 // total)
                err.print(f"progress: {int(state.completed):,}/{total:,} customers")

        if use_pool:
            with ProcessPoolExecutor(max_workers=count, initializer=worker_init) as pool:
                return execute(options, executor=pool, on_progress=advance)
        return execute(options, on_progress=advance)
