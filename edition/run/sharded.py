"""A run's customers read by its workers, shard by shard (Dask), instead of shipped.

On a task runner whose workers can reach the customer source (`reads_shards`: a local
Dask cluster), the main process no longer streams the rows to the workers: it plans
shards (edition/audience/shards.py) from the file's size and first record, has the
workers count each span's quotes and newlines (one read of the span each), and hands
out one shard per batch. A worker reads its shard, types it with the schema the main
process inferred from the first rows, and renders/sends it as a batch of rows. No
worker reads the whole file (except a hash-sharded UTF-16 file: shards.py).

A worker lost mid-shard: Dask runs the shard again on another worker, in the same run;
the send ledger answers "already sent" for what the lost worker sent and `unknown` for
what it had claimed without an outcome (at most its `in_flight` window): never a
second send (docs/scale.md).

Repeated ids are caught within a shard; the same id in two shards is claimed once in
the ledger (one message), but both rows reach the manifest.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edition.audience.customers import Row, Schema, customer_schema, typed_rows
from edition.audience.shards import (
    Meter,
    Shard,
    Span,
    SpanFacts,
    plan_parquet,
    plan_text,
    read_shard,
    shardable,
    span_facts,
)
from edition.audience.sources.parquet_file import ParquetSource
from edition.audience.text_files import TextFileSource

if TYPE_CHECKING:
    from edition.run.executors import BatchExecutor

SPANS_PER_TASK = 16   # span counts are cheap: several per task run (~20 ms each)

# bytes read from customer files by this process (the tests read it in each worker)
METER = Meter()


@dataclass(frozen=True)
class ShardRows:
    """One batch of a sharded run: a shard to read, and how to type its rows."""

    shard: Shard
    schema: Schema
    need_email: bool
    after_line: int = 0   # a resumed run: rows up to this line were done before

    def rows(self) -> list[Row]:
        raw = read_shard(self.shard, METER)
        done = self.after_line
        return [row for row in typed_rows(raw, self.schema, need_email=self.need_email,
                                          first_index=self.shard.lines_before)
                if row.line > done]


def expand(batch: list[Any]) -> list[Any]:
    """A batch as rows: a shard's are read here, a list of rows is itself."""
    if len(batch) == 1 and isinstance(batch[0], ShardRows):
        return batch[0].rows()
    return batch


class _Counter:
    def process(self, batch: list[Span]) -> list[SpanFacts]:
        return [span_facts(span, METER) for span in batch]

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class SpanJob:
    """Count the quotes and newlines of spans (planning's worker side)."""

    kind: str = "render"      # a task run like a render batch's
    key: str = "shard-spans"

    def open(self, work: Any) -> _Counter:
        return _Counter()


def shard_batches(source: object, executor: BatchExecutor, *, rows: int, batch_size: int,
                  declared: dict[str, str], need_email: bool, after_line: int,
                  gather: Callable[[Iterator[Any], int], Iterator[Any]]
                  ) -> Iterator[list[ShardRows]]:
    """The run's batches as shards, planned as the workers' span counts come in
    (`gather`: executors.in_order, passed in: executors imports the workers, which
    import this module)."""
    schema = customer_schema(source, declared)   # type: ignore[arg-type]
    count = max(1, -(-max(rows, 1) // max(1, batch_size)))

    def batch(shard: Shard) -> list[ShardRows]:
        return [ShardRows(shard, schema, need_email, after_line)]

    if isinstance(source, ParquetSource):
        yield from (batch(s) for s in plan_parquet(source, count))
        return
    assert isinstance(source, TextFileSource)
    plan = plan_text(source, count)
    if isinstance(plan, list):
        yield from (batch(s) for s in plan)
        return
    groups = [plan.spans[i:i + SPANS_PER_TASK]
              for i in range(0, len(plan.spans), SPANS_PER_TASK)]
    job = SpanJob()
    counted = gather((executor.submit(job, group, number)    # type: ignore[arg-type]
                        for number, group in enumerate(groups, start=1)), executor.workers)
    facts = itertools.chain.from_iterable(counted)
    yield from (batch(s) for s in plan.shards(facts))


__all__ = ["METER", "ShardRows", "SpanJob", "expand", "shard_batches", "shardable"]
