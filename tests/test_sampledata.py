"""The sample customer generator: deterministic, complete, streaming, optionally messy."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from edition.audience.sampledata import COLUMNS, INTERESTS, REFERENCE_DATE, write_customers

EMAIL = re.compile(r"^[a-z]+\.[a-z]+\.\d+@example\.(com|org)$")


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_customers(a, 500, seed=3)
    write_customers(b, 500, seed=3)
    assert a.read_bytes() == b.read_bytes()


def test_same_seed_gives_identical_bytes_jsonl(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_customers(a, 300, seed=11, messy=True)
    write_customers(b, 300, seed=11, messy=True)
    assert a.read_bytes() == b.read_bytes()


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_customers(a, 200, seed=1)
    write_customers(b, 200, seed=2)
    assert a.read_bytes() != b.read_bytes()


@pytest.mark.parametrize("count", [0, 1, 257])
def test_row_count(tmp_path: Path, count: int) -> None:
    path = tmp_path / "customers.csv"
    assert write_customers(path, count, seed=0) == count
    assert len(_csv(path)) == count
    jsonl = tmp_path / "customers.jsonl"
    assert write_customers(jsonl, count, seed=0) == count
    assert len(jsonl.read_text(encoding="utf-8").splitlines()) == count


def test_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "customers.csv"
    assert write_customers(str(path), 3) == 3
    assert path.exists()


def test_columns_and_values(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    write_customers(path, 2000, seed=7)
    with path.open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == COLUMNS
    rows = _csv(path)

    ids = [r["id"] for r in rows]
    emails = [r["email"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert len(set(emails)) == len(emails)
    for row in rows:
        assert re.fullmatch(r"C\d{6}", row["id"])
        assert EMAIL.match(row["email"]), row["email"]
        assert row["first_name"] and row["last_name"]
        assert row["locale"] in {"en", "es"}
        interests = row["interests"].split(";") if row["interests"] else []
        assert len(interests) <= 3 and len(set(interests)) == len(interests)
        assert set(interests) <= set(INTERESTS)
        assert 18 <= int(row["age"]) <= 92
        assert row["life_stage"] in {
            "single", "couple", "expecting", "family", "retired", "newcomer",
        }
        tenure = int(row["tenure_months"])
        assert 0 <= tenure <= 240
        since = date.fromisoformat(row["member_since"])
        months = (REFERENCE_DATE.year - since.year) * 12 + REFERENCE_DATE.month - since.month
        assert months - (since.day > REFERENCE_DATE.day) == tenure
        assert re.fullmatch(r"\d+\.\d\d", row["lifetime_value"])
        assert re.fullmatch(r"INV-2026-\d{6}", row["invoice_number"])
        assert re.fullmatch(r"\d+\.\d\d", row["total"]) and float(row["total"]) > 0
        due = date.fromisoformat(row["due_date"])
        assert (due.year, due.month) == (2026, 12)
        assert row["city"]


def test_population_shape(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    write_customers(path, 5000, seed=5)
    rows = _csv(path)
    n = len(rows)
    share = lambda pred: sum(1 for r in rows if pred(r)) / n  # noqa: E731
    assert 0.20 < share(lambda r: r["locale"] == "es") < 0.30
    assert 0.14 < share(lambda r: int(r["age"]) >= 65) < 0.22
    assert 0.05 < share(lambda r: float(r["lifetime_value"]) >= 5000) < 0.11
    assert share(lambda r: float(r["lifetime_value"]) < 2000) > 0.6
    assert 0.05 < share(lambda r: int(r["tenure_months"]) < 6) < 0.25
    assert share(lambda r: r["life_stage"] == "expecting") > 0.02
    assert share(lambda r: "travel" in r["interests"].split(";")) > 0.1
    stages = Counter(r["life_stage"] for r in rows)
    assert set(stages) == {"single", "couple", "expecting", "family", "retired", "newcomer"}
    # Spanish customers have Spanish names: an accent shows up among them.
    spanish = [r for r in rows if r["locale"] == "es"]
    assert any(re.search(r"[áéíóúñÁÉÍÓÚÑ]", r["first_name"] + r["last_name"]) for r in spanish)


def test_jsonl_types(tmp_path: Path) -> None:
    path = tmp_path / "customers.jsonl"
    write_customers(path, 300, seed=4)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 300
    for rec in records:
        assert list(rec) == list(COLUMNS)
        assert isinstance(rec["interests"], list)
        assert isinstance(rec["age"], int)
        assert isinstance(rec["tenure_months"], int)
        assert isinstance(rec["lifetime_value"], int | float)
        assert isinstance(rec["total"], int | float)
    assert any(rec["interests"] for rec in records)


def test_csv_and_jsonl_hold_the_same_customers(tmp_path: Path) -> None:
    write_customers(tmp_path / "c.csv", 100, seed=9)
    write_customers(tmp_path / "c.jsonl", 100, seed=9)
    rows = _csv(tmp_path / "c.csv")
    lines = (tmp_path / "c.jsonl").read_text(encoding="utf-8").splitlines()
    for row, rec in zip(rows, map(json.loads, lines), strict=True):
        assert row["id"] == rec["id"] and row["email"] == rec["email"]
        assert row["interests"] == ";".join(rec["interests"])
        assert float(row["total"]) == rec["total"]


def _flaws(rows: list[dict[str, str]]) -> int:
    seen: set[str] = set()
    flawed = 0
    for row in rows:
        if (
            row["id"] in seen
            or not EMAIL.match(row["email"])
            or not row["first_name"]
            or not row["age"].isdigit()
        ):
            flawed += 1
        seen.add(row["id"])
    return flawed


def test_messy_rows_only_when_asked(tmp_path: Path) -> None:
    clean, messy = tmp_path / "clean.csv", tmp_path / "messy.csv"
    write_customers(clean, 4000, seed=2)
    write_customers(messy, 4000, seed=2, messy=True)
    clean_rows, messy_rows = _csv(clean), _csv(messy)
    assert _flaws(clean_rows) == 0
    flawed = _flaws(messy_rows)
    assert 5 <= flawed <= 45  # about 1 in 200
    # Apart from the flawed rows the data is the same.
    differing = sum(1 for a, b in zip(clean_rows, messy_rows, strict=True) if a != b)
    assert differing == flawed


def test_messy_jsonl_omits_missing_email(tmp_path: Path) -> None:
    path = tmp_path / "messy.jsonl"
    write_customers(path, 20000, seed=1, messy=True)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert any("email" not in rec for rec in records)
    assert any(rec["age"] == "n/a" for rec in records)
    ids = [rec["id"] for rec in records]
    assert len(set(ids)) < len(ids)


def test_negative_count_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_customers(tmp_path / "x.csv", -1)
