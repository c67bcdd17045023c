"""Typed configuration: the shapes of campaign files, module front matter and delivery targets.

pydantic checks each shape and reports every problem of a file in one pass; `check`
maps pydantic's error locations back to the YAML line of the key (through the
line-aware loader) and words them the way a marketer reads them: `unknown key 'colour'
(did you mean ...?)`, `count must be a whole number of at least 1`. What needs more than
the file itself (does the template exist, does a rule compile) is checked afterwards by
campaign.py and modules.py.
"""

from __future__ import annotations

import codecs
import datetime as dt
import difflib
import re
import types
import typing
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edition.addresses import AddressError, parse_mailbox
from edition.content.yamlfile import LineDict
from edition.errors import ContentError, UsageError
from edition.naming import FORMATS

FIELD_TYPES = ("text", "number", "integer", "date", "list")
RESERVED_SLOTS = {"customer", "segments", "campaign", "locale", "run", "loop", "self"}
PAGE_SIZES = ("A4", "Letter")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
_CREDENTIALS = re.compile(r"^\w+://[^/?#]*@")
_TARGET = re.compile(
    r"^(local(:.+)?|s3://[^/\s]+(/.*)?|smtps?://[^\s/?]+(:\d+)?/?(\?.*)?|ses(://[^/?]*)?)$")
CAMPAIGN_KINDS = ("marketing", "transactional")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                       r"(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_PASSWORD_IN_URL = re.compile(r"^[\w+.-]+://[^/?#@]*:[^/?#@]*@")


AT = "edition_at"     # an error's context key: the key inside the value it is about
SALVAGE = "edition_salvage"   # validation context: building the instance from what is right


def fail(message: str, *, at: str | None = None) -> PydanticCustomError:
    """A validation error whose text is shown as it is; `at` names the key inside the
    checked value the error is about, so its line is that key's line."""
    return PydanticCustomError("edition", message, {AT: at} if at is not None else None)


def closest(word: str, choices: Sequence[str] | set[str], cutoff: float = 0.75) -> str | None:
    """The known name a typo most likely meant, if one is close enough."""
    names = sorted(str(c) for c in choices)
    match = difflib.get_close_matches(word, names, n=1, cutoff=cutoff)
    if match:
        return match[0]
    # difflib scores a swapped pair low in a short word (`kidn` for `kind`: 0.75)
    letters = sorted(word.lower())
    return next((n for n in names if len(n) > 2 and sorted(n.lower()) == letters), None)


def near_miss(word: str, known: Sequence[str] | set[str]) -> str | None:
    """The known key an unknown key misspells, or None when it reads as a key of its own.

    A known key with a word or a number of its own (`author_url`, `address_2`,
    `address2`) is a key of its own; `valid_untill` or `Title` is a typo.
    """
    if word in known:
        return None
    for name in known:
        if re.fullmatch(rf"(?:\w+[_-])?{re.escape(name)}(?:[_-]\w+|\d+)?", word):
            return None
    return closest(word, known, cutoff=0.8)


