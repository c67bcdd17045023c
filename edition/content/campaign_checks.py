"""What checking a campaign needs beyond its own keys: the content root's templates, the
segment rules compiled in the sandbox, the slots the template shows, the suppression
lists on disk, and the installed customer sources.

Each check is called by a validator of the campaign model (content/campaign.py) with the
`Loading` context, and says what is wrong through errors_at_lines (`fail` at a key,
`failed` for an error with a file and line of its own: a template's, a rule's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from edition.content.campaign_blocks import Slot, Suppression
from edition.content.campaign_values import NAME, RESERVED_SLOTS
from edition.content.environment import EditionEnvironment
from edition.content.errors_at_lines import Loc, closest, fail, fail_all, failed
from edition.content.plugins import known_sources, option_problems, source_plugin
from edition.content.segments import REQUIRED_KINDS, Rule, Segment, compile_segment
from edition.content.template_checks import check_source, check_template, slots_used
from edition.content.yamlfile import LineDict
from edition.databases import has_password, masked
from edition.errors import ContentError

Problems = list[tuple[Loc, PydanticCustomError]]


@dataclass
class Loading:
    """The validation context of a campaign: where it was read from and what it may use."""

    file: str                        # as messages show it: campaigns/x.yaml
    root: Path                       # the content root
    data: LineDict                   # the file's keys, with their lines
    kinds: set[str] = field(default_factory=lambda: {"article", "offer", "greeting"})
    env: EditionEnvironment = field(init=False)

    def __post_init__(self) -> None:
        self.env = EditionEnvironment(self.root / "templates")

    def line(self, key: str, within: object = None) -> int:
        mapping = within if within is not None else self.data
        return mapping.line_of(key) if isinstance(mapping, LineDict) else self.data.start_line


def loading(info: ValidationInfo) -> Loading:
    context = info.context
    if not isinstance(context, Loading):
        raise TypeError("a Campaign is made by load_campaign (it needs the content root)")
    return context


# -- templates ------------------------------------------------------------------------


def template(ctx: Loading, name: object, key: str) -> str:
    """A template in templates/ that exists and compiles; its name."""
    if not isinstance(name, str):
        raise fail(f"{key} must be text")
    if not (ctx.root / "templates" / name).is_file():
        raise fail(f"{key}: template {name!r} not found in {ctx.root / 'templates'}")
    problem = check_template(ctx.env, name, ctx.root)
    if problem:
        raise failed(problem)
    return name


def sibling_text_template(ctx: Loading, html: str | None) -> str | None:
    """`letter.txt.j2` beside `letter.html.j2`, used as the text template when it exists."""
    if not html:
        return None
    sibling = re.sub(r"\.html?(\.j2|\.jinja2?)?$", r".txt\1", html)
    if sibling == html or not (ctx.root / "templates" / sibling).is_file():
        return None
    return template(ctx, sibling, "text_template")


def check_subject(ctx: Loading, subject: str | dict[str, str]) -> None:
    """Every subject (one per locale) compiles as a template."""
    within = ctx.data.get("subject")
    sources = subject.items() if isinstance(subject, dict) else [("", subject)]
    problems: Problems = []
    for locale, source in sources:
        line = ctx.line(locale, within) if locale else ctx.line("subject")
        problem = check_source(ctx.env, source, ctx.file, line,
                               f"subject.{locale}" if locale else "subject")
        if problem:
            problems.append(((), failed(problem)))
    fail_all(problems, subject)


# -- segments, slots, audience ----------------------------------------------------------


def segments(ctx: Loading, value: object) -> tuple[Segment, ...]:
    """`segments: {mvc: "lifetime_value >= 5000"}`, each rule compiled in the sandbox."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise fail("segments must map names to rules, e.g. mvc: \"lifetime_value >= 5000\"")
    within = ctx.data.get("segments")
    result, problems = [], []
    for name, rule in value.items():
        line = ctx.line(str(name), within)
        if not NAME.match(str(name)):
            problems.append(((name,), fail(f"segment name {name!r} must be a simple name "
                                           f"(letters, digits, _)", says_where=True)))
            continue
        try:
            result.append(compile_segment(ctx.env, str(name), rule, ctx.file, line))
        except ContentError as exc:
            problems.append(((name,), failed(exc)))
    fail_all(problems, value)
    return tuple(result)


