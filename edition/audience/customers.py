"""Customers: streamed from CSV or JSONL, typed and checked one row at a time.

Parquet files and SQL queries are read by edition.sources, which types their values
from the source's own column types; the row checks here are the same for every source.

A bad row never stops a run: it becomes a `rejected` row with its reason. Typing is
inferred from the first rows (a column is a number column when most of its values are
numbers), or declared in the campaign's `fields`; a later value that does not fit is a
rejection that names the column.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
import json
import mmap
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.addresses import AddressError, normalize
from edition.audience.sources import SourceRows, TypedSource, typed_source
from edition.audience.text_files import FileFormat, TextFile, file_format
from edition.errors import RunError
from edition.locales import NotALanguageTag, language_tag
from edition.outcomes import Reason

SAMPLE_ROWS = 200
MAX_CELL = 1 << 20          # a value longer than this (1 MiB) rejects its row
MAX_ID_BYTES = 255          # a longer id is rejected (checked_id says why)
# A record the CSV reader cannot close (a stray quote) is cut here and rejected, so one
# bad quote can neither swallow the rest of the file nor the machine's memory.
csv.field_size_limit(8 << 20)
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
    fields: Mapping[str, Any] | None = None
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
    def infer(cls, sample: Iterable[Mapping[str, Any]], declared: Mapping[str, str],
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


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return (isinstance(value, str) and bool(_NUMBER.match(value.strip()))
            and not _LEADING_ZERO.match(value.strip()))


def _is_decimal_comma(value: Any) -> bool:
    return (isinstance(value, str) and bool(_DECIMAL_COMMA.match(value.strip()))
            and not _LEADING_ZERO.match(value.strip()))


def _is_date(value: Any) -> bool:
    if isinstance(value, dt.date):
        return True
    if not (isinstance(value, str) and _DATE.match(value.strip())):
        return False
    try:
        dt.date.fromisoformat(value.strip())
    except ValueError:
        return False
    return True


def _number(value: Any) -> int | float:
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


def type_row(raw: Mapping[str, Any], schema: Schema, *, need_email: bool) -> dict[str, Any]:
    """Check and type one row; raise RowError with the reason."""
    fields: dict[str, Any] = {}
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
    fields["id"] = checked_id(customer_id)
    if _CONTROL.search(fields["id"]) or "\n" in fields["id"]:
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


def _check_value(key: str, value: Any, depth: int = 0) -> None:
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


def _locale(value: Any) -> str:
    """The row's locale as a language tag (`en_GB` → `en-GB`; none → `en`), or a rejection.

    The locale keys versions, subjects and currencies: free text there would make every
    spelling a version of its own, so a value that is not a tag rejects the row."""
    if value is None or str(value).strip() == "":
        return "en"
    try:
        return language_tag(str(value))
    except NotALanguageTag as exc:
        raise RowError("bad_locale", f"locale: {exc}", "locale: not a language tag") from None


def _interests(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(";")
    return [clean_text(str(i)).strip().lower() for i in items if str(i).strip()]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def raw_rows(path: str | Path | TypedSource | TextFile
             ) -> Iterator[tuple[int, Mapping[str, Any] | None, Reason | None]]:
    """(line, raw row or None, parse problem) for every data row, streaming.

    The file is read as bytes: a row that is not UTF-8 (or not in the file's encoding,
    edition.text_files), not valid JSON or too deep to parse is rejected on its own line,
    and the rest of the file is read. Parquet and SQL sources give their row number
    (from 1) as the line.
    """
    typed = typed_source(path)
    if typed is not None:
        with typed.open() as rows:
            yield from rows
        return
    file = text_file(path)
    json_file = _is_json(file.path)
    try:
        form = file_format(file.path, file.encoding, csv_file=not json_file)
        handle = file.path.open("rb")
    except OSError as exc:
        raise RunError(f"cannot read the customer file: {exc.strerror}", file.path) from None
    with handle:
        if json_file:
            yield from _json_rows(handle, form)
        else:
            yield from _csv_rows(handle, form)


def text_file(path: str | Path | TextFile) -> TextFile:
    """A CSV/JSONL file and its encoding (None: UTF-8, or what a byte order mark says)."""
    return path if isinstance(path, TextFile) else TextFile(Path(path))


def _decimal_comma(file: TextFile) -> bool:
    """A `;`-separated file: where spreadsheets write that, `6200,50` is a number."""
    return not _is_json(file.path) and file_format(file.path, file.encoding).separator == ";"


def _is_json(path: Path) -> bool:
    return path.suffix.lower() in {".jsonl", ".ndjson", ".json"}


def _json_rows(handle: Any, form: FileFormat
               ) -> Iterator[tuple[int, Mapping[str, Any] | None, Reason | None]]:
    if not form.ascii_compatible:  # UTF-16/32: lines are not split at b"\n"
        lines: Iterable[bytes | str] = form.open(handle)
    else:
        lines = handle
    codec = "utf-8" if form.utf8 else form.codec
    for number, data in enumerate(lines, start=1):
        if isinstance(data, bytes):
            if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            if not data.strip():
                continue
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                yield number, None, Reason("not_utf8", f"byte 0x{data[exc.start]:02x} is not "
                                           f"{form.name} text", f"not {form.name} text")
                continue
        elif not data.strip():
            continue
        else:
            text = data
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, None, Reason("bad_json", f"not valid JSON: {exc.msg}",
                                       "not valid JSON")
            continue
        except RecursionError:
            yield number, None, Reason("too_deep", "JSON nested too deep to read",
                                       "nested too deep")
            continue
        if not isinstance(value, dict):
            yield number, None, Reason("not_an_object", "a JSONL row must be an object")
            continue
        yield number, value, None


def _csv_rows(handle: Any, form: FileFormat
              ) -> Iterator[tuple[int, Mapping[str, Any] | None, Reason | None]]:
    # surrogateescape: a byte the encoding cannot read survives as a marker the row
    # check finds
    text = form.open(handle)
    reader = csv.reader(text, delimiter=form.separator)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise RunError(f"the customer file's header is not valid CSV: {exc}",
                       getattr(handle, "name", None)) from None
    width = len(header)
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, Reason("bad_csv", f"not valid CSV: {exc}",
                                                "not valid CSV")
            continue
        if not values:
            continue
        raw: dict[Any, Any] = dict(zip(header, values, strict=False))
        if len(values) > width:  # as csv.DictReader does, so type_row rejects it
            raw[None] = values[width:]
        yield reader.line_num, raw, None


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


def read_customers(path: str | Path | TypedSource | TextFile, *, need_email: bool,
                   declared: Mapping[str, str] | None = None,
                   limit: int | None = None) -> Iterator[Row]:
    """Every row of the file in order, typed and checked; repeated ids rejected."""
    stream, schema = _rows_and_schema(path, declared or {})
    seen = IdSet()
    for index, (line, raw, problem) in enumerate(stream):
        if limit is not None and index >= limit:
            return
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
        first = seen.first_line(fields["id"])
        if first is not None:
            yield Row(index, line, fields["id"], reason=repeated(first))
            continue
        seen.add(fields["id"], line)
        yield Row(index, line, fields["id"], fields=fields)


def _rows_and_schema(source: str | Path | TypedSource | TextFile, declared: Mapping[str, str]
                     ) -> tuple[Iterator[tuple[int, Mapping[str, Any] | None, Reason | None]],
                                Schema]:
    """The rows of a source and its column types: declared by Parquet and SQL sources,
    inferred from the first rows of a CSV/JSONL file; the campaign's `fields` win."""
    typed = typed_source(source)
    if typed is not None:
        rows = typed.open(declared)
        return _closing(rows), Schema({**rows.types, **declared})
    file = text_file(source)
    if not file.path.is_file():
        raise RunError(f"customer file not found: {file.path}", file.path)
    stream = raw_rows(file)
    head = list(itertools.islice(stream, SAMPLE_ROWS))
    schema = Schema.infer((raw for _, raw, _ in head if raw), declared,
                          decimal_comma=_decimal_comma(file))
    return itertools.chain(head, stream), schema


