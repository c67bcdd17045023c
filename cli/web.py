"""`edition web`: everything a recipient touches (one-click unsubscribe, the preference
center, ...), served by uvicorn. `edition unsubscribe-server` is the same command under
its older name, so existing deployments keep working."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import err, user_errors


def register(app: typer.Typer) -> None:
    app.command("web")(web)
    app.command("unsubscribe-server", help="The older name of `edition web` (same options).",
                hidden=False)(web)


def web(
    host: Annotated[str, typer.Option(help="Address to listen on (keep 127.0.0.1 behind a "
                                           "reverse proxy)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on", min=0, max=65535)] = 8025,
    root: Annotated[str, typer.Option(help="Content root (the folder with campaigns/)")] = ".",
    store: Annotated[str | None, typer.Option(
        help="One house store for every campaign: a file or a database URL "
             "(default: each campaign's own; EDITION_STORE also works)")] = None,
    forwarded_allow_ips: Annotated[str, typer.Option(
        help="Proxies whose X-Forwarded-* headers are trusted")] = "127.0.0.1",
) -> None:
    """Answer the unsubscribe and preference-center links of every campaign under ROOT
    (needs EDITION_UNSUBSCRIBE_SECRET, the secret the links were signed with)."""
    with user_errors():
        import copy

        import uvicorn
        from uvicorn.config import LOGGING_CONFIG

        from edition.errors import UsageError
        from edition.render.unsubscribe import secrets_from_env
        from web.app import create_app, describe

        secrets = secrets_from_env()
        content = Path(root).resolve()
        if not content.is_dir():   # it would serve nothing, and answer every link 404
            raise UsageError(f"--root {root}: no such folder (the content root, with "
                             f"campaigns/ in it)")
        if store and "://" not in store:
            store = str(Path(store).expanduser().resolve())  # relative to where we start
        app = create_app(content, secrets=secrets, store=store)
        err.print(f"edition web on http://{host}:{port}/ — {describe(app)}", markup=False)
        # uvicorn's own logging, plus the server's lines (campaign and scope, no customer);
        # no access log: the URLs hold tokens
        logging = copy.deepcopy(LOGGING_CONFIG)
        logging["loggers"]["edition.unsubscribe"] = {"handlers": ["default"], "level": "INFO",
                                                     "propagate": False}
        uvicorn.run(app, host=host, port=port, access_log=False, log_config=logging,
                    proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips,
                    log_level="info", h11_max_incomplete_event_size=16 * 1024)
