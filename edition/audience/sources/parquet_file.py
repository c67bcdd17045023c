"""Customers from a Parquet file, read a batch of rows at a time.

    customers: data/customers.parquet                 # by its ending: .parquet or .pq

pyarrow hands over typed values, so nothing is guessed: integer columns give ints,
floating and decimal columns numbers (a decimal with no fraction digits an int, else a
float), date columns dates, boolean columns bools, text columns text, list columns
lists (`interests` among them), timestamps stay datetimes. The file is streamed batch
by batch (`ParquetFile.iter_batches`), so memory stays flat however many rows it has.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edition.audience.sources import (
    BATCH_ROWS,
    CustomerSource,
    Found,
    SourceRows,
    missing_file,
    plain,
    plain_row,
    rows_of,
)
from edition.errors import RunError
from edition.outcomes import Reason


# pyarrow ships no types: its objects are untyped here (pyproject ignores its imports)
def _arrow_kind(kind: Any) -> str | None:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):  # pandas categories: typed as their values
        kind = kind.value_type
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return "list"
    return None  # bools, timestamps, structs...: their own Python values, undeclared


@dataclass(frozen=True)
class ParquetSource(CustomerSource):
    """A Parquet file, read a batch of rows at a time."""

    suffixes = (".parquet", ".pq")
    forms = ("a Parquet file",)

    path: Path

    @classmethod
    def from_setting(cls, value: str | Path | Mapping[str, object], *, root: Path | None,
                     encoding: str | None) -> ParquetSource:
        path = Path(str(value))
        return cls(root / path if root is not None and not path.is_absolute() else path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        return str(self.path.resolve())

    def check(self) -> None:
        if not self.path.is_file():
            raise missing_file(self.path)

    def _file(self) -> Any:
        import pyarrow.parquet as pq

        self.check()
        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
            raise RunError(f"cannot read the customer file as Parquet: {exc}",
                           self.path) from None

    def _types(self, parquet: Any) -> dict[str, str]:
        schema = parquet.schema_arrow
        return {name: kind for name in schema.names
                if (kind := _arrow_kind(schema.field(name).type)) is not None}

    def open(self, declared: Mapping[str, str] | None = None) -> SourceRows:
        parquet = self._file()
        types = self._types(parquet)
        return SourceRows(types, rows_of(self._records(parquet), declared), parquet.close)

    def _records(self, parquet: Any) -> Iterator[dict[str, object] | Reason]:
        try:
            # one thread: the rows are turned into Python one at a time anyway, and each
            # decoding thread's allocator would keep its own tens of MB
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
                yield from _batch_rows(batch)
        except RunError:
            raise
        except Exception as exc:
            raise RunError(f"cannot read the customer file as Parquet: {exc}",
                           self.path) from None

    def find(self, customer_id: str, declared: Mapping[str, str] | None = None
             ) -> Found | None:
        """Only the `id` column is compared (vectorized); only the match becomes Python."""
        import pyarrow as pa
        import pyarrow.compute as pc

        parquet = self._file()
        try:
            if "id" not in parquet.schema_arrow.names:
                return None
            types = self._types(parquet)
            seen = 0
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS * 10, use_threads=False):
                ids = batch.column(batch.schema.get_field_index("id"))
                if pa.types.is_string(ids.type) or pa.types.is_integer(ids.type):
                    hits = pc.equal(pc.utf8_trim_whitespace(ids.cast(pa.string())),
                                    customer_id)
                    where = pc.index(hits, True).as_py()
                    candidates = [] if where < 0 else [where]
                else:  # floats, decimals...: compare as Python shows them
                    candidates = [i for i, v in enumerate(ids.to_pylist())
                                  if str(plain(v)).strip() == customer_id]
                for index in candidates:
                    (raw,) = _batch_rows(batch.slice(index, 1))
                    if isinstance(raw, Reason):
                        continue  # unreadable: read_customers rejects it, it is not a match
                    number = seen + index + 1
                    return Found(number - 1, number, plain_row(raw, declared), types)
                seen += batch.num_rows
            return None
        finally:
            parquet.close()

    def count(self) -> int:
        parquet = self._file()
        try:
            return int(parquet.metadata.num_rows)
        finally:
            parquet.close()

    def columns(self) -> list[str]:
        """The columns whose type edition knows (as the rows give them)."""
        parquet = self._file()
        try:
            return list(self._types(parquet))
        finally:
            parquet.close()


def _batch_rows(batch: Any) -> list[dict[str, object] | Reason]:
    try:
        whole: list[dict[str, object] | Reason] = batch.to_pylist()
        return whole
    except UnicodeDecodeError:
        # one bad string must not lose the batch: row by row, the bad one(s) rejected
        rows: list[dict[str, object] | Reason] = []
        for index in range(batch.num_rows):
            try:
                rows.extend(batch.slice(index, 1).to_pylist())
            except UnicodeDecodeError as exc:
                rows.append(Reason("not_utf8", f"a text value is not UTF-8 ({exc.reason})",
                                   "not UTF-8 text"))
        return rows
