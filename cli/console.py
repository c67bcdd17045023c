"""The terminal: where the command line prints, and how errors become messages.

User mistakes become one clear message and an exit code (2: the campaign, a template or
a module is invalid, or the command line asks for something impossible; 1: the run
failed, a full disk included), never a traceback.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from typer.exceptions import TyperException

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
    except OSError as exc:
        # a full disk, a quota, a read-only or forbidden folder: the run failed (exit 1);
        # what it finished is in its manifest, and the next run on the folder goes on
        err.print("[bold red]error:[/] ", end="", markup=True)
        err.print(os_problem(exc), markup=False)
        raise typer.Exit(1) from None
    except sqlite3.OperationalError as exc:  # SQLite's "database or disk is full"...
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        writing = code in {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
                           sqlite3.SQLITE_CANTOPEN}
        err.print("[bold red]error:[/] ", end="", markup=True)
        err.print(f"a database file could not be {'written' if writing else 'used'}: {exc}",
                  markup=False)
        raise typer.Exit(1) from None
    except (typer.Exit, typer.Abort, TyperException):
        raise
    except Exception as exc:
        # a bug of ours, not the user's: one message and exit 1, the traceback kept in a
        # file for the report (what the run finished is in its manifest, as for exit 1)
        kept = _keep_traceback(exc)
        err.print("[bold red]error:[/] ", end="", markup=True)
        err.print(f"edition stopped on an unexpected error ({type(exc).__name__}: {exc}). "
                  f"This is a bug in edition, not in your content: please report it with "
                  f"{kept}. A run goes on from where it stopped when run again.",
                  markup=False)
        raise typer.Exit(1) from None


def _keep_traceback(exc: BaseException) -> str:
    """The traceback, written to a private file in the temporary folder: its path."""
    text = "".join(traceback.format_exception(exc))
    try:
        handle, path = tempfile.mkstemp(prefix="edition-error-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        return path
    except OSError:
        return "the command you ran (the details could not be saved to a file)"


_HINTS = {
    errno.ENOSPC: "the disk is full: free some space (or choose another --out) and run the "
                  "same command again; a run goes on from where it stopped",
    errno.EDQUOT: "your disk quota is used up: free some space (or choose another --out) "
                  "and run the same command again; a run goes on from where it stopped",
    errno.EFBIG: "the file grew past the size this system allows (ulimit -f)",
    errno.EROFS: "that file system is read-only: choose another --out",
    errno.EACCES: "permission denied: check who owns that folder, or choose another --out",
    errno.EPERM: "not permitted: check who owns that folder, or choose another --out",
}


def os_problem(exc: OSError) -> str:
    """An OSError in words: what failed, on which path, and what to do."""
    where = exc.filename
    what = exc.strerror or str(exc) or type(exc).__name__
    hint = _HINTS.get(exc.errno or 0)
    if hint is None:  # not the disk: say what the system said
        return f"{where}: {what}" if where is not None else what
    line = f"cannot write {where}: {what}" if where is not None else (
        f"{what} (while writing files)")
    return f"{line}\n{hint}"


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
    """Exit 3 with the reason when more customers failed than the campaign allows, or
    more rows were rejected (a run's or a send's summary: `failed`, `failure_limit`,
    `exit_code`, and a run's `over_limits()`)."""
    if summary.exit_code:
        reasons = summary.over_limits() if hasattr(summary, "over_limits") else [
            f"{summary.failed:,} customer(s) failed or are unknown, more than the "
            f"campaign allows (max_failed: {summary.failure_limit:,})"]
        for reason in reasons:
            err.print(f"{reason}; see the report", markup=False)
        raise typer.Exit(summary.exit_code)

