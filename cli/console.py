"""The terminal: where the command line prints, and how errors become messages.

User mistakes become one clear message and an exit code (2: the campaign, a template or
a module is invalid, or the command line asks for something impossible; 1: the run
failed), never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from edition.errors import ContentError, ContentErrors, EditionError

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn edition's errors into a message on stderr and the right exit code."""
    try:
        yield
    except ContentErrors as exc:
        err.print(f"[bold red]error:[/] {len(exc.errors)} problems found:", markup=True)
        for problem in exc.errors:
            err.print(f"  {problem}", markup=False)
        err.print("Nothing was rendered.", style="dim")
        raise typer.Exit(exc.exit_code) from None
    except EditionError as exc:
        err.print("[bold red]error:[/] ", end="", markup=True)
        err.print(str(exc), markup=False)
        if isinstance(exc, ContentError):
            err.print("Nothing was rendered.", style="dim")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted", style="red")
        raise typer.Exit(130) from None


def counts_text(counts: dict[str, int], already_sent: int = 0) -> str:
    """`2,000 rendered, 3 rejected`: a summary's statuses, for its one-line result.

    `sent` rows that an earlier send of the mailing sent (`already_sent`) are counted as
    such, so that the line agrees with "0 sent now, 20 already sent in mailing M"."""
    parts = []
    for status, n in sorted(counts.items()):
        if status == "sent" and already_sent:
            already = min(already_sent, n)
            parts += [f"{n - already:,} sent"] if n > already else []
            parts.append(f"{already:,} already sent")
        else:
            parts.append(f"{n:,} {status}")
    return ", ".join(parts) or "0 rows"


def exit_if_too_many_failed(summary: Any) -> None:
    """Exit 3 with the reason when more customers failed than the campaign allows (a run's
    or a send's summary: `failed`, `failure_limit`, `exit_code`)."""
    if summary.exit_code:
        err.print(f"{summary.failed:,} customer(s) failed or are unknown, more than the "
                  f"campaign allows (max_failed: {summary.failure_limit:,}); see the "
                  f"report", markup=False)
        raise typer.Exit(summary.exit_code)

