"""No single customer row can stop a run: each becomes that customer's rejected or failed
row with its reason, and every other row is rendered (and sent).

Each case is a row that stopped the whole run with a traceback before: an address
that needs SMTPUTF8, a lone surrogate in JSONL, JSON nested 100,000 deep, one byte that
is not UTF-8 deep into a CSV, a 10 MB cell. The property test throws random bytes and
random Unicode at every field and at the sender's name.
"""

from __future__ import annotations

import csv
import email
import email.policy
import json
from collections.abc import Callable
from email.utils import formataddr
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_delivery import smtp_sink
from fixtures_sending import (  # noqa: F401 (fixtures)
    customers,
    edition,
    manifest,
    site,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edition.run.lifecycle import execute
from edition.run.options import RunOptions

HEADER = ["id", "email", "first_name", "last_name", "locale", "interests"]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def person(i: int, **values: Any) -> dict[str, Any]:
    return {"id": f"C{i:06d}", "email": f"p{i}@example.com", "first_name": f"Name{i}",
            "last_name": "Lee", "locale": "en", "interests": "garden"} | values


def test_an_address_that_needs_smtputf8_is_sent_where_the_server_offers_it(
        site: Path, tmp_path: Path) -> None:
    rows = [person(1), person(2, email="üser@example.com"), person(3)]
    path = write_csv(tmp_path / "c.csv", rows)
    with smtp_sink(smtputf8=True) as (port, sink):
        code, stdout, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--customers",
                                       path, "--out", tmp_path / "a", "--send", "--yes",
                                       "--to", f"smtp://127.0.0.1:{port}", "--mailing", "a",
                                       cwd=site)
        assert code == 0, stdout + stderr
        assert sink.received["üser@example.com"] == 1
        assert any("SMTPUTF8" in opts for opts in sink.mail_options)
    eml = (tmp_path / "a" / "eml" / "C000002.eml").read_bytes()
    to = email.message_from_bytes(eml, policy=email.policy.default)["To"].addresses
    assert len(to) == 1
    assert to[0].addr_spec.encode("utf-8", "surrogateescape").decode() == "üser@example.com"
    with smtp_sink(smtputf8=False) as (port, sink):
        code, stdout, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--customers",
                                       path, "--out", tmp_path / "b", "--send", "--yes",
                                       "--to", f"smtp://127.0.0.1:{port}", "--mailing", "b",
                                       cwd=site)
        assert code == 3, stdout + stderr  # finished; one customer failed
        assert sink.received["p1@example.com"] == sink.received["p3@example.com"] == 1
    row = {r["customer_id"]: r for r in manifest(tmp_path / "b")}["C000002"]
    assert row["status"] == "failed" and "SMTPUTF8" in row["reason"]


def test_json_rows_that_cannot_be_read_are_rejected_on_their_line(site: Path,
                                                                 tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    lines = [json.dumps(person(1)),
             json.dumps(person(2, first_name="\ud800")),      # a lone surrogate
             '{"id": "C000003", "email": "p3@example.com", "deep": ' + deep + "}",
             "[1, 2, 3]",
             b'{"id": "C000005", "first_name": "\xff"}'.decode("latin-1"),
             json.dumps(person(6))]
    path = tmp_path / "c.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8").replace(b"\xc3\xbf", b"\xff") + b"\n")
    code, stdout, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--customers",
                                   path, "--out", tmp_path / "out", "--formats", "html",
                                   cwd=site)
    assert code == 0, stdout + stderr
    rows = manifest(tmp_path / "out")
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6]
    status = [(r["status"], r["reason_code"]) for r in rows]
    assert status[0] == ("rendered", None) and status[5] == ("rendered", None)
    assert status[1] == ("rejected", "bad_unicode")
    assert status[2] == ("rejected", "too_deep")
    assert status[3] == ("rejected", "not_an_object")
    assert status[4] == ("rejected", "not_utf8")


