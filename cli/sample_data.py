"""`edition sample-data`: a realistic customer file for the sample campaigns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import out as console
from cli.console import user_errors
from edition.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("sample-data")(sample_data)


def sample_data(
    customers: Annotated[int, typer.Option("--customers", help="How many customers")],
    out: Annotated[str, typer.Option(help="CSV or JSONL path")] = "data/customers.csv",
    seed: Annotated[int, typer.Option(help="Same seed, same file")] = 0,
    messy: Annotated[bool, typer.Option("--messy", help="Include a few flawed rows")] = False,
) -> None:
    """Write N generated customers (deterministic for a seed)."""
    from edition.audience.sampledata import write_customers

    with user_errors():
        if customers < 0:
            raise UsageError("--customers must be 0 or more")
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        written = write_customers(path, customers, seed=seed, messy=messy)
        console.print(f"wrote {written:,} customers to {path}")
