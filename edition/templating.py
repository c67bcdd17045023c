"""The Jinja environments every template, module body and segment rule runs in.

All of them are sandboxed with StrictUndefined: a template can read the data it is
given and nothing else, and a missing customer field fails that customer loudly
instead of printing "Hello ,".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment, is_internal_attribute

from edition.errors import ContentError

MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"],
}
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


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


class MissingField(StrictUndefined):
    """StrictUndefined whose message names the customer field that is missing."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if isinstance(self._undefined_obj, CustomerView):
            return f"customer has no field {self._undefined_name!r}"
        return super()._undefined_message


def money(value: Any, currency: str = "USD") -> str:
    """Format an amount as `$1,234.50` (symbol from the ISO currency code)."""
    amount = float(value)
    symbol = CURRENCY_SYMBOLS.get(currency, currency + " ")
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.2f}"


def longdate(value: Any, locale: str = "en") -> str:
    """Format a date as `14 December 2026` or `14 de diciembre de 2026`."""
    if isinstance(value, str):
        value = dt.date.fromisoformat(value)
    lang = str(locale).split("-")[0].split("_")[0].lower()
    months = MONTHS.get(lang, MONTHS["en"])
    if lang == "es":
        return f"{value.day} de {months[value.month - 1]} de {value.year}"
    return f"{value.day} {months[value.month - 1]} {value.year}"


FILTERS = {"money": money, "longdate": longdate}


def is_html_name(name: str) -> bool:
    """Templates named `*.html.j2`, `*.html` or `*.htm*` are autoescaped."""
    return any(part in {"html", "htm", "xhtml"} for part in name.lower().split(".")[1:])


class EditionEnvironment(SandboxedEnvironment):
    """Sandbox + StrictUndefined + edition's filters."""

    def __init__(self, templates_dir: Path | None = None, **kwargs: Any):
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
        self.filters.update(FILTERS)


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
