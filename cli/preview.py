"""`edition preview`: one customer's edition and the reason for every module."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.console import out, user_errors
from cli.options import CUSTOMERS_HELP, parse_date
from edition.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)


def preview(
    campaign: Annotated[str, typer.Argument(help="Campaign file")],
    customer: Annotated[str, typer.Option("--customer", help="Customer id")],
    customers: Annotated[str | None, typer.Option(help=CUSTOMERS_HELP)] = None,
    encoding: Annotated[str | None, typer.Option(
        help="The customer file's encoding when it is not UTF-8, e.g. windows-1252")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html, text, eml or pdf")] = "text",
    output: Annotated[str | None, typer.Option(help="Write the edition to this file")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Run date YYYY-MM-DD")] = None,
) -> None:
    """Show why each module was chosen for one customer, and the edition itself."""
    from edition.review.preview import preview_customer

    with user_errors():
        if fmt not in {"html", "text", "eml", "pdf"}:
            raise UsageError(f"--format {fmt!r}: choose html, text, eml or pdf")
        if fmt == "pdf" and not output:
            raise UsageError("--format pdf needs --output FILE")
        result = preview_customer(campaign, customer, customers=customers, fmt=fmt,
                                  as_of=parse_date(as_of), encoding=encoding)
        out.print(result.explanation, markup=False, highlight=False)
        if result.document is None:
            raise typer.Exit(1 if result.status == "failed" else 0)
        if output:
            Path(output).write_bytes(result.document)
            out.print(f"\n{fmt} written to {output}", markup=False)
        else:
            out.print(f"\n----- {fmt} -----", markup=False)
            sys.stdout.flush()
            sys.stdout.buffer.write(result.document)
            sys.stdout.flush()
