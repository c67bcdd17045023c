"""Shards of a customer source: parts that workers read on their own, none of them the
whole file, planned without reading the whole file.

- **CSV and JSONL: byte ranges split at record boundaries.** The coordinator cuts the
  data bytes (after the header) into equal spans from the file's size alone. The
  workers count, per span, its quote bytes and its newlines (`span_facts`: one read of
  the span, at C speed); from those counts the coordinator knows, at every cut, whether
  it lies inside a quoted field (the parity of the quotes before it) and how many lines
  come before it. A shard then starts at its **resync point**: from the cut, the first
  newline outside quotes (quotes toggle, a doubled `""` toggles twice); the shard before
  it reads up to that same point, so every record belongs to exactly one shard, a field
  with quoted newlines included (tests/corpus/customers/quoted-newlines.csv), and each
  row keeps the line number a whole-file read gives it. JSON strings cannot hold a raw
  newline, so a JSONL record ends at the first newline whatever the quotes.
- **Parquet: row groups.** The footer (read by seeking) gives the groups and their
  row counts; a shard is a run of groups.
- **Where ranges cannot be made safe, hash of the id.** A text file whose newline is
  not one byte (UTF-16, UTF-32) is sharded by a hash of the id: each worker streams the
  file and keeps its shard's rows. Every worker then reads the whole file: the plan
  says so (`Shard.whole_file`).

The quote rule is RFC 4180's. A stray quote inside an unquoted field (`5" screen`),
which Python's csv reader takes literally, shifts the parity for the rest of the file:
the shard readers then disagree with a whole-file read. A shard reader checks that its
last record ends exactly at its end point (`ShardMismatch` otherwise) before its rows
leave it, so such a file stops the sharded read instead of mis-sending.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.audience.sources import Triple
from edition.audience.sources.csv_file import CsvSource, csv_records
from edition.audience.sources.jsonl_file import JsonlSource, json_rows
from edition.audience.sources.parquet_file import ParquetSource
from edition.audience.text_files import TextFileSource, file_format
from edition.errors import RunError

CHUNK = 1 << 20          # bytes read at a time by span_facts and the resync scan
_QUOTE_OR_NEWLINE = re.compile(rb'["\n]')
_NEWLINE = re.compile(rb"\n")


class ShardMismatch(RunError):
    """A shard's records do not end where the plan says: the file has a quote the
    plan's rule reads differently from the CSV reader (a stray quote)."""


class Meter:
    """Bytes read from the source by this process (the tests' instrument)."""

    def __init__(self) -> None:
        self.bytes = 0


@dataclass(frozen=True)
class Span:
    """A raw byte range of a text file, for span_facts."""

    path: str
    start: int
    end: int


@dataclass(frozen=True)
class SpanFacts:
    quotes: int
    newlines: int


@dataclass(frozen=True)
class Shard:
    """One worker's part of a source; small and picklable."""

    path: str
    kind: str                 # "csv", "jsonl", "parquet", "hash"
    number: int
    start: int = 0            # bytes (text), first row group (parquet)
    end: int = 0              # bytes (text), row group past the last (parquet)
    lines_before: int = 0     # physical lines (text) or rows (parquet) before start
    of: int = 1               # "hash": how many shards
    encoding: str | None = None
    source_kind: str = ""     # "hash": "csv" or "jsonl"

    @property
    def whole_file(self) -> bool:
        """Whether reading this shard reads the whole file (hash sharding)."""
        return self.kind == "hash"


# -- planning ------------------------------------------------------------------------


@dataclass
class TextPlan:
    """The spans of a text file and, once their facts are known, its shards."""

    path: str
    kind: str                 # "csv" or "jsonl"
    encoding: str | None
    data_start: int           # byte after the header (CSV) or 0 (JSONL)
    header_lines: int
    spans: list[Span] = field(default_factory=list)

    def shards(self, facts: Iterable[SpanFacts]) -> Iterator[Shard]:
        """The shards, one per span, as the spans' facts arrive in order (streaming:
        shard k needs the facts of spans 0..k only)."""
        quotes, lines = 0, self.header_lines
        previous: tuple[int, int] | None = None   # (resync point, lines before it)
        number = 0
        with open(self.path, "rb") as handle:
            size = handle.seek(0, 2)
            for span, fact in zip(self.spans, facts, strict=True):
                point = self._resync(handle, span.start, quotes % 2 == 1, lines)
                if previous is not None:
                    yield self._shard(number, previous, point[0])
                    number += 1
                previous = point
                quotes += fact.quotes
                lines += fact.newlines
            if previous is not None:
                yield self._shard(number, previous, size)

    def _shard(self, number: int, start: tuple[int, int], end: int) -> Shard:
        return Shard(self.path, self.kind, number, start[0], max(end, start[0]),
                     lines_before=start[1], encoding=self.encoding)

    def _resync(self, handle: Any, offset: int, quoted: bool, lines: int
                ) -> tuple[int, int]:
        """(the first record boundary at or after `offset`, lines before it)."""
        if offset <= self.data_start:
            return self.data_start, self.header_lines
        csv_file = self.kind == "csv"
        point, newlines = resync(handle, offset, quoted and csv_file, quotes=csv_file)
        return point, lines + newlines


