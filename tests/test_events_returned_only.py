"""A bounce with only the returned message to go on (design.md, "When customers answer"):
no RFC 3464 part and wording no bounce detector knows, but the mail system sent it back
with our message attached and a status code in its own words. The original's signed
headers say whose it was; the code says hard or soft. An out-of-office reply quoting
our message, or a bounce whose returned message is forged, suppresses nobody.
Real parts: a run's own .eml files, `edition events ingest` of a Maildir, the next run."""

from __future__ import annotations

import mailbox
import re
from pathlib import Path

from fixtures_sending import CAMPAIGN, copy_site, edition, make_customers, manifest

AS_OF = "2026-11-23"


def tampered(original: bytes) -> bytes:
    """The original with its signed headers edited, as a forger would."""
    def flip(match: re.Match[bytes]) -> bytes:
        token = bytearray(match.group(2))
        token[10] = ord("A") if token[10] != ord("A") else ord("B")
        return match.group(1) + bytes(token)

    return re.sub(rb"(X-Edition-Id: |token=)([A-Za-z0-9_-]{20,})", flip, original)


def wrapped(original: bytes, sender: str, subject: str, words: str, boundary: str) -> bytes:
    head = (f"From: {sender}\nTo: bounces@acme.example\nSubject: {subject}\n"
            f"Message-ID: <{boundary}@mx.example.net>\n"
            "Date: Tue, 24 Nov 2026 08:30:00 +0000\nMIME-Version: 1.0\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n')
    body = (f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{words}\n\n"
            f"--{boundary}\nContent-Type: message/rfc822\n\n").encode()
    return head.encode() + body + original.replace(b"\r\n", b"\n") + \
        f"\n--{boundary}--\n".encode()


def test_a_bounce_with_only_the_returned_message_suppresses(tmp_path: Path) -> None:
    site = copy_site(tmp_path / "site")
    make_customers(4, site / "customers.csv")
    code, out, err = edition("run", CAMPAIGN, "--customers", "customers.csv", "--out",
                             "out/one", "--as-of", AS_OF, cwd=site)
    assert code == 0, out + err
    rows = {r["customer_id"]: r for r in manifest(site / "out" / "one")}
    c = sorted(rows)
    eml = {cid: (site / "out" / "one" / rows[cid]["files"]["eml"]).read_bytes() for cid in c}
    to = {cid: re.search(rb"^To: .*<([^>]+)>", eml[cid], re.M).group(1).decode() for cid in c}
    box = mailbox.Maildir(tmp_path / "returned", create=True)
    box.add(wrapped(eml[c[0]], "Mail Delivery System <MAILER-DAEMON@mx.example.net>",
                    "Undeliverable", f"Delivery to {to[c[0]]} failed permanently:\n"
                    "550 5.1.1 Recipient address rejected: User unknown", "b1"))
    box.add(wrapped(eml[c[1]], "postmaster@mx.example.net", "Delivery delayed",
                    "Your message is delayed: 452 4.2.2 mailbox full", "b2"))
    box.add(wrapped(eml[c[2]], f"Someone <{to[c[2]]}>", "Out of office",
                    "I am away until Monday (ref 5.1.1 of our policy).", "b3"))
    box.add(wrapped(tampered(eml[c[3]]), "MAILER-DAEMON@mx.example.net", "failure",
                    "550 5.1.1 user unknown", "b4"))
    code, out, err = edition("events", "ingest", tmp_path / "returned", cwd=site)
    assert code == 0, out + err
    code, out, err = edition("run", CAMPAIGN, "--customers", "customers.csv", "--out",
                             "out/two", "--as-of", "2026-12-07", cwd=site)
    assert code == 0, out + err
    after = {r["customer_id"]: r for r in manifest(site / "out" / "two")}
    assert after[c[0]]["status"] == "suppressed", after[c[0]]
    assert after[c[0]]["reason"] == \
        "suppressed: bounced (hard, 5.1.1) on 2026-11-24 via a bounce message"
    for cid in c[1:]:   # soft once, an auto-reply, a forged identity
        assert after[cid]["status"] != "suppressed", after[cid]


def test_an_internationalized_dsn_suppresses(tmp_path: Path) -> None:
    """RFC 6533: the DSN of a message sent with SMTPUTF8 (edition sends to
    internationalized addresses) comes as message/global-delivery-status, with the
    original as message/global or message/global-headers."""
    site = copy_site(tmp_path / "site")
    make_customers(2, site / "customers.csv")
    code, out, err = edition("run", CAMPAIGN, "--customers", "customers.csv", "--out",
                             "out/one", "--as-of", AS_OF, cwd=site)
    assert code == 0, out + err
    rows = {r["customer_id"]: r for r in manifest(site / "out" / "one")}
    c = sorted(rows)
    box = mailbox.Maildir(tmp_path / "returned", create=True)
    for cid, returned in zip(c, ("message/global-headers", "message/global"), strict=True):
        original = (site / "out" / "one" / rows[cid]["files"]["eml"]).read_bytes() \
            .replace(b"\r\n", b"\n").decode()
        if returned == "message/global-headers":
            original = original.split("\n\n", 1)[0] + "\n"
        to = re.search(r"^To: .*<([^>]+)>", original, re.M).group(1)
        box.add((f"From: MAILER-DAEMON@mx.example.net\nTo: bounces@acme.example\n"
                 f"Subject: Undelivered Mail Returned to Sender\n"
                 f"Message-ID: <g-{cid}@mx.example.net>\n"
                 "Date: Tue, 24 Nov 2026 08:30:00 +0000\nMIME-Version: 1.0\n"
                 "Content-Type: multipart/report; report-type=global-delivery-status; "
                 'boundary="GG"\n\n--GG\nContent-Type: text/plain\n\nNot delivered.\n\n'
                 "--GG\nContent-Type: message/global-delivery-status\n\n"
                 "Reporting-MTA: dns; mx.example.net\n\n"
                 f"Final-Recipient: utf-8; {to}\nAction: failed\nStatus: 5.1.1\n"
                 "Diagnostic-Code: smtp; 550 5.1.1 user unknown\n\n"
                 f"--GG\nContent-Type: {returned}\n\n{original}\n--GG--\n").encode())
    code, out, err = edition("events", "ingest", tmp_path / "returned", cwd=site)
    assert code == 0, out + err
    assert "2 hard bounce" in out, out
    code, out, err = edition("run", CAMPAIGN, "--customers", "customers.csv", "--out",
                             "out/two", "--as-of", "2026-12-07", cwd=site)
    assert code == 0, out + err
    after = {r["customer_id"]: r for r in manifest(site / "out" / "two")}
    for cid in c:
        assert after[cid]["reason"] == \
            "suppressed: bounced (hard, 5.1.1) on 2026-11-24 via a bounce message", after[cid]
