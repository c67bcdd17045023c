"""Campaign files: load, check every key, and report every mistake at once."""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
import zoneinfo
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from cronsim import CronSim, CronSimError

from edition.errors import ContentError, collect
from edition.segments import Segment, compile_segment
from edition.templating import EditionEnvironment
from edition.yamlfile import LineDict, load_yaml

FORMATS = ("html", "text", "eml", "pdf")
RESERVED = {"customer", "segments", "campaign", "locale", "run", "loop", "self"}
FIELD_TYPES = {"text", "number", "integer", "date", "list"}
KNOWN_KEYS = {
    "name", "description", "template", "text_template", "subject", "sender", "reply_to",
    "customers", "segments", "slots", "formats", "delivery", "schedule", "footer",
    "unsubscribe_url", "fields", "pdf",
}
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TARGET = re.compile(r"^(local(:.+)?|s3://[^/\s]+(/.*)?|smtps?://[^\s/]+(:\d+)?/?(\?.*)?|ses(://.*)?)$")


@dataclass(frozen=True)
class Slot:
    """A place in the template that takes `count` modules of one `kind`."""

    name: str
    kind: str
    count: int


@dataclass
class Campaign:
    """A validated campaign file."""

    name: str
    file: str
    root: Path
    template: str
    text_template: str | None
    subject: str
    sender: str
    segments: list[Segment]
    slots: list[Slot]
    formats: tuple[str, ...]
    customers: str | None = None
    description: str = ""
    reply_to: str | None = None
    delivery: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, str] | None = None
    footer: dict[str, Any] = field(default_factory=dict)
    unsubscribe_url: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    pdf: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def sender_domain(self) -> str:
        return parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"

    def context(self) -> dict[str, Any]:
        """What templates see as `campaign`."""
        return {
            "name": self.name,
            "description": self.description,
            "subject": self.subject,
            "sender": self.sender,
            "footer": self.footer,
            "unsubscribe_url": self.unsubscribe_url or "",
        }


def find_root(campaign_file: Path) -> Path:
    """The content root is the folder holding campaigns/ (else the campaign's folder)."""
    folder = campaign_file.resolve().parent
    return folder.parent if folder.name == "campaigns" else folder


def load_campaign(path: str | Path, root: Path | None = None,
                  kinds: set[str] | None = None) -> Campaign:
    """Read and validate a campaign file; raise every problem found at once."""
    file = Path(path)
    if not file.is_file():
        raise ContentError(f"campaign file not found: {file}", file)
    root = root or find_root(file)
    rel = _relative(file, root)
    try:
        data = load_yaml(file.read_text(encoding="utf-8"), rel)
    except UnicodeDecodeError as exc:
        raise ContentError(f"campaign is not UTF-8 text: {exc}", rel, 1) from None
    if not isinstance(data, LineDict):
        raise ContentError("a campaign file must be a mapping of keys", rel, 1)
    checker = _Checker(data, rel, root, kinds or {"article", "offer", "greeting"})
    return checker.campaign()