def _closing(rows: SourceRows) -> Iterator[tuple[int, Mapping[str, Any] | None, Reason | None]]:
    with rows:  # a SQL cursor or Parquet file is released when reading stops
        yield from rows


def _shown_id(raw_id: Any) -> str | None:
    """The id as the manifest shows it, for a row rejected before it was typed."""
    if raw_id in (None, "") or not isinstance(raw_id, str | int | float):
        return None
    text = str(raw_id).strip()
    if not text or _SURROGATE.search(text) or _CONTROL.search(text) or len(text) > 512:
        return None  # unprintable: the row is named by its line instead
    return text


def repeated(first_line: int) -> Reason:
    return Reason("repeated_id", f"repeated id (first on line {first_line})", "repeated id")


def find_customer(path: str | Path | TypedSource | TextFile, customer_id: str, *,
                  need_email: bool, declared: Mapping[str, str] | None = None) -> Row | None:
    """The first row with this id, found without typing every other row."""
    typed = typed_source(path)
    if typed is not None:
        return _find_typed(typed, customer_id, need_email=need_email, declared=declared or {})
    file = text_file(path)
    if not file.path.is_file():
        raise RunError(f"customer file not found: {file.path}", file.path)
    head = list(itertools.islice(raw_rows(file), SAMPLE_ROWS))
    schema = Schema.infer((raw for _, raw, _ in head if raw), declared or {},
                          decimal_comma=_decimal_comma(file))
    csv_file = not _is_json(file.path)   # .csv, .tsv, .txt...: as raw_rows reads them
    found = _scan_csv(file, customer_id) if csv_file else None
    candidates = [found] if found is not None else (
        ((line, raw) for line, raw, _ in raw_rows(file) if raw is not None)
        if not csv_file else [])
    for line, raw in candidates:
        if str(raw.get("id", "")).strip() == customer_id:
            try:
                return Row(line - 2, line, customer_id,
                           fields=type_row(raw, schema, need_email=need_email))
            except RowError as exc:
                return Row(line - 2, line, customer_id, reason=exc.reason)
    return None


