"""Customers from Parquet files and PostgreSQL queries: the same rows as the same CSV.

The SQL tests use the session's throwaway PostgreSQL (tests/fixtures_postgres.py).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edition.audience.customers import count_rows, find_customer, read_customers
from edition.audience.sources import customer_source
from edition.audience.sources.csv_file import CsvSource
from edition.audience.sources.jsonl_file import JsonlSource
from edition.audience.sources.parquet_file import ParquetSource
from edition.audience.sources.postgres import SqlSource
from edition.errors import ContentError, RunError

ROOT = Path(__file__).resolve().parents[1]

# One audience, three sources. Each tuple: id, email, first_name, locale, interests, age,
# lifetime_value, member_since, city, score (text; the campaign declares it a number).
PEOPLE: list[tuple[Any, ...]] = [
    ("c1", "ann@example.com", "Ann", "en", ["garden", "Travel"], 34, "1200.50",
     dt.date(2024, 3, 15), "Leeds", "12"),
    (None, "noid@example.com", "Nobody", "en", [], 40, "10.00", dt.date(2024, 1, 1), "York",
     None),                                                                # missing id
    ("c1", "dup@example.com", "Again", "en", [], 50, "10.00", dt.date(2024, 1, 1), "York",
     None),                                                                # repeated id
    ("c2", None, "Bea", "es-MX", [], 61, "7000.00", dt.date(2020, 6, 30), None, None),
    ("c3", "not-an-email", "Cal", "en", [], 29, "15.00", dt.date(2023, 2, 2), "Bath", None),
    ("c4", "dan@example.com", None, "en", ["books"], None, "15.00", dt.date(2023, 2, 2),
     "Hull", "high"),                                                      # score: not a number
    ("c5", "eve@example.com", "Eve", None, [], 70, "9000.00", dt.date(2019, 12, 1), "Ely",
     "3.5"),
    (" c6 ", "fay@example.com", "Fay", "fr", ["Wine", " cheese "], 45, "0.99", None, "Lyon",
     None),
]
COLUMNS = ["id", "email", "first_name", "locale", "interests", "age", "lifetime_value",
           "member_since", "city", "score"]
DECLARED = {"score": "number"}


def write_csv(path: Path) -> Path:
    lines = [",".join(COLUMNS)]
    for person in PEOPLE:
        cells = []
        for value in person:
            if value is None:
                cells.append("")
            elif isinstance(value, list):
                cells.append(";".join(value))
            else:
                cells.append(str(value))
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def arrow_table(people: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*people, strict=True))
    return pa.table({
        "id": pa.array(columns[0], pa.string()),
        "email": pa.array(columns[1], pa.string()),
        "first_name": pa.array(columns[2], pa.string()),
        "locale": pa.array(columns[3], pa.string()),
        "interests": pa.array(columns[4], pa.list_(pa.string())),
        "age": pa.array(columns[5], pa.int32()),
        "lifetime_value": pa.array([decimal.Decimal(v) for v in columns[6]],
                                   pa.decimal128(10, 2)),
        "member_since": pa.array(columns[7], pa.date32()),
        "city": pa.array(columns[8], pa.string()),
        "score": pa.array(columns[9], pa.string()),
    })


def write_parquet(path: Path) -> Path:
    pq.write_table(arrow_table(PEOPLE), path, row_group_size=3)  # rows span row groups
    return path


def plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_customers_table(url: str) -> None:
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE customers (
                pos serial PRIMARY KEY, id text, email text, first_name text, locale text,
                interests text[], age integer, lifetime_value numeric(10, 2),
                member_since date, city text, score text)""")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO customers (id, email, first_name, locale, interests, age, "
                "lifetime_value, member_since, city, score) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s::numeric, %s, %s, %s)", PEOPLE)


@pytest.fixture(scope="module")
def crm(postgres_server) -> str:
    """A database holding the same audience in a `customers` table."""
    url = postgres_server.create_database()
    create_customers_table(url)
    return url


def sql_source(crm: str) -> SqlSource:
    query = f"SELECT {', '.join(COLUMNS)} FROM customers ORDER BY pos"
    return customer_source({"url": crm, "query": query})  # type: ignore[return-value]


