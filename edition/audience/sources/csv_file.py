"""Customers from a CSV file, as spreadsheets and CRMs write them.

    customers: data/customers.csv     # .csv, .tsv, .txt, or any file no other source claims

The header row names the columns. The separator (`,` `;` tab `|`) and the encoding are
found as text_files.py says; a record that is not valid CSV is rejected on its line and
the rest of the file is read. Values are text; a column's type (number, date) is
inferred from the first rows, or declared in the campaign's `fields`.
"""

from __future__ import annotations

import csv
import io
import mmap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from edition.audience.sources import Found, RawRow, SourceRows, Triple
from edition.audience.text_files import FileFormat, TextFileSource, file_format
from edition.errors import RunError
from edition.outcomes import Reason

# A record the CSV reader cannot close (a stray quote) is cut here and rejected, so one
# bad quote can neither swallow the rest of the file nor the machine's memory.
csv.field_size_limit(8 << 20)


@dataclass(frozen=True)
class CsvSource(TextFileSource):
    """A CSV file with a header row (any separator, any encoding)."""

    suffixes = (".csv", ".tsv", ".txt")
    fallback = True     # a customer file of any other name is read as CSV
    forms = ("a CSV file",)

    def open(self, declared: Mapping[str, str] | None = None) -> SourceRows:
        self.check()
        try:
            form = file_format(self.path, self.encoding)
            handle = self.path.open("rb")
        except OSError as exc:
            raise RunError(f"cannot read the customer file: {exc.strerror}",
                           self.path) from None
        return SourceRows(None, _csv_rows(handle, form), handle.close,
                          decimal_comma=form.separator == ";")

    def find(self, customer_id: str, declared: Mapping[str, str] | None = None
             ) -> Found | None:
        self.check()
        found = _scan_csv(self, customer_id)
        if found is None:
            return None
        line, raw = found
        return Found(line - 2, line, raw, None)

    def count(self) -> int:
        return max(self.count_lines() - 1, 0)

    def columns(self) -> list[str]:
        """The header's names."""
        self.check()
        form = file_format(self.path, self.encoding)
        with self.path.open("rb") as handle:
            header = next(csv.reader(form.open(handle), delimiter=form.separator), [])
        return list(dict.fromkeys(str(name) for name in header))


def _csv_rows(handle: io.BufferedReader, form: FileFormat) -> Iterator[Triple]:
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
    yield from csv_records(reader, header)


def csv_records(reader: Any, header: list[str]) -> Iterator[Triple]:
    """(line, raw row, problem) for the records of a csv.reader past the header (the
    whole file's, or a shard's: edition/audience/shards.py)."""
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
        raw: dict[str | None, object] = dict(zip(header, values, strict=False))
        if len(values) > width:  # as csv.DictReader does, so type_row rejects it
            raw[None] = values[width:]
        yield reader.line_num, raw, None


def _scan_csv(file: TextFileSource, customer_id: str) -> tuple[int, RawRow] | None:
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


def _scan_csv_slowly(file: TextFileSource, customer_id: str, header: list[str],
                     column: int) -> tuple[int, RawRow] | None:
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


def _as_raw(header: list[str], row: list[str]) -> dict[str | None, object]:
    raw: dict[str | None, object] = dict(zip(header, row, strict=False))
    if len(row) > len(header):  # as csv.DictReader does, so type_row rejects it
        raw[None] = row[len(header):]
    return raw
