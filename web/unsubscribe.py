"""The unsubscribe server: an ASGI app (Starlette) behind the campaign's `unsubscribe_url`.

- `POST <any path>?token=...` with the RFC 8058 body `List-Unsubscribe=One-Click`
  (form-urlencoded or multipart, as mail programs send it) records the unsubscribe in
  the campaign's suppression store and answers 200. Idempotent: a retry or a second
  click changes nothing. The confirmation page's buttons post the same body (plus
  `scope=all` for "all marketing e-mail", `via=page` to tell the two apart).
- `GET <any path>?token=...` only shows the confirmation page: mail scanners and link
  previewers fetch every link in a message, so a GET must never unsubscribe anyone.
- A token that does not verify (edited, cut, another secret) → 400, nothing recorded.
- `GET /healthz` → 200 `{"status": "ok"}` (for the proxy's and the tests' health checks).

Any path is accepted for the unsubscribe itself, so the reverse proxy may forward the
public URL's path as it is. Pages send no referrer (the token is in the URL), cannot be
framed, and are never cached. Logs name the campaign and scope, never the customer.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from edition.suppression_store import (
    ALL_MARKETING,
    StoreError,
    SuppressionStore,
    redacted,
    store_location_by_name,
)
from edition.unsubscribe import ONE_CLICK, TOKEN_PARAM, InvalidToken, Subscriber, verify

log = logging.getLogger("edition.unsubscribe")

MAX_BODY = 64 * 1024
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}

_WORDS = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Stop receiving <b>{campaign}</b>?",
        "one": "Unsubscribe from {campaign}",
        "all": "Unsubscribe from all our marketing e-mail",
        "done": "You are unsubscribed from <b>{campaign}</b>.",
        "done_all": "You are unsubscribed from all our marketing e-mail.",
        "already": "You were already unsubscribed from <b>{campaign}</b>.",
        "later": "An edition already on its way may still arrive; no new one will.",
        "bad": "This unsubscribe link is not valid. Please use the link in the latest "
               "e-mail you received from us, or reply to it and we will unsubscribe you.",
        "failed": "We could not record your request just now. Please try again in a few "
                  "minutes.",
    },
    "es": {
        "title": "Darse de baja",
        "ask": "¿Dejar de recibir <b>{campaign}</b>?",
        "one": "Darme de baja de {campaign}",
        "all": "Darme de baja de todos sus correos comerciales",
        "done": "Se ha dado de baja de <b>{campaign}</b>.",
        "done_all": "Se ha dado de baja de todos nuestros correos comerciales.",
        "already": "Ya se había dado de baja de <b>{campaign}</b>.",
        "later": "Puede que aún llegue una edición ya enviada; no recibirá ninguna nueva.",
        "bad": "Este enlace para darse de baja no es válido. Use el enlace del último correo "
               "que le enviamos, o respóndalo y le daremos de baja.",
        "failed": "No hemos podido registrar su solicitud. Inténtelo de nuevo en unos "
                  "minutos.",
    },
}


def _language(request: Request) -> str:
    """`es` when the browser prefers Spanish over English, else `en`."""
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in _WORDS:
            return tag
    return "en"


def _page(words: dict[str, str], body: str, status: int = 200) -> HTMLResponse:
    text = (f"<!doctype html><html><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{words['title']}</title><style>"
            "body{font:18px/1.5 system-ui,sans-serif;max-width:34em;margin:3em auto;"
            "padding:0 1em;color:#222}button{font:inherit;padding:.6em 1.2em;margin:.3em 0;"
            "cursor:pointer}.secondary{background:none;border:1px solid #888}"
            f"</style></head><body><main>{body}</main></body></html>")
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


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

    def record(self, who: Subscriber, *, everything: bool, source: str) -> bool:
        store = self.store_for(who.campaign)
        return store.record(who.campaign, who.customer_id, who.address_hash, source,
                            scope=ALL_MARKETING if everything else who.campaign)

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()


async def _form(request: Request) -> dict[str, str] | None:
    """The POSTed fields (form-urlencoded or multipart), or None when the body is too big."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    kind = request.headers.get("content-type", "")
    if kind.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + kind.encode("latin-1") + b"\r\n\r\n" + body)
        fields: dict[str, str] = {}
        if message.is_multipart():
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if isinstance(name, str):
                    payload = part.get_payload(decode=True) or b""
                    fields.setdefault(name, payload.decode("utf-8", "replace").strip())
        return fields
    text = body.decode("utf-8", "replace")
    return {k: v.strip() for k, v in reversed(parse_qsl(text, keep_blank_values=True))}


