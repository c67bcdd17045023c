"""Content modules: Markdown files with YAML front matter, parsed and checked once."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from edition.content.environment import EditionEnvironment
from edition.content.errors_at_lines import check
from edition.content.front_matter import FrontMatter, front_matter_notes
from edition.content.markup import BodyProblem, render_body
from edition.content.template_checks import check_source
from edition.content.yamlfile import LineDict, load_yaml
from edition.errors import ContentError
from edition.locales import NotALanguageTag, language_tag

KINDS = {"articles": "article", "offers": "offer", "greetings": "greeting"}
_CHECK_ENV = EditionEnvironment()
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
FIRST_LINE = 2   # the front matter's first line, after the opening `---`


@dataclass(frozen=True)
class Module:
    """One piece of pre-produced content, ready to combine."""

    id: str
    kind: str
    title: str
    segments: frozenset[str] = frozenset()
    locales: frozenset[str] | None = None
    interests: frozenset[str] = frozenset()
    priority: int = 0
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    campaigns: frozenset[str] | None = None
    body: str = ""             # the Markdown source; may hold Jinja for the personal layer
    meta: dict[str, object] = field(default_factory=dict, compare=False)
    source: str = ""
    line: int = 1
    body_line: int = 1         # the file's line where the body starts
    # warnings with file:line: front matter keys that look like misspelt known ones
    notes: tuple[str, ...] = field(default=(), compare=False)

    @functools.cached_property
    def rendered(self) -> tuple[str, str]:
        # Markdown is rendered on first use: a preview needs a handful of modules, not all
        return render_body(self.body)

    @property
    def html(self) -> str:
        """Sanitized HTML of the body (Jinja expressions kept for the personal layer)."""
        return self.rendered[0]

    @property
    def text(self) -> str:
        """The plain-text twin of the body."""
        return self.rendered[1]

    @property
    def personal(self) -> bool:
        """True when the body reads per-customer data and is rendered per customer."""
        return "{{" in self.body or "{%" in self.body

    @functools.cached_property
    def digest(self) -> str:
        """Content hash: any edit to the module changes the versions that use it."""
        payload = "\x00".join([self.id, self.kind, self.title, self.body])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def split_front_matter(text: str, file: Path) -> tuple[str, str, int]:
    """Return (front matter, body, line where the body starts); the YAML starts on line 2."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ContentError("missing front matter: the file must start with a '---' line", file, 1)
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() in {"---", "..."}:
            return "".join(lines[1:i]), "".join(lines[i + 1:]), i + 2
    raise ContentError("front matter is not closed with a '---' line", file, 1)


def parse_module(file: Path, root: Path) -> tuple[Module | None, list[ContentError]]:
    """Parse one module file; return it or every problem found in it."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ContentError(f"cannot read module: {exc}", _rel(file, root), 1)]
    rel = _rel(file, root)
    try:
        front, body, body_line = split_front_matter(text, rel)
        first = FIRST_LINE
        meta = load_yaml(front, rel, first_line=first) or LineDict()
    except ContentError as exc:
        return None, [exc]
    if not isinstance(meta, LineDict):
        return None, [ContentError("front matter must be a mapping of keys", rel, first)]
    if meta.start_line < first:
        meta.start_line = first
    matter, errors = check(FrontMatter, meta, str(rel), extra_word="front matter key")
    matter = matter or FrontMatter()
    kind, module_id, title, locales = _identity(file, rel, meta, matter, body, errors)
    errors += _body_problems(body, rel, body_line)
    if errors:
        return None, errors
    module = Module(
        id=module_id,
        kind=str(kind),
        title=title.strip(),
        segments=matter.segments or frozenset(),
        locales=frozenset(locales) or None,
        interests=frozenset(i.lower() for i in matter.interests or ()),
        priority=matter.priority,
        valid_from=matter.valid_from,
        valid_until=matter.valid_until,
        campaigns=matter.campaigns or None,
        body=body,
        meta={str(k): _plain(v) for k, v in meta.items()},
        source=str(rel),
        line=meta.lines.get("id", FIRST_LINE),
        body_line=body_line,
        notes=tuple(f"{rel}:{meta.lines.get(key, FIRST_LINE)}: {note}"
                    for key, note in front_matter_notes(meta)),
    )
    return module, []


def _identity(file: Path, rel: Path, meta: LineDict, matter: FrontMatter, body: str,
              errors: list[ContentError]) -> tuple[str | None, str, str, set[str]]:
    """(kind, id, title, locales) with their defaults; problems go to `errors`."""

    def line(key: str) -> int:
        return meta.lines.get(key, FIRST_LINE)

    # the kind folder is the top one (articles/travel/x.md is an article too)
    folder_kind = KINDS.get(Path(rel).parts[0] if Path(rel).parts else "",
                            KINDS.get(file.parent.name))
    kind = matter.kind or folder_kind
    if kind is None and "kind" not in meta:
        errors.append(ContentError(
            f"unknown kind {kind!r} (expected one of: {', '.join(sorted(KINDS.values()))})",
            rel, line("kind")))
    module_id = matter.id or file.stem
    if "id" not in meta and not _ID.match(module_id):
        errors.append(ContentError(
            f"id {module_id!r} may only use letters, digits, '.', '_' and '-'", rel, line("id")))
    title = matter.title
    if title is None:
        # no title: the body's first heading, else the id ("baby-checklist" → "Baby checklist")
        heading = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", body, re.M)
        title = heading.group(1) if heading else module_id.replace("-", " ").replace(
            "_", " ").capitalize()
    if not isinstance(title, str) or not title.strip():
        errors.append(ContentError("title must be text", rel, line("title")))
        title = module_id
    locales = set()
    for locale in matter.locales or ():  # tags, as customers' locales are (edition.locales)
        try:
            locales.add(language_tag(locale))
        except NotALanguageTag as exc:
            errors.append(ContentError(f"locales: {exc}", rel, line("locales")))
    if matter.valid_from and matter.valid_until and matter.valid_from > matter.valid_until:
        errors.append(ContentError("valid_from is after valid_until", rel, line("valid_until")))
    return kind, module_id, title, locales


def _body_problems(body: str, rel: Path, body_line: int) -> list[ContentError]:
    """A body's template syntax, and whether the sanitizer leaves its expressions whole."""
    if "{{" not in body and "{%" not in body and "{#" not in body:
        return []
    problem = check_source(_CHECK_ENV, body, str(rel), body_line, "module body",
                           module_body=True)
    if problem:
        return [problem]
    if "{{" in body or "{%" in body:
        try:
            render_body(body)  # the sanitizer must leave every expression in place
        except BodyProblem as exc:
            return [ContentError(f"module body: {exc}", rel, body_line)]
    return []


def _plain(value: object) -> object:
    """Front matter as plain dicts/lists (LineDict carries line numbers we don't expose)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _rel(file: Path, root: Path) -> Path:
    try:
        return file.resolve().relative_to(root.resolve())
    except ValueError:
        return file
