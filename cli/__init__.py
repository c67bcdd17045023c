"""The `edition` command line: one module per verb; the only place that imports typer/rich.

A verb's module is imported when the verb is used, not at start: `edition run` loads
run's module tree only (the campaign, render and run engine), not approve's, serve's or
the web's. Importing every verb up front cost ~0.6 s of every command's start here.
`edition --help` imports them all, to list each verb with its own help.
"""

from __future__ import annotations

import functools
import importlib

import typer
from typer._click import Command, Context  # typer vendors click since 0.2x: its classes
from typer.core import TyperGroup

import flows  # noqa: F401  (first: Prefect's environment defaults, before any verb loads it)

# verb -> the cli module that registers it, in --help's order
VERBS = {
    "run": "run", "preview": "preview", "validate": "validate", "versions": "versions",
    "sample-data": "sample_data", "serve": "serve", "web": "web",
    "unsubscribe-server": "web", "approve": "approve", "send": "send", "diff": "diff",
    "replay": "replay", "events": "events", "experiment": "experiment",
    "preferences": "preferences",
}


@functools.cache
def verbs_of(module: str) -> TyperGroup:
    """The commands one cli module registers (its `register(app)`), as click commands."""
    holder = typer.Typer(pretty_exceptions_enable=False)
    importlib.import_module(f"cli.{module}").register(holder)
    return typer.main.get_group(holder)


class LazyVerbs(TyperGroup):
    """The verbs by name; a verb's module is imported on first use (see the docstring)."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        module = VERBS.get(cmd_name)
        return verbs_of(module).get_command(ctx, cmd_name) if module else None


app = typer.Typer(
    name="edition",
    cls=LazyVerbs,
    help="Mass customization for marketing communication: one edition per customer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _edition() -> None:
    # a callback makes typer build a group (LazyVerbs) although no verb is registered here
    pass


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
