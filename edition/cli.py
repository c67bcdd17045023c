"""The `edition` command line: one module per verb in edition/commands/.

User mistakes become one clear message and an exit code (2: the campaign, a template or
a module is invalid; 1: the run failed), never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from edition.errors import ContentErrors, EditionError

app = typer.Typer(
    name="edition",
    help="Mass customization for marketing communication: one edition per customer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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
        if exc.exit_code == 2:
            err.print("Nothing was rendered.", style="dim")
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:
        # delivery targets and the send ledger raise their own errors (kept free of
        # credentials); the run failed, but the user gets a sentence, not a traceback
        from edition.ledger import LedgerError
        from publishers.errors import DeliveryError

        if not isinstance(exc, DeliveryError | LedgerError):
            raise
        err.print("[bold red]error:[/] ", end="", markup=True)
        err.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted", style="red")
        raise typer.Exit(130) from None


def _register() -> None:
    from edition.commands import preview, run, sample_data, serve, validate, versions

    for module in (run, preview, validate, versions, sample_data, serve):
        module.register(app)


_register()


def main() -> None:
    """Console entry point."""
    app(prog_name="edition")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
