"""`edition serve`: every campaign becomes a Prefect deployment (Prefect loaded lazily),
and the output folder is published read-only over HTTP on loopback (web/outputs.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.console import user_errors


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    root: Annotated[str, typer.Option(help="Content root (the folder with campaigns/)")] = ".",
    allow: Annotated[list[str] | None, typer.Option(
        "--allow", help="Another folder (or s3://, postgresql://, smtp://, tcp:// prefix) "
                        "runs may read customers from, write output to, deliver to or "
                        "hand batches to")] = None,
    work_pool: Annotated[str | None, typer.Option(
        "--work-pool", help="Register the deployments with this work pool (its workers "
                            "run them) and return, instead of running them here")] = None,
) -> None:
    """Serve every campaign in campaigns/ as a deployment of send-campaign.

    A run started from the UI may read customers and write output only under the content
    root (output under its out/) and the --allow roots. Against a server with basic auth,
    set PREFECT_API_AUTH_STRING (user:password) like for any Prefect client.
    """
    with user_errors():
        from flows.serve import serve_campaigns
        from web.outputs import start_output_server

        serve_campaigns(root, allow=tuple(allow or ()), work_pool=work_pool,
                        publish=start_output_server)