def has_credentials(target: str) -> bool:
    """`smtp://user:pass@host`: credentials belong in the environment, never in a target."""
    return bool(_CREDENTIALS.match(target))


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently turn a setting off."""

    # defer_build: a model's validator is built on first use, not at import; a run uses
    # a few of the many models here (start-up ~0.1 s shorter)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# -- campaign ----------------------------------------------------------------------


class SlotConfig(Strict):
    """`articles: {kind: article, count: 3}`."""

    kind: str
    count: int = 1

    @field_validator("count", mode="before")
    @classmethod
    def _count(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail("count must be a whole number of at least 1")
        return value


class ScheduleConfig(Strict):
    """`schedule: {cron: "0 8 * * MON", timezone: Europe/London}`."""

    cron: str
    timezone: str = "UTC"

    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: Any) -> str:
        text = str(value)
        try:
            CronSim(text, dt.datetime(2026, 1, 1))
        except (CronSimError, ValueError) as exc:
            raise fail(f"schedule.cron {text!r} is not a valid cron expression: {exc}") from None
        return text

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> str:
        text = str(value)
        try:
            zoneinfo.ZoneInfo(text)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise fail(f"schedule.timezone {text!r} is not a known time zone "
                       f"(e.g. Europe/London)") from None
        return text


class LimitsConfig(Strict):
    """`limits: {document_bytes: 5000000, render_seconds: 10}`: what one edition may take."""

    document_bytes: int = 5_000_000
    render_seconds: float = 10.0

    @field_validator("document_bytes", "render_seconds", mode="before")
    @classmethod
    def _positive(cls, value: Any, info: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise fail(f"limits.{info.field_name} must be a positive number")
        return value


class PdfConfig(Strict):
    """`pdf: {page_size: A4|Letter, allow_hosts: [cdn.acme.example]}`.

    A PDF render reads files under the content root only; `allow_hosts` names the hosts
    whose https URLs (images, stylesheets, fonts) it may fetch too."""

    page_size: str = "A4"
    allow_hosts: tuple[str, ...] = ()

    @field_validator("page_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> str:
        if value not in PAGE_SIZES:
            raise fail(f"pdf.page_size {value!r} must be A4 or Letter")
        return str(value)

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise fail("pdf.allow_hosts must be a list of host names, e.g. [cdn.acme.example]")
        hosts = []
        for entry in value:
            text = str(entry).strip().lower()
            host, _, port = text.partition(":")
            if "://" in text or "/" in text:
                raise fail(f"pdf.allow_hosts: {entry!r} is a URL; name the host only, e.g. "
                           f"cdn.acme.example (https is implied)")
            if not _HOSTNAME.match(host) or (port and not port.isdigit()):
                raise fail(f"pdf.allow_hosts: {entry!r} is not a host name like "
                           f"cdn.acme.example")
            hosts.append(text)
        return tuple(hosts)



class SuppressionColumns(Strict):
    """`columns: {unsubscribed: unsubscribed, email_status: email_status}`: customer columns
    that suppress a row. Absent, both are looked for under these names; given, exactly
    the named ones are (`columns: {}` turns them off)."""

    unsubscribed: str | None = "unsubscribed"   # true / yes / 1 / a date: unsubscribed
    email_status: str | None = "email_status"   # bounced or complained: never mailed


class SuppressionConfig(Strict):
    """`suppression: [data/unsubscribed.csv]`, or the long form with the store and columns.

    ```yaml
    suppression:
      lists: [data/unsubscribed.csv, data/crm-optouts.txt]
      store: out/suppression.sqlite      # or postgresql://edition@db.internal/edition
      columns: {unsubscribed: opted_out, email_status: email_status}
    ```
    """

    lists: tuple[str, ...] = ()
    store: str | None = None
    columns: SuppressionColumns = SuppressionColumns()

    @field_validator("lists", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                  for v in value):
            raise fail("suppression lists must be file paths, e.g. [data/unsubscribed.csv]")
        return tuple(v.strip() for v in value)

    @field_validator("store", mode="before")
    @classmethod
    def _store(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail("suppression.store must be a file path or a database URL")
        if _PASSWORD_IN_URL.match(value):
            raise fail("suppression.store must not hold a password; set "
                       "EDITION_SUPPRESSION_STORE or PGPASSWORD / ~/.pgpass instead")
        if "://" in value and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise fail(f"suppression.store {value!r}: use a file path, sqlite:///path or "
                       f"postgresql://user@host/db")
        return value.strip()

    @field_validator("columns", mode="before")
    @classmethod
    def _columns(cls, value: Any) -> Any:
        if value is None:
            return {"unsubscribed": None, "email_status": None}
        if not isinstance(value, dict):
            raise fail("suppression.columns must map unsubscribed / email_status to column "
                       "names, e.g. {unsubscribed: opted_out}")
        return {"unsubscribed": None, "email_status": None} | dict(value)


def _suppression(value: Any) -> Any:
    """The short forms: a path, or a list of paths."""
    if value is None:
        return {}
    if isinstance(value, str | list):
        return {"lists": value}
    if not isinstance(value, dict):
        raise fail("suppression must be a list of files (e.g. [data/unsubscribed.csv]) or "
                   "a mapping with lists, store and columns")
    return value


class DkimConfig(Strict):
    """`delivery: {dkim: {domain: acme.example, selector: s2026, key_file: keys/dkim.pem}}`.

    The key is the private RSA key in PEM, from a file (relative to the content root) or
    from an environment variable (`key_env: EDITION_DKIM_KEY`); the campaign names where
    it is, never the key itself.
    """

    domain: str
    selector: str
    key_file: str | None = None
    key_env: str | None = None

    @field_validator("domain", mode="before")
    @classmethod
    def _domain(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _HOSTNAME.match(value) or "." not in value:
            raise fail(f"dkim.domain {value!r} must be a domain name, e.g. acme.example")
        return value.lower()

    @field_validator("selector", mode="before")
    @classmethod
    def _selector(cls, value: Any) -> Any:
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) \
            else None
        if text is None or not _HOSTNAME.match(text):
            raise fail(f"dkim.selector {value!r} must be letters, digits, '-' and '.' "
                       f"(the name before ._domainkey in DNS)")
        return text

    @field_validator("key_env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not _ENV_NAME.match(value)):
            raise fail(f"dkim.key_env {value!r} must be the name of an environment variable")
        return value

    @model_validator(mode="after")
    def _one_key(self) -> DkimConfig:
        if (self.key_file is None) == (self.key_env is None):
            raise fail("dkim needs exactly one of key_file (a PEM file) or key_env (an "
                       "environment variable holding the PEM key)")
        return self


def _formats(value: Any) -> Any:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not value:
        raise fail("formats must be a list, e.g. [html, text, eml]")
    bad = [str(v) for v in value if v not in FORMATS]
    if bad:
        raise fail(f"unknown format(s) {', '.join(bad)} (known: {', '.join(FORMATS)})")
    return tuple(f for f in FORMATS if f in value)


def _customers(value: Any) -> Any:
    """A file (CSV, JSONL, Parquet), or `{url: postgresql://…, query: …}` (or `table: …`)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("url") and set(value) <= {"url", "query", "table"}:
        return {str(k): str(v) for k, v in value.items()}
    raise fail("customers must be a file (CSV, JSONL, Parquet) or {url: postgresql://…, "
               "query: \"select …\"} (or table: …)")