def comparable(rows: list) -> list[tuple[Any, ...]]:
    """What must agree between sources (line numbers differ: CSV has a header line)."""
    return [(r.index, r.customer_id, r.fields, r.reason and r.reason.code,
             r.reason and re.sub(r"line \d+", "line N", str(r.reason))) for r in rows]


@pytest.mark.parametrize("need_email", [True, False])
def test_csv_parquet_and_sql_give_the_same_rows(tmp_path: Path, crm: str,
                                                need_email: bool) -> None:
    csv_rows = list(read_customers(write_csv(tmp_path / "c.csv"), need_email=need_email,
                                   declared=DECLARED))
    parquet_rows = list(read_customers(write_parquet(tmp_path / "c.parquet"),
                                       need_email=need_email, declared=DECLARED))
    sql_rows = list(read_customers(sql_source(crm), need_email=need_email,
                                   declared=DECLARED))
    assert comparable(parquet_rows) == comparable(csv_rows)
    assert comparable(sql_rows) == comparable(csv_rows)
    assert [r.line for r in csv_rows] == [i + 2 for i in range(len(PEOPLE))]
    assert [r.line for r in parquet_rows] == [r.line for r in sql_rows] == [
        i + 1 for i in range(len(PEOPLE))]  # row numbers, from 1

    got = {r.customer_id: r for r in reversed(sql_rows)}  # the first of a repeated id
    ann = got["c1"].fields
    assert ann["age"] == 34 and isinstance(ann["age"], int)
    assert ann["lifetime_value"] == 1200.5 and isinstance(ann["lifetime_value"], float)
    assert ann["member_since"] == dt.date(2024, 3, 15)
    assert ann["interests"] == ["garden", "travel"] and ann["score"] == 12
    assert got["c6"].fields["interests"] == ["wine", "cheese"]
    assert got["c5"].fields["locale"] == "en"
    codes = [r.reason.code if r.reason else None for r in sql_rows]
    assert codes == ([None, "missing_id", "repeated_id", "missing_email", "invalid_email",
                      "not_a_number", None, None] if need_email else
                     [None, "missing_id", "repeated_id", None, None, "not_a_number", None,
                      None])
    assert "first on line 1" in sql_rows[2].reason


def test_find_customer_and_count_agree_with_reading(tmp_path: Path, crm: str) -> None:
    for source in (write_parquet(tmp_path / "c.parquet"), sql_source(crm)):
        read = {}
        for row in read_customers(source, need_email=True, declared=DECLARED):
            read.setdefault(row.customer_id, row)
        for cid in ("c1", "c2", "c4", "c5", "c6"):
            found = find_customer(source, cid, need_email=True, declared=DECLARED)
            assert found is not None, (source, cid)
            assert (found.index, found.line, found.fields, found.reason) == (
                read[cid].index, read[cid].line, read[cid].fields, read[cid].reason), cid
        assert find_customer(source, "nobody", need_email=True) is None
        assert count_rows(source) == len(PEOPLE)


