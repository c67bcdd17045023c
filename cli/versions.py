"""`edition versions`: the audience and how it splits into versions (nothing is rendered).

A summary for people: the audience size (in the audience, excluded, suppressed,
rejected, as the run would count them), then the versions by share of the audience,
the largest 20 unless `--all`; `--json` gives every version. On a terminal the versions
are a table; otherwise (a pipe, a file, a CI log) one plain line each, so module ids are
never folded mid-word.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cli.console import out, user_errors
from cli.options import CUSTOMERS_HELP, parse_date
from edition.run.census import Census, VersionCount, census_for
from edition.run.options import RunOptions

TOP = 20


def register(app: typer.Typer) -> None:
    app.command("versions")(versions)


def versions(
    campaign: Annotated[str, typer.Argument(help="Campaign file")],
    customers: Annotated[str | None, typer.Option(help=CUSTOMERS_HELP)] = None,
    encoding: Annotated[str | None, typer.Option(
        help="The customer file's encoding when it is not UTF-8, e.g. windows-1252")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Run date YYYY-MM-DD")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="List every version")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Every version, as JSON")] = False,
) -> None:
    """Show the audience and its largest versions (each version's modules)."""
    with user_errors():
        census = census_for(RunOptions.build(campaign=campaign, customers=customers,
                                             as_of=parse_date(as_of), encoding=encoding))
    if as_json:
        out.print_json(json.dumps(census.as_dict()))
        return
    for line in summary(census):
        out.print(line, markup=False, highlight=False)
    ordered = census.ordered()
    shown = ordered if show_all else ordered[:TOP]
    if shown:
        out.print()
        if out.is_terminal:
            out.print(table(census, shown))
        else:
            for line in lines(census, shown):
                out.print(line, markup=False, highlight=False, soft_wrap=True)
    if len(ordered) > len(shown):
        out.print(f"… and {len(ordered) - len(shown):,} more (--all)", markup=False)


def summary(census: Census) -> list[str]:
    """The head: versions, audience size, and why customers are left out."""
    count = len(census.versions)
    found = [f"{census.campaign}: {census.audience:,} customers in {count:,} versions "
             f"(as of {census.as_of.isoformat()})",
             f"audience: {census.audience:,} of {census.rows:,} customer rows "
             f"({census.excluded:,} excluded, {census.suppressed:,} suppressed, "
             f"{census.rejected:,} rejected)"]
    found += [f"  {n:,} × {why}" for why, n in census.reasons.most_common(10)]
    if census.failed:
        found.append(f"  {census.failed:,} × would fail (no selection; see a dry run's report)")
    if count > TOP:
        top = sum(v.customers for v in census.ordered()[:TOP])
        found.append(f"the {TOP} largest versions reach {top:,} customers "
                     f"({100 * top / census.audience:.1f} % of the audience)")
    return found


def modules_text(version: VersionCount, between: str) -> str:
    return between.join(f"{slot}: {', '.join(ids) or '—'}"
                        for slot, ids in version.modules.items())


def lines(census: Census, shown: list[VersionCount]) -> list[str]:
    """Plain, aligned lines: one version per line, its modules at the end, never folded."""
    segments = [", ".join(v.segments) or "—" for v in shown]
    width = max(len("segments"), *map(len, segments))
    locale = max(len("locale"), *(len(v.locale) for v in shown))
    found = [f"{'share':>7}  {'customers':>9}  {'version':<12}  {'locale':<{locale}}  "
             f"{'segments':<{width}}  modules"]
    for version, seg in zip(shown, segments, strict=True):
        found.append(f"{census.share(version):>6.1f}%  {version.customers:>9,}  "
                     f"{version.id:<12}  {version.locale:<{locale}}  {seg:<{width}}  "
                     f"{modules_text(version, '; ')}")
    return found


def table(census: Census, shown: list[VersionCount]) -> Table:
    """The same on a terminal: a table; a module id too wide is cut with …, never folded."""
    grid = Table(box=None, pad_edge=False, header_style="bold")
    grid.add_column("share", justify="right", no_wrap=True)
    grid.add_column("customers", justify="right", no_wrap=True)
    grid.add_column("version", no_wrap=True)
    grid.add_column("locale", no_wrap=True)
    grid.add_column("segments", overflow="ellipsis")
    grid.add_column("modules", overflow="ellipsis", ratio=1)
    for v in shown:
        grid.add_row(f"{census.share(v):.1f}%", f"{v.customers:,}", v.id, v.locale,
                     ", ".join(v.segments) or "—", modules_text(v, "\n"))
    return grid
