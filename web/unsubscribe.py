"""The one-click unsubscribe of `edition web` (web/app.py), behind the campaign's `unsubscribe_url`.

- `POST <any path>?token=...` with the RFC 8058 body `List-Unsubscribe=One-Click`
  (form-urlencoded or multipart, as mail programs send it) records the unsubscribe in
  the campaign's suppression store and answers 200. Idempotent: a retry or a second
  click changes nothing. The confirmation page's buttons post the same body (plus
  `scope=all` for "all marketing e-mail", `via=page` to tell the two apart).
- `GET <any path>?token=...` only shows the confirmation page: mail scanners and link
  previewers fetch every link in a message, so a GET must never unsubscribe anyone.
- A token that does not verify (edited, cut, another secret) → 400, nothing recorded.
- A body that is not one of those small forms (web/forms.py: bounded, parsed in a worker
  thread, never on the event loop) → 400; one over 64 KB → 413. Nothing recorded.
- `GET /healthz` (web/app.py) → 200 `{"status": "ok"}`.

The pages (web/pages.py) come from `templates/unsubscribe.html.j2` in the content root
when the team has one, else ours, in the customer's language (the token carries their
locale; else the browser's Accept-Language; English and Spanish so far), naming the
campaign by its display name. Any path is accepted for the unsubscribe itself, so the
reverse proxy may forward the public URL's path as it is. Pages send no referrer (the
token is in the URL), cannot be framed, and are never cached. Logs name the campaign and
scope, never the customer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from edition.feedback.preferences import client_hash, log_unsubscribe
from edition.render.unsubscribe import (
    ONE_CLICK,
    TOKEN_PARAM,
    InvalidToken,
    Subscriber,
    verify,
    with_token,
)
from edition.store.suppressions import (
    ALL_MARKETING,
    StoreError,
    SuppressionStore,
    store_location_by_name,
)
from web.forms import BadForm, TooLarge, read_form
from web.pages import Pages, accepted, choose_language

log = logging.getLogger("edition.unsubscribe")

PAGE = "unsubscribe.html.j2"   # templates/unsubscribe.html.j2 in the content root wins
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}


class UnsubscribeService:
    """What the endpoints share: the secrets, the content root and one store per location."""

    def __init__(self, root: Path, secrets: Sequence[bytes], store: str | None = None):
        if not secrets:
            raise ValueError("the unsubscribe server needs the signing secret")
        self.root = root
        self.secrets = tuple(secrets)
        self.store = store
        self._stores: dict[str, SuppressionStore] = {}
        self._lock = threading.Lock()

    def subscriber(self, request: Request) -> Subscriber:
        return verify(request.query_params.get(TOKEN_PARAM, ""), self.secrets)

    def store_for(self, campaign: str) -> SuppressionStore:
        location = self.store or store_location_by_name(self.root, campaign)
        with self._lock:
            store = self._stores.get(location)
            if store is None:
                store = self._stores[location] = SuppressionStore(location, self.root)
            return store

    def unsubscribed(self, who: Subscriber) -> bool:
        store = self.store_for(who.campaign)
        return any(e.kind == "unsubscribed"
                   for e in store.lookup(who.campaign, who.customer_id))

    def record(self, who: Subscriber, *, everything: bool, source: str,
               client: str = "", form_version: str = "") -> bool:
        """Record the unsubscribe, and its consent record when it is new."""
        store = self.store_for(who.campaign)
        scope = ALL_MARKETING if everything else who.campaign
        new = store.record(who.campaign, who.customer_id, who.address_hash, source,
                           scope=scope)
        if new:
            log_unsubscribe(store.database, campaign=who.campaign,
                            customer_id=who.customer_id, scope=scope, source=source,
                            client=client, form_version=form_version)
        return new

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()


def routes(service: UnsubscribeService, pages: Pages) -> list[Route]:
    """The unsubscribe's route: any path (the proxy forwards the public URL's as it is),
    so it goes last in the app's routes."""

    def language_of(request: Request, who: Subscriber | None) -> str:
        wanted = ([who.locale] if who is not None and who.locale else []) + \
            accepted(request.headers.get("accept-language", ""))
        return choose_language(wanted)

    def page(request: Request, state: str, who: Subscriber | None = None, *,
             status: int = 200, everything: bool = False) -> Response:
        language = language_of(request, who)
        brand = pages.brand(who.campaign, language).display_name if who else ""
        text = pages.render(PAGE, language, {"state": state, "brand": brand,
                                             "campaign": who.campaign if who else "",
                                             "everything": everything,
                                             "preferences": _center(request, who)})
        return HTMLResponse(text, status_code=status,
                            headers=HEADERS | {"Content-Language": language})

    async def unsubscribe(request: Request) -> Response:
        try:
            who = service.subscriber(request)
        except InvalidToken:
            log.info("refused an unsubscribe request: the token does not verify")
            return await run_in_threadpool(page, request, "bad", status=400)
        if request.method == "POST":
            return await _post(request, who)
        try:
            already = await run_in_threadpool(service.unsubscribed, who)
        except StoreError:
            already = False  # the page still works; the POST will say if the store is down
        return await run_in_threadpool(page, request, "already" if already else "ask", who)

    async def _post(request: Request, who: Subscriber) -> Response:
        try:
            fields = dict(reversed(await read_form(request)))   # the first of a name wins
        except TooLarge as exc:
            log.info("refused an unsubscribe request for %s: %s", who.campaign, exc)
            return Response("request body too large", status_code=413, headers=HEADERS)
        except BadForm as exc:
            log.info("refused an unsubscribe request for %s: %s", who.campaign, exc)
            return await run_in_threadpool(page, request, "bad", who, status=400)
        if fields.get("List-Unsubscribe") != ONE_CLICK.split("=", 1)[1]:
            return await run_in_threadpool(page, request, "bad", who, status=400)
        everything = fields.get("scope") == "all"
        source = "page" if fields.get("via") == "page" else "one-click"
        # the consent record's "what text": the page's, when the customer used the page
        version = pages.version(PAGE, language_of(request, who)) if source == "page" else ""
        try:
            new = await run_in_threadpool(service.record, who, everything=everything,
                                          source=source, client=client_of(request),
                                          form_version=version)
        except StoreError as exc:
            log.error("could not record an unsubscribe for %s: %s", who.campaign, exc)
            return await run_in_threadpool(page, request, "failed", who, status=503)
        log.info("unsubscribe %s: campaign %s, scope %s, via %s",
                 "recorded" if new else "repeated", who.campaign,
                 "all marketing" if everything else "campaign", source)
        return await run_in_threadpool(page, request, "done", who, everything=everything)

    def _center(request: Request, who: Subscriber | None) -> str:
        """The customer's preference-center link (the same token), when the campaign
        has one: "fewer, not none" is offered before the unsubscribe."""
        if who is None:
            return ""
        block = pages.campaign_data(who.campaign).get("preferences")
        url = block.get("url") if isinstance(block, dict) else None
        if not (isinstance(url, str) and url.startswith(("https://", "http://"))):
            return ""
        return with_token(url, request.query_params.get(TOKEN_PARAM, ""))

    return [Route("/{path:path}", unsubscribe, methods=["GET", "POST"])]


def client_of(request: Request) -> str:
    """The consent record's hash of the client (IP and user agent, never kept as such)."""
    host = request.client.host if request.client else ""
    return client_hash(host, request.headers.get("user-agent", "")[:512])


__all__ = ["HEADERS", "PAGE", "UnsubscribeService", "client_of", "routes"]
