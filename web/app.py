"""`edition web`: one ASGI app (Starlette) for everything a recipient touches.

Routes, in order (the unsubscribe takes any path, so it goes last):
- `GET /healthz` → 200 `{"status": "ok"}` (the proxy's and the tests' health check);
- the preference center (web/preferences.py): `/preferences`, or any path ending in it;
  also the path a campaign's `preferences.url` names, whatever it is;
- the one-click unsubscribe (web/unsubscribe.py): any other path, as today's links use.

- `POST /events/ses` (web/events.py): SES bounces and complaints through SNS;
- `GET /c/<token>` (web/clicks.py): a click's 302 to exactly the URL the token signs.

Route modules are mounted here, before the unsubscribe. Every
body is read bounded and parsed in a worker thread (web/forms.py); store work runs in
worker threads too, never on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edition.store.suppressions import redacted
from web import preferences, unsubscribe
from web.clicks import click_routes, click_service
from web.events import SesEndpoint
from web.events import routes as event_routes
from web.pages import Pages

log = logging.getLogger("edition.unsubscribe")


def create_app(root: str | Path, *, secrets: Sequence[bytes], store: str | None = None,
               events: SesEndpoint | None = None) -> Starlette:
    """The ASGI app. `root`: the content root (campaigns/, templates/ and the default
    store); `secrets`: edition.render.unsubscribe.secrets_from_env(); `store`: one store for
    every campaign instead of each campaign's own."""
    service = unsubscribe.UnsubscribeService(Path(root), secrets, store)
    pages = Pages(Path(root))
    # POST /events/ses (web/events.py): SES bounces and complaints through SNS
    events = events or SesEndpoint(Path(root), secrets=secrets, store=store)
    clicks = click_service(Path(root), secrets, store)   # click redirects (/c/...)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for name in (unsubscribe.PAGE, preferences.PAGE):
            for problem in await run_in_threadpool(pages.warm, name):
                log.error("the content root's page template fails, the built-in one is "
                          "shown instead: %s", problem)
        try:
            yield
        finally:
            service.close()
            events.close()
            clicks.close()

    center = preferences.routes(service, pages)
    (leave,) = unsubscribe.routes(service, pages)

    async def anywhere(request: Request) -> Response:
        # a campaign's preferences.url may be any path: its token says which campaign
        if await run_in_threadpool(preferences.at_own_path, service, pages, request):
            return await center[0].endpoint(request)  # type: ignore[no-any-return]
        return await leave.endpoint(request)  # type: ignore[no-any-return]

    app = Starlette(routes=[
        Route("/healthz", health, methods=["GET"]),
        *event_routes(events),
        *click_routes(clicks),
        *center,
        Route(leave.path, anywhere, methods=["GET", "POST"]),   # any path: last
    ], lifespan=lifespan)
    app.state.service = service
    return app


def describe(app: Starlette) -> str:
    """Where the server writes, for its start-up message (a password in a URL hidden)."""
    service: unsubscribe.UnsubscribeService = app.state.service
    if service.store:
        return f"writing to {redacted(service.store)}"
    return (f"writing to each campaign's suppression store under {service.root} "
            f"(default {service.root / 'out' / 'suppression.sqlite'})")


__all__ = ["create_app", "describe"]
