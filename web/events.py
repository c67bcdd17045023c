"""`POST /events/ses`: SES notifications through SNS (an HTTPS subscription of the topic
SES's configuration set publishes to).

Each request is read bounded (`MAX_EVENT_BODY`), then parsed, verified and recorded in a
worker thread, never on the event loop. Only messages SNS signed for the topics named in
`EDITION_SNS_TOPIC_ARNS` are taken (edition.feedback.events.sns: the signing
certificate is fetched only from an SNS host); a `SubscriptionConfirmation` for such a
topic is confirmed by a GET of its SubscribeURL, which passes the same host check.
Answers: 200 recorded (or a repeat), 400 not an SNS/SES message, 403 not signed by SNS
for our topics, 413 too large, 503 the store is down (SNS retries).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edition.feedback.events import Ingester
from edition.feedback.events.ingest import HouseStores, soft_bounce_rules
from edition.feedback.events.sent_messages import SentMessages
from edition.feedback.events.ses import NotAnEvent, events_from_ses
from edition.feedback.events.sns import SnsRefused, SnsVerifier, sns_url, topics_from_env
from edition.store.database import StoreError
from web.forms import BadForm, TooLarge, read_body

log = logging.getLogger("edition.events")

MAX_EVENT_BODY = 512 * 1024   # SNS messages are at most 256 KB; JSON escaping adds some
PATH = "/events/ses"


def confirm_subscription(url: str) -> None:
    """GET an SNS SubscribeURL (checked again here): no redirects, short timeout."""
    import httpx

    checked = sns_url(url)
    try:
        with httpx.Client(follow_redirects=False, timeout=10.0, trust_env=False) as client:
            answer = client.get(checked)
    except httpx.HTTPError as exc:
        raise SnsRefused(f"cannot confirm the subscription: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise SnsRefused(f"confirming the subscription answered {answer.status_code}")


class SesEndpoint:
    """Verifies, parses and records what SNS posts; thread-safe (called in workers)."""

    def __init__(self, root: Path, *, secrets: Sequence[bytes], store: str | None = None,
                 verifier: SnsVerifier | None = None,
                 confirm: Callable[[str], None] = confirm_subscription):
        self.stores = HouseStores(root, store)
        self.secrets = tuple(secrets)
        self.verifier = verifier or SnsVerifier(topics_from_env())
        self.confirm = confirm
        self.rules = soft_bounce_rules(root)
        self.sent = SentMessages(root)   # SES's messageId -> the message (send ledgers)
        self._ingester: Ingester | None = None
        self._lock = threading.Lock()

    def ingester(self) -> Ingester:
        with self._lock:
            if self._ingester is None:
                self._ingester = Ingester(self.stores, rule_for=self.rules.get)
            return self._ingester

    def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) for one POSTed body."""
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return 400, {"error": "not JSON"}
        try:
            message = self.verifier.verify(message)
        except SnsRefused as exc:
            log.warning("refused an SNS message: %s", exc)
            return 403, {"error": "not a message SNS signed for this server's topics"}
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            try:
                self.confirm(message["SubscribeURL"])
            except SnsRefused as exc:
                log.error("could not confirm the subscription to %s: %s", message["TopicArn"],
                          exc)
                return 502, {"error": "could not confirm the subscription"}
            log.info("confirmed the subscription to %s", message["TopicArn"])
            return 200, {"confirmed": message["TopicArn"]}
        if kind == "UnsubscribeConfirmation":
            log.warning("SNS says the subscription to %s ended", message["TopicArn"])
            return 200, {"unsubscribed": message["TopicArn"]}
        try:
            found = events_from_ses(message, self.secrets, sent=self.sent)
        except NotAnEvent as exc:
            log.info("an SNS notification that is no SES event: %s", exc)
            return 200, {"ignored": "not an SES event"}   # SNS must not retry it
        try:
            done = self.ingester().ingest(found)
        except StoreError as exc:
            log.error("could not record SES events: %s", exc)
            return 503, {"error": "the store is not available"}
        log.info("SES events: %s", ", ".join(f"{n} {k}" for k, n in sorted(done.counts.items())))
        return 200, {"recorded": dict(done.counts)}

    def close(self) -> None:
        with self._lock:
            self._ingester = None
        self.stores.close()


def routes(endpoint: SesEndpoint) -> list[Route]:
    """The event routes the app mounts."""

    async def ses(request: Request) -> Response:
        try:
            body = await read_body(request, MAX_EVENT_BODY)
        except TooLarge:
            return JSONResponse({"error": "body too large"}, status_code=413)
        except BadForm:
            return JSONResponse({"error": "bad request"}, status_code=400)
        status, answer = await run_in_threadpool(endpoint.handle, body)
        return JSONResponse(answer, status_code=status, headers={"Cache-Control": "no-store"})

    return [Route(PATH, ses, methods=["POST"])]


__all__ = ["MAX_EVENT_BODY", "PATH", "SesEndpoint", "confirm_subscription", "routes"]
