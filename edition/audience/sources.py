"""Customer sources that know their own column types: Parquet files and SQL queries.

CSV and JSONL are read by customers.py. A Parquet file or a PostgreSQL query hands us
typed values already, so nothing is guessed: integer columns give ints, floating and
decimal columns give numbers (a decimal with no fraction digits an int, else a float),
date columns dates, boolean columns bools, text columns text, list/array columns lists
(`interests` among them), timestamps stay datetimes. A column's declared type comes
from the source (`SourceRows.types`), and the campaign's `fields` still override it.
Both are streamed: Parquet batch by batch (`ParquetFile.iter_batches`), SQL through a
server-side cursor, so memory stays flat however many customers there are.

Rows come out as customers.raw_rows' triples, `(row number, raw mapping or None, parse
problem or None)`, numbered from 1; customers.read_customers then applies the same row
checks as for CSV (missing or repeated ids, addresses, values that do not fit).

Campaign syntax (`customers:`) and `--customers`:

    customers: data/customers.parquet                 # by suffix: .parquet or .pq
    customers:                                        # a query (give it an ORDER BY:
      url: postgresql://edition@crm.internal/crm      #  a resumed run relies on the
      query: "select * from customers where opted_in order by id"   # same order)
    customers: {url: "postgresql://edition@crm.internal/crm", table: crm.customers}
    --customers 'postgresql://edition@crm.internal/crm?table=crm.customers'

`table:` reads `SELECT * FROM <table> ORDER BY id`. The password never goes in the
campaign: libpq reads PGPASSWORD, ~/.pgpass or a PGSERVICE entry (`postgresql:///
?service=crm`).

A customer query only reads. Each one (the rows, a count, a lookup by id) runs on its
own connection, in a transaction begun READ ONLY with the session's default READ ONLY
too, and as one statement through the extended protocol (a server-side cursor's
DECLARE), which PostgreSQL never splits: text such as `…) AS q0; COMMIT; DELETE …` is a
syntax error, not a second statement, and a query that modifies data is refused.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edition.audience.text_files import TextFile
from edition.databases import has_password, is_database_url, masked, scrub, sqlalchemy_url
from edition.errors import ContentError, RunError
from edition.outcomes import Reason

__all__ = ["BATCH_ROWS", "PARQUET_SUFFIXES", "ParquetSource", "SourceRows", "SqlSource",
           "TypedSource", "customer_source", "typed_source"]

PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
BATCH_ROWS = 2_000  # rows per Parquet batch / SQL fetch: small enough to stay flat
_SOURCE_PARAMS = ("table", "query")  # edition's own URL parameters, never sent to the server
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?\Z")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
# what SQLAlchemy's text() would take for a bound parameter (`:name`, not `::cast`)
_BIND_LIKE = re.compile(r"(?<![:\w\\]):(?=\w)")

Triple = tuple[int, Mapping[str, Any] | None, Reason | None]


class SourceRows:
    """An open source: its declared column types and its rows (close it when done)."""

    def __init__(self, types: Mapping[str, str], rows: Iterator[Triple],
                 close: Callable[[], None] = lambda: None):
        self.types = dict(types)
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


class TypedSource:
    """A customer source that types its own values (Parquet, SQL)."""

    kind = ""

    def open(self, declared: Mapping[str, str] | None = None) -> SourceRows:
        """Start reading; `declared` (the campaign's `fields`) only matters for `text`
        columns: their values are given as text, whatever the source's type."""
        raise NotImplementedError

    def find(self, customer_id: str, declared: Mapping[str, str] | None = None
             ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """(row number, raw row, column types) of the first row with this id, or None."""
        raise NotImplementedError

    def count(self) -> int:
        """How many rows the source has (for progress bars)."""
        raise NotImplementedError


# --- values ------------------------------------------------------------------------------


def plain(value: Any) -> Any:
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


def _as_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _plain_row(raw: Mapping[str, Any], declared: Mapping[str, str] | None) -> dict[str, Any]:
    """One row's values made plain; columns the campaign declares `text` given as text."""
    row = {str(key): plain(value) for key, value in raw.items()}
    for key, kind in (declared or {}).items():
        if kind == "text" and key in row:
            row[key] = _as_text(row[key])
    return row


def _rows_of(raws: Iterator[dict[str, Any] | Reason],
             declared: Mapping[str, str] | None) -> Iterator[Triple]:
    for number, raw in enumerate(raws, start=1):
        if isinstance(raw, Reason):
            yield number, None, raw
        else:
            yield number, _plain_row(raw, declared), None


# --- Parquet -----------------------------------------------------------------------------


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
class ParquetSource(TypedSource):
    """A Parquet file, read a batch of rows at a time."""

    path: Path
    kind = "parquet"

    def __str__(self) -> str:
        return str(self.path)

    def _file(self) -> Any:
        import pyarrow.parquet as pq

        if not self.path.is_file():
            raise RunError(f"customer file not found: {self.path}", self.path)
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
        return SourceRows(types, _rows_of(self._records(parquet), declared), parquet.close)

    def _records(self, parquet: Any) -> Iterator[dict[str, Any] | Reason]:
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
             ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
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
                    return seen + index + 1, _plain_row(raw, declared), types
                seen += batch.num_rows
            return None
        finally:
            parquet.close()

    def count(self) -> int:
        parquet = self._file()
        try:
            return parquet.metadata.num_rows
        finally:
            parquet.close()


def _batch_rows(batch: Any) -> list[dict[str, Any] | Reason]:
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        # one bad string must not lose the batch: row by row, the bad one(s) rejected
        rows: list[dict[str, Any] | Reason] = []
        for index in range(batch.num_rows):
            try:
                rows.extend(batch.slice(index, 1).to_pylist())
            except UnicodeDecodeError as exc:
                rows.append(Reason("not_utf8", f"a text value is not UTF-8 ({exc.reason})",
                                   "not UTF-8 text"))
        return rows


# --- SQL ---------------------------------------------------------------------------------

_PG_KINDS = {
    "int2": "integer", "int4": "integer", "int8": "integer", "oid": "integer",
    "float4": "number", "float8": "number", "numeric": "number",
    "date": "date",
    "text": "text", "varchar": "text", "bpchar": "text", "name": "text",
}


def _pg_kind(type_code: int) -> str | None:
    from psycopg.postgres import types

    info = types.get(type_code)
    if info is None:
        return None
    if info.array_oid == type_code:  # text[], int4[]...: lists (interests)
        return "list"
    return _PG_KINDS.get(info.name)


@dataclass(frozen=True)
class SqlSource(TypedSource):
    """Rows of a query (or a table) in PostgreSQL, through a server-side cursor."""

    url: str
    query: str | None = None
    table: str | None = None
    kind = "sql"

    def __post_init__(self) -> None:
        if bool(self.query) == bool(self.table):
            raise RunError("a SQL customer source needs either a query or a table "
                           "(e.g. ?table=customers)", masked(self.url))
        if self.table and not _IDENTIFIER.match(self.table):
            raise RunError(f"table {self.table!r} must be a name like customers or "
                           "crm.customers", masked(self.url))

    @classmethod
    def from_url(cls, url: str, *, query: str | None = None) -> SqlSource:
        """`postgresql://…?table=customers` (or `?query=…`, percent-encoded)."""
        params = sqlalchemy_url(url).query
        table, in_url = params.get("table"), params.get("query")
        return cls(url, query=query or (str(in_url) if in_url else None),
                   table=None if query or in_url else (str(table) if table else None))

    def __str__(self) -> str:
        return masked(self.url)

    @property
    def stable_order(self) -> bool:
        """True when rows come in a defined order (a resumed run relies on it)."""
        return bool(self.table) or bool(self.query and _ORDER_BY.search(self.query))

    @property
    def statement(self) -> str:
        if self.table:
            quoted = ".".join(f'"{part}"' for part in self.table.split("."))
            return f'SELECT * FROM {quoted} ORDER BY "id"'
        return str(self.query).strip().rstrip(";")

    @property
    def _sql(self) -> str:
        """The statement for text(): a `:word` in the query is its own text, not a
        parameter of ours."""
        return _BIND_LIKE.sub(r"\\:", self.statement)

    def _fail(self, exc: BaseException, doing: str) -> RunError:
        orig = getattr(exc, "orig", None) or exc
        text = str(orig).strip().splitlines()
        return RunError(f"{doing}: {scrub(text[0] if text else type(orig).__name__, self.url)}",
                        masked(self.url))

    def _connect(self) -> tuple[Any, Any]:
        from edition.databases import create_engine_for

        engine = create_engine_for(sqlalchemy_url(self.url, drop=_SOURCE_PARAMS),
                                   application_name="edition-customers")
        try:
            # psycopg begins every transaction READ ONLY, and the session's default is
            # READ ONLY as well: nothing after a transaction's end could write either
            conn = engine.connect().execution_options(postgresql_readonly=True)
            conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        except Exception as exc:
            engine.dispose()
            raise self._fail(exc, "cannot read customers from the database") from None
        return engine, conn

    @staticmethod
    def _execute(conn: Any, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one statement of ours around the customer query, on a server-side cursor:
        its DECLARE goes through the extended protocol, which takes exactly one
        statement. (psycopg sends a statement without parameters through the simple
        protocol, which would run `a; b; c` one after the other.)"""
        from sqlalchemy import text

        return conn.execution_options(stream_results=True, yield_per=BATCH_ROWS
                                      ).execute(text(sql), dict(params or {}))

    def open(self, declared: Mapping[str, str] | None = None) -> SourceRows:
        engine, conn = self._connect()

        def close() -> None:
            try:
                conn.close()
            finally:
                engine.dispose()

        try:
            # a server-side cursor, fetched BATCH_ROWS at a time
            result = self._execute(conn, self._sql)
            types = {column.name: kind for column in result.cursor.description
                     if (kind := _pg_kind(column.type_code)) is not None}
        except Exception as exc:
            close()
            raise self._fail(exc, "the customer query failed") from None
        return SourceRows(types, _rows_of(self._records(result), declared), close)

    def _records(self, result: Any) -> Iterator[dict[str, Any]]:
        try:
            for row in result.mappings():
                yield dict(row)
        except Exception as exc:
            raise self._fail(exc, "reading customers from the database failed") from None

    def find(self, customer_id: str, declared: Mapping[str, str] | None = None
             ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """The id is compared in the database; the row number is the row's position in
        the query's own order."""
        engine, conn = self._connect()
        try:
            found = self._execute(
                conn,
                "SELECT * FROM (SELECT row_number() OVER () AS edition_row_number_, q.* "
                f"FROM ({self._sql}) AS q) AS n "
                "WHERE btrim(n.id::text) = :id ORDER BY edition_row_number_ LIMIT 1",
                {"id": customer_id})
            types = {column.name: kind for column in found.cursor.description
                     if (kind := _pg_kind(column.type_code)) is not None}
            row = found.mappings().first()
        except Exception as exc:
            raise self._fail(exc, "the customer query failed") from None
        finally:
            conn.close()
            engine.dispose()
        if row is None:
            return None
        number = int(row["edition_row_number_"])
        types.pop("edition_row_number_", None)
        raw = {k: v for k, v in row.items() if k != "edition_row_number_"}
        return number, _plain_row(raw, declared), types

    def count(self) -> int:
        engine, conn = self._connect()
        try:
            return int(self._execute(conn, f"SELECT count(*) FROM ({self._sql}) AS q"
                                     ).scalar() or 0)
        except Exception as exc:
            raise self._fail(exc, "the customer query failed") from None
        finally:
            conn.close()
            engine.dispose()


# --- choosing the source -----------------------------------------------------------------


def typed_source(source: object) -> TypedSource | None:
    """The typed source a `--customers` value or a `customer_source` result names, or
    None for CSV/JSONL files (customers.py reads those itself)."""
    if isinstance(source, TypedSource):
        return source
    if is_database_url(source):
        return SqlSource.from_url(str(source))
    if isinstance(source, str | Path) and Path(source).suffix.lower() in PARQUET_SUFFIXES:
        return ParquetSource(Path(source))
    return None


def customer_source(value: str | Path | Mapping[str, Any], *, root: Path | None = None,
                    from_campaign: bool = True, encoding: str | None = None
                    ) -> Path | TypedSource | TextFile:
    """What a campaign's `customers:` (or `--customers`) names: a file path (relative to
    the content root), a CSV/JSONL file with its `encoding` when one is given
    (edition.text_files), or a typed source. A URL in a campaign file may not hold a
    password (ContentError): credentials come from the environment."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"url", "query", "table"}
        if unknown or not value.get("url"):
            raise ContentError("customers must be a file, or {url: postgresql://…, "
                               "query: …} (or table: …)" + (
                                   f"; unknown key(s): {', '.join(sorted(unknown))}"
                                   if unknown else ""))
        url = str(value["url"])
        _check_url(url, from_campaign)
        return SqlSource(url, query=value.get("query"), table=value.get("table"))
    if is_database_url(value):
        _check_url(str(value), from_campaign)
        return SqlSource.from_url(str(value))
    path = Path(value)
    if root is not None and not path.is_absolute():
        path = root / path
    typed = typed_source(path)
    if typed is not None:
        return typed
    return TextFile(path, encoding) if encoding else path


def _check_url(url: str, from_campaign: bool) -> None:
    if not is_database_url(url):
        raise ContentError(f"customers url {masked(url)} must be a postgresql:// URL")
    if from_campaign and has_password(url):
        raise ContentError(f"customers url {masked(url)} holds a password: campaign files "
                           "must not; use PGPASSWORD, ~/.pgpass or a PGSERVICE entry")