def _names_or_rule(value: Any, key: str) -> Any:
    """`[mvc, senior]` (segment names: a customer in any of them) or a rule like a segment's."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise fail(f"{key} must be a list of segment names, e.g. [mvc, senior], or a rule like "
               f"\"lifetime_value >= 1000\"")


def _slot_names(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise fail("require must be a list of slot names, e.g. [articles]")


def _per_locale(value: Any, key: str, check: Any = None) -> Any:
    """Text, or a mapping of locale to text (`subject: {en: ..., es: ...}`)."""
    if value is None:
        return None
    items = value.items() if isinstance(value, dict) else [(None, value)]
    for locale, text in items:
        if not isinstance(text, str) or (locale is not None and not isinstance(locale, str)):
            raise fail(f"{key} must be text, or a mapping of locale to text like "
                       f"{{en: ..., es: ...}}")
        if check is not None:
            check(text, key if locale is None else f"{key}.{locale}")
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


def _currency(code: str, where: str) -> None:
    from babel.numbers import list_currencies

    if code not in list_currencies():
        raise fail(f"{where} {code!r} is not an ISO 4217 currency code like EUR or USD")


def _max_failed(value: Any, key: str = "max_failed", what: str = "customers"
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


def _encoding(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(f"{key} must be the name of an encoding, e.g. windows-1252")
    try:
        return checked_encoding(value)
    except UsageError as exc:
        raise fail(f"{key}: {exc.message}") from None


APPROVAL_MODES = ("optional", "required")


def _approval(value: Any) -> str:
    """`approval: required`: only an approved dry run may be sent (`edition send`)."""
    if value is None:
        return "optional"
    if value not in APPROVAL_MODES:
        raise fail(f"approval {value!r} must be required or optional")
    return str(value)


def _field_type(value: Any) -> str:
    if value not in FIELD_TYPES:
        raise fail(f"unknown type {value!r} (known: {', '.join(sorted(FIELD_TYPES))})")
    return str(value)


FieldType = Annotated[str, BeforeValidator(_field_type)]

# What the sample templates print from `footer:`; a team may add keys of its own.
FOOTER_KEYS = ("address", "feedback_url", "phone")


def _footer_key(key: Any) -> str:
    """A footer key of the team's own is fine; a misspelt known one (the template would
    print nothing, or fail every customer) is not."""
    key = str(key)
    hint = near_miss(key, FOOTER_KEYS)
    if hint:
        raise fail(f"footer: unknown key {key!r} (did you mean {hint!r}?)")
    return key


def _footer_values(footer: dict[str, Any]) -> dict[str, Any]:
    for key in FOOTER_KEYS:
        value = footer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise fail(f"footer.{key} must be text", at=key)
    return footer


FooterKey = Annotated[str, BeforeValidator(_footer_key)]


def _optional_text(name: str) -> Any:
    def check(value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise fail(f"{name} must be text")
        return value
    return BeforeValidator(check)


class CampaignConfig(Strict):
    """The keys of a campaign file (design.md, "Campaign file"), checked for shape."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str | None = None
    # the display name (running header of PDFs): text, or per locale; default: the name
    title: Annotated[str | dict[str, str] | None, BeforeValidator(lambda v: _per_locale(
        v, "title"))] = None
    description: Annotated[str | None, _optional_text("description")] = None
    template: Annotated[str | None, _optional_text("template")] = None
    text_template: Annotated[str | None, _optional_text("text_template")] = None
    subject: Annotated[str | dict[str, str] | None, BeforeValidator(lambda v: _per_locale(
        v, "subject"))] = None
    sender: str | None = None
    reply_to: str | None = None
    customers: Annotated[str | dict[str, str] | None, BeforeValidator(
        lambda v: _customers(v))] = None
    segments: dict[str, Any] = Field(default_factory=dict)
    slots: dict[str, SlotConfig] | None = Field(default=None, validate_default=True)
    formats: Annotated[tuple[str, ...] | None, BeforeValidator(_formats)] = None
    delivery: dict[str, Any] = Field(default_factory=dict)
    schedule: ScheduleConfig | None = None
    footer: Annotated[dict[FooterKey, Any], AfterValidator(_footer_values)] = Field(
        default_factory=dict)
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    kind: str = "marketing"
    suppression: Annotated[SuppressionConfig, BeforeValidator(_suppression)] = (
        SuppressionConfig())
    list_id: str | None = None
    feedback_id: str | None = None
    fields: dict[str, FieldType] = Field(default_factory=dict)
    pdf: PdfConfig = PdfConfig()
    max_failed: Annotated[tuple[int, bool], BeforeValidator(lambda v: _max_failed(v))] = (
        0, False)
    # rejected rows (count or "N%") a run may have and still exit 0; absent: any number
    max_rejected: Annotated[tuple[int, bool] | None, BeforeValidator(
        lambda v: None if v is None else _max_failed(v, "max_rejected", "rows"))] = None
    customers_encoding: Annotated[str | None, BeforeValidator(
        lambda v: _encoding(v, "customers_encoding"))] = None
    limits: LimitsConfig = LimitsConfig()
    audience: Annotated[str | tuple[str, ...] | None, BeforeValidator(
        lambda v: _names_or_rule(v, "audience"))] = None
    exclude: Annotated[str | tuple[str, ...] | None, BeforeValidator(
        lambda v: _names_or_rule(v, "exclude"))] = None
    require: Annotated[tuple[str, ...] | None, BeforeValidator(
        lambda v: _slot_names(v))] = None
    currency: Annotated[str | dict[str, str] | None, BeforeValidator(lambda v: _per_locale(
        v, "currency", _currency))] = None
    approval: Annotated[str, BeforeValidator(_approval)] = "optional"

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if value is not None and not _SLUG.match(str(value)):
            raise fail(f"name {value!r} must be a slug: lowercase letters, digits and '-'")
        return None if value is None else str(value)

    @field_validator("segments", mode="before")
    @classmethod
    def _segments(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail("segments must map names to rules, e.g. mvc: \"lifetime_value >= 5000\"")
        return value

    @field_validator("slots", mode="before")
    @classmethod
    def _slots(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.context and info.context.get(SALVAGE):
            return None  # its error is reported; the rest of the campaign is still checked
        if value is None:
            raise fail("slots is required: e.g. articles: {kind: article, count: 3}")
        if not isinstance(value, dict) or not value:
            raise fail("slots must map slot names to a kind and a count, e.g. "
                       "articles: {kind: article, count: 3}")
        return value

    @field_validator("sender", "reply_to", mode="before")
    @classmethod
    def _address(cls, value: Any, info: Any) -> Any:
        if value is None:
            return None
        text = str(value)
        try:
            parse_mailbox(text)
        except AddressError as exc:
            raise fail(f"{info.field_name} {text!r} is not an email address like "
                       f"\"Acme News <news@acme.example>\" ({exc})") from None
        return text

    @field_validator("delivery", mode="before")
    @classmethod
    def _delivery(cls, value: Any) -> Any:
        if value is None:
            return {"to": "local"}
        if not isinstance(value, dict):
            raise fail("delivery must be a mapping like {to: local}")
        return value

    @field_validator("footer", mode="before")
    @classmethod
    def _mapping(cls, value: Any, info: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail(f"{info.field_name} must be a mapping")
        return value

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail("fields must be a mapping")
        return {str(k): v for k, v in value.items()}

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise fail("schedule must be {cron: \"0 8 * * MON\", timezone: Europe/London}")
        return value

    @field_validator("unsubscribe_url", mode="before")
    @classmethod
    def _unsubscribe(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and value.startswith(
                ("https://", "http://", "mailto:"))):
            raise fail("unsubscribe_url must be an http(s) or mailto URL")
        return value

    @field_validator("unsubscribe_mailto", mode="before")
    @classmethod
    def _mailto(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and value.startswith("mailto:")
                                      and "@" in value):
            raise fail("unsubscribe_mailto must be a mailto: URL, e.g. "
                       "mailto:unsubscribe@acme.example")
        return value

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if value not in CAMPAIGN_KINDS:
            raise fail(f"kind {value!r} must be marketing (newsletters, offers: unsubscribes "
                       f"apply) or transactional (invoices, receipts)")
        return value

    @field_validator("list_id", mode="before")
    @classmethod
    def _list_id(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or len(value) > 255
                                  or not _DOT_ATOM.match(value)):
            raise fail(f"list_id {value!r} must look like a domain name, e.g. "
                       f"weekly.acme.example (RFC 2919)")
        return value

    @field_validator("feedback_id", mode="before")
    @classmethod
    def _feedback_id(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not value
                                  or len(value) > 64 or re.search(r"[\s:]", value)):
            raise fail(f"feedback_id {value!r} must be a short sender id without spaces or "
                       f"':' (the last field of Feedback-ID)")
        return value

    @field_validator("pdf", mode="before")
    @classmethod
    def _pdf(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail("pdf must be a mapping")
        return value




# -- modules -----------------------------------------------------------------------


MODULE_KINDS = ("article", "offer", "greeting")
_MODULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def _date(value: Any, info: Any) -> dt.date | None:
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


def _names(value: Any, info: Any) -> frozenset[str] | None:
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
    def _id(cls, value: Any) -> Any:
        if value is not None and not _MODULE_ID.match(str(value)):
            raise fail(f"id {str(value)!r} may only use letters, digits, '.', '_' and '-'")
        return None if value is None else str(value)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if value is not None and value not in MODULE_KINDS:
            raise fail(f"unknown kind {value!r} (expected one of: {', '.join(MODULE_KINDS)})")
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"priority: {value!r} is not a whole number")
        return value


def front_matter_notes(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
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


# -- delivery targets --------------------------------------------------------------


def _delays(value: Any) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    delays = tuple(float(v) for v in items)
    if any(d < 0 for d in delays):
        raise ValueError("delays must be >= 0")
    return delays


Delays = Annotated[tuple[float, ...], BeforeValidator(_delays)]
# Keys of a campaign's `delivery:` block read by the engine, not by a target.
ENGINE_KEYS = frozenset({"to", "ledger", "dkim"})


class TargetOptions(Strict):
    """Options common to a kind of target; subclasses list their own."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class LocalOptions(TargetOptions):
    fsync: bool = False


class S3Options(TargetOptions):
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    sse: str | None = None     # AES256 or aws:kms
    kms_key_id: str | None = None
    max_attempts: int = 5
    connections: int = 10      # HTTP connection pool size, for threaded callers
    timeout: float = 60.0

    @field_validator("sse")
    @classmethod
    def _sse(cls, value: str | None) -> str | None:
        if value not in (None, "AES256", "aws:kms"):
            raise ValueError("option sse must be AES256 or aws:kms")
        return value

    @model_validator(mode="after")
    def _kms(self) -> S3Options:
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError("option kms_key_id needs sse: aws:kms")
        return self


class SmtpOptions(TargetOptions):
    starttls: bool = False
    rate: float = 0.0          # messages per second over all connections; 0 = unlimited
    burst: int = 1
    connections: int = 1
    timeout: float = 30.0      # seconds, per socket operation
    attempts: int = 3          # tries per message, the first included
    backoff: Delays = (0.2, 0.5, 1.0)
    max_per_connection: int = 0    # reconnect after this many messages; 0 = never
    mail_from: str | None = None   # envelope sender (bounce address); default: From
    local_hostname: str | None = None
    cafile: str | None = None      # CA bundle to verify the server's certificate
    plaintext_auth: bool = False   # allow login without TLS to a non-loopback host


class SesOptions(TargetOptions):
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    configuration_set: str | None = None
    rate: float = 0.0          # messages per second (your SES sending rate); 0 = unlimited
    burst: int = 1
    attempts: int = 5
    backoff: Delays = (0.5, 1.0, 2.0, 4.0)
    connections: int = 10
    timeout: float = 30.0


OPTIONS_BY_SCHEME: dict[str, type[TargetOptions]] = {
    "local": LocalOptions, "s3": S3Options, "smtp": SmtpOptions, "smtps": SmtpOptions,
    "ses": SesOptions,
}


def scheme_of(target: str) -> str:
    """`smtp` for `smtp://host:25`, `local` for `local:/dir`."""
    target = (target or "").strip()
    return (target.split(":", 1)[0] if ":" in target else target).lower()


def target_problem(target: str) -> str | None:
    """Why a target string cannot be used, or None."""
    if has_credentials(target):
        return "must not hold credentials; set them in the environment"
    if not _TARGET.match(target):
        return "must be local, s3://bucket/prefix, smtp://host:port or ses"
    return None


class OptionErrors(ValueError):
    """Every problem with a target's options: `problems` holds (option or None, message)."""

    def __init__(self, problems: list[tuple[str | None, str]]):
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def target_options(target: str, options: Mapping[str, Any] | None) -> TargetOptions:
    """The options for one target, checked against what that kind of target knows.

    Raises OptionErrors (a ValueError) with every problem; the caller decides which
    error it becomes.
    """
    model = OPTIONS_BY_SCHEME.get(scheme_of(target))
    if model is None:
        raise OptionErrors([(None, f"unknown delivery target {target!r}")])
    given = {k: v for k, v in (options or {}).items() if k not in ENGINE_KEYS and v is not None}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        known = sorted(model.model_fields)
        problems: list[tuple[str | None, str]] = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else None
            text = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                hint = closest(str(name), [*known, *ENGINE_KEYS])
                problems.append((name, f"unknown delivery option {name!r}" + (
                    f" (did you mean {hint!r}?)" if hint else
                    f" (known for {scheme_of(target)}: {', '.join(known)})")))
            elif name is None:
                problems.append((None, text))
            else:
                problems.append((name, f"bad value for delivery option {name!r}: "
                                       f"{_TYPE_WORDS.get(error['type'], text)}"))
        raise OptionErrors(problems) from None


# -- turning pydantic's errors into content errors with lines ------------------------


REQUIRED = {
    "template": "template is required (a file in templates/)",
    "slots": "slots is required: e.g. articles: {kind: article, count: 3}",
}
# pydantic's own words for a wrong type, in the words of someone editing YAML
_TYPE_WORDS = {
    "string_type": "must be text",
    "int_type": "must be a whole number", "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number", "float_parsing": "must be a number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "list_type": "must be a list", "tuple_type": "must be a list",
    "frozen_set_type": "must be a list", "set_type": "must be a list",
    "dict_type": "must be a mapping", "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "date_type": "must be a date (YYYY-MM-DD)", "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
}


def _location(error: Mapping[str, Any]) -> tuple[Any, ...]:
    """Where in the data an error is: its loc, and the key inside the value it names."""
    at = (error.get("ctx") or {}).get(AT)
    return (*error["loc"], at) if at is not None else tuple(error["loc"])


def _in_data(data: Any, loc: Sequence[Any]) -> list[Any]:
    """The part of `loc` that names keys of the data (pydantic adds union tags and
    `[key]` markers that the YAML does not have)."""
    path: list[Any] = []
    node = data
    for part in loc:
        inside = (part in node) if isinstance(node, dict) else (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))
        if not inside:
            break
        node = node[part]
        path.append(part)
    return path


def line_of(data: Any, loc: Sequence[Any]) -> int:
    """The YAML line of the deepest key of `loc` that the data knows."""
    line = data.start_line if isinstance(data, LineDict) else 1
    node = data
    for part in loc:
        if isinstance(node, LineDict) and part in node:
            line = node.line_of(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            break
    return line


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the model inside `X | None` or `dict[str, X]`, whether a dict key comes next)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])[0], True
    values = [a for a in args if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(values) == 1:
        return _unwrap(values[0])
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap(args[0])
    return annotation, False


def _nested(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validates the value at `loc` (for its list of known keys)."""
    current: Any = model
    skip_key = False
    for part in loc:
        if skip_key:
            skip_key = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current, skip_key = _unwrap(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _message(model: type[BaseModel], data: Any, error: Mapping[str, Any],
             extra_word: str) -> str:
    """One error in the words of someone editing the file: where (`slots.offer`), what,
    and for a misspelt key the key it most likely meant."""
    kind = error["type"]
    loc = list(error["loc"])
    path = [str(p) for p in _in_data(data, loc)]
    if kind == "missing" and len(loc) == len(path) + 1:
        path.append(str(loc[-1]))
    where = ".".join(path)
    if kind == "edition":
        message = str(error["msg"])
        if len(path) < 2 or message.startswith(path[0]):
            return message    # top level, or the message already says where it is
        if message.startswith(path[-1]):
            return f"{'.'.join(path[:-1])}: {message}"   # `slots.offer: count must be …`
        return f"{where}: {message}"
    if kind == "extra_forbidden":
        key = path[-1] if path else str(loc[-1])
        parent = _nested(model, loc[:-1]) if len(loc) > 1 else model
        known = sorted(parent.model_fields) if parent else []
        hint = closest(key, known) if known else None
        if len(path) <= 1:
            if extra_word == "key":
                return f"unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "")
            return (f"unknown {extra_word} {key!r} (known: {', '.join(known)})"
                    + (f"; did you mean {hint!r}?" if hint else ""))
        return f"{'.'.join(path[:-1])}: unknown key {key!r}" + (
            f" (did you mean {hint!r}?)" if hint else
            f" (known: {', '.join(known)})" if known else "")
    if kind == "missing":
        return REQUIRED.get(where, f"{where} is required")
    if kind in _TYPE_WORDS:
        return f"{where} {_TYPE_WORDS[kind]}"
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


def check(model: type[BaseModel], data: Mapping[str, Any], file: str, *,
          extra_word: str = "key") -> tuple[Any, list[ContentError]]:
    """Validate `data` against `model`; (instance or None, every error with its line).

    When some keys are wrong the others are still validated: the instance is built
    from what is right (`_salvage`), so later checks go on and report their own
    problems instead of stopping at the first wrong value.
    """
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        errors = exc.errors()
    found = [ContentError(_message(model, data, e, extra_word), file,
                          line_of(data, _location(e)))
             for e in errors]
    return _salvage(model, data, errors), found


def _salvage(model: type[BaseModel], data: Mapping[str, Any],
             errors: list[Any]) -> BaseModel | None:
    """The instance without the wrong values: each is dropped (its default takes its
    place; a mapping that misses a required key goes as a whole), again until it holds."""
    partial = _copy(data)
    context = {SALVAGE: True}
    for _ in range(8):   # each round drops at least one key; nesting is a few levels deep
        if not _drop(partial, errors):
            break
        try:
            return model.model_validate(partial, context=context)
        except ValidationError as exc:
            errors = exc.errors()
    try:
        return model.model_validate({}, context=context)
    except ValidationError:
        return None


def _copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


def _drop(data: dict[str, Any], errors: list[Any]) -> bool:
    """Remove from `data` what the errors are about; False when nothing could be."""
    paths = set()
    for error in errors:
        path = _in_data(data, error["loc"])
        # a list goes whole: the checks here take or refuse lists whole
        ints = [i for i, part in enumerate(path) if isinstance(part, int)]
        if ints:
            path = path[:ints[0]]
        if path:    # for `missing`, the mapping without the required key
            paths.add(tuple(path))
    dropped = False
    for path in sorted(paths, key=len, reverse=True):
        node: Any = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            del node[path[-1]]
            dropped = True
    return dropped


# -- run options -------------------------------------------------------------------
