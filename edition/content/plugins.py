"""Delivery targets and customer sources as they describe themselves, found by entry point.

A target (a publisher: group `edition.targets`) or a customer source (group
`edition.sources`) is one class that says, as class attributes, what the engine needs
to know before anything is sent or read:

    schemes        the URL schemes it takes (`smtp`, `smtps`; `postgresql`); a source
                   may take file name endings instead (`suffixes`: `.parquet`, `.pq`)
    options_model  the pydantic model of its options (a campaign's `delivery:` keys
                   besides to/ledger/dkim; a source's `customers: {url: …, …}` keys)
    forms          how its targets are written, for messages (`smtp://host:port`)
    channel        a target's channel: `email` (one channel whatever the host: a
                   customer is mailed once per mailing, by SMTP or SES), or its kind
                   (`files`, `webhook`), whose ledger channel is the place it writes to
    needs_email    a target: rows without an address are rejected when sending to it

The engine reads these declarations here and nowhere else, so a new target (a webhook)
or a new source (BigQuery) is one file and one entry point in pyproject.toml. The
registry loads every entry point of a group once per process; the engine never imports
a plugin's module by name.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from edition.content.errors_at_lines import TYPE_WORDS, closest
from edition.errors import UsageError

TARGETS = "edition.targets"
SOURCES = "edition.sources"
EMAIL = "email"   # the channel of every target that mails customers (design.md, "Sending")
# Keys of a campaign's `delivery:` block read by the engine, not by the target.
ENGINE_KEYS = frozenset({"to", "ledger", "dkim", "in_flight"})

log = logging.getLogger("edition.plugins")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_CREDENTIALS = re.compile(r"^\w[\w+.-]*://[^/?#]*@")


class PluginOptions(BaseModel):
    """A plugin's options: unknown names are errors, so a typo (`rat: 10`) cannot
    silently turn a limit off."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True,
                              defer_build=True)


class TargetOptions(PluginOptions):
    """The options of a kind of target (a campaign's `delivery:` keys); subclasses
    list their own."""


class SourceOptions(PluginOptions):
    """The keys of a source's mapping form, `customers: {url: …, …}`."""

    url: str


def _delays(value: str | Iterable[str | float]) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    delays = tuple(float(v) for v in items)
    if any(d < 0 for d in delays):
        raise ValueError("delays must be >= 0")
    return delays


# pauses between retries, in seconds (`backoff: [0.5, 1, 2]` or "0.5,1,2")
Delays = Annotated[tuple[float, ...], BeforeValidator(_delays)]


class TargetPlugin(Protocol):
    """What a delivery target declares (publishers.base.BasePublisher has the defaults)."""

    schemes: ClassVar[tuple[str, ...]]
    forms: ClassVar[tuple[str, ...]]
    options_model: ClassVar[type[TargetOptions]]
    channel: ClassVar[str]
    needs_email: ClassVar[bool]
    dkim: ClassVar[bool]   # the engine DKIM-signs messages for it (SES signs its own)

    @classmethod
    def target_problem(cls, target: str) -> str | None:
        """Why this target string cannot be used (its own parser's words), or None."""

    @classmethod
    def place(cls, target: str) -> str:
        """Where it delivers, as the ledger's channel for a target that is not e-mail."""


class SourcePlugin(Protocol):
    """What a customer source declares (edition.audience.sources.CustomerSource)."""

    schemes: ClassVar[tuple[str, ...]]
    suffixes: ClassVar[tuple[str, ...]]
    fallback: ClassVar[bool]   # reads a file whose ending no source claims (CSV)
    forms: ClassVar[tuple[str, ...]]
    options_model: ClassVar[type[SourceOptions]]


P = TypeVar("P")


class _Registry:
    """The plugins of one entry-point group, by scheme (and by file ending)."""

    def __init__(self, group: str):
        self.group = group
        # what the packages registered (EntryPoint.load() is untyped); the protocols above
        # say what the engine reads of them
        self.plugins: list[Any] = []
        self.broken: list[str] = []
        for point in sorted(entry_points(group=group), key=lambda p: p.name):
            try:
                self.plugins.append(point.load())
            except Exception as exc:   # a broken third-party plugin must not stop the rest
                log.warning("%s plugin %s (%s) could not be loaded: %s", group, point.name,
                            point.value, exc)
                self.broken.append(f"{point.name} ({exc})")
        self.by_scheme = self._index("schemes")
        self.by_suffix = self._index("suffixes")

    def _index(self, attribute: str) -> dict[str, Any]:
        index: dict[str, Any] = {}
        for plugin in self.plugins:
            for key in getattr(plugin, attribute, ()):
                key = key.lower()
                if key in index and index[key] is not plugin:
                    raise UsageError(
                        f"two {self.group} plugins claim {key!r}: {_name(index[key])} and "
                        f"{_name(plugin)}; uninstall one")
                index[key] = plugin
        return index

    def forms(self) -> list[str]:
        return [form for plugin in self.plugins for form in getattr(plugin, "forms", ())]


