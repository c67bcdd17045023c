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

from edition.audience.customers import find_customer, read_customers

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


def test_find_customer_agrees_with_reading_the_whole_file(tmp_path: Path) -> None:
    """Preview looks one row up; it must see what a run sees for that row."""
    text = (
        "\ufeffemail,id,first_name,notes\n"
        "a@example.com,C1,Ann,plain\n"
        'b@example.com,C2,Bob,"two\nlines with C3 inside"\n'
        'c@example.com,"C3",Cal,"quoted, comma"\n'
        "d@example.com,C30,Dan,mentions C3 and C2\n"
        "e@example.com, C4 ,Eve,spaces around the id\n"
        'f@example.com,C5,"Fay ""the"" Great",\n'
        "g@example.com,C3,Again,repeated id\n"
        "h@example.com,Ünï,Uma,unicode id\n"
    )
    path = write(tmp_path / "tricky.csv", text)
    read = {}
    for row in rows(path):
        read.setdefault(row.customer_id, row)
    assert set(read) == {"C1", "C2", "C3", "C30", "C4", "C5", "Ünï"}
    for cid, expected in read.items():
        found = find_customer(path, cid, need_email=True)
        assert found is not None, cid
        assert (found.line, found.customer_id, found.fields, found.reason) == (
            expected.line, expected.customer_id, expected.fields, expected.reason), cid
    assert read["C2"].fields["notes"] == "two\nlines with C3 inside"
    assert read["C5"].fields["first_name"] == 'Fay "the" Great'
    assert find_customer(path, "C", need_email=True) is None


def test_email_is_required_only_when_the_run_makes_email(content_tree, cli, manifest_of) -> None:
    root = content_tree(
        campaigns={"x.yaml": {"name": "x", "template": "p.html.j2", "subject": "Hi",
                              "sender": "Acme <news@acme.example>",
                              "customers": "data/customers.csv",
                              "slots": {"articles": {"kind": "article", "count": 1}},
                              "formats": ["html", "text", "eml"]}},
        templates={"p.html.j2": "<p>{{ customer.id }}</p>\n"},
        articles={"a.md": {"title": "A"}},
        customers={"customers.csv": [{"id": "k1", "email": "k1@example.com"},
                                     {"id": "k2", "email": ""},
                                     {"id": "k3", "email": "not an email"}]})
    rc, _, stderr = cli("run", "campaigns/x.yaml", "--out", "with-eml", cwd=root)
    assert rc == 0, stderr
    assert [m["status"] for m in manifest_of(root / "with-eml")] == [
        "rendered", "rejected", "rejected"]
    rc, _, stderr = cli("run", "campaigns/x.yaml", "--formats", "html,text", "--out", "web",
                        cwd=root)
    assert rc == 0, stderr
    assert [m["status"] for m in manifest_of(root / "web")] == ["rendered"] * 3
