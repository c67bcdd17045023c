"""`edition diff RUN_A RUN_B`: what changed between two runs of a campaign.

`edition diff RUN` compares RUN with its campaign's last approved or sent run, wherever
that run was written (edition.review.approval.earlier_run: beside RUN, under out/<campaign>/,
or in the campaign's run index).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.console import err, user_errors
from edition.errors import UsageError
from edition.review.approval import earlier_run, read_run
from edition.review.diff import diff_runs


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)


def diff(
    run_a: Annotated[Path, typer.Argument(
        help="The earlier run folder (alone: the later one, compared with the campaign's "
             "last approved or sent run)")],
    run_b: Annotated[Path | None, typer.Argument(help="The later run folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    samples: Annotated[int, typer.Option(
        help="Text diffs shown (one customer per changed version)")] = 20,
    context: Annotated[int, typer.Option(help="Lines of context in the text diffs")] = 3,
) -> None:
    """Versions added and removed, modules changed, customers changed and why, text diffs."""
    with user_errors():
        if run_b is None:
            facts = read_run(run_a)
            previous = earlier_run(facts)
            if previous is None:
                raise UsageError(f"no earlier approved or sent run of {facts.campaign} to "
                                 f"compare {run_a} with (looked beside it, under out/"
                                 f"{facts.campaign}/ and in the campaign's run index); name "
                                 f"both runs: edition diff RUN_A RUN_B")
            err.print(f"comparing with the last approved or sent run: {previous}",
                      markup=False)
            run_a, run_b = previous, run_a
        result = diff_runs(run_a, run_b, samples=max(0, samples), context=max(0, context))
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(result.to_text())