def _name(plugin: type) -> str:
    return f"{plugin.__module__}.{plugin.__qualname__}"


@functools.cache
def _registry(group: str) -> _Registry:
    return _Registry(group)


def scheme_of(target: str) -> str:
    """`smtp` for `smtp://host:25`, `local` for `local:/dir` and `local`."""
    target = (target or "").strip()
    found = _SCHEME.match(target)
    return (found.group(1) if found else target).lower()


def has_credentials(target: str) -> bool:
    """`smtp://user:pass@host`: credentials belong in the environment, never in a target."""
    return bool(_CREDENTIALS.match(target))


def target_plugins() -> list[type[TargetPlugin]]:
    """Every installed delivery target."""
    return list(_registry(TARGETS).plugins)


def target_plugin(target: str) -> type[TargetPlugin] | None:
    """The plugin that delivers to `target`, by its scheme; None when none does."""
    plugin: type[TargetPlugin] | None = _registry(TARGETS).by_scheme.get(scheme_of(target))
    return plugin


def known_targets() -> str:
    """`local, s3://bucket/prefix, … or ses`: what `delivery.to` may be, from the registry."""
    return _either(_registry(TARGETS).forms())


def target_problem(target: str) -> str | None:
    """Why a target string cannot be used, or None (the plugin's own check)."""
    if has_credentials(target):
        return "must not hold credentials; set them in the environment"
    plugin = target_plugin(target)
    if plugin is None:
        broken = _registry(TARGETS).broken
        return f"must be {known_targets()}" + (
            f" (plugins that did not load: {', '.join(broken)})" if broken else "")
    return plugin.target_problem(target.strip())


def source_plugins() -> list[type[SourcePlugin]]:
    """Every installed customer source."""
    return list(_registry(SOURCES).plugins)


def source_plugin(value: str | Path | Mapping[str, object]) -> type[SourcePlugin] | None:
    """The source that reads what `customers:` (or `--customers`) names: a mapping or a
    URL by its scheme, a file by its ending (else the source that reads any file)."""
    registry = _registry(SOURCES)
    if isinstance(value, Mapping):
        value = str(value.get("url") or "")
    text = str(value)
    if "://" in text:
        found: type[SourcePlugin] | None = registry.by_scheme.get(scheme_of(text))
        return found
    suffix = Path(text).suffix.lower()
    if suffix in registry.by_suffix:
        by_suffix: type[SourcePlugin] = registry.by_suffix[suffix]
        return by_suffix
    return next((p for p in registry.plugins if getattr(p, "fallback", False)), None)


def known_sources() -> str:
    """`a CSV file, …, or {url: postgresql://…, query: …}`, from the registry."""
    return _either(_registry(SOURCES).forms())


def _either(forms: list[str]) -> str:
    if len(forms) < 2:
        return "".join(forms) or "(no plugin installed)"
    return f"{', '.join(forms[:-1])} or {forms[-1]}"


M = TypeVar("M", bound=PluginOptions)


def option_problems(model: type[PluginOptions], given: Mapping[str, object], *,
                    word: str = "delivery option", also: frozenset[str] = frozenset(),
                    kind: str = "") -> list[tuple[str | None, str]]:
    """Every problem with a plugin's options as (option or None, message); [] when none.

    `also`: names the caller reads itself (offered as "did you mean" too)."""
    try:
        model.model_validate(dict(given))
    except ValidationError as exc:
        return [_problem(error, model, word, also, kind) for error in exc.errors()]
    return []


def _problem(error: ErrorDetails, model: type[PluginOptions], word: str, also: frozenset[str],
             kind: str) -> tuple[str | None, str]:
    name = str(error["loc"][0]) if error["loc"] else None
    text = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        known = sorted(model.model_fields)
        hint = closest(str(name), [*known, *also])
        return name, f"unknown {word} {name!r}" + (
            f" (did you mean {hint!r}?)" if hint else
            f" (known for {kind}: {', '.join(known)})" if kind else
            f" (known: {', '.join(known)})")
    if name is None:
        return None, text
    if error["type"] == "missing":
        return name, f"{word} {name!r} is required"
    return name, f"bad value for {word} {name!r}: {TYPE_WORDS.get(error['type'], text)}"


def checked_options(model: type[M], given: Mapping[str, object] | None, *,
                    error: Callable[[str], Exception], kind: str = "",
                    word: str = "delivery option", skip: frozenset[str] = ENGINE_KEYS) -> M:
    """The plugin's options, or `error(every problem in one message)`; None values and
    the keys the engine reads itself (`skip`: a delivery block's to/ledger/dkim) are
    not options."""
    values = {k: v for k, v in (given or {}).items() if k not in skip and v is not None}
    problems = option_problems(model, values, word=word, also=skip, kind=kind)
    if problems:
        raise error("; ".join(text for _, text in problems))
    return model.model_validate(values)