def slots(ctx: Loading, value: object) -> tuple[Slot, ...]:
    """`slots: {articles: {kind: article, count: 3}}`, in the order written."""
    if not isinstance(value, dict) or not value:
        raise fail("slots must map slot names to a kind and a count, e.g. "
                   "articles: {kind: article, count: 3}")
    result, problems = [], []
    for name, spec in value.items():
        if not NAME.match(str(name)) or name in RESERVED_SLOTS:
            problems.append(((name,), fail(
                f"slot name {name!r} must be a simple name and not one of "
                f"{', '.join(sorted(RESERVED_SLOTS))}", says_where=True)))
            continue
        try:
            slot = Slot.model_validate(spec)
        except ValidationError as exc:
            problems += [((name,), error) for error in exc.errors()]  # type: ignore[misc]
            continue
        if slot.kind not in ctx.kinds:
            problems.append(((name,), fail(f"slot {name!r}: unknown kind {slot.kind!r} "
                                           f"(known: {', '.join(sorted(ctx.kinds))})",
                                           at="kind", says_where=True)))
            continue
        result.append(slot.named(str(name)))
    fail_all(problems, value)
    return tuple(result)


def segment_names(ctx: Loading, info: ValidationInfo) -> list[str]:
    """The campaign's segment names (as written, when a rule of one failed)."""
    if "segments" in info.data:
        return [s.name for s in info.data["segments"]]
    written = ctx.data.get("segments")
    return [str(n) for n in written] if isinstance(written, dict) else []


def rule(ctx: Loading, key: str, value: str | tuple[str, ...] | None,
         names: list[str]) -> Rule | None:
    """`audience:` / `exclude:`: known segment names, or a rule compiled like a segment."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip() in names:
        value = (value.strip(),)   # `audience: senior` is that segment, not a rule
    if isinstance(value, tuple):
        unknown = [n for n in value if n not in names]
        problems: Problems = []
        for name in unknown:
            hint = closest(name, names)
            problems.append(((), fail(f"{key}: {name!r} is not a segment of this campaign" + (
                f" (did you mean {hint!r}?)" if hint else
                f" (segments: {', '.join(names) or 'none'})"))))
        fail_all(problems, value)
        return Rule(key, names=value)
    try:
        return Rule(key, rule=compile_segment(ctx.env, key, value, ctx.file, ctx.line(key)))
    except ContentError as exc:
        raise failed(exc) from None


def required(ctx: Loading, value: tuple[str, ...] | None, info: ValidationInfo
             ) -> tuple[str, ...]:
    """The slots that must be filled (default: the article and offer slots shown)."""
    known: tuple[Slot, ...] = info.data.get("slots") or ()
    names = [s.name for s in known]
    if value is not None:
        problems: Problems = []
        for name in value:
            if name not in names and "slots" in info.data:
                hint = closest(name, names)
                problems.append(((), fail(f"require: {name!r} is not a slot of this campaign"
                                          + (f" (did you mean {hint!r}?)" if hint else ""))))
        fail_all(problems, value)
        return tuple(n for n in value if n in names)
    templates = [t for t in (info.data.get("template"), info.data.get("text_template")) if t]
    try:
        used = slots_used(ctx.env, names, templates)
    except Exception:  # the template's own check reports what is wrong with it
        used = set(names)
    return tuple(s.name for s in known if s.kind in REQUIRED_KINDS and s.name in used)


# -- files and sources ------------------------------------------------------------------


def suppression_lists(ctx: Loading, suppression: Suppression) -> Suppression:
    """Every suppression list must exist: a list that silently fails to load mails
    people who asked not to be mailed."""
    problems: Problems = []
    for name in suppression.lists:
        path = Path(name) if Path(name).is_absolute() else ctx.root / name
        if not path.is_file():
            problems.append((("lists",) if isinstance(ctx.data.get("suppression"), dict)
                             else (), fail(f"suppression list {name!r} not found (paths are "
                                           f"relative to the content root {ctx.root})",
                                           says_where=True)))
    fail_all(problems, suppression)
    return suppression


def customers(value: object) -> str | dict[str, str] | None:
    """`customers:` names a file or a URL, or a source's mapping (`{url: postgresql://…,
    query: …}`), that an installed source reads; never a password."""
    if value is None:
        return None
    if isinstance(value, str):
        url = value
    elif isinstance(value, dict) and isinstance(value.get("url"), str) and value["url"]:
        url = value["url"]
    else:
        raise fail(f"customers must be {known_sources()}")
    plugin = source_plugin(value if isinstance(value, str) else url)
    if plugin is None:
        raise fail(f"customers {masked(url)}: no installed source reads it (known: "
                   f"{known_sources()})")
    if "://" in url and has_password(url):
        raise fail(f"customers url {masked(url)} holds a password: campaign files must not; "
                   f"use {getattr(plugin, 'credentials', 'the environment')}")
    if isinstance(value, Mapping):
        problems = option_problems(plugin.options_model, value, word="key")
        fail_all([((), fail(f"customers: {text}", at=key, says_where=True))
                  for key, text in problems], value)
        return {str(k): str(v) for k, v in value.items()}
    return url   # the value itself: a mapping returned above
