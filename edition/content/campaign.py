"""Campaign files: load, check every key, and report every mistake at once."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import yaml

from edition.content.config import (
    RESERVED_SLOTS,
    CampaignConfig,
    DkimConfig,
    OptionErrors,
    SuppressionConfig,
    check,
    closest,
    target_options,
    target_problem,
)
from edition.content.environment import EditionEnvironment
from edition.content.limits import Limits
from edition.content.segments import REQUIRED_KINDS, Rule, Segment, compile_segment
from edition.content.template_checks import check_source, check_template, slots_used
from edition.content.yamlfile import LineDict, load_yaml
from edition.errors import ContentError, collect
from edition.locales import NotALanguageTag, language_of, language_tag
from edition.naming import FORMATS

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


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
    subject: str | dict[str, str]
    sender: str
    segments: list[Segment]
    slots: list[Slot]
    formats: tuple[str, ...]
    customers: str | dict[str, str] | None = None
    title: str | dict[str, str] | None = None       # display name; default: from the name
    description: str = ""
    reply_to: str | None = None
    delivery: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, str] | None = None
    footer: dict[str, Any] = field(default_factory=dict)
    unsubscribe_url: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    pdf: dict[str, Any] = field(default_factory=dict)
    max_failed: tuple[int, bool] = (0, False)     # (number, is a percentage)
    max_rejected: tuple[int, bool] | None = None  # the same for rejected rows; None: any
    customers_encoding: str | None = None         # of a CSV/JSONL customer file
    limits: Limits = field(default_factory=Limits)
    currency: str | dict[str, str] | None = None
    kind: str = "marketing"                       # or transactional: no marketing unsubscribes
    suppression: SuppressionConfig = field(default_factory=SuppressionConfig)
    unsubscribe_mailto: str | None = None
    list_id: str | None = None                    # List-Id; default <name>.<sender domain>
    feedback_id: str | None = None                # Feedback-ID sender id; default the domain
    dkim: DkimConfig | None = None                # delivery.dkim (SMTP only; SES signs itself)
    audience: Rule | None = None                  # who the campaign is for (None: everyone)
    exclude: Rule | None = None
    require: tuple[str, ...] = ()                 # slots that must be filled
    approval: str = "optional"    # "required": only `edition send` of an approved run

    @property
    def approval_required(self) -> bool:
        return self.approval == "required"

    @functools.cached_property
    def sender_domain(self) -> str:
        return parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"

    @property
    def target(self) -> str:
        """The campaign's own delivery target (`delivery.to`)."""
        return str(self.delivery.get("to", "local"))

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

    def context(self, locale: str = "en") -> dict[str, Any]:
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
    rel = relative_to_root(file, root)
    try:
        data = load_yaml(file.read_text(encoding="utf-8"), rel)
    except UnicodeDecodeError as exc:
        raise ContentError(f"campaign is not UTF-8 text: {exc}", rel, 1) from None
    if not isinstance(data, LineDict):
        raise ContentError("a campaign file must be a mapping of keys", rel, 1)
    return _Checker(data, rel, root, kinds or {"article", "offer", "greeting"}).campaign()


def is_campaign_name(ref: str) -> bool:
    """A bare name (`weekly-newsletter`), not a path to a campaign file."""
    return bool(ref) and "/" not in ref and "\\" not in ref and \
        Path(ref).suffix not in {".yaml", ".yml"}


def campaign_file(ref: str, root: Path) -> Path | None:
    """The file a campaign reference names, or None.

    A name is looked up among root/campaigns/*.yaml by each file's `name:` (the file's
    stem when it has none); a relative path is taken from the content root, then from the
    working directory; an absolute path as it is.
    """
    if not ref:
        return None
    if not is_campaign_name(ref):
        path = Path(ref).expanduser()
        if not path.is_absolute() and (root / path).is_file():
            path = root / path
        return path if path.is_file() else None
    folder = root / "campaigns"
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.suffix in {".yaml", ".yml"}
                   and p.is_file() and not p.name.startswith("."))
    files.sort(key=lambda p: p.stem != ref)  # the file named after it first (stable)
    for file in files:
        if _declared_name(file) == ref:
            return file
    return None


def _declared_name(file: Path) -> str | None:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return str(name) if name else file.stem


def relative_to_root(file: Path, root: Path) -> str:
    """`campaigns/x.yaml` for a file under the content root (else the path as given)."""
    try:
        return file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(file)