def resync(handle: Any, offset: int, quoted: bool, *, quotes: bool = True
           ) -> tuple[int, int]:
    """From `offset`, inside a quoted field or not: (the byte after the first newline
    outside quotes, the newlines passed on the way); the file's end if none. Without
    `quotes` (JSONL) the first newline."""
    pattern = _QUOTE_OR_NEWLINE if quotes else _NEWLINE
    handle.seek(offset)
    position, newlines = offset, 0
    while True:
        chunk = handle.read(CHUNK)
        if not chunk:
            return position, newlines
        for match in pattern.finditer(chunk):
            if match.group() == b'"':
                quoted = not quoted
                continue
            newlines += 1
            if not quoted:
                return position + match.end(), newlines
        position += len(chunk)


def span_facts(span: Span, meter: Meter | None = None) -> SpanFacts:
    """Worker side of planning: the quote bytes and newlines of one span."""
    quotes = newlines = 0
    with open(span.path, "rb") as handle:
        handle.seek(span.start)
        left = span.end - span.start
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            if meter is not None:
                meter.bytes += len(chunk)
            quotes += chunk.count(b'"')
            newlines += chunk.count(b"\n")
    return SpanFacts(quotes, newlines)


def plan_text(source: TextFileSource, shards: int) -> TextPlan | list[Shard]:
    """A text file's spans (or, when ranges cannot be made safe, its hash shards), from
    its size and its first record only."""
    kind = "jsonl" if isinstance(source, JsonlSource) else "csv"
    form = file_format(source.path, source.encoding, csv_file=kind == "csv")
    path = str(source.path)
    if not (form.utf8 or form.ascii_compatible):   # a BOM'd UTF-8 file is fine
        return [Shard(path, "hash", k, of=shards, encoding=source.encoding,
                      source_kind=kind) for k in range(shards)]
    size = source.path.stat().st_size
    with source.path.open("rb") as handle:
        data_start, header_lines = resync(handle, 0, False) if kind == "csv" else (0, 0)
    plan = TextPlan(path, kind, source.encoding, data_start, header_lines)
    width = max(1, -(-(size - data_start) // max(1, shards)))
    plan.spans = [Span(path, start, min(size, start + width))
                  for start in range(data_start, max(size, data_start + 1), width)]
    return plan


def plan_parquet(source: ParquetSource, shards: int) -> list[Shard]:
    """Runs of row groups, from the footer."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(source.path) as parquet:
        counts = [parquet.metadata.row_group(g).num_rows
                  for g in range(parquet.metadata.num_row_groups)]
    groups = len(counts)
    per = max(1, -(-groups // max(1, shards)))
    return [Shard(str(source.path), "parquet", n, g, min(groups, g + per),
                  lines_before=sum(counts[:g]))
            for n, g in enumerate(range(0, groups, per))]


def shardable(source: object) -> bool:
    """Whether this source is read in shards on Dask (files; SQL is not yet)."""
    return isinstance(source, TextFileSource | ParquetSource)


def plan_whole(source: object, shards: int, meter: Meter | None = None) -> list[Shard]:
    """Every shard at once, the span facts computed here (tests and tools; a run has
    its workers compute them, see edition/run/sharded.py)."""
    if isinstance(source, ParquetSource):
        return plan_parquet(source, shards)
    assert isinstance(source, TextFileSource)
    plan = plan_text(source, shards)
    if isinstance(plan, list):
        return plan
    return list(plan.shards(span_facts(s, meter) for s in plan.spans))


# -- reading -------------------------------------------------------------------------


# After a shard's bytes, its reader reads this line too: if the CSV reader ends the
# shard inside a quoted field (the plan's quote parity was wrong: a stray quote), the
# line is swallowed into that field and the shard stops (ShardMismatch) before any of
# its rows is used. A record separator (0x1e) no customer file holds in an id.
_SENTINEL = "\x1eedition-shard-end\x1e"


class _Bounded(io.RawIOBase):
    """A file's bytes from `start` to `end`, counted into a meter, then `tail`."""

    def __init__(self, path: str, start: int, end: int, meter: Meter | None):
        self.file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.file.seek(start)
        self.left = end - start
        self.meter = meter
        self.name = path
        self.tail = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            count = min(len(buffer), len(self.tail))
            buffer[:count] = self.tail[:count]
            self.tail = self.tail[count:]
            return count
        view = memoryview(buffer)[: min(len(buffer), self.left)]
        count = self.file.readinto(view)
        self.left -= count
        if self.meter is not None:
            self.meter.bytes += count
        return count

    def close(self) -> None:
        self.file.close()
        super().close()


def read_shard(shard: Shard, meter: Meter | None = None) -> Iterator[Triple]:
    """The shard's raw rows, as the source's own reader gives them for the whole file
    (same line numbers, same parse problems)."""
    if shard.kind == "parquet":
        yield from _parquet_rows(shard)
        return
    if shard.kind == "hash":
        yield from _hash_rows(shard, meter)
        return
    raw = _Bounded(shard.path, shard.start, shard.end, meter)
    with io.BufferedReader(raw) as handle:
        if shard.kind == "jsonl":
            form = file_format(Path(shard.path), shard.encoding, csv_file=False)
            for number, row, problem in json_rows(handle, form):  # type: ignore[arg-type]
                yield shard.lines_before + number, row, problem
            return
        form = file_format(Path(shard.path), shard.encoding)
        header = _csv_header(shard.path, form)
        last = shard.end >= Path(shard.path).stat().st_size
        if not last:   # a record of its own after the shard's bytes: see _SENTINEL
            raw.tail = (_SENTINEL + "\n").encode("utf-8" if form.utf8 else form.codec)
        held: Triple | None = None
        for line, row, problem in csv_records(csv.reader(form.open(handle),  # type: ignore[arg-type]
                                                         delimiter=form.separator), header):
            if held is not None:
                yield held
            held = (shard.lines_before + line, row, problem)
        if not last:
            if held is None or held[1] is None or \
                    held[1].get(header[0] if header else "") != _SENTINEL:
                raise ShardMismatch(f"shard {shard.number} of the customer file does not "
                                    f"end on a record boundary: a quote inside an unquoted "
                                    f"field (a stray quote) shifts the shard plan",
                                    shard.path)
            return
        if held is not None:
            yield held


def _csv_header(path: str, form: Any) -> list[str]:
    with open(path, "rb") as handle:
        return next(csv.reader(form.open(handle), delimiter=form.separator), [])


def _parquet_rows(shard: Shard) -> Iterator[Triple]:
    import pyarrow.parquet as pq

    from edition.audience.sources import rows_of
    from edition.audience.sources.parquet_file import _batch_rows

    with pq.ParquetFile(shard.path) as parquet:
        groups = list(range(shard.start, shard.end))
        batches = parquet.iter_batches(batch_size=2_000, row_groups=groups,
                                       use_threads=False)
        records = itertools.chain.from_iterable(_batch_rows(b) for b in batches)
        for number, row, problem in rows_of(records, None):
            yield shard.lines_before + number, row, problem


def shard_of(customer_id: object, shards: int) -> int:
    """The hash shard of an id (stable across processes and machines)."""
    digest = hashlib.blake2b(str(customer_id).strip().encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


def _hash_rows(shard: Shard, meter: Meter | None) -> Iterator[Triple]:
    source: TextFileSource = (JsonlSource if shard.source_kind == "jsonl" else CsvSource)(
        Path(shard.path), shard.encoding)
    with source.open() as rows:
        for line, row, problem in rows:
            key = row.get("id") if row is not None else line
            if shard_of(key, shard.of) == shard.number:
                yield line, row, problem
    if meter is not None:
        meter.bytes += source.path.stat().st_size


__all__ = ["Meter", "Shard", "ShardMismatch", "Span", "SpanFacts", "TextPlan", "plan_parquet",
           "plan_text", "plan_whole", "read_shard", "resync", "shard_of", "shardable",
           "span_facts"]
