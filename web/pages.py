"""The pages a recipient opens: templates a team can override, in the recipient's language.

A page is a Jinja template: the content root's `templates/<name>` when the team has
one, else ours in `web/templates/` (the way `templates/print.css` overrides the
default print stylesheet). Its text goes through gettext with Babel catalogs
(`web/locales/<language>/LC_MESSAGES/web.po`, read when first needed, no compile
step); English is the templates' own text. The language is the first of: the locale the
link's token carries (the customer's), the browser's Accept-Language, English.

Templates run sandboxed with autoescape, like campaign templates: a team's page can
print the campaign's name, never run code.
"""

from __future__ import annotations

import functools
import gettext
import io
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from babel import negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import ChoiceLoader, FileSystemLoader, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from edition.content.campaign import by_locale
from edition.content.yamlfile import load_yaml

log = logging.getLogger("edition.unsubscribe")

HERE = Path(__file__).resolve().parent
OWN_TEMPLATES = HERE / "templates"
LOCALES = HERE / "locales"
DOMAIN = "web"
DEFAULT_LANGUAGE = "en"
_MAX_ACCEPT = 32   # Accept-Language entries looked at (the header is the sender's to fill)


def languages() -> tuple[str, ...]:
    """The languages the pages speak: English plus every catalog in web/locales/."""
    found = {p.parent.parent.name for p in LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    return (DEFAULT_LANGUAGE, *sorted(found - {DEFAULT_LANGUAGE}))


@functools.lru_cache(maxsize=16)
def translations(language: str) -> gettext.NullTranslations:
    """The language's catalog (web/locales/<language>/LC_MESSAGES/web.po), else none."""
    po = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def accepted(header: str) -> list[str]:
    """The languages of an Accept-Language header, most wanted first (q=0 left out)."""
    weighted = []
    for position, part in enumerate(header.split(",")[:_MAX_ACCEPT]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag.strip() and tag.strip() != "*" and quality > 0:
            weighted.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


def choose_language(wanted: Iterable[str]) -> str:
    """The first wanted language the pages speak (es-MX → es), else English."""
    available = list(languages())
    for tag in wanted:
        found = negotiate_locale([tag.replace("_", "-")], available, sep="-")
        if found:
            return found
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Brand:
    """How a page names the campaign: its display name in the page's language."""

    campaign: str
    display_name: str


def display_name(title: object, sender: object, name: str, language: str) -> str:
    """What recipients call a campaign: its `title` (text, or per locale like `subject`),
    else the display name of its sender (the From line they know), else its name."""
    if isinstance(title, dict):
        title = by_locale({str(k): str(v) for k, v in title.items()}, language)
    if isinstance(title, str) and title.strip():
        return title.strip()
    sender_name = parseaddr(sender)[0].strip() if isinstance(sender, str) else ""
    return sender_name or name


class Pages:
    """One content root's pages: its templates over ours, one environment per language."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._envs: dict[str, SandboxedEnvironment] = {}   # by language ("own:" prefix)
        self._campaigns: dict[Path, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def environment(self, language: str, *, own: bool = False) -> SandboxedEnvironment:
        """The environment for a language: the team's templates over ours (`own`: ours
        only, the fallback when theirs fails)."""
        with self._lock:
            env = self._envs.get(("own:" if own else "") + language)
            if env is None:
                folders = [OWN_TEMPLATES] if own else [self.root / "templates", OWN_TEMPLATES]
                env = SandboxedEnvironment(
                    loader=ChoiceLoader([FileSystemLoader(f) for f in folders]),
                    autoescape=select_autoescape(default=True, default_for_string=True),
                    extensions=["jinja2.ext.i18n"])
                env.install_gettext_translations(translations(language),  # type: ignore[attr-defined]
                                                 newstyle=True)
                self._envs[("own:" if own else "") + language] = env
            return env

    def render(self, name: str, language: str, context: Mapping[str, Any]) -> str:
        """The page `name` in `language` (context: what the template reads). When the
        team's template fails, ours is shown and the error logged: a recipient must
        always get an answer."""
        values = {**context, "lang": language}
        try:
            return self.environment(language).get_template(name).render(values)
        except TemplateError as exc:
            log.error("the page template %s failed (%s: %s); showing the built-in one",
                      name, type(exc).__name__, exc)
            return self.environment(language, own=True).get_template(name).render(values)

    def warm(self, name: str) -> list[str]:
        """Load and compile `name` in every language now, not on a request's time; the
        problems of a team's template, for the start-up log."""
        problems = []
        for language in languages():
            try:
                self.environment(language).get_template(name)
            except TemplateError as exc:
                problems.append(f"{name}: {type(exc).__name__}: {exc}")
            self.environment(language, own=True).get_template(name)
        return sorted(set(problems))

    def brand(self, campaign: str, language: str) -> Brand:
        """The campaign's display name for the page. Read from the campaign file alone,
        like the unsubscribe store: a page must work while the campaign's content is
        broken, or after the campaign was renamed or deleted."""
        data = self._campaign_file(campaign)
        return Brand(campaign, display_name(data.get("title"), data.get("sender"), campaign,
                                            language))

    def campaign_data(self, campaign: str) -> dict[str, Any]:
        """The campaign file's keys as written (empty when it is gone or broken)."""
        return self._campaign_file(campaign)

    def version(self, name: str, language: str) -> str:
        """The version of a page's text the recipient saw: a digest of the template in
        force (the team's or ours) and the language (the consent record's "what text")."""
        import hashlib

        env = self.environment(language)
        try:
            source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        except TemplateError:
            source = ""
        return hashlib.sha256(f"{language}\0{source}".encode()).hexdigest()[:16]

    def _campaign_file(self, campaign: str) -> dict[str, Any]:
        for file in sorted((self.root / "campaigns").glob("*.y*ml")):
            data = self._read(file)
            if (data.get("name") or file.stem) == campaign:
                return data
        return {}

    def _read(self, file: Path) -> dict[str, Any]:
        try:
            stamp = file.stat().st_mtime
        except OSError:
            return {}
        with self._lock:
            cached = self._campaigns.get(file)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            data = load_yaml(file.read_text(encoding="utf-8"), str(file))
        except Exception:  # a broken campaign file still gets its page, unbranded
            data = {}
        data = data if isinstance(data, dict) else {}
        with self._lock:
            self._campaigns[file] = (stamp, data)
        return data


__all__ = ["Brand", "Pages", "accepted", "choose_language", "display_name", "languages",
           "translations"]
