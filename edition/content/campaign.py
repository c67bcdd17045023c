"""Campaign files: one typed model, loaded and checked, every mistake reported at once.

`Campaign` is the shape of a campaign file (design.md, "Campaign file") and the checked
campaign the engine uses, in one pydantic model: each key's validator takes what YAML
gave and keeps it in the form the engine reads (segments compiled, slots named,
templates checked, `delivery` typed by its target's plugin). Validation needs the
content root and the file's lines, passed as the `Loading` context
(content/campaign_checks.py); `load_campaign` is the way in. pydantic validates every
key even when another is wrong, so a file with three mistakes says three things, each
with its file and line (content/errors_at_lines.py).
"""

from __future__ import annotations

import functools
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from edition.content import campaign_checks as checks
from edition.content import campaign_values as values
from edition.content.campaign_blocks import Pdf, Slot, Suppression, suppression_block
from edition.content.campaign_checks import Loading, loading
from edition.content.campaign_files import (
    campaign_file,
    find_root,
    is_campaign_name,
    relative_to_root,
)
from edition.content.campaign_values import FieldType, FooterKey, Strict
from edition.content.delivery_settings import DeliverySettings, Dkim
from edition.content.errors_at_lines import check, fail
from edition.content.experiment import Experiment
from edition.content.house import (
    FrequencyCap,
    SendWindow,
    house_errors,
    override,
    priority_value,
)
from edition.content.limits import Limits
from edition.content.preferences_settings import PreferenceSettings
from edition.content.schedule import Schedule, schedule_block
from edition.content.segments import Rule, Segment
from edition.content.tracking import Tracking
from edition.content.yamlfile import LineDict, load_yaml
from edition.errors import ContentError, collect
from edition.locales import NotALanguageTag, language_of, language_tag
from edition.naming import FORMATS

__all__ = ["FORMATS", "Campaign", "Slot", "by_locale", "campaign_file", "find_root",
           "is_campaign_name", "load_campaign", "relative_to_root"]

PerLocale = str | dict[str, str]


