"""Shards of a customer source (issue 22, item 4): byte ranges of CSV/JSONL split at
record boundaries, Parquet row groups, hash shards where ranges are not safe; each
shard read on its own gives exactly the whole file's rows, no shard reader reads the
whole file, and a run whose workers read shards gives the run that ships rows."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import AS_OF, REPO

from edition.audience.shards import (
    Meter,
    Shard,
    ShardMismatch,
    plan_text,
    plan_whole,
    read_shard,
    span_facts,
)
from edition.audience.sources import customer_source
from edition.run.executors import InlineExecutor
from edition.run.lifecycle import execute
from edition.run.options import RunOptions
from edition.run.workers import close_jobs

CORPUS = REPO / "tests" / "corpus" / "customers"


def whole(path: Path, encoding: str | None = None) -> list[tuple]:
    with customer_source(path, from_campaign=False, encoding=encoding).open() as rows:
        return [tuple(t) for t in rows]


def sharded(path: Path, count: int, meters: list[Meter] | None = None,
            encoding: str | None = None) -> list[tuple]:
    source = customer_source(path, from_campaign=False, encoding=encoding)
    found: list[tuple] = []
    for shard in plan_whole(source, count):
        meter = Meter()
        found += [tuple(t) for t in read_shard(shard, meter)]
        if meters is not None:
            meters.append(meter)
    return sorted(found, key=lambda t: t[0])


def messy_csv(path: Path, rows: int, *, newline: str = "\n", separator: str = ",",
              encoding: str = "utf-8") -> Path:
    """Records whose quoted fields hold newlines (LF and CRLF), doubled quotes and the
    separator, some of them long enough to straddle any cut."""
    with path.open("w", encoding=encoding, newline="") as handle:
        out = csv.writer(handle, delimiter=separator, lineterminator=newline)
        out.writerow(["id", "email", "note", "city"])
        for n in range(rows):
            note = f"plain {n}"
            if n % 7 == 3:
                note = f'line one\nline "two"{separator} quoted\r\nend {n}'
            if n % 97 == 5:
                note = ("\n".join(f'"{k}" {separator}' for k in range(400)))
            out.writerow([f"C{n}", f"c{n}@example.com", note, "Zürich" if n % 2 else "Köln"])
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.iterdir()
                                        if p.suffix in (".csv", ".tsv", ".txt", ".jsonl")))
def test_shards_of_the_corpus_give_the_whole_files_rows(name: str) -> None:
    path = CORPUS / name
    expected = whole(path)
    for count in range(1, 25):
        assert sharded(path, count) == expected, (name, count)


@pytest.mark.parametrize(("newline", "separator", "encoding"),
                         [("\n", ",", "utf-8"), ("\r\n", ";", "windows-1252"),
                          ("\n", "\t", "utf-8-sig")])
def test_quoted_newlines_never_split_a_record_and_no_reader_reads_the_whole_file(
        tmp_path: Path, newline: str, separator: str, encoding: str) -> None:
    path = messy_csv(tmp_path / "c.csv", 3000, newline=newline, separator=separator,
                     encoding=encoding)
    given = None if encoding != "windows-1252" else "windows-1252"
    expected = whole(path, given)
    assert len(expected) == 3000 and any("\n" in str(t[1]["note"]) for t in expected)
    size = path.stat().st_size
    for count in (2, 3, 8, 61):
        meters: list[Meter] = []
        assert sharded(path, count, meters, given) == expected, count
        assert max(m.bytes for m in meters) < size, count
        assert sum(m.bytes for m in meters) <= size
    plan = plan_text(customer_source(path, from_campaign=False, encoding=given), 3)
    assert not isinstance(plan, list)
    for span in plan.spans:   # planning's worker side: one span each
        meter = Meter()
        span_facts(span, meter)
        assert meter.bytes == span.end - span.start < size


def test_jsonl_ranges_and_parquet_row_groups(tmp_path: Path) -> None:
    people = [{"id": f"J{n}", "email": f"j{n}@example.com", "note": 'a "q"\nb' * (n % 3)}
              for n in range(500)]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps(p) + "\n" for p in people), encoding="utf-8")
    meters: list[Meter] = []
    assert sharded(jsonl, 9, meters) == whole(jsonl)
    assert max(m.bytes for m in meters) < jsonl.stat().st_size

    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(people), parquet, row_group_size=64)
    shards = plan_whole(customer_source(parquet, from_campaign=False), 3)
    assert [s.kind for s in shards] == ["parquet"] * 3
    assert sharded(parquet, 3) == whole(parquet)


def test_a_utf16_file_falls_back_to_hash_shards(tmp_path: Path) -> None:
    path = messy_csv(tmp_path / "c.csv", 200, encoding="utf-16")
    shards = plan_whole(customer_source(path, from_campaign=False, encoding="utf-16"), 4)
    assert all(s.whole_file for s in shards)   # said plainly: each reads the whole file
    assert sharded(path, 4, encoding="utf-16") == whole(path, "utf-16")


def test_a_stray_quote_stops_the_shard_instead_of_misreading(tmp_path: Path) -> None:
    """A quote inside an unquoted field shifts the quote parity the plan relies on."""
    path = tmp_path / "stray.csv"
    lines = ["id,email,note"] + [f"S{n},s{n}@example.com,ok" for n in range(300)]
    lines[10] = 'S9,s9@example.com,a 5" screen'
    lines[200] = 'S199,s199@example.com,"two\nlines"'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = customer_source(path, from_campaign=False)
    shards: list[Shard] = plan_whole(source, 6)
    with pytest.raises(ShardMismatch, match="stray quote"):
        for shard in shards:
            list(read_shard(shard))


class ShardReadingExecutor(InlineExecutor):
    """Batches in this process, the source read in shards as a local Dask cluster's
    workers read it."""

    workers = 2
    reads_shards = True


def test_a_run_whose_workers_read_shards_equals_the_run_that_ships_rows(
        tmp_path: Path) -> None:
    site = tmp_path / "site"
    for folder in ("campaigns", "templates", "articles", "offers", "greetings"):
        shutil.copytree(REPO / folder, site / folder)
    customers = tmp_path / "customers.csv"
    from edition.audience.sampledata import write_customers

    write_customers(customers, 400, seed=5, messy=True)
    manifests = {}
    for name, executor in (("shipped", InlineExecutor()),
                           ("sharded", ShardReadingExecutor())):
        options = RunOptions.build(campaign=str(site / "campaigns" / "weekly-newsletter.yaml"),
                                   customers=str(customers), out=str(tmp_path / name),
                                   as_of=AS_OF, batch_size=50, formats=("text",)).resolved()
        progress: list[int] = []
        try:
            summary = execute(options, executor=executor, on_progress=progress.append)
        finally:
            close_jobs()
        assert summary.customers == 400
        assert sum(progress) == 400   # a shard's rows counted as they come back
        rows = [json.loads(line) for line in
                (tmp_path / name / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
        manifests[name] = sorted((r.get("line"), r["customer_id"], r["status"],
                                  r.get("reason")) for r in rows)
    assert manifests["sharded"] == manifests["shipped"]
