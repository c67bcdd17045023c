"""`edition versions`: how the customers split into versions (nothing is rendered)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer
from rich.table import Table

from cli.console import out, user_errors
from cli.options import parse_date
from edition.config import RunOptions
from edition.customers import read_customers
from edition.run import customers_file, plan_for


def register(app: typer.Typer) -> None:
    app.command("versions")(versions)


def versions(
    campaign: Annotated[str, typer.Argument(help="Campaign file")],
    customers: Annotated[str | None, typer.Option(help="Customer file (CSV or JSONL)")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Run date YYYY-MM-DD")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Group customers into versions and show each version's modules."""
    import json

    with user_errors():
        options = RunOptions.build(campaign=campaign, customers=customers,
                                   as_of=parse_date(as_of)).resolved()
        plan = plan_for(options)
        counts: Counter[str] = Counter()
        info: dict[str, dict] = {}
        rejected = 0
        for row in read_customers(customers_file(options, plan.campaign),
                                  need_email=False, declared=plan.campaign.fields):
            if row.rejected:
                rejected += 1
                continue
            segments, _, selection, version = plan.version_of(dict(row.fields or {}))
            counts[version.id] += 1
            info.setdefault(version.id, {"locale": version.locale, "segments": list(segments),
                                         "modules": selection.ids()})
        ordered = [{"id": vid, "customers": n, **info[vid]} for vid, n in counts.most_common()]
        if as_json:
            out.print_json(json.dumps({"versions": ordered, "rejected": rejected}))
            return
        table = Table(title=f"{plan.campaign.name}: {sum(counts.values()):,} customers in "
                            f"{len(counts):,} versions ({rejected:,} rows rejected)")
        for column in ("version", "customers", "locale", "segments", "modules"):
            table.add_column(column, overflow="fold")
        for v in ordered:
            table.add_row(v["id"], f"{v['customers']:,}", v["locale"],
                          ", ".join(v["segments"]) or "—",
                          "\n".join(f"{s}: {', '.join(ids) or '—'}"
                                    for s, ids in v["modules"].items()))
        out.print(table)
