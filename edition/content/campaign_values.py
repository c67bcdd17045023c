"""The small values of a campaign file and how each is checked: slugs, addresses, formats,
texts per locale, counts or percentages, encodings, footers.

Each checker takes what YAML gave and returns the value as the campaign keeps it, or
raises `fail(...)` with the words a marketer reads (errors_at_lines.py puts them at
their line). `Strict` is the base of every block of the campaign: unknown keys are
errors, so a typo cannot silently turn a setting off.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from edition.addresses import AddressError, parse_mailbox
from edition.content.errors_at_lines import fail, near_miss
from edition.errors import UsageError
from edition.naming import FORMATS

FIELD_TYPES = ("text", "number", "integer", "date", "list")
PAGE_SIZES = ("A4", "Letter")
RESERVED_SLOTS = {"customer", "segments", "campaign", "locale", "run", "loop", "self"}
CAMPAIGN_KINDS = ("marketing", "transactional")
APPROVAL_MODES = ("optional", "required")
# What the sample templates print from `footer:`; a team may add keys of its own.
FOOTER_KEYS = ("address", "feedback_url", "phone")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                      r"(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+\Z")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
PASSWORD_IN_URL = re.compile(r"^[\w+.-]+://[^/?#@]*:[^/?#@]*@")


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently turn a setting off."""

    # defer_build: a model's validator is built on first use, not at import; a run uses
    # a few of the many models here (start-up ~0.1 s shorter)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def slug(value: object) -> str | None:
    if value is not None and not SLUG.match(str(value)):
        raise fail(f"name {value!r} must be a slug: lowercase letters, digits and '-'")
    return None if value is None else str(value)


def address(key: str, value: object) -> str | None:
    """`"Acme News <news@acme.example>"`, checked."""
    if value is None:
        return None
    text = str(value)
    try:
        parse_mailbox(text)
    except AddressError as exc:
        raise fail(f"{key} {text!r} is not an email address like "
                   f"\"Acme News <news@acme.example>\" ({exc})") from None
    return text


def formats(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not value:
        raise fail("formats must be a list, e.g. [html, text, eml]")
    bad = [str(v) for v in value if v not in FORMATS]
    if bad:
        raise fail(f"unknown format(s) {', '.join(bad)} (known: {', '.join(FORMATS)})")
    return tuple(f for f in FORMATS if f in value)


def per_locale(value: object, key: str, check: Callable[[str, str], None] | None = None
               ) -> str | dict[str, str] | None:
    """Text, or a mapping of locale to text (`subject: {en: ..., es: ...}`)."""
    if value is None:
        return None
    return texts_per_locale(value, key, check)


def texts_per_locale(value: object, key: str, check: Callable[[str, str], None] | None = None
                     ) -> str | dict[str, str]:
    """`per_locale` of a value that is there."""
    items = value.items() if isinstance(value, dict) else [(None, value)]
    for locale, text in items:
        if not isinstance(text, str) or (locale is not None and not isinstance(locale, str)):
            raise fail(f"{key} must be text, or a mapping of locale to text like "
                       f"{{en: ..., es: ...}}")
        if check is not None:
            check(text, key if locale is None else f"{key}.{locale}")
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    assert isinstance(value, str)   # checked above
    return value


def currency(code: str, where: str) -> None:
    from babel.numbers import list_currencies

    if code not in list_currencies():
        raise fail(f"{where} {code!r} is not an ISO 4217 currency code like EUR or USD")


def count_or_percent(value: object, key: str = "max_failed", what: str = "customers"
                     ) -> tuple[int, bool]:
    """`max_failed: 3` (customers) or `"1%"` (of the customer rows): (number, percent?);
    `max_rejected` the same, in rows."""
    if isinstance(value, tuple):
        return value
    text = str(value).strip()
    percent = text.endswith("%")
    number = text[:-1].strip() if percent else text
    if isinstance(value, bool) or not number.isdigit():
        raise fail(f"{key} {value!r} must be a whole number of {what} or a "
                   f"percentage like \"1%\"")
    return int(number), percent


def checked_encoding(name: str | None) -> str | None:
    """An encoding as given (`--encoding`, `customers_encoding`), or UsageError."""
    if name is None or not str(name).strip():
        return None
    try:
        info = codecs.lookup(str(name).strip())
        "a".encode(info.name)
    except (LookupError, UnicodeError):
        raise UsageError(f"encoding {name!r} is not one Python knows (try utf-8, "
                         f"windows-1252, iso-8859-15, utf-16)") from None
    return str(name).strip()


def encoding(value: object, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(f"{key} must be the name of an encoding, e.g. windows-1252")
    try:
        return checked_encoding(value)
    except UsageError as exc:
        raise fail(f"{key}: {exc.message}") from None


def approval(value: object) -> str:
    """`approval: required`: only an approved dry run may be sent (`edition send`)."""
    if value is None:
        return "optional"
    if value not in APPROVAL_MODES:
        raise fail(f"approval {value!r} must be required or optional")
    return str(value)


def names_or_rule(value: object, key: str) -> str | tuple[str, ...] | None:
    """`[mvc, senior]` (segment names: a customer in any of them) or a rule like a segment's."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise fail(f"{key} must be a list of segment names, e.g. [mvc, senior], or a rule like "
               f"\"lifetime_value >= 1000\"")


def slot_names(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise fail("require must be a list of slot names, e.g. [articles]")


def mapping(value: object, key: str) -> dict[object, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{key} must be a mapping")
    return value


def optional_text(name: str) -> BeforeValidator:
    def check(value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise fail(f"{name} must be text")
        return value
    return BeforeValidator(check)


def _field_type(value: object) -> str:
    if value not in FIELD_TYPES:
        raise fail(f"unknown type {value!r} (known: {', '.join(sorted(FIELD_TYPES))})")
    return str(value)


FieldType = Annotated[str, BeforeValidator(_field_type)]


def _footer_key(key: object) -> str:
    """A footer key of the team's own is fine; a misspelt known one (the template would
    print nothing, or fail every customer) is not."""
    name = str(key)
    hint = near_miss(name, FOOTER_KEYS)
    if hint:
        raise fail(f"footer: unknown key {name!r} (did you mean {hint!r}?)")
    return name


def footer_values(footer: dict[str, object]) -> dict[str, object]:
    for key in FOOTER_KEYS:
        value = footer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise fail(f"footer.{key} must be text", at=key)
    return footer


FooterKey = Annotated[str, BeforeValidator(_footer_key)]
