"""Customers: streamed from a source, typed and checked one row at a time.

A source (edition/audience/sources/: CSV, JSONL, Parquet, PostgreSQL, or any installed
plugin) gives raw rows; the row checks here are the same for every source.

A bad row never stops a run: it becomes a `rejected` row with its reason. Typing is
inferred from the first rows (a column is a number column when most of its values are
numbers), or declared in the campaign's `fields`; a later value that does not fit is a
rejection that names the column.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

from edition.addresses import AddressError, normalize
from edition.audience.sources import (
    CustomerSource,
    RawRow,
    SourceRows,
    Triple,
    customer_source,
)
from edition.locales import NotALanguageTag, language_tag
from edition.outcomes import Reason

SAMPLE_ROWS = 200
MAX_CELL = 1 << 20          # a value longer than this (1 MiB) rejects its row
MAX_ID_BYTES = 255          # a longer id is rejected (checked_id says why)
TEXT_COLUMNS = {"id", "email", "first_name", "last_name", "name", "locale", "phone",
                "postal_code", "zip", "zipcode"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")
_LEADING_ZERO = re.compile(r"^[+-]?0\d")
_DECIMAL_COMMA = re.compile(r"^[+-]?(\d+,\d*|,\d+)\Z")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
# what surrogateescape makes of bytes that are not UTF-8, and JSON's lone "\ud800"
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# C0 controls other than tab and newline: an HTML parser would rewrite them and they have
# no business in a header, so they are dropped when a row is read.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Row:
    """One row of the customer file: a valid customer or a rejection."""

    index: int                       # 0-based position among data rows (manifest order)
    line: int                        # line in the file, for messages
    customer_id: str | None
    fields: Mapping[str, object] | None = None
    reason: Reason | None = None

    @property
    def rejected(self) -> bool:
        return self.fields is None


@dataclass
class Schema:
    """The type of each column: declared in the campaign or inferred from a sample.

    `decimal_comma`: the file is `;`-separated, as spreadsheets write it where the
    decimal separator is a comma, so `6200,50` is a number there (and `6200.50` too).
    """

    types: dict[str, str] = field(default_factory=dict)
    decimal_comma: bool = False

    @classmethod
    def infer(cls, sample: Iterable[RawRow], declared: Mapping[str, str],
              *, decimal_comma: bool = False) -> Schema:
        votes: dict[str, list[int]] = {}
        for raw in sample:
            for key, value in raw.items():
                if key in TEXT_COLUMNS or key == "interests" or key is None:
                    continue
                tally = votes.setdefault(key, [0, 0, 0])  # numbers, dates, others
                if value is None or value == "":
                    continue
                if _is_number(value) or (decimal_comma and _is_decimal_comma(value)):
                    tally[0] += 1
                elif _is_date(value):
                    tally[1] += 1
                else:
                    tally[2] += 1
        types: dict[str, str] = {}
        for key, (numbers, dates, others) in votes.items():
            total = numbers + dates + others
            if total and numbers * 2 >= total and numbers >= dates:
                types[key] = "number"
            elif total and dates * 2 >= total:
                types[key] = "date"
        types.update(declared)
        return cls(types, decimal_comma)


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return (isinstance(value, str) and bool(_NUMBER.match(value.strip()))
            and not _LEADING_ZERO.match(value.strip()))


def _is_decimal_comma(value: object) -> TypeGuard[str]:
    return (isinstance(value, str) and bool(_DECIMAL_COMMA.match(value.strip()))
            and not _LEADING_ZERO.match(value.strip()))


def _is_date(value: object) -> TypeGuard[dt.date | str]:
    if isinstance(value, dt.date):
        return True
    if not (isinstance(value, str) and _DATE.match(value.strip())):
        return False
    try:
        dt.date.fromisoformat(value.strip())
    except ValueError:
        return False
    return True


def _number(value: object) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if re.match(r"^[+-]?\d+$", text):
        return int(text)
    return float(text)


def clean_text(value: str) -> str:
    """Drop control characters and make every line break a plain newline."""
    return _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


class RowError(ValueError):
    """Why a row is rejected (internal: becomes the row's Reason, never escapes)."""

    def __init__(self, code: str, detail: str, group: str = ""):
        super().__init__(detail)
        self.reason = Reason(code, detail, group)


def type_row(raw: RawRow, schema: Schema, *, need_email: bool) -> dict[str, object]:
    """Check and type one row; raise RowError with the reason."""
    fields: dict[str, object] = {}
    for key, value in raw.items():
        if key is None:
            raise RowError("extra_values", "more values than columns in the header")
        key = str(key).strip()
        if value is None or value == "":
            continue  # an empty cell is an undefined field (contract)
        _check_value(key, value)
        kind = schema.types.get(key)
        if key == "interests":
            fields[key] = _interests(value)
        elif kind in {"number", "integer"}:
            if schema.decimal_comma and _is_decimal_comma(value):
                value = value.strip().replace(",", ".")
            if not _is_number(value) and not (
                    isinstance(value, str) and _NUMBER.match(value.strip())):
                raise RowError("not_a_number", f"{key}: {_show(value)} is not a number",
                               f"{key}: not a number")
            number = _number(value)
            if kind == "integer" and not float(number).is_integer():
                raise RowError("not_a_whole_number", f"{key}: {_show(value)} is not a whole number",
                               f"{key}: not a whole number")
            fields[key] = int(number) if kind == "integer" else number
        elif kind == "date":
            if not _is_date(value):
                raise RowError("not_a_date", f"{key}: {_show(value)} is not a date (YYYY-MM-DD)",
                               f"{key}: not a date")
            fields[key] = value if isinstance(value, dt.date) else dt.date.fromisoformat(
                value.strip())
        elif isinstance(value, str):
            fields[key] = clean_text(value) if key not in {"id", "email"} else value.strip()
        elif isinstance(value, list):
            fields[key] = [clean_text(v) if isinstance(v, str) else v for v in value]
        else:
            fields[key] = value
    customer_id = fields.get("id")
    if customer_id is None or str(customer_id).strip() == "":
        raise RowError("missing_id", "missing id")
    if isinstance(customer_id, bool) or not isinstance(customer_id, str | int | float):
        raise RowError("bad_id", "id must be text or a number")
    if isinstance(customer_id, float) and not math.isfinite(customer_id):
        # JSON's 1e400 reads as inf (and NaN as nan): no customer is called that
        raise RowError("bad_id", f"id must be a finite number, not {customer_id!r}")
    fields["id"] = text_id = checked_id(customer_id)
    if _CONTROL.search(text_id) or "\n" in text_id:
        raise RowError("bad_id", "id contains control characters")
    fields["locale"] = _locale(fields.get("locale"))
    fields.setdefault("interests", [])
    email = fields.get("email")
    if email is not None:
        try:
            fields["email"] = normalize(str(email))
        except AddressError as exc:
            del fields["email"]
            if need_email:
                raise RowError("invalid_email", f"invalid email {_show(email)}: {exc}",
                               "invalid email") from None
    elif need_email:
        raise RowError("missing_email", "missing email")
    return fields


def checked_id(value: str | int | float) -> str:
    """A customer id as runs use it, or RowError: printable text of at most MAX_ID_BYTES.

    The id is signed into every unsubscribe link, recorded in the ledger and the
    suppression store, and becomes a file name: a longer one made List-Unsubscribe an
    RFC 2047 header that mail programs do not read (past ~650 characters) and did not fit
    the PostgreSQL store's column; an invisible character (a control, a zero-width or
    bidi mark, a no-break space) makes two ids look the same to a person.
    """
    text = str(value)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_ID_BYTES:
        chars = f"{len(text):,} characters" + (f", {size:,} bytes" if size != len(text) else "")
        raise RowError("id_too_long", f"id too long: {chars} (at most {MAX_ID_BYTES} bytes "
                       f"of UTF-8)", "id too long")
    bad = next((c for c in text if not c.isprintable()), None)
    if bad is not None:
        raise RowError("bad_id", f"id contains an invisible character (U+{ord(bad):04X}); "
                       f"ids must be printable text", "id not printable")
    return text


def _check_value(key: str, value: object, depth: int = 0) -> None:
    """Values a row may not hold: bytes that are not UTF-8, lone surrogates, huge cells."""
    if isinstance(value, str):
        if len(value) > MAX_CELL:
            raise RowError("value_too_large", f"{key}: a value of {len(value):,} characters "
                           f"(at most {MAX_CELL:,})", f"{key}: value too large")
        bad = _SURROGATE.search(value)
        if bad:
            char = ord(bad.group(0))
            if 0xDC80 <= char <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
                raise RowError("not_utf8", f"{key}: byte 0x{char - 0xDC00:02x} is not UTF-8 "
                               "text", f"{key}: not UTF-8 text")
            raise RowError("bad_unicode", f"{key}: invalid Unicode (a lone surrogate "
                           f"U+{char:04X})", f"{key}: invalid Unicode")
    elif isinstance(value, list | dict):
        if depth > 20:
            raise RowError("too_deep", f"{key}: nested more than 20 levels deep",
                           f"{key}: nested too deep")
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            _check_value(key, item, depth + 1)
        if isinstance(value, dict):
            for name in value:
                _check_value(key, str(name), depth + 1)


def _locale(value: object) -> str:
    """The row's locale as a language tag (`en_GB` → `en-GB`; none → `en`), or a rejection.

    The locale keys versions, subjects and currencies: free text there would make every
    spelling a version of its own, so a value that is not a tag rejects the row."""
    if value is None or str(value).strip() == "":
        return "en"
    try:
        return language_tag(str(value))
    except NotALanguageTag as exc:
        raise RowError("bad_locale", f"locale: {exc}", "locale: not a language tag") from None


def _interests(value: object) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(";")
    return [clean_text(str(i)).strip().lower() for i in items if str(i).strip()]


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


Source = CustomerSource | str | Path   # a source, or a file path / URL naming one


def source_of(source: Source) -> CustomerSource:
    """The source itself; a path or URL is read by the source its ending or scheme
    names (as `--customers` is)."""
    return customer_source(source, from_campaign=False)


def raw_rows(source: Source) -> Iterator[Triple]:
    """(line, raw row or None, parse problem) for every data row, streaming."""
    with source_of(source).open() as rows:
        yield from rows


class IdSet:
    """The customer ids seen so far, as 8-byte hashes (not the strings): ~24 bytes an id.

    Open addressing over two arrays (hash, first line). Two different ids share a
    64-bit hash with a chance of about 3 in a million at 10 million rows; that row
    would be rejected as repeated, never sent twice.
    """

    def __init__(self, size: int = 1 << 12):
        self.keys = array("Q", bytes(8 * size))
        self.lines = array("I", bytes(4 * size))
        self.count = 0

    @staticmethod
    def _hash(value: str) -> int:
        digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "little") | 1  # 0 marks an empty slot

    def _slot(self, key: int) -> int:
        mask = len(self.keys) - 1
        slot = key & mask
        while self.keys[slot] and self.keys[slot] != key:
            slot = (slot + 1) & mask
        return slot

    def first_line(self, value: str) -> int | None:
        """The line the id was first seen on, or None."""
        slot = self._slot(self._hash(value))
        return self.lines[slot] if self.keys[slot] else None

    def add(self, value: str, line: int) -> None:
        key = self._hash(value)
        slot = self._slot(key)
        if self.keys[slot]:
            return
        self.keys[slot], self.lines[slot] = key, min(line, 0xFFFFFFFF)
        self.count += 1
        if self.count * 2 > len(self.keys):
            self._grow()

    def _grow(self) -> None:
        keys, lines = self.keys, self.lines
        self.keys = array("Q", bytes(16 * len(keys)))
        self.lines = array("I", bytes(8 * len(keys)))
        for key, line in zip(keys, lines, strict=True):
            if key:
                slot = self._slot(key)
                self.keys[slot], self.lines[slot] = key, line

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.first_line(value) is not None