def _find_typed(source: TypedSource, customer_id: str, *, need_email: bool,
                declared: Mapping[str, str]) -> Row | None:
    """Parquet compares the id column vectorized, SQL in the database; then one row is
    typed with the source's column types."""
    found = source.find(customer_id, declared)
    if found is None:
        return None
    number, raw, types = found
    try:
        fields = type_row(raw, Schema({**types, **declared}), need_email=need_email)
    except RowError as exc:
        return Row(number - 1, number, customer_id, reason=exc.reason)
    return Row(number - 1, number, customer_id, fields=fields)


def _scan_csv(file: TextFile, customer_id: str) -> tuple[int, dict[Any, Any]] | None:
    """Find a row by id with a byte search, so a preview answers fast on a large file.

    Only lines holding the id's bytes are parsed. When a candidate line could be part
    of a multi-line quoted record the answer would be uncertain, so the whole file is
    scanned instead (a plain csv.reader pass); so is a file whose newlines are not single
    bytes (UTF-16).
    """
    path = file.path
    form = file_format(path, file.encoding)
    with path.open("rb") as handle:
        header = next(csv.reader(form.open(handle), delimiter=form.separator), None)
    if not header or "id" not in header:
        return None
    column = header.index("id")
    codec = "utf-8" if form.utf8 else form.codec
    try:
        needle = customer_id.encode(codec)
    except UnicodeEncodeError:
        return None  # no row of this file can hold that id
    if not form.ascii_compatible:
        return _scan_csv_slowly(file, customer_id, header, column)
    if not needle or b"\n" in needle:
        return None
    with path.open("rb") as handle:
        header_end = len(handle.readline())
        try:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            return None
    with data:
        at = data.find(needle, header_end)
        while at != -1:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end == -1 else end
            text = data[start:end].decode(codec, "replace")
            if data[:start].count(b'"') % 2 or text.count('"') % 2:
                return _scan_csv_slowly(file, customer_id, header, column)
            row = next(csv.reader([text], delimiter=form.separator), [])
            if len(row) > column and row[column].strip() == customer_id:
                return data[:start].count(b"\n") + 1, _as_raw(header, row)
            at = data.find(needle, end)
    return None


def _scan_csv_slowly(file: TextFile, customer_id: str, header: list[str],
                     column: int) -> tuple[int, dict[Any, Any]] | None:
    form = file_format(file.path, file.encoding)
    with file.path.open("rb") as handle:
        reader = csv.reader(form.open(handle), delimiter=form.separator)
        next(reader, None)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return None
            except csv.Error:
                continue  # read_customers rejects that record; it is not this customer
            if len(row) > column and row[column].strip() == customer_id:
                return reader.line_num, _as_raw(header, row)


def _as_raw(header: list[str], row: list[str]) -> dict[Any, Any]:
    raw: dict[Any, Any] = dict(zip(header, row, strict=False))
    if len(row) > len(header):  # as csv.DictReader does, so type_row rejects it
        raw[None] = row[len(header):]
    return raw


def count_rows(path: str | Path | TypedSource | TextFile) -> int:
    """A quick estimate of the number of data rows, for progress bars."""
    typed = typed_source(path)
    if typed is not None:
        return typed.count()
    path = text_file(path).path
    lines = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        return lines
    return max(lines - 1, 0)


def columns(path: str | Path | TypedSource | TextFile) -> list[str]:
    """The customer file's columns: the CSV header, or the keys of the first JSONL rows
    (a typed source: its own columns)."""
    typed = typed_source(path)
    if typed is not None:
        rows = typed.open({})
        try:
            return list(rows.types)
        finally:
            rows.close()
    file = text_file(path)
    names: dict[str, None] = {}
    for _, raw, _ in itertools.islice(raw_rows(file), SAMPLE_ROWS):
        if raw is not None:
            names.update((str(k), None) for k in raw if k is not None)
        if not _is_json(file.path):
            break  # every CSV row has the header's keys
    if not names and not _is_json(file.path):
        form = file_format(file.path, file.encoding)
        with file.path.open("rb") as handle:
            names.update((n, None) for n in next(
                csv.reader(form.open(handle), delimiter=form.separator), []))
    return list(names)


def encoding_problem(source: str | Path | TypedSource | TextFile) -> str | None:
    """Why a CSV/JSONL file looks like another encoding than it is read in (a run whose
    rows were rejected as "not UTF-8 text" ends with it, exit 3), or None."""
    if typed_source(source) is not None:
        return None
    file = text_file(source)
    try:
        return file_format(file.path, file.encoding, csv_file=False).suspect
    except OSError:
        return None


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

