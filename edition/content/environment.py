"""The Jinja environments every template, module body and segment rule runs in.

All of them are sandboxed with StrictUndefined: a template can read the data it is
given and nothing else, and a missing customer field fails that customer loudly
instead of printing "Hello ,".
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from string import Formatter
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency
from jinja2 import FileSystemLoader, StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.nodes import EvalContext
from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter, is_internal_attribute

from edition.content.limits import (
    DocumentTooLarge,
    Limits,
    bounded_join,
    check_arguments,
    check_binop,
    check_call,
    check_concat,
    join_size,
    percent_size,
    replace_size,
    text_size,
)
from edition.errors import ContentError


class CustomerView:
    """A customer's fields as template attributes (`customer.first_name`).

    Not a dict on purpose: a field named `items` or `keys` must not be shadowed by a
    dict method.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any]):
        self._fields = fields

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._fields[name]

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __repr__(self) -> str:
        return f"<customer {self._fields.get('id')!r}>"


class StrictField(StrictUndefined):
    """StrictUndefined whose message names the customer field that is missing.

    Segment rules use it as it is: a rule over a missing field is false for that
    customer and counted in the report.
    """

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if isinstance(self._undefined_obj, CustomerView):
            return f"customer has no field {self._undefined_name!r}"
        return super()._undefined_message


class MissingField(StrictField):
    """What templates get for a missing field (design.md, "Safety").

    Tested, it is Jinja's ordinary undefined: false in `{% if %}` and `or`, not `in`
    anything, equal to nothing, an empty loop, length 0. Printed or computed with
    (`~`, `+`, `>`, a filter other than `default`), it fails the customer, naming the
    field: never "Hello ,". edition.fields finds those places before a run.
    """

    # Jinja's stubs type StrictUndefined's dunders as its failing method: these put
    # Undefined's back, which the type checker cannot see as the same signature.
    __slots__ = ()
    __bool__ = Undefined.__bool__   # type: ignore[assignment]
    __iter__ = Undefined.__iter__   # type: ignore[assignment]
    __len__ = Undefined.__len__     # type: ignore[assignment]
    __eq__ = Undefined.__eq__       # type: ignore[assignment]
    __ne__ = Undefined.__ne__       # type: ignore[assignment]
    __hash__ = Undefined.__hash__   # type: ignore[assignment]

    def __contains__(self, item: object) -> bool:   # type: ignore[override]
        return False


