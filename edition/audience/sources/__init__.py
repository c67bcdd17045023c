"""Customer sources: where customers come from, one class per kind, all read the same way.

A source is one class, registered in the `edition.sources` entry-point group
(pyproject.toml), that declares what it reads (URL `schemes`, file `suffixes`, or
`fallback`: any file no other source claims) and the keys of its mapping form
(`options_model`, for `customers: {url: …, …}`), and answers four questions: its rows
(`open`), one customer's row (`find`), how many rows (`count`), its columns
(`columns`). CSV, JSONL, Parquet and PostgreSQL are such plugins; so would be a
BigQuery source: one file and one entry point.

Rows come out as triples, `(line or row number, raw mapping or None, parse problem or
None)`; customers.read_customers applies the same row checks to every source (missing
or repeated ids, addresses, values that do not fit). A source that knows its column
types (Parquet, SQL) gives them (`SourceRows.types`); a text file's are inferred from
its first rows; the campaign's `fields` override both.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edition.content.plugins import (
    SourceOptions,
    known_sources,
    option_problems,
    source_plugin,
)
from edition.databases import has_password, masked
from edition.errors import ContentError, RunError
from edition.outcomes import Reason

__all__ = ["BATCH_ROWS", "CustomerSource", "Found", "SourceRows", "Triple", "customer_source",
           "plain", "plain_row", "rows_of"]

BATCH_ROWS = 2_000  # rows per Parquet batch / SQL fetch: small enough to stay flat

# a raw row: column -> value; the key None holds values past the header (CSV)
RawRow = Mapping[str | None, object]
Triple = tuple[int, RawRow | None, Reason | None]


class SourceRows:
    """An open source: its rows, and its column types when it knows them (None: they
    are inferred from the first rows); close it when done."""

    def __init__(self, types: Mapping[str, str] | None, rows: Iterator[Triple],
                 close: Callable[[], None] = lambda: None, *, decimal_comma: bool = False):
        self.types = dict(types) if types is not None else None
        # a `;`-separated file: where spreadsheets write that, `6200,50` is a number
        self.decimal_comma = decimal_comma
        self._rows = rows
        self._close = close

    def __iter__(self) -> Iterator[Triple]:
        return self._rows

    def close(self) -> None:
        self._close()

    def __enter__(self) -> SourceRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Found:
    """One customer's row as a source found it, before the row checks."""

    index: int                       # 0-based position among data rows
    line: int                        # line (or row number) for messages
    raw: RawRow
    types: Mapping[str, str] | None  # the source's column types; None: inferred


class CustomerSource:
    """Where customers come from (see the module docstring); subclasses are frozen
    dataclasses, so two sources of the same place compare equal."""

    schemes: ClassVar[tuple[str, ...]] = ()
    suffixes: ClassVar[tuple[str, ...]] = ()
    fallback: ClassVar[bool] = False
    forms: ClassVar[tuple[str, ...]] = ()
    options_model: ClassVar[type[SourceOptions]] = SourceOptions
    # where a password comes from, for the message that refuses one in a campaign file
    credentials: ClassVar[str] = "the environment"

    @classmethod
    def from_setting(cls, value: str | Path | Mapping[str, object], *, root: Path | None,
                     encoding: str | None) -> CustomerSource:
        """The source `customers:` or `--customers` names (its keys already checked);
        a relative path is taken from the content root."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """How the source is shown and compared between runs (never a password)."""
        return str(self)

    @property
    def name(self) -> str:
        """A short name for messages (a file's name; a URL without its password)."""
        return str(self)

    def check(self) -> None:
        """RunError when the source plainly cannot be read (a missing file), before a
        run writes anything."""

    def open(self, declared: Mapping[str, str] | None = None) -> SourceRows:
        """Start reading; `declared` (the campaign's `fields`) only matters for `text`
        columns of a typed source: their values are given as text."""
        raise NotImplementedError

    def find(self, customer_id: str, declared: Mapping[str, str] | None = None
             ) -> Found | None:
        """The first row with this id, found without reading every row when the source
        can (a byte search, a vectorized compare, a WHERE), or None."""
        raise NotImplementedError

    def count(self) -> int:
        """How many rows the source has (an estimate is fine: progress bars)."""
        raise NotImplementedError

    def columns(self) -> list[str]:
        """The source's columns (a CSV header, the keys of the first JSONL rows)."""
        raise NotImplementedError

    def encoding_problem(self) -> str | None:
        """Why a text file looks like another encoding than it is read in, or None."""
        return None


# --- values ------------------------------------------------------------------------------


def plain(value: object) -> object:
    """A source's value as the row checks know them (str, int, float, bool, date,
    datetime, list, dict, None)."""
    if value is None or isinstance(value, bool | int | str | dt.date):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value  # NaN is how Parquet/pandas say "empty"
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return None if value.is_nan() else float(value)
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        # as the CSV reader does: bytes that are not UTF-8 survive as markers the row
        # check rejects, naming the column
        return bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _as_text(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def plain_row(raw: Mapping[str, object], declared: Mapping[str, str] | None
              ) -> dict[str | None, object]:
    """One typed row's values made plain; columns the campaign declares `text` as text."""
    row: dict[str | None, object] = {str(key): plain(value) for key, value in raw.items()}
    for key, kind in (declared or {}).items():
        if kind == "text" and key in row:
            row[key] = _as_text(row[key])
    return row


def rows_of(raws: Iterator[dict[str, object] | Reason],
            declared: Mapping[str, str] | None) -> Iterator[Triple]:
    """Triples numbered from 1, from a typed source's rows (or the Reason one is bad)."""
    for number, raw in enumerate(raws, start=1):
        if isinstance(raw, Reason):
            yield number, None, raw
        else:
            yield number, plain_row(raw, declared), None


# --- choosing the source -----------------------------------------------------------------


def customer_source(value: str | Path | Mapping[str, object] | CustomerSource, *,
                    root: Path | None = None, from_campaign: bool = True,
                    encoding: str | None = None) -> CustomerSource:
    """The source a campaign's `customers:` (or `--customers`) names, by the installed
    sources' declarations: a mapping or URL by its scheme, a file by its ending. A URL
    in a campaign file may not hold a password (ContentError): credentials come from
    the environment."""
    if isinstance(value, CustomerSource):
        return value
    plugin: Any = source_plugin(value)
    if plugin is None:
        shown = masked(value.get("url") if isinstance(value, Mapping) else value)
        raise ContentError(f"customers {shown}: no installed source reads it (known: "
                           f"{known_sources()})")
    url = str(value.get("url") or "") if isinstance(value, Mapping) else str(value)
    if from_campaign and "://" in url and has_password(url):
        raise ContentError(f"customers url {masked(url)} holds a password: campaign files "
                           f"must not; use {plugin.credentials}")
    if isinstance(value, Mapping):
        problems = option_problems(plugin.options_model, value, word="key")
        if problems:
            raise ContentError("customers: " + "; ".join(text for _, text in problems))
    source: CustomerSource = plugin.from_setting(value, root=root, encoding=encoding)
    return source


def missing_file(path: Path) -> RunError:
    return RunError(f"customer file not found: {path}", path)
