"""A test send through the real CLI to an SMTP sink:
`edition run CAMPAIGN --send --test-to you@example.com --customer A --customer B --yes`
delivers exactly those customers' editions to the reviewer, marked [TEST], without the
send ledger (a real send afterwards still sends them) and without the suppression lists
(a suppressed customer can be test-sent; the real send still suppresses them)."""

from __future__ import annotations

import email
import re
import sqlite3
from email import policy
from email.message import EmailMessage
from pathlib import Path

import yaml
from fixtures_delivery import smtp_sink
from fixtures_sending import (
    CAMPAIGN,
    copy_site,
    customer_rows,
    edition,
    ledger_file,
    make_customers,
    manifest,
)

AS_OF = "2026-11-23"
REVIEWER = "you@example.com"


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def edition_of(msg: EmailMessage) -> tuple[str, str]:
    """The text and HTML a customer reads, the unsubscribe token aside (it is signed for
    the address the message goes to)."""
    def body(kind: str) -> str:
        part = msg.get_body((kind,))
        assert part is not None
        return re.sub(r"token=[A-Za-z0-9_-]+", "token=T", part.get_content())

    return body("plain"), body("html")


def test_a_test_send_reaches_the_reviewer_only_and_records_nothing(tmp_path: Path) -> None:
    site = copy_site(tmp_path / "site")
    customers = make_customers(8, tmp_path / "customers.csv")
    people = customer_rows(customers)
    first, suppressed = people[0], people[3]

    # what the two customers' editions are (before anyone is on a list)
    code, out, err = edition("run", CAMPAIGN, "--customers", customers, "--out",
                             tmp_path / "dry", "--as-of", AS_OF, cwd=site)
    assert code == 0, out + err
    dry = {r["customer_id"]: r for r in manifest(tmp_path / "dry")}
    expected = {p["id"]: parse((tmp_path / "dry" / dry[p["id"]]["files"]["eml"]).read_bytes())
                for p in (first, suppressed)}

    # one of them is now on the campaign's suppression list
    (site / "data").mkdir(exist_ok=True)
    (site / "data" / "unsubscribed.csv").write_text(f"email\n{suppressed['email']}\n",
                                                    encoding="utf-8")
    path = site / CAMPAIGN
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["suppression"] = ["data/unsubscribed.csv"]
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")

    with smtp_sink() as (port, sink):
        target = f"smtp://127.0.0.1:{port}"
        code, out, err = edition("run", CAMPAIGN, "--customers", customers, "--as-of", AS_OF,
                                 "--send", "--test-to", REVIEWER, "--customer", first["id"],
                                 "--customer", suppressed["id"], "--to", target, "--yes",
                                 cwd=site)
        assert code == 0, out + err
        assert "test send: 2 of 2 to you@example.com" in out
        assert dict(sink.received) == {REVIEWER: 2}
        got = [parse(content) for _, _, content in sink.messages]
        assert all(rcpts == [REVIEWER] for _, rcpts, _ in sink.messages)
        for person, msg, (_, _, content) in zip((first, suppressed), got, sink.messages,
                                                strict=True):
            want = expected[person["id"]]
            assert msg["To"].addresses[0].addr_spec == REVIEWER
            assert msg["Subject"] == f"[TEST] {want['Subject']}"
            assert edition_of(msg) == edition_of(want), person["id"]  # that customer's edition
            assert person["email"].encode() not in content
        # nothing in the send ledger: it was not the customers' message
        ledger = ledger_file(site)
        if ledger.exists():
            with sqlite3.connect(ledger) as db:
                assert db.execute("SELECT count(*) FROM sends").fetchone() == (0,)
                assert db.execute("SELECT count(*) FROM mailings").fetchone() == (0,)

        # the real send afterwards: the first customer is sent, the listed one suppressed
        code, out, err = edition("run", CAMPAIGN, "--customers", customers, "--out",
                                 tmp_path / "sent", "--as-of", AS_OF, "--send", "--yes",
                                 "--to", target, cwd=site)
        assert code == 0, out + err
        sent = {r["customer_id"]: r for r in manifest(tmp_path / "sent")}
        assert sent[first["id"]]["status"] == "sent"
        assert sent[first["id"]]["reason"] is None   # not "already sent"
        assert sent[suppressed["id"]]["status"] == "suppressed"
        assert "data/unsubscribed.csv" in sent[suppressed["id"]]["reason"]
        assert sink.received[first["email"]] == 1
        assert suppressed["email"] not in sink.received
        assert sink.received[REVIEWER] == 2
        real = parse(next(c for _, r, c in sink.messages if r == [first["email"]]))
        assert not real["Subject"].startswith("[TEST]")