def read_customers(path: Source, *, need_email: bool,
                   declared: Mapping[str, str] | None = None,
                   limit: int | None = None) -> Iterator[Row]:
    """Every row of the source in order, typed and checked; repeated ids rejected."""
    stream, schema = _rows_and_schema(source_of(path), declared or {})
    if limit is not None:
        stream = itertools.islice(stream, max(limit, 0))
    yield from typed_rows(stream, schema, need_email=need_email)


def typed_rows(stream: Iterable[Triple], schema: Schema, *, need_email: bool,
               first_index: int = 0) -> Iterator[Row]:
    """Raw rows typed and checked with this schema; ids repeated among them rejected
    (the whole source's, or one shard's: edition/run/sharded.py)."""
    seen = IdSet()
    for index, (line, raw, problem) in enumerate(stream, start=first_index):
        if raw is None:
            yield Row(index, line, None, reason=problem)
            continue
        raw_id = raw.get("id")
        shown_id = _shown_id(raw_id)
        try:
            fields = type_row(raw, schema, need_email=need_email)
        except RowError as problem_in_row:
            reason = problem_in_row.reason
            first = seen.first_line(shown_id) if shown_id is not None else None
            if first is not None:
                reason = repeated(first)
            elif shown_id is not None:
                seen.add(shown_id, line)
            yield Row(index, line, shown_id, reason=reason)
            continue
        customer_id = str(fields["id"])   # type_row made it text
        first = seen.first_line(customer_id)
        if first is not None:
            yield Row(index, line, customer_id, reason=repeated(first))
            continue
        seen.add(customer_id, line)
        yield Row(index, line, customer_id, fields=fields)


