"""`edition validate`: check a campaign, every module and template (and the customers)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from cli.console import err, out, user_errors
from edition.audience.customers import encoding_problem
from edition.errors import collect
from edition.render.plan import Plan
from edition.run.context import Source, customers_file
from edition.run.options import RunOptions
from edition.run.preflight import Preflight, content_notes
from edition.run.rendered import preflight_for
from edition.run.workers import plan_for


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def validate(
    campaign: Annotated[str, typer.Argument(help="Campaign file")],
    customers: Annotated[str | None, typer.Option(
        help="Also check these customers: a CSV, JSONL or Parquet file, or a "
             "postgresql:// URL (postgresql://host/db?table=customers)")] = None,
    encoding: Annotated[str | None, typer.Option(
        help="The customer file's encoding when it is not UTF-8, e.g. windows-1252")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings count as errors")] = False,
) -> None:
    """List every problem in the campaign, the modules and templates at once."""
    with user_errors():
        options = RunOptions.build(campaign=campaign, customers=customers,
                                   encoding=encoding).resolved()
        plan = plan_for(options)
        c = plan.campaign
        out.print(f"[green]ok[/]: campaign {c.name} ({c.file}): {len(c.segments)} segments, "
                  f"{len(c.slots)} slots, template {c.template}"
                  + (f" + {c.text_template}" if c.text_template else ""))
        out.print(f"[green]ok[/]: {len(plan.catalog)} modules "
                  + ", ".join(f"{len(v)} {k}s" for k, v in sorted(plan.catalog.by_kind.items())))
        warnings = _warnings(plan)
        for warning in warnings:
            out.print("[yellow]warning[/]: ", end="")
            out.print(warning, markup=False, highlight=False)
        if customers or c.customers:
            found = preflight_for(options.replace(as_of=options.as_of or dt.date.today()))
            out.print(f"[green]ok[/]: {found.rows:,} customer rows, {found.rejected:,} would be "
                      f"rejected")
            out.print(f"[green]ok[/]: audience: {found.audience:,} customers "
                      f"({found.excluded:,} excluded, {found.suppressed:,} suppressed); "
                      f"{len(found.versions):,} versions, each rendered once")
            for fact in found.facts()[1:]:
                out.print(f"  {fact}", markup=False)
            more = [w for w in found.warnings if w not in warnings]
            for warning in more[:50]:
                out.print("[yellow]warning[/]: ", end="")
                out.print(warning, markup=False, highlight=False)
            if len(more) > 50:
                out.print(f"[yellow]warning[/]: … and {len(more) - 50:,} more")
            warnings += more
            collect(found.errors)
            _exit_if_too_many_rejected(found, c.rejection_limit(found.rows),
                                       customers_file(options, c))
        if strict and warnings:
            raise typer.Exit(2)


def _exit_if_too_many_rejected(found: Preflight, limit: int | None, source: Source) -> None:
    """Exit 3, as the run would end, when the customer file is in another encoding than
    it is read in, or more rows would be rejected than the campaign's max_rejected."""
    reasons = []
    wrong_encoding = encoding_problem(source) if found.rejected else None
    if wrong_encoding:
        reasons.append(wrong_encoding)
    if limit is not None and found.rejected > limit:
        reasons.append(f"{found.rejected:,} of {found.rows:,} row(s) would be rejected, more "
                       f"than the campaign allows (max_rejected: {limit:,})")
    for reason in reasons:
        err.print("[bold red]error:[/] ", end="", markup=True)
        err.print(f"{reason}; a run would exit 3", markup=False)
    if reasons:
        raise typer.Exit(3)


def _warnings(plan: Plan) -> list[str]:
    names = {s.name for s in plan.campaign.segments}
    found = content_notes(plan)
    for module in plan.catalog:
        if module.campaigns is not None and plan.campaign.name not in module.campaigns:
            continue
        unknown = sorted(module.segments - names)
        if unknown and not module.segments & names:
            found.append(f"{module.source}:{module.line}: segments {', '.join(unknown)} are not "
                         f"defined in this campaign; the module will never be chosen")
    kinds = {s.kind for s in plan.campaign.slots}
    for kind in sorted(kinds):
        if not plan.catalog.by_kind.get(kind):
            found.append(f"no {kind} modules: slots of that kind stay empty")
    return found
