"""A campaign's `preferences:` block: where its preference center is, and what it offers.

    preferences:
      url: https://acme.example/preferences   # where `edition web` answers (behind a proxy)
      topics:                                 # key: label (per locale, like `title`)
        garden: Gardening
        travel: {en: Travel, es: Viajes}

Each topic key is matched to module `interests`: the topics a customer keeps become
their interests for selection; a topic switched off is the per-topic unsubscribe.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from edition.content.campaign_values import Strict
from edition.content.errors_at_lines import fail

TOPIC_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")


class PreferenceSettings(Strict):
    """`preferences: {url: URL, topics: {key: label}, time: true|false}`."""

    url: str
    topics: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    # the page offers a preferred day (of the month, or of the week) and hour, and a send
    # waits for them (audience/preferred_time.py): "send my invoice on the 1st"
    time: bool = False

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        if not (isinstance(value, str) and value.startswith(("https://", "http://"))):
            raise fail("preferences.url must be an http(s) URL where `edition web` answers")
        return value

    @field_validator("topics", mode="before")
    @classmethod
    def _topics(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail("preferences.topics must map topic keys (module interests) to labels, "
                       "e.g. {garden: Gardening}")
        for key, label in value.items():
            if not TOPIC_KEY.match(str(key)):
                raise fail(f"preferences.topics: {key!r} must be a lowercase key like a "
                           f"module interest (letters, digits, '-' or '_')")
            if not isinstance(label, str | dict):
                raise fail(f"preferences.topics.{key} must be a label (text, or per locale)")
        return {str(k): v for k, v in value.items()}


__all__ = ["TOPIC_KEY", "PreferenceSettings"]
