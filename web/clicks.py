"""Click redirects: `GET <base_url>/c/<token>` → 302 to exactly the URL the token signs.

- A token that verifies (edition.render.tracking.verify: our secret, our layout, an
  http(s) link inside) gets a 302 whose Location is the link it names, byte for byte.
  The request itself (query string, path, headers) never changes where it goes: there is
  no open redirect to abuse.
- Anything else (cut, edited, forged, another secret, not a token) → 404 with no
  Location header; nothing is recorded.
- The click is recorded in the house store (edition.store.clicks), in a worker thread;
  machine clicks (scanner user agents, HEAD, bursts) are recorded apart. A store that is
  down costs the record, never the reader's redirect (logged).
- Logs name the campaign and module, never the customer or the link's token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import string
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from edition.render.tracking import (
    SECRET_ENV,
    Click,
    InvalidClick,
    TrackingSecretError,
    secrets_from_env,
    verify,
)
from edition.store.clicks import ClickStore, scanner_reason
from edition.store.database import StoreError, store_location_by_name

log = logging.getLogger("edition.clicks")

# every printable ASCII character stays as it is: the Location is the signed URL itself
_PRINTABLE = "".join(c for c in string.printable if c not in string.whitespace)
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex, nofollow", "X-Content-Type-Options": "nosniff"}


class ClickService:
    """The secrets, the content root and one click store per location."""

    def __init__(self, root: Path, secrets: Sequence[bytes], store: str | None = None):
        if not secrets:
            raise ValueError("click redirects need the signing secret")
        self.root = root
        self.secrets = tuple(secrets)
        self.store = store
        self._stores: dict[str, ClickStore] = {}
        self._lock = threading.Lock()
        # the client's hash: keyed, so the store never holds a guessable address
        self._client_key = hmac.new(self.secrets[0], b"edition click client",
                                    hashlib.sha256).digest()

    def store_for(self, campaign: str) -> ClickStore:
        location = self.store or store_location_by_name(self.root, campaign)
        with self._lock:
            found = self._stores.get(location)
            if found is None:
                found = self._stores[location] = ClickStore(location, self.root)
            return found

    def client(self, request: Request) -> str:
        address = request.client.host if request.client else ""
        agent = request.headers.get("user-agent", "")
        return hmac.new(self._client_key, f"{address}\0{agent}".encode(),
                        hashlib.sha256).hexdigest()[:32]

    def record(self, click: Click, request: Request) -> bool:
        reason = scanner_reason(request.headers.get("user-agent", ""), request.method)
        return self.store_for(click.campaign).record(
            campaign=click.campaign, mailing=click.mailing, version=click.version,
            module=click.module, url=click.url, segments=click.segments,
            customer_id=click.customer_id, client=self.client(request),
            machine_reason=reason)

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()


def click_service(root: Path, fallback: Sequence[bytes], store: str | None = None
                  ) -> ClickService:
    """The service with `EDITION_TRACKING_SECRET`'s secrets when set, else `fallback` (the
    unsubscribe secrets, which sign click tokens when no tracking secret is set)."""
    try:
        secrets = secrets_from_env({SECRET_ENV: os.environ.get(SECRET_ENV, "")})
    except TrackingSecretError:
        if os.environ.get(SECRET_ENV, "").strip():
            raise   # set but unusable: say so rather than verify with another secret
        secrets = tuple(fallback)
    return ClickService(root, secrets, store)


def location(url: str) -> str:
    """The Location header for a signed link: the URL itself; only characters a header
    cannot carry (non-ASCII, spaces) are percent-encoded, as a browser would send them."""
    return url if all(c in _PRINTABLE for c in url) else quote(url, safe=_PRINTABLE)


def click_routes(service: ClickService) -> list[Route]:
    """The routes to mount in front of an app's catch-all: `/c/<token>` under any prefix
    (the reverse proxy may forward base_url's path as it is)."""

    async def click(request: Request) -> Response:
        try:
            target = verify(request.path_params["token"], service.secrets)
        except InvalidClick:
            log.info("refused a click: the token does not verify")
            return PlainTextResponse("not a link of ours", status_code=404, headers=_HEADERS)
        try:
            person = await run_in_threadpool(service.record, target, request)
            log.info("click on %s/%s (%s)", target.campaign, target.module or "template",
                     "person" if person else "machine")
        except StoreError as exc:
            log.error("could not record a click for %s: %s", target.campaign, exc)
        return Response(status_code=302, headers=_HEADERS | {"Location": location(target.url)})

    return [Route("/c/{token}", click, methods=["GET", "HEAD"]),
            Route("/{prefix:path}/c/{token}", click, methods=["GET", "HEAD"])]


__all__ = ["ClickService", "click_routes", "click_service", "location"]
