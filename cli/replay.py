"""`edition replay RUN_DIR --out DIR`: make a finished run again, byte for byte, or say
what differs and what changed since (edition.run.replay)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.console import err, user_errors
from edition.run.replay import replay as replay_run


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def replay(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder")],
    out: Annotated[Path, typer.Option(help="A new, empty folder for the replayed run")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Re-render a run from its recorded options and compare every file it wrote
    (Date and Message-ID masked). Exit 0: byte-identical; 1: something differs."""
    with user_errors():
        result = replay_run(run_dir, out)
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        verdict = ("byte-identical" if result.byte_identical
                   else f"DIFFERENT: {len(result.differing):,} difference(s)")
        sys.stdout.write(f"replay of {run_dir} into {out}: {verdict} "
                         f"({result.identical:,} of {result.files:,} files identical)\n")
        for line in result.differing[:50]:
            sys.stdout.write(f"  {line}\n")
        if len(result.differing) > 50:
            sys.stdout.write(f"  … and {len(result.differing) - 50:,} more (see "
                             f"{out / 'replay.json'})\n")
        if result.changed:
            sys.stdout.write("changed since the run:\n")
            for line in result.changed:
                sys.stdout.write(f"  {line}\n")
        elif not result.byte_identical:
            sys.stdout.write("nothing recorded changed (content, customers, code): the "
                             "difference comes from elsewhere (the unsubscribe secret, "
                             "suppression lists or store, the environment)\n")
    if not result.byte_identical:
        err.print("the replay is not byte-identical to the run", markup=False)
        raise typer.Exit(1)
