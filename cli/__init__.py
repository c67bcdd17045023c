"""The `edition` command line: one module per verb; the only place that imports typer/rich."""

from __future__ import annotations

import typer

import flows  # noqa: F401  (first: Prefect's environment defaults, before any verb loads it)
from cli import (
    approve,
    diff,
    events,
    experiment,
    preferences,
    preview,
    replay,
    run,
    sample_data,
    send,
    serve,
    validate,
    versions,
    web,
)

app = typer.Typer(
    name="edition",
    help="Mass customization for marketing communication: one edition per customer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _verb in (run, preview, validate, versions, sample_data, serve, web,
              approve, send, diff, events, experiment, preferences, replay):
    _verb.register(app)


def main() -> None:
    """Console entry point."""
    from cli.console import user_errors
    from edition.private import protect_process

    try:
        with user_errors():
            # customer data is the owner's only, whatever writes it (EDITION_UMASK)
            protect_process()
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    app(prog_name="edition")
