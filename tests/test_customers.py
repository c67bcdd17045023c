"""The customer file: CSV or JSONL, streamed, typed, every bad row rejected with a reason."""

from __future__ import annotations

import datetime as dt
import gc
import inspect
import json
import tracemalloc
import weakref
from pathlib import Path

import pytest

from edition.customers import find_customer, read_customers

HEADER = "id,email,first_name,locale,interests,age,lifetime_value,member_since,city\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rows(path: Path, *, need_email: bool = True, **kwargs):
    return list(read_customers(path, need_email=need_email, **kwargs))


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    return write(tmp_path / "customers.csv", HEADER + "\n".join([
        "c1,ann@example.com,Ann,en,garden;Travel,34,1200.50,2024-03-15,Leeds",
        ",noid@example.com,Nobody,en,,40,10,2024-01-01,York",          # missing id
        "c1,dup@example.com,Again,en,,50,10,2024-01-01,York",          # repeated id
        "c2,,Bea,es-MX,,61,7000,2020-06-30,",                          # no email, no city
        "c3,not-an-email,Cal,en,,29,15,2023-02-02,Bath",               # invalid email
        "c4,dan@example.com,,en,books,n/a,15,2023-02-02,Hull",        # age n/a
        "c5,eve@example.com,Eve,,,70,9000,2019-12-01,Ely",             # defaults
    ]) + "\n")


def test_rows_come_out_in_input_order_with_status_and_reason(csv_file: Path) -> None:
    got = rows(csv_file)
    assert [r.index for r in got] == list(range(7))
    assert [r.line for r in got] == [2, 3, 4, 5, 6, 7, 8]
    assert [r.customer_id for r in got] == ["c1", None, "c1", "c2", "c3", "c4", "c5"]
    status = {r.line: (r.rejected, r.reason) for r in got}
    assert status[2] == (False, None)
    assert status[3][0] and "missing id" in status[3][1]
    assert status[4][0] and "repeated id" in status[4][1] and "line 2" in status[4][1]
    assert status[5][0] and "email" in status[5][1]
    assert status[6][0] and "email" in status[6][1] and "not-an-email" in status[6][1]
    assert status[7][0] and "age" in status[7][1] and "n/a" in status[7][1]
    assert status[8] == (False, None)


def test_the_first_of_a_repeated_id_wins(csv_file: Path) -> None:
    first = rows(csv_file)[0]
    assert first.fields["first_name"] == "Ann"
    assert first.fields["email"] == "ann@example.com"


def test_email_is_only_required_when_email_is_made(csv_file: Path) -> None:
    got = {r.line: r for r in rows(csv_file, need_email=False)}
    assert not got[5].rejected and "email" not in got[5].fields
    assert not got[6].rejected
    assert got[7].rejected and "age" in got[7].reason      # other checks still apply
    assert got[3].rejected and got[4].rejected


def test_fields_are_typed_and_empty_cells_are_undefined(csv_file: Path) -> None:
    got = {r.customer_id: r.fields for r in rows(csv_file) if not r.rejected}
    ann = got["c1"]
    assert ann["age"] == 34 and isinstance(ann["age"], int)
    assert ann["lifetime_value"] == pytest.approx(1200.5)
    assert ann["member_since"] == dt.date(2024, 3, 15)
    assert ann["interests"] == ["garden", "travel"]
    assert ann["locale"] == "en" and ann["city"] == "Leeds"
    eve = got["c5"]
    assert eve["locale"] == "en"                 # default
    assert eve["interests"] == []
    bea = rows(csv_file, need_email=False)[3].fields
    assert "city" not in bea and "email" not in bea   # empty cell = undefined
    assert bea["locale"] == "es-MX"


def test_a_value_that_does_not_fit_its_declared_type_names_the_column(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "id,email,score\na,a@example.com,12\nb,b@example.com,high\n")
    got = rows(path, declared={"score": "number"})
    assert not got[0].rejected and got[0].fields["score"] == 12
    assert got[1].rejected and "score" in got[1].reason


def test_jsonl_rows(tmp_path: Path) -> None:
    lines = [
        {"id": "j1", "email": "j1@example.com", "first_name": "Jo",
         "interests": ["Garden", "books"], "age": 41, "member_since": "2022-05-01", "vip": True},
        {"email": "x@example.com"},
        {"id": "j1", "email": "again@example.com"},
        {"id": "j2", "email": "j2@example.com", "first_name": "", "age": "n/a"},
        {"id": "j3", "email": "j3@example.com", "age": 66},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{not json}\n[1, 2]\n"
    got = rows(write(tmp_path / "c.jsonl", text))
    assert [r.customer_id for r in got][:5] == ["j1", None, "j1", "j2", "j3"]
    jo = got[0].fields
    assert jo["interests"] == ["garden", "books"]
    assert jo["age"] == 41 and jo["member_since"] == dt.date(2022, 5, 1) and jo["vip"] is True
    assert got[1].rejected and "id" in got[1].reason
    assert got[2].rejected and "repeated id" in got[2].reason
    assert got[3].rejected and "age" in got[3].reason
    assert not got[4].rejected and got[4].fields["age"] == 66
    assert got[5].rejected and "JSON" in got[5].reason
    assert got[6].rejected and got[6].reason
    assert len(got) == 7


def test_find_customer_returns_that_row_typed(csv_file: Path) -> None:
    row = find_customer(csv_file, "c5", need_email=True)
    assert row is not None and not row.rejected
    assert row.line == 8 and row.fields["first_name"] == "Eve" and row.fields["age"] == 70
    assert find_customer(csv_file, "c1", need_email=True).fields["first_name"] == "Ann"
    bad = find_customer(csv_file, "c4", need_email=True)
    assert bad.rejected and "age" in bad.reason
    assert find_customer(csv_file, "nobody", need_email=True) is None


def test_reading_streams_rows_instead_of_loading_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fat.csv"
    count = 20_000
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id,email,first_name,age,notes\n")
        for i in range(count):
            handle.write(f"C{i:06d},c{i}@example.com,Name{i},{20 + i % 60},{'n' * 1000}\n")
    size = path.stat().st_size
    stream = read_customers(path, need_email=True)
    assert inspect.isgenerator(stream)
    gc.collect()
    tracemalloc.start()
    try:
        seen = sum(1 for row in stream if not row.rejected)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < size / 5, f"peak {peak:,} bytes while reading a {size:,}-byte file"


@pytest.mark.slow
def test_a_100000_row_file_is_not_held_in_memory(big_customers: Path) -> None:
    stream = read_customers(big_customers, need_email=True)
    assert inspect.isgenerator(stream)
    probes: list[weakref.ref] = []
    total = 0
    for row in stream:
        total += 1
        if total % 1000 == 0:
            probes.append(weakref.ref(row))
    del row
    gc.collect()
    assert total == 100_000
    alive = sum(1 for p in probes if p() is not None)
    assert alive == 0, f"{alive} of {len(probes)} sampled rows are still referenced"
