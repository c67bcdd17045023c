"""Customers from Parquet and from PostgreSQL at the run level: the real CLI renders the
sample newsletter for the same people held in a CSV file, a Parquet file (`--customers`)
and a PostgreSQL table (the campaign's `customers: {url, query}`), and the three runs
agree row for row — status, reason, version, segments, modules — and byte for byte in
the customers' html and text files.

tests/test_sources.py checks the readers themselves; this is what a run makes of them.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import re
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import AS_OF, CONTENT_DIRS, REPO, read_manifest, run_cli

from edition.audience.sampledata import write_customers

COMPARED = ("customer_id", "status", "reason", "version", "segments", "modules")


def people(path: Path) -> list[dict[str, str]]:
    """300 generated customers (seed 7), plus a repeated id and a row without an address."""
    write_customers(path, 300, seed=7)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows.append(dict(rows[4], email="someone.else@example.com", first_name="Again"))
    rows.append(dict(rows[9], id="C900001", email=""))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _cell(value: str) -> str | None:
    return value if value != "" else None


def parquet_of(rows: list[dict[str, str]], path: Path) -> Path:
    """The same rows as a CRM would export them: typed columns, lists, dates, decimals."""
    def numbers(name: str, scale: int) -> pa.Array:
        return pa.array([decimal.Decimal(r[name]) if r[name] else None for r in rows],
                        pa.decimal128(12, scale))

    def dates(name: str) -> pa.Array:
        return pa.array([dt.date.fromisoformat(r[name]) if r[name] else None for r in rows],
                        pa.date32())

    def ints(name: str) -> pa.Array:
        return pa.array([int(r[name]) if r[name] else None for r in rows], pa.int32())

    table = pa.table({
        "id": [r["id"] for r in rows],
        "email": [_cell(r["email"]) for r in rows],
        "first_name": [_cell(r["first_name"]) for r in rows],
        "last_name": [_cell(r["last_name"]) for r in rows],
        "locale": [_cell(r["locale"]) for r in rows],
        "interests": pa.array([r["interests"].split(";") if r["interests"] else []
                               for r in rows], pa.list_(pa.string())),
        "age": ints("age"),
        "life_stage": [_cell(r["life_stage"]) for r in rows],
        "tenure_months": ints("tenure_months"),
        "lifetime_value": numbers("lifetime_value", 2),
        "city": [_cell(r["city"]) for r in rows],
        "member_since": dates("member_since"),
        "invoice_number": [_cell(r["invoice_number"]) for r in rows],
        "total": numbers("total", 2),
        "due_date": dates("due_date"),
    })
    pq.write_table(table, path, row_group_size=64)  # rows span row groups
    return path


def table_of(rows: list[dict[str, str]], url: str) -> None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE customers (
                pos serial PRIMARY KEY, id text, email text, first_name text,
                last_name text, locale text, interests text[], age integer,
                life_stage text, tenure_months integer, lifetime_value numeric(12, 2),
                city text, member_since date, invoice_number text, total numeric(10, 2),
                due_date date)""")
        columns = [c for c in rows[0] if c != "interests"]
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO customers ({', '.join(columns)}, interests) VALUES "
                f"({', '.join(['%s'] * len(columns))}, %s)",
                [[_cell(r[c]) for c in columns]
                 + [r["interests"].split(";") if r["interests"] else []] for r in rows])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("sources-run")
    root = base / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    rows = people(base / "customers.csv")
    parquet = parquet_of(rows, base / "customers.parquet")
    url = postgres_server.create_database()
    table_of(rows, url)
    # the campaign itself reads the CRM; the other runs name their file
    path = root / "campaigns" / "weekly-newsletter.yaml"
    campaign = yaml.safe_load(path.read_text(encoding="utf-8"))
    campaign["customers"] = {"url": url.replace("postgresql+psycopg://", "postgresql://"),
                             "query": f"SELECT {', '.join(rows[0])} FROM customers ORDER BY pos"}
    path.write_text(yaml.safe_dump(campaign, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    done: dict[str, Any] = {"rows": rows}
    for name, extra in (("csv", ["--customers", base / "customers.csv"]),
                        ("parquet", ["--customers", parquet]), ("sql", [])):
        out = base / name
        rc, stdout, stderr = run_cli("run", "campaigns/weekly-newsletter.yaml", *extra,
                                     "--out", out, "--as-of", AS_OF, cwd=root)
        assert rc == 0, stdout + stderr
        done[name] = out
    return done


def comparable(out: Path) -> list[tuple[Any, ...]]:
    """The compared keys; a reason's line numbers aside (a CSV counts its header line, a
    table or a Parquet file counts rows)."""
    return [tuple(re.sub(r"line \d+", "line N", m[k]) if k == "reason" and m[k] else m[k]
                  for k in COMPARED) for m in read_manifest(out)]


@pytest.mark.parametrize("source", ["parquet", "sql"])
def test_the_same_manifest_as_the_csv(runs: dict[str, Any], source: str) -> None:
    expected = comparable(runs["csv"])
    assert len(expected) == len(runs["rows"]) == 302
    statuses = [row[1] for row in expected]
    assert statuses.count("rendered") == 300 and statuses.count("rejected") == 2
    assert len({row[3] for row in expected if row[3]}) > 10   # many versions to agree on
    got = comparable(runs[source])
    for ours, theirs in zip(got, expected, strict=True):
        assert ours == theirs
    rejected = {r[0]: r[2] for r in got if r[1] == "rejected"}
    assert "repeated id" in rejected["C000005"] and "email" in rejected["C900001"]


@pytest.mark.parametrize("source", ["parquet", "sql"])
def test_the_same_editions_as_the_csv(runs: dict[str, Any], source: str) -> None:
    checked = 0
    for entry, theirs in zip(read_manifest(runs[source]), read_manifest(runs["csv"]),
                             strict=True):
        assert entry["files"].keys() == theirs["files"].keys()
        for fmt in ("html", "text"):
            if fmt in entry["files"]:
                ours = (runs[source] / entry["files"][fmt]).read_bytes()
                assert ours == (runs["csv"] / theirs["files"][fmt]).read_bytes(), (
                    entry["customer_id"], fmt)
                checked += 1
    assert checked == 600