def test_values_keep_the_source_types(tmp_path: Path, postgres_server) -> None:
    table = pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),                    # numeric ids become text
        "email": ["a@example.com", "b@example.com", "c@example.com"],
        "vip": [True, False, None],
        "seen_at": pa.array([dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)] * 3,
                            pa.timestamp("us", tz="UTC")),
        "orders": pa.array([decimal.Decimal(4), decimal.Decimal(0), None], pa.decimal128(6, 0)),
        "ratio": [0.5, float("nan"), 1.0],                        # NaN: pandas' "empty"
        "member_no": pa.array([42, 43, 44], pa.int32()),          # declared text below
        "tags": pa.array(["gold", "silver", "gold"]).dictionary_encode(),
    })
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    rows = list(read_customers(path, need_email=True, declared={"member_no": "text"}))
    first, second = rows[0].fields, rows[1].fields
    assert rows[0].customer_id == "1" and first["id"] == "1"
    assert first["vip"] is True and second["vip"] is False and "vip" not in rows[2].fields
    assert first["seen_at"] == dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    assert first["orders"] == 4 and isinstance(first["orders"], int)
    assert "ratio" not in second and first["ratio"] == 0.5
    assert first["member_no"] == "42" and first["tags"] == "gold"
    with ParquetSource(path).open() as opened:
        assert opened.types == {"id": "integer", "email": "text", "orders": "number",
                                "ratio": "number", "member_no": "integer", "tags": "text"}

    url = postgres_server.create_database()
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id integer PRIMARY KEY, email text, vip boolean, "
                     "prefs jsonb, interests text[], member_no integer, joined timestamptz, "
                     "ref uuid)")
        conn.execute("INSERT INTO people VALUES (7, 'g@example.com', true, "
                     "'{\"size\": \"L\", \"n\": [1, 2]}', '{Golf,\"Ski\"}', 42, "
                     "'2026-01-02 03:04:00+00', '12345678-1234-5678-1234-567812345678')")
    source = SqlSource.from_url(url + "?table=people")
    (row,) = list(read_customers(source, need_email=True, declared={"member_no": "text"}))
    assert row.customer_id == "7" and row.fields["vip"] is True
    assert row.fields["prefs"] == {"size": "L", "n": [1, 2]}
    assert row.fields["interests"] == ["golf", "ski"] and row.fields["member_no"] == "42"
    assert row.fields["joined"] == dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    assert row.fields["ref"] == "12345678-1234-5678-1234-567812345678"
    with source.open() as opened:
        assert opened.types == {"id": "integer", "email": "text", "interests": "list",
                                "member_no": "integer"}
    # bytes that are not UTF-8 are rejected like a CSV cell that is not UTF-8
    query = "SELECT id, email, '\\xff41'::bytea AS blob FROM people"
    (bad,) = list(read_customers(SqlSource(url, query=query), need_email=True))
    assert bad.rejected and bad.reason.code == "not_utf8" and "blob" in bad.reason


def test_campaign_syntax_and_the_cli_string(tmp_path: Path) -> None:
    url = "postgresql://edition@crm.internal/crm"
    source = customer_source({"url": url, "query": "select * from c order by id"})
    assert isinstance(source, SqlSource) and source.stable_order
    assert customer_source({"url": url, "table": "crm.customers"}).statement == (
        'SELECT * FROM "crm"."customers" ORDER BY "id"')
    from_cli = customer_source(url + "?table=customers&sslmode=require", from_campaign=False)
    assert isinstance(from_cli, SqlSource) and from_cli.table == "customers"
    assert not SqlSource(url, query="select * from c").stable_order
    assert customer_source("data/c.parquet", root=tmp_path) == ParquetSource(
        tmp_path / "data" / "c.parquet")
    assert customer_source("data/c.csv", root=tmp_path) == CsvSource(
        tmp_path / "data" / "c.csv")
    assert customer_source(tmp_path / "c.jsonl") == JsonlSource(tmp_path / "c.jsonl")
    with pytest.raises(ContentError, match="holds a password") as caught:
        customer_source({"url": "postgresql://edition:hunter22@crm/crm", "table": "c"})
    assert "hunter22" not in str(caught.value)
    assert isinstance(customer_source("postgresql://e:pw@crm/crm?table=c",
                                      from_campaign=False), SqlSource)  # from the env/CLI
    with pytest.raises(ContentError, match="unknown key"):
        customer_source({"url": url, "tabel": "c"})
    with pytest.raises(RunError, match="either a query or a table"):
        customer_source({"url": url})
    with pytest.raises(RunError, match="must be a name"):
        customer_source({"url": url, "table": "c; drop table c"})


def test_unusable_sources_are_run_errors_without_the_password(tmp_path: Path, crm: str,
                                                              postgres_server) -> None:
    from fixtures_postgres import free_port

    secret = "s3cr3t-Pa55"
    for url in (f"postgresql://edition:{secret}@127.0.0.1:{free_port()}/crm?table=c",
                f"postgresql://edition:{secret}@127.0.0.1:{postgres_server.port}/nodb?table=c"):
        with pytest.raises(RunError) as caught:
            list(read_customers(url, need_email=True))
        shown = str(caught.value) + "".join(traceback.format_exception(caught.value))
        assert secret not in shown and "***" in shown, shown
    with pytest.raises(RunError, match=r"the customer query failed: .*no_such_table"):
        list(read_customers(SqlSource(crm, table="no_such_table"), need_email=True))
    with pytest.raises(RunError, match="read-only transaction"):  # a query cannot write
        list(read_customers(SqlSource(crm, query="SELECT nextval('customers_pos_seq') AS id"),
                            need_email=True))
    with pytest.raises(RunError, match="customer file not found"):
        list(read_customers(tmp_path / "missing.parquet", need_email=True))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(RunError, match="as Parquet"):
        list(read_customers(tmp_path / "bad.parquet", need_email=True))


