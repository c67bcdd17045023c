"""`edition diff RUN_A RUN_B`: what changed between two runs of a campaign."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.console import user_errors
from edition.diff import diff_runs


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)


def diff(
    run_a: Annotated[Path, typer.Argument(help="The earlier run folder")],
    run_b: Annotated[Path, typer.Argument(help="The later run folder")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    samples: Annotated[int, typer.Option(
        help="Text diffs shown (one customer per changed version)")] = 20,
    context: Annotated[int, typer.Option(help="Lines of context in the text diffs")] = 3,
) -> None:
    """Versions added and removed, modules changed, customers changed and why, text diffs."""
    with user_errors():
        result = diff_runs(run_a, run_b, samples=max(0, samples), context=max(0, context))
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(result.to_text())