class Campaign(Strict):
    """A campaign file, checked: what the engine renders and sends by."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True,
                              arbitrary_types_allowed=True)

    name: str = Field(default=None, validate_default=True)
    # the display name (running header of PDFs): text, or per locale; default: the name
    title: Annotated[PerLocale | None, BeforeValidator(
        lambda v: values.per_locale(v, "title"))] = None
    description: str = ""
    template: str
    text_template: str | None = Field(default=None, validate_default=True)
    formats: tuple[str, ...] = Field(default=None, validate_default=True)
    subject: PerLocale = Field(default=None, validate_default=True)
    sender: str = Field(default=None, validate_default=True)
    reply_to: str | None = None
    customers: Annotated[str | dict[str, str] | None, BeforeValidator(checks.customers)] = None
    customers_encoding: Annotated[str | None, BeforeValidator(
        lambda v: values.encoding(v, "customers_encoding"))] = None
    segments: tuple[Segment, ...] = ()
    slots: tuple[Slot, ...]
    audience: Rule | None = None          # who the campaign is for (None: everyone)
    exclude: Rule | None = None
    require: tuple[str, ...] = Field(default=None, validate_default=True)
    delivery: DeliverySettings = Field(default=None, validate_default=True)
    schedule: Annotated[Schedule | None, BeforeValidator(schedule_block)] = None
    footer: Annotated[dict[FooterKey, Any], BeforeValidator(
        lambda v: values.mapping(v, "footer")), AfterValidator(values.footer_values)] = Field(
        default_factory=dict)
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    preferences: PreferenceSettings | None = None   # the preference center (feedback)
    kind: str = "marketing"               # or transactional: no marketing unsubscribes
    suppression: Annotated[Suppression, BeforeValidator(suppression_block)] = Suppression()
    list_id: str | None = None            # List-Id; default <name>.<sender domain>
    feedback_id: str | None = None        # Feedback-ID sender id; default the domain
    fields: dict[str, FieldType] = Field(default_factory=dict)
    pdf: Annotated[Pdf, BeforeValidator(lambda v: values.mapping(v, "pdf"))] = Pdf()
    max_failed: Annotated[tuple[int, bool], BeforeValidator(
        lambda v: values.count_or_percent(v))] = (0, False)
    # rejected rows (count or "N%") a run may have and still exit 0; absent: any number
    max_rejected: Annotated[tuple[int, bool] | None, BeforeValidator(
        lambda v: None if v is None else values.count_or_percent(v, "max_rejected",
                                                                 "rows"))] = None
    limits: Limits = Limits()
    currency: Annotated[PerLocale | None, BeforeValidator(
        lambda v: values.per_locale(v, "currency", values.currency))] = None
    approval: Annotated[str, BeforeValidator(values.approval)] = "optional"
    tracking: Tracking | None = None      # click tracking (content/tracking.py)
    experiment: Experiment | None = None  # a test of one slot (content/experiment.py)
    # the house's (edition.yaml) unless the campaign has its own, or `off` (.off)
    frequency_cap: Annotated[FrequencyCap | None, BeforeValidator(
        lambda v: override(v, "frequency_cap"))] = None
    send_window: Annotated[SendWindow | None, BeforeValidator(
        lambda v: override(v, "send_window"))] = None
    # who wins a capped customer's slot on a crowded day; absent: edition.yaml's
    priority: Annotated[int | None, BeforeValidator(
        lambda v: None if v is None else priority_value(v))] = None

    _file: str = PrivateAttr(default="")
    _root: Path = PrivateAttr(default_factory=Path)

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, Loading):
            self._file, self._root = context.file, context.root

    # -- what the file is, and where ---------------------------------------------------

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object, info: ValidationInfo) -> object:
        return values.slug(value) or Path(loading(info).file).stem

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise fail("description must be text")
        return value or ""

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            raise fail("template is required (a file in templates/)")
        return checks.template(loading(info), value, "template")

    @field_validator("text_template", mode="before")
    @classmethod
    def _text_template(cls, value: object, info: ValidationInfo) -> object:
        ctx = loading(info)
        if value is None:
            return checks.sibling_text_template(ctx, info.data.get("template"))
        return checks.template(ctx, value, "text_template")

    @field_validator("formats", mode="before")
    @classmethod
    def _formats(cls, value: object, info: ValidationInfo) -> object:
        if value is not None:
            return values.formats(value)
        data = loading(info).data
        return ("html", "text", *(("eml",) if data.get("sender") and data.get("subject")
                                  else ()))

    @field_validator("subject", mode="before")
    @classmethod
    def _subject(cls, value: object, info: ValidationInfo) -> object:
        ctx = loading(info)
        if value is None:
            if "eml" in info.data.get("formats", ()) and "subject" not in ctx.data:
                raise fail("subject is required when the campaign makes email (eml)")
            return ""
        subject = values.texts_per_locale(value, "subject")
        checks.check_subject(ctx, subject)
        return subject

    @field_validator("sender", mode="before")
    @classmethod
    def _sender(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            if "eml" in info.data.get("formats", ()) and "sender" not in loading(info).data:
                raise fail("sender is required when the campaign makes email (eml), "
                           "e.g. \"Acme News <news@acme.example>\"")
            return ""
        return values.address("sender", value)

    @field_validator("reply_to", mode="before")
    @classmethod
    def _reply_to(cls, value: object) -> object:
        return values.address("reply_to", value)

    # -- who gets what -----------------------------------------------------------------

    @field_validator("segments", mode="before")
    @classmethod
    def _segments(cls, value: object, info: ValidationInfo) -> object:
        return checks.segments(loading(info), value)

    @field_validator("slots", mode="before")
    @classmethod
    def _slots(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            raise fail("slots is required: e.g. articles: {kind: article, count: 3}")
        return checks.slots(loading(info), value)

    @field_validator("experiment", mode="after")
    @classmethod
    def _experiment_slot(cls, value: Experiment | None, info: ValidationInfo) -> Any:
        slots = {s.name for s in info.data.get("slots") or ()}
        if value is not None and slots and not value.of_subject and value.slot not in slots:
            raise fail(f"experiment.slot {value.slot!r} is not a slot of this campaign "
                       f"({', '.join(sorted(slots))}) nor `subject`")
        return value

    @field_validator("audience", "exclude", mode="before")
    @classmethod
    def _rule(cls, value: object, info: ValidationInfo) -> object:
        key = str(info.field_name)
        ctx = loading(info)
        return checks.rule(ctx, key, values.names_or_rule(value, key),
                           checks.segment_names(ctx, info))

    @field_validator("require", mode="before")
    @classmethod
    def _require(cls, value: object, info: ValidationInfo) -> object:
        return checks.required(loading(info), values.slot_names(value), info)

    # -- where it goes -----------------------------------------------------------------

    @field_validator("suppression", mode="after")
    @classmethod
    def _suppression_lists(cls, value: Suppression, info: ValidationInfo) -> Suppression:
        return checks.suppression_lists(loading(info), value)

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: object) -> object:
        return {str(k): v for k, v in values.mapping(value, "fields").items()}

    @field_validator("unsubscribe_url", mode="before")
    @classmethod
    def _unsubscribe(cls, value: object) -> object:
        if value is not None and not (isinstance(value, str) and value.startswith(
                ("https://", "http://", "mailto:"))):
            raise fail("unsubscribe_url must be an http(s) or mailto URL")
        return value

    @field_validator("unsubscribe_mailto", mode="before")
    @classmethod
    def _mailto(cls, value: object) -> object:
        if value is not None and not (isinstance(value, str) and value.startswith("mailto:")
                                      and "@" in value):
            raise fail("unsubscribe_mailto must be a mailto: URL, e.g. "
                       "mailto:unsubscribe@acme.example")
        return value

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: object) -> object:
        if value not in values.CAMPAIGN_KINDS:
            raise fail(f"kind {value!r} must be marketing (newsletters, offers: unsubscribes "
                       f"apply) or transactional (invoices, receipts)")
        return value

    @field_validator("list_id", mode="before")
    @classmethod
    def _list_id(cls, value: object) -> object:
        if value is not None and (not isinstance(value, str) or len(value) > 255
                                  or not values.DOT_ATOM.match(value)):
            raise fail(f"list_id {value!r} must look like a domain name, e.g. "
                       f"weekly.acme.example (RFC 2919)")
        return value

    @field_validator("feedback_id", mode="before")
    @classmethod
    def _feedback_id(cls, value: object) -> object:
        if value is not None and (not isinstance(value, str) or not value or len(value) > 64
                                  or any(c.isspace() or c == ":" for c in value)):
            raise fail(f"feedback_id {value!r} must be a short sender id without spaces or "
                       f"':' (the last field of Feedback-ID)")
        return value

    # -- what the engine asks of it ------------------------------------------------------

    @property
    def file(self) -> str:
        """The campaign file, as messages show it (`campaigns/x.yaml`)."""
        return self._file

    @property
    def root(self) -> Path:
        """The content root: paths in the campaign are relative to it."""
        return self._root

    @property
    def target(self) -> str:
        """The campaign's own delivery target (`delivery.to`)."""
        return self.delivery.to

    @property
    def dkim(self) -> Dkim | None:
        """`delivery.dkim` (the key itself is read when sending)."""
        return self.delivery.dkim

    @property
    def approval_required(self) -> bool:
        return self.approval == "required"

    @functools.cached_property
    def sender_domain(self) -> str:
        return parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"

    def failure_limit(self, rows: int) -> int:
        """How many customers may fail (or be unknown) before a run exits 3."""
        number, percent = self.max_failed
        return rows * number // 100 if percent else number

    def rejection_limit(self, rows: int) -> int | None:
        """How many rows may be rejected before a run exits 3 (None: any number)."""
        if self.max_rejected is None:
            return None
        number, percent = self.max_rejected
        return rows * number // 100 if percent else number

    def subject_for(self, locale: str) -> str:
        """The subject template for a locale (`subject: {en: ..., es: ...}`, or one for all)."""
        return by_locale(self.subject, locale) or ""

    def title_for(self, locale: str | None = None) -> str:
        """The display name (`title:`, per locale or one for all), else the name made
        readable: "garden-club-news" -> "Garden club news"."""
        title = by_locale(self.title, locale or "en") if self.title is not None else None
        if title:
            return title
        words = self.name.replace("-", " ").replace("_", " ").strip()
        return words[:1].upper() + words[1:]

    def currency_for(self, locale: str) -> str:
        """The currency `money` uses by default for a locale (`currency:`, else USD)."""
        return by_locale(self.currency, locale) or "USD"

    def context(self, locale: str = "en") -> dict[str, object]:
        """What templates see as `campaign`."""
        return {
            "name": self.name,
            "description": self.description,
            "subject": self.subject_for(locale),
            "currency": self.currency_for(locale),
            "sender": self.sender,
            "footer": self.footer,
            "unsubscribe_url": self.unsubscribe_url or "",
            "kind": self.kind,
            # only when set: the context is part of every version's digest
            **({"preferences_url": self.preferences.url} if self.preferences else {}),
        }