# --- 200,000 rows, flat memory -------------------------------------------------------------

BIG = 200_000
MEASURE = textwrap.dedent("""
    import json, resource, sys
    import psutil
    import psycopg, pyarrow.parquet, sqlalchemy  # imported before the baseline
    from edition.audience.customers import read_customers
    from edition.audience.sources import customer_source

    def peak_rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    me = psutil.Process()
    source = customer_source(json.loads(sys.argv[1]))
    # Two baselines. Before the source is opened: a driver that fetched the whole result
    # at once (a client-side cursor, a whole-file read) shows up there. After the first
    # 20,000 rows (the source open, a row group decoded, the allocators at their working
    # size): rows kept while reading show up there.
    before = me.memory_info().rss
    highest = warm = 0
    count = accepted = 0
    for row in read_customers(source, need_email=True):
        count += 1
        accepted += not row.rejected
        if count % 2000 == 0:
            highest = max(highest, me.memory_info().rss)
        if count == 20_000:
            warm, warm_peak = me.memory_info().rss, peak_rss()
    if peak_rss() > warm_peak:  # a new high between two samples counts too
        highest = max(highest, peak_rss())
    print(json.dumps({"rows": count, "accepted": accepted, "total": highest - before,
                      "warm": highest - warm}))
""")


def measure(source: Any, tmp_path: Path) -> dict[str, int]:
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    proc = subprocess.run([sys.executable, str(script), json.dumps(source)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


NOTE = "n" * 1000  # a wide column: ~200 MB of text over the 200,000 rows
TOTAL_LIMIT = 128 << 20  # growth from before the open: the whole result would be ~300 MB
WARM_LIMIT = 32 << 20    # growth after 20,000 rows: keeping the rows would be ~300 MB


def check_flat(got: dict[str, int]) -> None:
    assert got["rows"] == got["accepted"] == BIG
    assert got["total"] < TOTAL_LIMIT, f"memory grew by {got['total']:,} bytes from the open"
    assert got["warm"] < WARM_LIMIT, f"memory grew by {got['warm']:,} bytes while reading"


@pytest.mark.slow
def test_a_200000_row_parquet_file_streams_with_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    schema = pa.schema([("id", pa.string()), ("email", pa.string()),
                        ("first_name", pa.string()), ("age", pa.int32()),
                        ("notes", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, BIG, 10_000):  # one row group per 10,000 rows
            ids = range(start, start + 10_000)
            writer.write_table(pa.table({
                "id": [f"C{i:07d}" for i in ids], "email": [f"c{i}@example.com" for i in ids],
                "first_name": [f"Name{i}" for i in ids], "age": [20 + i % 60 for i in ids],
                "notes": [f"{NOTE}{i}" for i in ids]}, schema=schema))
    check_flat(measure(str(path), tmp_path))


@pytest.mark.slow
def test_a_200000_row_sql_query_streams_with_flat_memory(tmp_path: Path,
                                                          postgres_server) -> None:
    url = postgres_server.create_database()
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute(f"""
            CREATE TABLE big AS SELECT 'C' || lpad(g::text, 7, '0') AS id,
                'c' || g || '@example.com' AS email, 'Name' || g AS first_name,
                20 + g % 60 AS age, '{NOTE}' || g AS notes
            FROM generate_series(0, {BIG - 1}) AS g""")
        conn.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
    check_flat(measure({"url": url, "table": "big"}, tmp_path))


def test_a_query_is_sent_as_written(postgres_server) -> None:
    """Colons and percent signs in a query are its own text, never parameters."""
    url = postgres_server.create_database()
    query = ("SELECT 'q1' AS id, 'at :word, 100%' AS note, '10:30'::time AS t, 1::text AS n "
             "WHERE 'abc' LIKE 'a%' ORDER BY 1")
    source = SqlSource(url, query=query)
    (row,) = list(read_customers(source, need_email=False))
    assert row.fields == {"id": "q1", "note": "at :word, 100%", "t": "10:30:00", "n": "1",
                          "locale": "en", "interests": []}
    assert find_customer(source, "q1", need_email=False).fields == row.fields
    assert count_rows(source) == 1