def customer_schema(path: Source, declared: Mapping[str, str] | None = None) -> Schema:
    """The source's column types as read_customers types them (its first rows only)."""
    declared = declared or {}
    with source_of(path).open(declared) as rows:
        if rows.types is not None:
            return Schema({**rows.types, **declared})
        head = [raw for _, raw, _ in itertools.islice(rows, SAMPLE_ROWS) if raw]
    return Schema.infer(head, declared, decimal_comma=rows.decimal_comma)


def _rows_and_schema(source: CustomerSource, declared: Mapping[str, str]
                     ) -> tuple[Iterator[Triple], Schema]:
    """The rows of a source and its column types: the source's own (Parquet, SQL), else
    inferred from the first rows (CSV, JSONL); the campaign's `fields` win."""
    rows = source.open(declared)
    stream = _closing(rows)
    if rows.types is not None:
        return stream, Schema({**rows.types, **declared})
    head = list(itertools.islice(stream, SAMPLE_ROWS))
    schema = Schema.infer((raw for _, raw, _ in head if raw), declared,
                          decimal_comma=rows.decimal_comma)
    return itertools.chain(head, stream), schema


def _closing(rows: SourceRows) -> Iterator[Triple]:
    with rows:  # a SQL cursor or an open file is released when reading stops
        yield from rows


