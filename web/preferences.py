"""The preference center: `GET <path ending in /preferences>?token=...` shows the
customer's choices, a POST of the page's form records them (design.md, "When customers
answer").

- The token is the one the unsubscribe link carries (same secret, same rotation): a
  token that does not verify gets 400 and nothing is read or recorded.
- GET never changes anything (mail scanners open every link).
- A POST is read bounded and parsed off the event loop (web/forms.py); a field or value
  the page does not offer is 400 with nothing recorded; the choices and their consent
  record are written in one transaction (edition/feedback/preferences.py).
- The page is `templates/preferences.html.j2` of the content root when the team has
  one, else ours, in the customer's language (their choice, else the token's locale,
  else Accept-Language); it needs no JavaScript.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from babel import Locale
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from edition.content.campaign import by_locale
from edition.feedback.preferences import (
    WEEKDAYS,
    BadChoice,
    Offer,
    choices_from_form,
    current,
    record,
)
from edition.feedback.resubscribe import FORM as RESUBSCRIBE
from edition.feedback.resubscribe import is_out, resubscribe
from edition.render.unsubscribe import TOKEN_PARAM, InvalidToken, Subscriber
from edition.store.database import StoreError
from edition.store.preferences import Choices
from edition.store.suppressions import ALL_MARKETING, Entry
from web.forms import BadForm, TooLarge, read_form
from web.pages import Pages, accepted, choose_language, languages
from web.unsubscribe import HEADERS, UnsubscribeService, client_of

log = logging.getLogger("edition.unsubscribe")

PAGE = "preferences.html.j2"


def time_offered(data: dict[str, Any]) -> bool:
    """Whether the campaign's page offers a preferred day and hour (preferences.time)."""
    block = data.get("preferences")
    return isinstance(block, dict) and block.get("time") is True


def frequency_offered(data: dict[str, Any]) -> bool:
    """A transactional campaign (a bill) offers no "how often" and no pause: it must come."""
    return data.get("kind") != "transactional"


def topics_of(data: dict[str, Any], language: str) -> list[tuple[str, str]]:
    """The campaign's topics as (key, label in the language), as its file lists them."""
    block = data.get("preferences")
    topics = block.get("topics") if isinstance(block, dict) else None
    if not isinstance(topics, dict):
        return []
    found = []
    for key, label in topics.items():
        if isinstance(label, dict):
            label = by_locale({str(k): str(v) for k, v in label.items()}, language)
        found.append((str(key), str(label or key)))
    return found


def at_own_path(service: UnsubscribeService, pages: Pages, request: Request) -> bool:
    """Whether the request is for the preference center at the path the token's campaign
    names in `preferences.url` (any path, not only one ending in /preferences), unless
    that is also its unsubscribe path."""
    try:
        who = service.subscriber(request)
    except InvalidToken:
        return False   # the unsubscribe answers 400 all the same
    data = pages.campaign_data(who.campaign)
    block = data.get("preferences")
    url = block.get("url") if isinstance(block, dict) else None
    if not isinstance(url, str):
        return False
    path = urlsplit(url).path.rstrip("/")
    leave = data.get("unsubscribe_url")
    if isinstance(leave, str) and urlsplit(leave).path.rstrip("/") == path:
        return False
    return bool(path) and path == request.url.path.rstrip("/")


