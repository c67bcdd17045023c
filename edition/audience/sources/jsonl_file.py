"""Customers from a JSONL file: one JSON object per line.

    customers: data/customers.jsonl                   # by its ending: .jsonl, .ndjson, .json

The file is read as bytes, a line at a time: a line that is not in the file's
encoding, not valid JSON, too deep to parse or not an object is rejected on its own
line, and the rest of the file is read. Values keep their JSON types; the types of
columns given as text (numbers, dates) are inferred from the first rows, as for CSV.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from edition.audience.sources import Found, SourceRows, Triple
from edition.audience.text_files import FileFormat, TextFileSource, file_format
from edition.errors import RunError
from edition.outcomes import Reason

SAMPLE_ROWS = 200   # the rows whose keys are a JSONL file's columns


@dataclass(frozen=True)
class JsonlSource(TextFileSource):
    """A JSON Lines file of customer objects."""

    suffixes = (".jsonl", ".ndjson", ".json")
    forms = ("a JSONL file",)

    def open(self, declared: Mapping[str, str] | None = None) -> SourceRows:
        self.check()
        try:
            form = file_format(self.path, self.encoding, csv_file=False)
            handle = self.path.open("rb")
        except OSError as exc:
            raise RunError(f"cannot read the customer file: {exc.strerror}",
                           self.path) from None
        return SourceRows(None, json_rows(handle, form), handle.close)

    def find(self, customer_id: str, declared: Mapping[str, str] | None = None
             ) -> Found | None:
        with self.open(declared) as rows:
            for line, raw, _ in rows:
                if raw is not None and str(raw.get("id", "")).strip() == customer_id:
                    return Found(line - 2, line, raw, None)
        return None

    def count(self) -> int:
        return self.count_lines()

    def columns(self) -> list[str]:
        """The keys of the first rows, in the order they first appear."""
        names: dict[str, None] = {}
        with self.open() as rows:
            for _, raw, _ in itertools.islice(rows, SAMPLE_ROWS):
                if raw is not None:
                    names.update((str(k), None) for k in raw if k is not None)
        return list(names)


def json_rows(handle: io.BufferedReader, form: FileFormat) -> Iterator[Triple]:
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