def test_one_byte_that_is_not_utf8_at_row_10001_rejects_that_row_only(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    source = customers(12_000)
    data = source.read_bytes().split(b"\n")
    data[10_001] = data[10_001].replace(b",", b",\xff", 1)  # row 10,001 (line 10,002)
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\n".join(data))
    code, stdout, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--customers",
                                   path, "--out", tmp_path / "out", "--formats", "html",
                                   cwd=site, timeout=300)
    assert code == 0, stdout + stderr
    rows = manifest(tmp_path / "out")
    assert len(rows) == 12_000
    bad = [r for r in rows if r["status"] == "rejected"]
    assert [(r["line"], r["reason_code"]) for r in bad] == [(10_002, "not_utf8")]
    assert "0xff" in bad[0]["reason"]


def test_a_10_mb_cell_rejects_its_row(site: Path, tmp_path: Path) -> None:
    rows = [person(1), person(2, last_name="x" * 10_000_000), person(3)]
    path = write_csv(tmp_path / "c.csv", rows)
    code, stdout, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--customers",
                                   path, "--out", tmp_path / "out", "--formats", "html",
                                   cwd=site)
    assert code == 0, stdout + stderr
    status = [(r["status"], r["reason_code"]) for r in manifest(tmp_path / "out")]
    assert status == [("rendered", None), ("rejected", "bad_csv"), ("rendered", None)] or \
        status == [("rendered", None), ("rejected", "value_too_large"), ("rendered", None)]


# -- random bytes and Unicode in every field ----------------------------------------------

FIELD = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=10).map(lambda t: t * 300),
    st.binary(max_size=30),
    st.sampled_from(["\u202eevil", "\u0000\u0001x", "a\r\nBcc: x@y.z", "=?utf-8?q?x?=",
                     "💌" * 50, "", "\ud800", "üser@example.com", "x@y", "O'Brien, \"Pat\""]),
)
ROW = st.fixed_dictionaries({name: FIELD for name in HEADER})


def _cell(value: str | bytes) -> bytes:
    data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return b'"' + data.replace(b'"', b'""') + b'"'


CAMPAIGN = {
    "name": "hostile", "template": "page.html.j2",
    "subject": "{{ customer.first_name | default('Hi') }}, news",
    "slots": {"articles": {"kind": "article", "count": 1}},
    "formats": ["html", "text", "eml"], "max_failed": "100%",
}
PAGE = ("<!doctype html><html lang=en><body><p>Hi {{ customer.first_name | default('you') }}"
        " {{ customer.last_name | default('') }}</p>{% for a in articles %}{{ a.html }}"
        "{% endfor %}</body></html>\n")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=12), sender=st.text(max_size=60))
def test_random_bytes_and_unicode_never_stop_a_run(fresh_tree, tmp_path_factory: Any,
                                                   rows: list[dict[str, Any]],
                                                   sender: str) -> None:
    name = "".join(c for c in sender if c not in "\r\n\x85\u2028\u2029")  # one YAML line
    campaign = dict(CAMPAIGN, sender=formataddr((name, "news@acme.example"), "utf-8"))
    root = fresh_tree(campaigns={"hostile.yaml": yaml.safe_dump(campaign, allow_unicode=True)},
                        templates={"page.html.j2": PAGE}, articles={"a.md": {"title": "A"}})
    path = root / "data" / "c.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [b",".join(_cell(row[h]) for h in HEADER) for row in rows]
    path.write_bytes(",".join(HEADER).encode() + b"\r\n" + b"\r\n".join(body) + b"\r\n")
    out = tmp_path_factory.mktemp("hostile-out")
    summary = execute(RunOptions(campaign=str(root / "campaigns" / "hostile.yaml"),
                                 customers=str(path), out=str(out), as_of="2026-11-02"))
    assert summary.exit_code in (0, 3)
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(rows)
    for line in lines:
        row = json.loads(line)
        assert row["status"] in {"rendered", "rejected", "failed"}
        if row["status"] != "rendered":
            assert row["reason"], row
        if "eml" in row["files"]:
            message = email.message_from_bytes((out / row["files"]["eml"]).read_bytes(),
                                               policy=email.policy.default)
            assert len(message["To"].addresses) == 1
            assert len(message["From"].addresses) == 1
            assert message["From"].addresses[0].addr_spec == "news@acme.example"


@pytest.fixture
def fresh_tree(tmp_path_factory: Any) -> Callable[..., Path]:
    """A content root per hypothesis example (the function-scoped tree is shared)."""
    from conftest import write_tree

    def make(**parts: Any) -> Path:
        return write_tree(tmp_path_factory.mktemp("hostile"), **parts)

    return make