def _shown_id(raw_id: object) -> str | None:
    """The id as the manifest shows it, for a row rejected before it was typed."""
    if raw_id in (None, "") or not isinstance(raw_id, str | int | float):
        return None
    text = str(raw_id).strip()
    if not text or _SURROGATE.search(text) or _CONTROL.search(text) or len(text) > 512:
        return None  # unprintable: the row is named by its line instead
    return text


def repeated(first_line: int) -> Reason:
    return Reason("repeated_id", f"repeated id (first on line {first_line})", "repeated id")


def find_customer(path: Source, customer_id: str, *, need_email: bool,
                  declared: Mapping[str, str] | None = None) -> Row | None:
    """The first row with this id, found without typing every other row (the source
    finds it as fast as it can: a byte search, a vectorized compare, a WHERE)."""
    source = source_of(path)
    declared = declared or {}
    found = source.find(customer_id, declared)
    if found is None:
        return None
    if found.types is not None:
        schema = Schema({**found.types, **declared})
    else:   # typed as read_customers types it: from the first rows
        with source.open(declared) as rows:
            head = [raw for _, raw, _ in itertools.islice(rows, SAMPLE_ROWS) if raw]
        schema = Schema.infer(head, declared, decimal_comma=rows.decimal_comma)
    try:
        fields = type_row(found.raw, schema, need_email=need_email)
    except RowError as exc:
        return Row(found.index, found.line, customer_id, reason=exc.reason)
    return Row(found.index, found.line, customer_id, fields=fields)


def count_rows(path: Source) -> int:
    """A quick estimate of the number of data rows, for progress bars."""
    return source_of(path).count()


def columns(path: Source) -> list[str]:
    """The source's columns (a CSV header, the keys of the first JSONL rows, a typed
    source's own)."""
    return source_of(path).columns()


def encoding_problem(source: Source) -> str | None:
    """Why a text file looks like another encoding than it is read in (a run whose rows
    were rejected as "not UTF-8 text" ends with it, exit 3), or None."""
    return source_of(source).encoding_problem()


def batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    """Rows in lists of `size` (the last one shorter), streaming."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

