"""A module's front matter (design.md, "Module file"): the engine's keys, checked for shape.

Any other key is the team's own and lands in the module's `meta`; only a key that looks
like a misspelt engine key is worth a word (`front_matter_notes`). What needs more than
the front matter itself (the body, the kind folder) is checked by content/modules.py.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from edition.content.errors_at_lines import fail, near_miss

MODULE_KINDS = ("article", "offer", "greeting")
_MODULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def _date(value: object, info: ValidationInfo) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise fail(f"{info.field_name}: {value!r} is not a date (use YYYY-MM-DD)") from None


def _names(value: object, info: ValidationInfo) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        raise fail(f"{info.field_name}: expected a list of names, got {value!r}")
    return frozenset(str(v).strip() for v in value)


class FrontMatter(BaseModel):
    """A module's front matter (design.md, "Module file").

    These keys are the engine's; any other key is the team's own and lands in the
    module's `meta` (`cta: Book my review` → `{{ o.meta.cta }}`). Only a key that looks
    like a misspelt one of these is worth a word (`front_matter_notes`).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str | None = None
    kind: str | None = None
    title: Any = None
    segments: frozenset[str] | None = None
    locales: frozenset[str] | None = None
    interests: frozenset[str] | None = None
    priority: int = 0
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    campaigns: frozenset[str] | None = None
    summary: Any = None
    image: Any = None
    author: Any = None
    tags: Any = None

    _dates = field_validator("valid_from", "valid_until", mode="before")(_date)
    _lists = field_validator("segments", "locales", "interests", "campaigns",
                             mode="before")(_names)

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: object) -> object:
        if value is not None and not _MODULE_ID.match(str(value)):
            raise fail(f"id {str(value)!r} may only use letters, digits, '.', '_' and '-'")
        return None if value is None else str(value)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: object) -> object:
        if value is not None and value not in MODULE_KINDS:
            raise fail(f"unknown kind {value!r} (expected one of: {', '.join(MODULE_KINDS)})")
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"priority: {value!r} is not a whole number")
        return value


def front_matter_notes(meta: Mapping[str, object]) -> list[tuple[str, str]]:
    """(key, warning) for each key of the module's own that looks like a misspelt engine
    key: `valid_untill` is kept in meta, but the module would never expire."""
    known = list(FrontMatter.model_fields)
    notes = []
    for key in meta:
        hint = near_miss(str(key), known)
        if hint is not None and hint not in meta:
            notes.append((str(key), f"front matter key {str(key)!r}: did you mean {hint!r}? "
                                    f"(kept in meta as the module's own key)"))
    return notes