def _relative(file: Path, root: Path) -> str:
    try:
        return str(file.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(file)


class _Checker:
    """Collects every mistake in a campaign before giving up."""

    def __init__(self, data: LineDict, file: str, root: Path, kinds: set[str]):
        self.data = data
        self.file = file
        self.root = root
        self.kinds = kinds
        self.errors: list[ContentError] = []
        self.env = EditionEnvironment(root / "templates")

    def error(self, message: str, line: int | None) -> None:
        self.errors.append(ContentError(message, self.file, line))

    def line(self, key: str, within: LineDict | None = None) -> int:
        mapping = within if within is not None else self.data
        return mapping.line_of(key) if isinstance(mapping, LineDict) else self.data.start_line

    def campaign(self) -> Campaign:
        d = self.data
        for key in d:
            if key not in KNOWN_KEYS:
                hint = _closest(str(key), KNOWN_KEYS)
                self.error(f"unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else ""),
                           self.line(str(key)))
        name = str(d.get("name") or Path(self.file).stem)
        if not _SLUG.match(name):
            self.error(f"name {name!r} must be a slug: lowercase letters, digits and '-'",
                       self.line("name"))
        formats = self.formats()
        template = self.template("template", required=True, html=True)
        text_template = self.template("text_template", required=False, html=False)
        if text_template is None and template:
            sibling = re.sub(r"\.html?(\.j2|\.jinja2?)?$", r".txt\1", template)
            if sibling != template and (self.root / "templates" / sibling).is_file():
                text_template = self.template_named(sibling, "text_template")
        subject = self.text_field("subject", required="eml" in formats, template=True)
        sender = self.address("sender", required="eml" in formats)
        reply_to = self.address("reply_to", required=False)
        segments = self.segments()
        slots = self.slots()
        delivery = self.delivery()
        schedule = self.schedule()
        footer = self.mapping("footer")
        fields = self.fields()
        pdf = self.mapping("pdf")
        if pdf.get("page_size", "A4") not in {"A4", "Letter"}:
            self.error(f"pdf.page_size {pdf.get('page_size')!r} must be A4 or Letter",
                       self.line("page_size", d.get("pdf")))
        customers = d.get("customers")
        if customers is not None and not isinstance(customers, str):
            self.error("customers must be a path to a CSV or JSONL file", self.line("customers"))
        unsubscribe = d.get("unsubscribe_url")
        if unsubscribe is not None and not (isinstance(unsubscribe, str)
                                            and unsubscribe.startswith(("https://", "http://",
                                                                        "mailto:"))):
            self.error("unsubscribe_url must be an http(s) or mailto URL",
                       self.line("unsubscribe_url"))
        collect(self.errors)
        return Campaign(
            name=name, file=self.file, root=self.root, template=template or "",
            text_template=text_template, subject=subject or "", sender=sender or "",
            segments=segments, slots=slots, formats=formats, customers=customers,
            description=str(d.get("description") or ""), reply_to=reply_to,
            delivery=delivery, schedule=schedule, footer=footer,
            unsubscribe_url=unsubscribe, fields=fields, pdf=pdf,
        )

    def formats(self) -> tuple[str, ...]:
        # without `formats`: html and text, plus email when the campaign says who sends what
        default = ["html", "text"] + (
            ["eml"] if self.data.get("sender") and self.data.get("subject") else [])
        value = self.data.get("formats", default)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, list) or not value:
            self.error("formats must be a list, e.g. [html, text, eml]", self.line("formats"))
            return ("html",)
        bad = [v for v in value if v not in FORMATS]
        if bad:
            self.error(f"unknown format(s) {', '.join(map(str, bad))} "
                       f"(known: {', '.join(FORMATS)})", self.line("formats"))
        return tuple(v for v in FORMATS if v in value)

    def template(self, key: str, *, required: bool, html: bool) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(f"{key} is required (a file in templates/)", self.data.start_line)
            return None
        if not isinstance(value, str):
            self.error(f"{key} must be a file name in templates/", self.line(key))
            return None
        return self.template_named(value, key)

    def template_named(self, name: str, key: str) -> str | None:
        path = self.root / "templates" / name
        if not path.is_file():
            self.error(f"{key}: template {name!r} not found in {self.root / 'templates'}",
                       self.line(key))
            return None
        from edition.templates import check_template  # late: templates imports campaign types

        problem = check_template(self.env, name, self.root)
        if problem:
            self.errors.append(problem)
            return None
        return name

    def text_field(self, key: str, *, required: bool, template: bool) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(f"{key} is required when the campaign makes email (eml)",
                           self.data.start_line)
            return None
        if not isinstance(value, str):
            self.error(f"{key} must be text", self.line(key))
            return None
        if template:
            from edition.templates import check_source

            problem = check_source(self.env, value, self.file, self.line(key), key)
            if problem:
                self.errors.append(problem)
                return None
        return value

    def address(self, key: str, *, required: bool) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(f"{key} is required when the campaign makes email (eml), "
                           f"e.g. \"Acme News <news@acme.example>\"", self.data.start_line)
            return None
        text = str(value)
        address = parseaddr(text)[1]
        if "\r" in text or "\n" in text or "@" not in address or "." not in address.split("@")[-1]:
            self.error(f"{key} {text!r} is not an email address like "
                       f"\"Acme News <news@acme.example>\"", self.line(key))
            return None
        return text

    def segments(self) -> list[Segment]:
        value = self.data.get("segments") or {}
        if not isinstance(value, dict):
            self.error("segments must map names to rules, e.g. mvc: \"lifetime_value >= 5000\"",
                       self.line("segments"))
            return []
        result = []
        for name, rule in value.items():
            line = self.line(str(name), value)
            if not _NAME.match(str(name)):
                self.error(f"segment name {name!r} must be a simple name (letters, digits, _)",
                           line)
                continue
            try:
                result.append(compile_segment(self.env, str(name), rule, self.file, line))
            except ContentError as exc:
                self.errors.append(exc)
        return result

    def slots(self) -> list[Slot]:
        value = self.data.get("slots")
        if not isinstance(value, dict) or not value:
            self.error("slots is required: e.g. articles: {kind: article, count: 3}",
                       self.line("slots"))
            return []
        result = []
        for name, spec in value.items():
            line = self.line(str(name), value)
            if not _NAME.match(str(name)) or name in RESERVED:
                self.error(f"slot name {name!r} must be a simple name and not one of "
                           f"{', '.join(sorted(RESERVED))}", line)
                continue
            if not isinstance(spec, dict):
                self.error(f"slot {name!r} must be a mapping like {{kind: article, count: 3}}",
                           line)
                continue
            for key in spec:
                if key not in {"kind", "count"}:
                    self.error(f"slot {name!r}: unknown key {key!r} (known: kind, count)",
                               self.line(str(key), spec))
            kind = spec.get("kind")
            if kind not in self.kinds:
                self.error(f"slot {name!r}: unknown kind {kind!r} "
                           f"(known: {', '.join(sorted(self.kinds))})",
                           self.line("kind", spec))
                continue
            count = spec.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                self.error(f"slot {name!r}: count must be a whole number of at least 1",
                           self.line("count", spec))
                continue
            result.append(Slot(str(name), kind, count))
        return result

    def delivery(self) -> dict[str, Any]:
        value = self.data.get("delivery") or {"to": "local"}
        if not isinstance(value, dict):
            self.error("delivery must be a mapping like {to: local}", self.line("delivery"))
            return {"to": "local"}
        target = str(value.get("to", "local"))
        if not _TARGET.match(target):
            self.error(f"delivery.to {target!r} must be local, s3://bucket/prefix, "
                       f"smtp://host:port or ses", self.line("to", value))
        elif re.match(r"^\w+://[^/]*@", target):
            self.error("delivery.to must not hold credentials; set them in the environment",
                       self.line("to", value))
        return dict(value) | {"to": target}

    def schedule(self) -> dict[str, str] | None:
        value = self.data.get("schedule")
        if value is None:
            return None
        if not isinstance(value, dict) or "cron" not in value:
            self.error("schedule must be {cron: \"0 8 * * MON\", timezone: Europe/London}",
                       self.line("schedule"))
            return None
        for key in value:
            if key not in {"cron", "timezone"}:
                self.error(f"schedule: unknown key {key!r} (known: cron, timezone)",
                           self.line(str(key), value))
        cron = str(value["cron"])
        try:
            CronSim(cron, dt.datetime(2026, 1, 1))
        except (CronSimError, ValueError) as exc:
            self.error(f"schedule.cron {cron!r} is not a valid cron expression: {exc}",
                       self.line("cron", value))
        timezone = str(value.get("timezone", "UTC"))
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.error(f"schedule.timezone {timezone!r} is not a known time zone "
                       f"(e.g. Europe/London)", self.line("timezone", value))
        return {"cron": cron, "timezone": timezone}

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key) or {}
        if not isinstance(value, dict):
            self.error(f"{key} must be a mapping", self.line(key))
            return {}
        return dict(value)

    def fields(self) -> dict[str, str]:
        value = self.mapping("fields")
        for name, kind in value.items():
            if kind not in FIELD_TYPES:
                self.error(f"fields.{name}: unknown type {kind!r} "
                           f"(known: {', '.join(sorted(FIELD_TYPES))})",
                           self.line(str(name), self.data.get("fields")))
        return {str(k): str(v) for k, v in value.items()}


def _closest(word: str, choices: set[str]) -> str | None:
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return match[0] if match else None
