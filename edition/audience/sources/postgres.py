"""Customers from PostgreSQL: the rows of a query or a table, through a server-side cursor.

Campaign syntax (`customers:`) and `--customers`:

    customers:                                        # a query (give it an ORDER BY:
      url: postgresql://edition@crm.internal/crm      #  a resumed run relies on the
      query: "select * from customers where opted_in order by id"   # same order)
    customers: {url: "postgresql://edition@crm.internal/crm", table: crm.customers}
    --customers 'postgresql://edition@crm.internal/crm?table=crm.customers'

`table:` reads `SELECT * FROM <table> ORDER BY id`. The password never goes in the
campaign: libpq reads PGPASSWORD, ~/.pgpass or a PGSERVICE entry (`postgresql:///
?service=crm`). The rows are streamed (BATCH_ROWS at a time), so memory stays flat
however many customers there are; their values are typed by the columns' own types
(integer, numeric, date, text, arrays as lists).

A customer query only reads. Each one (the rows, a count, a lookup by id) runs on its
own connection, in a transaction begun READ ONLY with the session's default READ ONLY
too, and as one statement through the extended protocol (a server-side cursor's
DECLARE), which PostgreSQL never splits: text such as `…) AS q0; COMMIT; DELETE …` is a
syntax error, not a second statement, and a query that modifies data is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from edition.audience.sources import (
    BATCH_ROWS,
    CustomerSource,
    Found,
    SourceRows,
    plain_row,
    rows_of,
)
from edition.content.plugins import SourceOptions
from edition.databases import DATABASE_SCHEMES, masked, scrub, sqlalchemy_url
from edition.errors import RunError

if TYPE_CHECKING:   # SQLAlchemy itself is imported only when a query runs
    from psycopg import Column
    from sqlalchemy import Connection, CursorResult, Engine

_SOURCE_PARAMS = ("table", "query")  # edition's own URL parameters, never sent to the server
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?\Z")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
# what SQLAlchemy's text() would take for a bound parameter (`:name`, not `::cast`)
_BIND_LIKE = re.compile(r"(?<![:\w\\]):(?=\w)")


class SqlOptions(SourceOptions):
    """`customers: {url: postgresql://…, query: "select …"}` (or `table: …`)."""

    query: str | None = None
    table: str | None = None


_PG_KINDS = {
    "int2": "integer", "int4": "integer", "int8": "integer", "oid": "integer",
    "float4": "number", "float8": "number", "numeric": "number",
    "date": "date",
    "text": "text", "varchar": "text", "bpchar": "text", "name": "text",
}


def _column_types(result: CursorResult[Any]) -> dict[str, str]:
    """The edition types of a query's columns that have one."""
    # psycopg's own Column objects, which SQLAlchemy types as DB-API tuples
    columns = cast("Sequence[Column]", result.cursor.description)
    return {column.name: kind for column in columns
            if (kind := _pg_kind(column.type_code)) is not None}


def _pg_kind(type_code: int) -> str | None:
    from psycopg.postgres import types

    info = types.get(type_code)
    if info is None:
        return None
    if info.array_oid == type_code:  # text[], int4[]...: lists (interests)
        return "list"
    return _PG_KINDS.get(info.name)


@dataclass(frozen=True)
class SqlSource(CustomerSource):
    """Rows of a query (or a table) in PostgreSQL, through a server-side cursor."""

    schemes = DATABASE_SCHEMES
    forms = ("{url: postgresql://…, query: …} (or table: …)",)
    options_model = SqlOptions
    credentials = "PGPASSWORD, ~/.pgpass or a PGSERVICE entry"

    url: str
    query: str | None = None
    table: str | None = None

    def __post_init__(self) -> None:
        if bool(self.query) == bool(self.table):
            raise RunError("a SQL customer source needs either a query or a table "
                           "(e.g. ?table=customers)", masked(self.url))
        if self.table and not _IDENTIFIER.match(self.table):
            raise RunError(f"table {self.table!r} must be a name like customers or "
                           "crm.customers", masked(self.url))

    @classmethod
    def from_setting(cls, value: str | Path | Mapping[str, object], *, root: Path | None,
                     encoding: str | None) -> SqlSource:
        if isinstance(value, Mapping):
            # text, as the options model checked them (the customers: block)
            return cls(str(value["url"]), query=cast("str | None", value.get("query")),
                       table=cast("str | None", value.get("table")))
        return cls.from_url(str(value))

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

    def _connect(self) -> tuple[Engine, Connection]:
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
    def _execute(conn: Connection, sql: str, params: Mapping[str, object] | None = None
                 ) -> CursorResult[Any]:   # SQLAlchemy types a row's columns as Any
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
            types = _column_types(result)
        except Exception as exc:
            close()
            raise self._fail(exc, "the customer query failed") from None
        return SourceRows(types, rows_of(self._records(result), declared), close)

    def _records(self, result: CursorResult[Any]) -> Iterator[dict[str, object]]:
        try:
            for row in result.mappings():
                yield dict(row)
        except Exception as exc:
            raise self._fail(exc, "reading customers from the database failed") from None

    def find(self, customer_id: str, declared: Mapping[str, str] | None = None
             ) -> Found | None:
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
            types = _column_types(found)
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
        return Found(number - 1, number, plain_row(raw, declared), types)

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

    def columns(self) -> list[str]:
        """The query's columns that have a type edition knows."""
        with self.open({}) as rows:
            return list(rows.types or {})
