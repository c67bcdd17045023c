"""`edition serve`: every campaign becomes a Prefect deployment (Prefect loaded lazily)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.console import user_errors


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    root: Annotated[str, typer.Option(help="Content root (the folder with campaigns/)")] = ".",
) -> None:
    """Serve every campaign in campaigns/ as a deployment of send-campaign."""
    with user_errors():
        from flows.serve import serve_campaigns

        serve_campaigns(root)
