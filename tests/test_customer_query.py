"""A customer query only reads (issue 17, finding 10).

`SqlSource.count()` used to wrap the query as `SELECT count(*) FROM (<query>) AS q` and
send it without parameters, which psycopg does through the simple protocol: a query
such as `…) AS q0; COMMIT; DELETE FROM customers; …` ran the DELETE. Every statement
around a customer query now goes through a server-side cursor (extended protocol: one
statement) in a READ ONLY transaction. Under `edition serve`, an allowed
`postgresql://…?table=customers` no longer lets the form run `?query=<any SQL>`.

All against the session's throwaway PostgreSQL (tests/fixtures_postgres.py), each test
in a database of its own: a write that got through must not hide from the next test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from conftest import CONTENT_DIRS, REPO, run_cli

from edition.audience.customers import count_rows, find_customer, read_customers
from edition.audience.sources.postgres import SqlSource
from edition.errors import RunError, UsageError

ESCAPES = {
    # closes count()'s and find()'s sub-select, ends the read-only transaction, writes
    "wrapped": "SELECT * FROM customers) AS q0; COMMIT; DELETE FROM customers; "
               "SELECT count(*) FROM (SELECT 1",
    # the plain form: several statements in one query text
    "stacked": "SELECT * FROM customers ORDER BY id; COMMIT; DELETE FROM customers",
    # one statement that writes
    "cte": "WITH gone AS (DELETE FROM customers RETURNING *) SELECT * FROM gone",
    # one SELECT that would switch the transaction to read-write
    "set_config": "SELECT set_config('transaction_read_only', 'off', false) AS id",
    # a function of the team's database that writes
    "function": "SELECT edition_test_forget() AS id",
}
READERS: dict[str, Callable[[SqlSource], object]] = {
    "count": count_rows,
    "read": lambda source: list(read_customers(source, need_email=False)),
    "find": lambda source: find_customer(source, "c1", need_email=False),
}


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def crm_with_customers(postgres_server) -> str:
    url = postgres_server.create_database()
    with psycopg.connect(plain(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id text PRIMARY KEY, email text, "
                     "first_name text)")
        conn.execute("INSERT INTO customers VALUES ('c1', 'ann@example.com', 'Ann'), "
                     "('c2', 'bob@example.com', 'Bob'), ('c3', 'cy@example.com', 'Cy')")
        conn.execute("CREATE FUNCTION edition_test_forget() RETURNS text LANGUAGE sql AS "
                     "$$ DELETE FROM customers RETURNING id $$")
    return url


def table_of(url: str) -> list[tuple[str, ...]]:
    with psycopg.connect(plain(url), autocommit=True) as conn:
        return conn.execute("SELECT id, email, first_name FROM customers ORDER BY id"
                            ).fetchall()


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_a_query_that_would_write_is_refused_and_the_table_is_unchanged(
        postgres_server, escape: str, reader: str) -> None:
    url = crm_with_customers(postgres_server)
    before = table_of(url)
    with pytest.raises(RunError, match="the customer query failed"):
        READERS[reader](SqlSource(url, query=ESCAPES[escape]))
    assert table_of(url) == before


def test_every_customer_query_runs_read_only(postgres_server) -> None:
    """What the query itself sees: a read-only transaction, and a read-only default for
    anything after it on that connection."""
    url = crm_with_customers(postgres_server)
    query = ("SELECT id, current_setting('transaction_read_only') AS now_ro, "
             "current_setting('default_transaction_read_only') AS default_ro "
             "FROM customers ORDER BY id")
    rows = list(read_customers(SqlSource(url, query=query), need_email=False))
    assert [(r.fields["now_ro"], r.fields["default_ro"]) for r in rows] == [("on", "on")] * 3
    found = find_customer(SqlSource(url, query=query), "c2", need_email=False)
    assert found is not None and found.fields["now_ro"] == "on"
    assert count_rows(SqlSource(url, query=query)) == 3


def test_the_cli_refuses_the_escape_with_a_message_and_writes_nothing(
        postgres_server, tmp_path: Path) -> None:
    """The attack as a user types it: `--customers 'postgresql://…?query=…'`."""
    url = crm_with_customers(postgres_server)
    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    before = table_of(url)
    customers = f"{plain(url)}?query={quote(ESCAPES['wrapped'], safe='')}"
    for args in (("run", "campaigns/weekly-newsletter.yaml", "--out", tmp_path / "out"),
                 ("validate", "campaigns/weekly-newsletter.yaml")):
        code, out, err = run_cli(*args, "--customers", customers, cwd=root)
        assert code == 1, (code, out, err)
        assert "the customer query failed" in err and "Traceback" not in err, err
        assert table_of(url) == before
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


# --- edition serve --allow: the form reads only what was allowed ---------------------------


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    from edition.run.roots import served_environment

    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)

    def serve(*allow: str) -> None:
        for key, value in served_environment(root, tuple(allow)).items():
            monkeypatch.setenv(key, value)

    return serve


def check(customers: str) -> str | None:
    from flows.form import check_parameters

    return check_parameters("weekly-newsletter", customers=customers).customers


def refused(customers: str) -> str:
    from flows.form import check_parameters

    with pytest.raises(UsageError, match="is not allowed here") as caught:
        check_parameters("weekly-newsletter", customers=customers)
    return str(caught.value)


def test_an_allowed_table_does_not_allow_a_query_of_the_form_users_own(
        served: Callable[..., None]) -> None:
    served("postgresql://db.example/crm?table=customers")
    assert check("postgresql://db.example/crm?table=customers") == (
        "postgresql://db.example/crm?table=customers")
    for customers in (
            "postgresql://db.example/crm?query=" + quote("DELETE FROM customers", safe=""),
            "postgresql://db.example/crm?table=customers&query=select%201",
            "postgresql://db.example/crm?table=staff",
            "postgresql://db.example/crm",
            # libpq takes host= from the query over the URL's host: another server
            "postgresql://db.example/crm?table=customers&host=evil.example",
            "postgresql://db.example/crm?table=customers&options=-c%20search_path%3Devil"):
        refused(customers)


def test_an_allowed_query_is_that_text_only(served: Callable[..., None]) -> None:
    allowed = "SELECT * FROM customers WHERE opted_in ORDER BY id"
    served("postgresql://reader@db.example/crm?query=" + quote(allowed, safe=""))
    same = "postgresql://reader@db.example/crm?query=" + quote(allowed + ";", safe="")
    assert check(same) == same
    refused("postgresql://reader@db.example/crm?query="
            + quote(allowed.replace("WHERE opted_in ", ""), safe=""))
    refused("postgresql://reader@db.example/crm?table=customers")
    refused("postgresql://admin@db.example/crm?query=" + quote(allowed, safe=""))


def test_an_allowed_database_allows_its_tables_but_no_sql(served: Callable[..., None]) -> None:
    served("postgresql://db.example/crm")
    for customers in ("postgresql://db.example/crm?table=customers",
                      "postgresql://reader@db.example/crm?table=crm.customers"):
        assert check(customers) == customers
    message = refused("postgresql://db.example/crm?query="
                      + quote("SELECT * FROM customers", safe=""))
    assert "edition serve --allow" in message