def by_locale(value: str | dict[str, str] | None, locale: str) -> str | None:
    """A per-locale setting: `es-MX`, then `es`, then `en`, then the first one given."""
    if value is None or isinstance(value, str):
        return value
    # keys are matched as tags, so `es_MX:` or `ES-mx:` in the campaign serves `es-MX`
    tags = {_tag_or_key(key): text for key, text in reversed(list(value.items()))}
    for key in (_tag_or_key(locale), language_of(locale), "en"):
        if key in tags:
            return tags[key]
    return next(iter(value.values()), None)


def _tag_or_key(key: str) -> str:
    try:
        return language_tag(key)
    except NotALanguageTag:
        return key


def load_campaign(path: str | Path, root: Path | None = None,
                  kinds: set[str] | None = None) -> Campaign:
    """Read and validate a campaign file; raise every problem found at once."""
    file = Path(path)
    if not file.is_file():
        raise ContentError(f"campaign file not found: {file}", file)
    root = root or find_root(file)
    rel = relative_to_root(file, root)
    try:
        data = load_yaml(file.read_text(encoding="utf-8"), rel)
    except UnicodeDecodeError as exc:
        raise ContentError(f"campaign is not UTF-8 text: {exc}", rel, 1) from None
    if not isinstance(data, LineDict):
        raise ContentError("a campaign file must be a mapping of keys", rel, 1)
    context = Loading(rel, root, data, kinds or {"article", "offer", "greeting"})
    campaign, errors = check(Campaign, data, rel, context=context, salvage=False)
    collect(errors + house_errors(root))
    assert campaign is not None   # no error, so validated
    return campaign