def routes(service: UnsubscribeService, pages: Pages) -> list[Route]:
    """The preference center's routes: `/preferences` and any path ending in it."""

    def language_for(request: Request, who: Subscriber | None,
                     choices: Choices | None = None) -> str:
        wanted = [choices.locale] if choices is not None and choices.locale else []
        wanted += [who.locale] if who is not None and who.locale else []
        return choose_language(wanted + accepted(request.headers.get("accept-language", "")))

    def page(request: Request, state: str, who: Subscriber | None = None, *,
             choices: Choices | None = None, status: int = 200) -> Response:
        language = language_for(request, who, choices)
        context: dict[str, Any] = {"state": state, "brand": ""}
        if who is not None:
            data = pages.campaign_data(who.campaign)
            chosen = choices or Choices()
            offered = topics_of(data, language)
            context |= {
                "out": out_of(who, tuple(k for k, _ in offered)),
                "brand": pages.brand(who.campaign, language).display_name,
                "campaign": who.campaign,
                "topics": [{"key": k, "label": label,
                            "checked": chosen.topics is None or k in chosen.topics}
                           for k, label in offered],
                "frequency": chosen.frequency or "every",
                "paused_until": chosen.paused_until or "",
                "format": chosen.format or "html",
                "large_type": bool(chosen.large_type),
                "tracking": "off" if chosen.tracking is False else "on",
                "time_offered": time_offered(data),
                "frequency_offered": frequency_offered(data),
                "day": chosen.day or "",
                "hour": "" if chosen.hour is None else str(chosen.hour),
                "weekdays": [(key, Locale.parse(language).days["format"]["wide"][i])
                             for i, key in enumerate(WEEKDAYS)],
                "locale": (chosen.locale or who.locale or language).split("-")[0],
                "languages": [{"tag": tag, "name": Locale.parse(tag).get_display_name(tag)}
                              for tag in languages()],
                "action": f"?{TOKEN_PARAM}={request.query_params.get(TOKEN_PARAM, '')}",
            }
        text = pages.render(PAGE, language, context)
        return HTMLResponse(text, status_code=status,
                            headers=HEADERS | {"Content-Language": language})

    def out_of(who: Subscriber, topics: tuple[str, ...]) -> dict[str, Any] | None:
        """Whether (and why) the customer gets nothing now: the page then offers
        "subscribe again" above the choices."""
        if not frequency_offered(pages.campaign_data(who.campaign)):
            return None   # transactional: unsubscribes and pauses do not stop it
        store = service.store_for(who.campaign)
        why = is_out(store.database, who.campaign, who.customer_id, topics)
        if why is None:
            return None
        if isinstance(why, Entry):
            return {"why": "unsubscribed", "since": why.day,
                    "everything": why.scope == ALL_MARKETING}
        return {"why": "paused" if why.frequency == "paused" else "topics", "since": ""}

    def come_back(request: Request, who: Subscriber,
                  fields: list[tuple[str, str]]) -> Response:
        """The "subscribe again" button: its form names nothing else."""
        if any(name not in {"form", "token"} for name, _ in fields):
            return page(request, "refused", status=400)
        data = pages.campaign_data(who.campaign)
        language = language_for(request, who)
        store = service.store_for(who.campaign)
        done = resubscribe(store.database, campaign=who.campaign,
                           customer_id=who.customer_id, address_hash=who.address_hash,
                           source="web", form=RESUBSCRIBE,
                           form_version=pages.version(PAGE, language),
                           client=client_of(request),
                           topics=tuple(k for k, _ in topics_of(data, "en")))
        log.info("resubscribe %s for campaign %s",
                 "recorded" if done.change else "changed nothing", who.campaign)
        stored = current(store.database, who.campaign, who.customer_id)
        return page(request, "resubscribed", who, choices=stored.choices if stored else None)

    def show(request: Request, who: Subscriber) -> Response:
        store = service.store_for(who.campaign)
        stored = current(store.database, who.campaign, who.customer_id)
        return page(request, "show", who, choices=stored.choices if stored else None)

    def save(request: Request, who: Subscriber, fields: list[tuple[str, str]]) -> Response:
        if ("form", RESUBSCRIBE) in fields:
            return come_back(request, who, fields)
        data = pages.campaign_data(who.campaign)
        offer = Offer(tuple(k for k, _ in topics_of(data, "en")), languages(),
                      time_offered(data), frequency_offered(data))
        try:
            choices = choices_from_form(fields, offer)
        except BadChoice as exc:
            log.info("refused preferences for %s: %s", who.campaign, exc)
            return page(request, "refused", status=400)
        language = language_for(request, who, choices)
        store = service.store_for(who.campaign)
        changed = record(store.database, campaign=who.campaign, customer_id=who.customer_id,
                         choices=choices, source="web", form="preferences",
                         form_version=pages.version(PAGE, language),
                         client=client_of(request))
        log.info("preferences %s for campaign %s", "changed" if changed else "unchanged",
                 who.campaign)
        stored = current(store.database, who.campaign, who.customer_id)
        return page(request, "saved", who, choices=stored.choices if stored else choices)

    async def preferences(request: Request) -> Response:
        try:
            who = service.subscriber(request)
        except InvalidToken:
            log.info("refused a preferences request: the token does not verify")
            return await run_in_threadpool(page, request, "bad", status=400)
        try:
            if request.method != "POST":
                return await run_in_threadpool(show, request, who)
            try:
                fields = await read_form(request)
            except TooLarge:
                return Response("request body too large", status_code=413, headers=HEADERS)
            except BadForm as exc:
                log.info("refused preferences for %s: %s", who.campaign, exc)
                return await run_in_threadpool(page, request, "refused", status=400)
            return await run_in_threadpool(save, request, who, fields)
        except StoreError as exc:
            log.error("the preference store failed for %s: %s", who.campaign, exc)
            return await run_in_threadpool(page, request, "failed", status=503)

    return [Route("/preferences", preferences, methods=["GET", "POST"]),
            Route("/{prefix:path}/preferences", preferences, methods=["GET", "POST"])]


__all__ = ["PAGE", "at_own_path", "routes", "topics_of"]