@functools.lru_cache(maxsize=256)
def babel_locale(locale: str) -> Locale:
    """The Babel locale for `es`, `es-MX` or `es_MX`; English when Babel does not know it."""
    try:
        return Locale.parse(str(locale).replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return Locale.parse("en")


def money(value: Any, currency: str | None = None, locale: str = "en") -> str:
    """An amount in the locale's way: `$1,234.50` (en), `1234,50 €` (es, EUR)."""
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    return format_currency(amount, currency or "USD", locale=babel_locale(locale))


def longdate(value: Any, locale: str = "en") -> str:
    """A date written out: `December 14, 2026` (en), `14 de diciembre de 2026` (es)."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined: raises the error that names the missing field
    if isinstance(value, str):
        value = dt.date.fromisoformat(value)
    if not isinstance(value, dt.date):
        raise TypeError(f"longdate needs a date, not {type(value).__name__}")
    return format_date(value, format="long", locale=babel_locale(locale))


_URL_NOISE = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
URL_SCHEMES = {"http", "https", "mailto", "tel"}


def checked_url(value: Any) -> Any:
    """A URL for href/src: http(s), mailto, tel or relative; anything else becomes "".

    Applied to every expression that starts an href or src (see `guard_urls`), so a
    customer value `javascript:...` or a module's `data:` URL never reaches a link.
    Browsers ignore whitespace and controls inside a scheme, so they are ignored here too.
    """
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined: raises the error that names the missing field
    text = str(value)
    match = _SCHEME.match(_URL_NOISE.sub("", text))
    if match and match.group(1).lower() not in URL_SCHEMES:
        return type(value)("") if isinstance(value, str) else ""
    return value


# `href="{{ x }}"`: an expression that starts a URL attribute decides its scheme
_URL_ATTRIBUTE = re.compile(
    r"(\b(?:href|src|action|formaction|background|poster|xlink:href)\s*=\s*[\"']?\s*)"
    r"\{\{([-+]?)(.*?)([-+]?)\}\}", re.I | re.S)


def guard_urls(source: str) -> str:
    """Route every expression that starts a URL attribute through `checked_url`."""
    if "{{" not in source:
        return source
    return _URL_ATTRIBUTE.sub(
        lambda m: f"{m.group(1)}{{{{{m.group(2)} ({m.group(3)}) | checked_url {m.group(4)}}}}}",
        source)


FILTERS = {"money": money, "longdate": longdate, "checked_url": checked_url}


def localized(locale: str, currency: str) -> dict[str, Any]:
    """`money` and `longdate` defaulting to a version's locale and currency.

    Plain functions (not context filters), so a version's template stays shareable: the
    locale is part of the version, and an explicit argument still wins.
    """
    def local_money(value: Any, currency_: str | None = None, locale_: str | None = None,
                    **kwargs: Any) -> str:
        return money(value, kwargs.get("currency", currency_) or currency,
                     kwargs.get("locale", locale_) or locale)

    def local_longdate(value: Any, locale_: str | None = None, **kwargs: Any) -> str:
        return longdate(value, kwargs.get("locale", locale_) or locale)

    local_money.__doc__, local_longdate.__doc__ = money.__doc__, longdate.__doc__
    return {"money": local_money, "longdate": local_longdate}


def is_html_name(name: str) -> bool:
    """Templates named `*.html.j2`, `*.html` or `*.htm*` are autoescaped."""
    return any(part in {"html", "htm", "xhtml"} for part in name.lower().split(".")[1:])


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` measured before it joins (edition.limits)."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}(environment.check_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


class EditionEnvironment(SandboxedEnvironment):
    """Sandbox + StrictUndefined + edition's filters + the limits of edition.content.limits."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = BoundedCodeGenerator

    def __init__(self, templates_dir: Path | None = None, *, limits: Limits | None = None,
                 locale: str = "en", currency: str = "USD", **kwargs: Any):
        super().__init__(
            loader=FileSystemLoader(str(templates_dir)) if templates_dir else None,
            undefined=MissingField,
            autoescape=lambda name: bool(name) and is_html_name(name),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
            **kwargs,
        )
        self.limits = limits or Limits()
        self.locale = locale
        self.compiled: dict[str, Any] = {}   # the renderer's templates for this environment
        self.filters.update(FILTERS)
        self.filters.update(localized(locale, currency))
        for name in GROWING_FILTERS:
            if name in self.filters:
                self.filters[name] = _bounded(name, self.filters[name],
                                              self.limits.document_bytes)
        limit = self.limits.document_bytes
        self.concat = functools.partial(bounded_join, limit=limit)  # type: ignore[method-assign]
        self.finalize = self.bounded_output

    def bounded_output(self, value: Any) -> Any:
        """`{{ value }}` of a list or dict: refused when its text would pass the limit."""
        if isinstance(value, list | tuple | dict | set | frozenset):
            check_output(value, self.limits.document_bytes)
        return value

    def check_concat(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        return check_concat(values, self.limits.document_bytes)

    @functools.cached_property
    def rules(self) -> EditionEnvironment:
        """This environment for segment rules: a missing field fails the rule, so the
        report can count it, instead of quietly being false."""
        return self.overlay(undefined=StrictField)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right, self.limits.document_bytes)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        limit = __self.limits.document_bytes
        inner = getattr(__obj, "__wrapped__", None)  # the sandbox's str.format wrapper
        owner = getattr(inner, "__self__", None)
        method = getattr(inner, "__name__", "")
        if isinstance(owner, str) and method in {"format", "format_map"}:
            values, names = (((), args[0]) if method == "format_map" and args
                             else (args, kwargs))
            check_format(__self, owner, values, names, limit)
        else:
            args = check_call(__obj, args, kwargs, limit)
        return super().call(__context, __obj, *args, **kwargs)

    def preprocess(self, source: str, name: str | None = None,
                   filename: str | None = None) -> str:
        return guard_urls(super().preprocess(source, name, filename))


# filters whose result can be far larger than their input and arguments, and those
# that print a whole value (a list of references to one big string is small until then)
GROWING_FILTERS = ("center", "indent", "format", "wordwrap", "replace", "join", "batch",
                   "slice", "string", "tojson", "pprint", "urlencode", "xmlattr", "escape",
                   "e", "forceescape", "safe", "trim", "upper", "lower", "title",
                   "capitalize", "striptags", "truncate", "urlize")


def check_output(value: Any, limit: int) -> None:
    size = text_size(value, limit)
    if size > limit:
        raise DocumentTooLarge(f"printing a value of {size:,}+ characters (more than "
                               f"{limit:,})")


def _filter_size(name: str, values: list[Any], kwargs: dict[str, Any], limit: int) -> int:
    """About how long the filter's result is (0: nothing to fear)."""
    value, rest = (values[0], values[1:]) if values else (None, [])

    def arg(i: int, key: str, default: Any) -> Any:
        return rest[i] if len(rest) > i else kwargs.get(key, default)

    if name == "replace" and isinstance(arg(0, "old", None), str | int | float):
        text, old, new = str(value), str(arg(0, "old", "")), str(arg(1, "new", ""))
        count = arg(2, "count", None)
        return replace_size(text, old, new, count if isinstance(count, int) else -1, limit)
    if name == "indent" and isinstance(value, str):
        width = arg(0, "width", 4)
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        return len(value) + (value.count("\n") + 1) * pad
    if name == "wordwrap" and isinstance(value, str):
        width, wrap = arg(0, "width", 79), arg(2, "wrapstring", None)
        lines = 2 * len(value) // max(width if isinstance(width, int) else 1, 1) + \
            value.count("\n") + 2
        return len(value) + lines * len(wrap if isinstance(wrap, str) else "\n")
    if name == "format" and isinstance(value, str):
        return percent_size(value, dict(kwargs) if kwargs else tuple(rest), limit)
    if name in {"center", "batch", "slice", "truncate"}:
        check_arguments(name, tuple(rest), kwargs, limit)
        return 0
    if name != "join":
        return text_size(value, limit)
    return 0


def _bounded(name: str, func: Any, limit: int) -> Any:
    """The filter, refusing results past the document limit before it makes them."""
    def bounded(*args: Any, **kwargs: Any) -> Any:
        lead = 1 if args and isinstance(args[0], SandboxedEnvironment | EvalContext) else 0
        values = list(args[lead:])
        if name == "join" and values:
            items = list(values[0]) if not isinstance(values[0], str) else values[0]
            attribute = values[2] if len(values) > 2 else kwargs.get("attribute")
            separator = values[1] if len(values) > 1 else kwargs.get("d", "")
            if attribute is None and isinstance(separator, str) and isinstance(items, list):
                size = join_size(separator, items, limit)
            else:
                size = text_size(items, limit) + len(str(separator)) * len(items)
            if size > limit:
                raise DocumentTooLarge(f"the filter 'join' would make {size:,} characters "
                                       f"(more than {limit:,})")
            args = (*args[:lead], items, *values[1:])
        else:
            size = _filter_size(name, values, kwargs, limit)
            if size > limit:
                raise DocumentTooLarge(f"the filter {name!r} would make {size:,} characters "
                                       f"(more than {limit:,})")
        return func(*args, **kwargs)

    pass_arg = getattr(func, "jinja_pass_arg", None)
    if pass_arg is not None:
        bounded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    bounded.__wrapped__ = func  # type: ignore[attr-defined]
    return bounded


_WIDTHS = re.compile(r"\d+")


def check_format(env: SandboxedEnvironment, template: str, args: tuple[Any, ...],
                 kwargs: Any, limit: int) -> None:
    """`'{0}{0}{0}'.format(x)` and `'{:>999999999}'.format(x)`: refused past the limit."""
    try:
        fields = list(Formatter().parse(template))
    except ValueError:
        return  # the call itself says what is wrong
    formatter, total, auto = SandboxedFormatter(env), 0, 0
    for literal, field, spec, _ in fields:
        total += len(literal)
        if field is None:
            continue
        if field == "" or field[0] in ".[":
            field, auto = f"{auto}{field}", auto + 1
        try:
            value, _ = formatter.get_field(field, args, kwargs)
        except Exception:
            return  # the call raises it
        widths = [int(w) for w in _WIDTHS.findall(spec or "")] + [
            a for a in (*args, *(kwargs.values() if isinstance(kwargs, dict) else ()))
            if isinstance(a, int) and not isinstance(a, bool) and "{" in (spec or "")]
        total += max([text_size(value, limit), *widths])
        if total > limit:
            raise DocumentTooLarge(f"the format would make {total:,}+ characters (more "
                                   f"than {limit:,})")


def refused_attributes(tree: nodes.Node) -> list[tuple[str, int]]:
    """Attribute reads the sandbox would refuse, found before anything runs.

    The sandbox stops them at render time anyway; finding them here turns a template
    or rule that tries `''.__class__.__mro__` into a content error with its line.
    """
    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else None
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value if isinstance(node.arg.value, str) else None
        if name and (name.startswith("_") or name in {"mro", "func_globals"}
                     or is_internal_attribute(object, name)):
            found.append((name, node.lineno))
    return found


def syntax_error(exc: TemplateSyntaxError, file: str | Path, first_line: int = 1) -> ContentError:
    """A Jinja syntax error as a ContentError naming file and line."""
    line = (exc.lineno or 1) + first_line - 1
    return ContentError(f"template syntax error: {exc.message}", file, line)