class _Checker:
    """The shape from config.CampaignConfig, then what needs the content root."""

    def __init__(self, data: LineDict, file: str, root: Path, kinds: set[str]):
        self.data = data
        self.file = file
        self.root = root
        self.kinds = kinds
        self.errors: list[ContentError] = []
        self.env = EditionEnvironment(root / "templates")

    def error(self, message: str, line: int | None) -> None:
        self.errors.append(ContentError(message, self.file, line))

    def line(self, key: str, within: Any = None) -> int:
        mapping = within if within is not None else self.data
        return mapping.line_of(key) if isinstance(mapping, LineDict) else self.data.start_line

    def campaign(self) -> Campaign:
        config, self.errors = check(CampaignConfig, self.data, self.file)
        config = config or CampaignConfig()
        d = self.data
        formats = config.formats or tuple(
            ["html", "text"] + (["eml"] if d.get("sender") and d.get("subject") else []))
        if "formats" in d and config.formats is None:
            formats = ("html",)  # the error is reported; go on checking the rest
        name = config.name or Path(self.file).stem
        template = self.template(config.template, "template", required="template" not in d)
        text_template = self.template(config.text_template, "text_template", required=False)
        if text_template is None and template and config.text_template is None:
            sibling = re.sub(r"\.html?(\.j2|\.jinja2?)?$", r".txt\1", template)
            if sibling != template and (self.root / "templates" / sibling).is_file():
                text_template = self.template(sibling, "text_template", required=False)
        subject = config.subject
        if subject is None and "eml" in formats and "subject" not in d:
            self.error("subject is required when the campaign makes email (eml)",
                       d.start_line)
        elif subject is not None:
            within = d.get("subject")
            sources = subject.items() if isinstance(subject, dict) else [("", subject)]
            for locale, source in sources:
                line = self.line(locale, within) if locale else self.line("subject")
                problem = check_source(self.env, source, self.file, line,
                                       f"subject.{locale}" if locale else "subject")
                if problem:
                    self.errors.append(problem)
        if config.sender is None and "eml" in formats and "sender" not in d:
            self.error("sender is required when the campaign makes email (eml), "
                       "e.g. \"Acme News <news@acme.example>\"", d.start_line)
        segments = self.segments(config.segments)
        slots = self.slots(config.slots or {})
        names = [seg.name for seg in segments]
        audience = self.rule("audience", config.audience, names)
        exclude = self.rule("exclude", config.exclude, names)
        require = self.required(config.require, slots, [t for t in (template, text_template)
                                                        if t])
        delivery = dict(config.delivery) | {"to": str(config.delivery.get("to", "local"))}
        if "delivery" in d and isinstance(d.get("delivery"), dict):
            problem = target_problem(delivery["to"])
            if problem:
                self.error(f"delivery.to {delivery['to']!r} {problem}",
                           self.line("to", d["delivery"]))
            else:
                try:
                    target_options(delivery["to"], delivery)
                except OptionErrors as exc:
                    for option, problem in exc.problems:
                        self.error(f"delivery: {problem}", self.line(option, d["delivery"])
                                   if option else self.line("delivery"))
        schedule = config.schedule.model_dump() if config.schedule else None
        dkim = self.dkim(d.get("delivery"))
        self.suppression_lists(config.suppression)
        collect(self.errors)
        return Campaign(
            name=name, file=self.file, root=self.root, template=template or "",
            text_template=text_template, subject=subject or "", sender=config.sender or "",
            segments=segments, slots=slots, formats=formats, customers=config.customers,
            title=config.title, description=config.description or "",
            reply_to=config.reply_to,
            delivery=delivery, schedule=schedule, footer=dict(config.footer),
            unsubscribe_url=config.unsubscribe_url, fields=dict(config.fields),
            pdf=config.pdf.model_dump(), max_failed=config.max_failed,
            max_rejected=config.max_rejected, customers_encoding=config.customers_encoding,
            limits=Limits(**config.limits.model_dump()), currency=config.currency,
            kind=config.kind, suppression=config.suppression,
            unsubscribe_mailto=config.unsubscribe_mailto, list_id=config.list_id,
            feedback_id=config.feedback_id, dkim=dkim, audience=audience, exclude=exclude,
            require=require, approval=config.approval,
        )

    def dkim(self, delivery: Any) -> DkimConfig | None:
        """`delivery.dkim`, checked with its lines (the key itself is read when sending)."""
        if not isinstance(delivery, LineDict) or delivery.get("dkim") is None:
            return None
        value = delivery["dkim"]
        if not isinstance(value, dict):
            self.error("delivery.dkim must be a mapping: {domain, selector, key_file | key_env}",
                       self.line("dkim", delivery))
            return None
        config, errors = check(DkimConfig, value, self.file)
        for problem in errors:
            self.errors.append(ContentError(
                problem.message if problem.message.startswith("dkim")
                else f"delivery.dkim: {problem.message}", self.file, problem.line))
        return config if not errors else None

    def suppression_lists(self, config: SuppressionConfig) -> None:
        """Every suppression list must exist: a list that silently fails to load mails
        people who asked not to be mailed."""
        within = self.data.get("suppression")
        line = self.line("lists", within) if isinstance(within, LineDict) \
            else self.line("suppression")
        for name in config.lists:
            path = Path(name) if Path(name).is_absolute() else self.root / name
            if not path.is_file():
                self.error(f"suppression list {name!r} not found (paths are relative to "
                           f"the content root {self.root})", line)

    def template(self, name: str | None, key: str, *, required: bool) -> str | None:
        if name is None:
            if required:
                self.error(f"{key} is required (a file in templates/)", self.data.start_line)
            return None
        path = self.root / "templates" / name
        if not path.is_file():
            self.error(f"{key}: template {name!r} not found in {self.root / 'templates'}",
                       self.line(key))
            return None
        problem = check_template(self.env, name, self.root)
        if problem:
            self.errors.append(problem)
            return None
        return name

    def rule(self, key: str, value: str | tuple[str, ...] | None,
             segments: list[str]) -> Rule | None:
        """`audience:` / `exclude:`: known segment names, or a rule compiled like a segment."""
        if value is None:
            return None
        if isinstance(value, str) and value.strip() in segments:
            value = (value.strip(),)   # `audience: senior` is that segment, not a rule
        if isinstance(value, tuple):
            unknown = [n for n in value if n not in segments]
            for name in unknown:
                hint = closest(name, segments)
                self.error(f"{key}: {name!r} is not a segment of this campaign"
                           + (f" (did you mean {hint!r}?)" if hint else
                              f" (segments: {', '.join(segments) or 'none'})"), self.line(key))
            return None if unknown else Rule(key, names=value)
        try:
            return Rule(key, rule=compile_segment(self.env, key, value, self.file, self.line(key)))
        except ContentError as exc:
            self.errors.append(exc)
            return None

    def required(self, value: tuple[str, ...] | None, slots: list[Slot],
                 templates: list[str]) -> tuple[str, ...]:
        """The slots that must be filled (default: the article and offer slots shown)."""
        names = [s.name for s in slots]
        if value is not None:
            for name in value:
                if name not in names:
                    hint = closest(name, names)
                    self.error(f"require: {name!r} is not a slot of this campaign"
                               + (f" (did you mean {hint!r}?)" if hint else ""),
                               self.line("require"))
            return tuple(n for n in value if n in names)
        try:
            used = slots_used(self.env, names, templates)
        except Exception:  # the template's own check reports what is wrong with it
            used = set(names)
        return tuple(s.name for s in slots if s.kind in REQUIRED_KINDS and s.name in used)

    def segments(self, value: dict[str, Any]) -> list[Segment]:
        within = self.data.get("segments")
        result = []
        for name, rule in value.items():
            line = self.line(str(name), within)
            if not _NAME.match(str(name)):
                self.error(f"segment name {name!r} must be a simple name (letters, digits, _)",
                           line)
                continue
            try:
                result.append(compile_segment(self.env, str(name), rule, self.file, line))
            except ContentError as exc:
                self.errors.append(exc)
        return result

    def slots(self, value: dict[str, Any]) -> list[Slot]:
        within = self.data.get("slots")
        result = []
        for name, spec in value.items():
            line = self.line(str(name), within)
            if not _NAME.match(str(name)) or name in RESERVED_SLOTS:
                self.error(f"slot name {name!r} must be a simple name and not one of "
                           f"{', '.join(sorted(RESERVED_SLOTS))}", line)
                continue
            if spec.kind not in self.kinds:
                self.error(f"slot {name!r}: unknown kind {spec.kind!r} "
                           f"(known: {', '.join(sorted(self.kinds))})",
                           self.line("kind", within.get(name) if within else None))
                continue
            result.append(Slot(str(name), spec.kind, spec.count))
        return result


__all__ = ["FORMATS", "Campaign", "Slot", "find_root", "load_campaign"]