def create_app(root: str | Path, *, secrets: Sequence[bytes], store: str | None = None
               ) -> Starlette:
    """The ASGI app. `root`: the content root (campaigns/ and the default store);
    `secrets`: edition.unsubscribe.secrets_from_env(); `store`: one store for every
    campaign instead of each campaign's own."""
    service = UnsubscribeService(Path(root), secrets, store)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def unsubscribe(request: Request) -> Response:
        words = _WORDS[_language(request)]
        try:
            who = service.subscriber(request)
        except InvalidToken:
            log.info("refused an unsubscribe request: the token does not verify")
            return _page(words, f"<p>{words['bad']}</p>", 400)
        name = html.escape(who.campaign)
        if request.method == "POST":
            return await _post(request, who, words, name)
        try:
            already = await run_in_threadpool(service.unsubscribed, who)
        except StoreError:
            already = False  # the page still works; the POST will say if the store is down
        if already:
            return _page(words, f"<p>{words['already'].format(campaign=name)}</p>"
                         + _form_html(words, name, only_all=True))
        return _page(words, f"<h1>{words['title']}</h1><p>"
                     f"{words['ask'].format(campaign=name)}</p>" + _form_html(words, name))

    async def _post(request: Request, who: Subscriber, words: dict[str, str],
                    name: str) -> Response:
        fields = await _form(request)
        if fields is None:
            return Response("request body too large", status_code=413, headers=_HEADERS)
        if fields.get("List-Unsubscribe") != ONE_CLICK.split("=", 1)[1]:
            return _page(words, f"<p>{words['bad']}</p>", 400)
        everything = fields.get("scope") == "all"
        source = "page" if fields.get("via") == "page" else "one-click"
        try:
            new = await run_in_threadpool(service.record, who, everything=everything,
                                          source=source)
        except StoreError as exc:
            log.error("could not record an unsubscribe for %s: %s", who.campaign, exc)
            return _page(words, f"<p>{words['failed']}</p>", 503)
        log.info("unsubscribe %s: campaign %s, scope %s, via %s",
                 "recorded" if new else "repeated", who.campaign,
                 "all marketing" if everything else "campaign", source)
        done = words["done_all"] if everything else words["done"].format(campaign=name)
        return _page(words, f"<p>{done}</p><p>{words['later']}</p>")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = Starlette(routes=[
        Route("/healthz", health, methods=["GET"]),
        Route("/{path:path}", unsubscribe, methods=["GET", "POST"]),
    ], lifespan=lifespan)
    app.state.service = service
    return app


def _form_html(words: dict[str, str], name: str, *, only_all: bool = False) -> str:
    """The buttons: each POSTs the one-click body to this same URL (token included)."""
    hidden = ('<input type="hidden" name="List-Unsubscribe" value="One-Click">'
              '<input type="hidden" name="via" value="page">')
    one = ("" if only_all else
           f'<form method="post">{hidden}<button type="submit" id="unsubscribe">'
           f'{words["one"].format(campaign=name)}</button></form>')
    everything = (f'<form method="post">{hidden}<input type="hidden" name="scope" '
                  f'value="all"><button type="submit" class="secondary" id="unsubscribe-all">'
                  f'{words["all"]}</button></form>')
    return one + everything


def describe(app: Starlette) -> str:
    """Where the server writes, for its start-up message (a password in a URL hidden)."""
    service: UnsubscribeService = app.state.service
    if service.store:
        return f"writing to {redacted(service.store)}"
    return (f"writing to each campaign's suppression store under {service.root} "
            f"(default {service.root / 'out' / 'suppression.sqlite'})")


__all__ = ["UnsubscribeService", "create_app", "describe"]
