"""`edition serve`: every campaign becomes a Prefect deployment (Prefect loaded lazily)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.console import user_errors


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    root: Annotated[str, typer.Option(help="Content root (the folder with campaigns/)")] = ".",
    allow: Annotated[list[str] | None, typer.Option(
        "--allow", help="Another folder (or s3://, postgresql:// prefix) runs may read "
                        "customers from or write output to")] = None,
) -> None:
    """Serve every campaign in campaigns/ as a deployment of send-campaign.

    A run started from the UI may read customers and write output only under the content
    root and the --allow roots.
    """
    with user_errors():
        from flows.serve import serve_campaigns

        serve_campaigns(root, allow=tuple(allow or ()))
