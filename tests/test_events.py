"""Bounces and complaints coming back (issue 20, part 2): the events table, returned mail
in the formats providers send, SES notifications, and the suppressions they make.

The returned mail is made from the messages a real run wrote (tests/fixtures_returned_mail
wraps them as Postfix, Gmail and Outlook DSNs, an ARF complaint, a qmail bounce and SES's
JSON); `edition events ingest` reads them from a Maildir, an mbox and a JSON file, and
the next run of the campaign suppresses each customer with the reason in words.
"""

from __future__ import annotations

import datetime as dt
import json
import mailbox
import os
import pickle
import re
import threading
from pathlib import Path

import pytest
import yaml
from fixtures_returned_mail import arf, dsn, qmail_bounce, ses_notification
from fixtures_sending import CAMPAIGN, copy_site, edition, make_customers, manifest

from edition.addresses import address_hash
from edition.feedback.events import Ingester
from edition.render.message_identity import HEADER, make_value
from edition.render.unsubscribe import SECRET_ENV
from edition.send.bounces import SoftBounceRule, severity, smtp_severity
from edition.store.events import Event, EventStore
from edition.store.suppressions import SuppressionStore

AS_OF = "2026-11-23"
DAY = dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC)


def event(n: int, **extra: str) -> Event:
    fields = {"event_id": f"ses:fb-{n}:h", "kind": "bounce", "occurred_at": "2026-11-24T08:30:00Z",
              "source": "ses", "recipient_hash": address_hash(f"c{n}@example.com"),
              "severity": "hard", "status": "5.1.1", "customer_id": f"C{n}",
              "campaign": "weekly", "mailing": "2026-11-23"} | extra
    return Event(**fields)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("fresh_postgresql_url")


def test_the_events_table_keeps_each_provider_event_once(store_url: str) -> None:
    """SNS delivers at least once and a mailbox may be read twice: one id, one event, also
    when several writers race (SQLite and PostgreSQL alike)."""
    with EventStore(store_url) as store:
        assert store.record(event(1)) is True
        assert store.record(event(1, diagnostic="the same notification again")) is False
        results: list[bool] = []

        def hit() -> None:
            results.append(store.record(event(2, severity="soft", status="4.2.2")))

        threads = [threading.Thread(target=hit) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(results) == [False] * 5 + [True]
        store.record(event(3, kind="complaint", severity="", status=""))
        store.record(event(4, kind="delivery", severity="", status=""))
        store.record(event(5, mailing="2026-11-30"))
        # a provider's over-long values are cut to the column, never refused
        assert store.record(event(6, diagnostic="x" * 5000, mailing="2026-11-30")) is True
        assert [e.event_id for e in store.events()][:2] == ["ses:fb-1:h", "ses:fb-2:h"]
        counts = store.mailing_counts("weekly")
        assert (counts["2026-11-23"].hard_bounces, counts["2026-11-23"].soft_bounces,
                counts["2026-11-23"].complaints, counts["2026-11-23"].deliveries) == (1, 1, 1, 1)
        assert counts["2026-11-30"].hard_bounces == 2
        assert store.mailing_counts("weekly", ["2026-11-30"]).keys() == {"2026-11-30"}
        soft = store.soft_bounces(customer_id="", recipient_hash=address_hash("c2@example.com"),
                                  since="2026-11-01T00:00:00Z")
        assert [e.customer_id for e in soft] == ["C2"]


def test_which_bounces_are_hard() -> None:
    """Only what says the address is bad is hard (listmonk #489: not every bounce alike)."""
    assert severity("5.1.1") == severity("5.1.10") == severity("5.2.1") == "hard"
    assert severity("5.2.2") == severity("5.7.1") == severity("4.2.2") == "soft"
    assert severity("", permanent=True) == "hard"
    assert smtp_severity(550, "5.1.1 <ann@example.com>: Recipient address rejected") == "hard"
    assert smtp_severity(550, "Requested action not taken: mailbox unavailable") == "hard"
    assert smtp_severity(554, "5.7.1 Message rejected as spam") == "soft"
    assert smtp_severity(451, "4.7.1 try later") == "soft"
    assert smtp_severity(250, "2.0.0 OK") == ""


def test_soft_bounces_suppress_after_n_within_d_days(tmp_path: Path) -> None:
    """The campaign's rule (here 2 within 3 days): two soft bounces 5 days apart do not
    suppress; the second within 3 days does, dated when it happened."""
    url = str(tmp_path / "store.sqlite")
    with EventStore(url) as events, SuppressionStore(url) as suppressions:
        ingester = Ingester(lambda campaign: (events, suppressions),
                            rule_for={"weekly": SoftBounceRule(2, 3)}.get)

        def soft(n: int, day: int) -> Event:
            return event(1, event_id=f"dsn:{n}", severity="soft", status="4.2.2",
                         occurred_at=f"2026-11-{day:02d}T10:00:00Z")

        assert ingester.ingest([soft(1, 1)]).counts["suppressed"] == 0
        assert ingester.ingest([soft(2, 6)]).counts["suppressed"] == 0
        done = ingester.ingest([soft(3, 8), soft(3, 8)])
        assert done.counts["suppressed"] == 1 and done.counts["duplicate"] == 1
        assert done.suppressed == ["C1: bounced (soft, 2 in 3 days)"]
        (entry,) = suppressions.entries()
        assert (entry.kind, entry.scope, entry.recorded_at) == \
            ("bounced", "*", "2026-11-08T10:00:00Z")


# -- end to end: a run's messages come back -----------------------------------------------


def tampered(original: bytes) -> bytes:
    """The original with its signed headers edited: a forged bounce naming a customer."""
    def flip(match: re.Match[bytes]) -> bytes:
        token = bytearray(match.group(2))
        token[10] = ord("A") if token[10] != ord("A") else ord("B")
        return match.group(1) + bytes(token)

    return re.sub(rb"(X-Edition-Id: |token=)([A-Za-z0-9_-]{20,})", flip, original)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = copy_site(tmp_path / "site")
    make_customers(9, root / "customers.csv")
    return root


def test_returned_mail_and_ses_events_suppress_the_next_run(site: Path, tmp_path: Path) -> None:
    code, out, err = edition("run", CAMPAIGN, "--customers", "customers.csv", "--out", "out/one",
                             "--as-of", AS_OF, cwd=site)
    assert code == 0, out + err
    rows = {r["customer_id"]: r for r in manifest(site / "out" / "one")}
    ids = sorted(rows)
    eml = {cid: (site / "out" / "one" / rows[cid]["files"]["eml"]).read_bytes() for cid in ids}
    address = {cid: re.search(rb"^To: .*<([^>]+)>", eml[cid], re.M).group(1).decode()
               for cid in ids}
    c = ids
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    # Postfix: 5.1.1, only the original's headers returned (text/rfc822-headers)
    box.add(dsn(eml[c[0]], recipient=address[c[0]], status="5.1.1",
                diagnostic="550 5.1.1 <x>: Recipient address rejected: User unknown",
                style="postfix", when=DAY))
    # Gmail: the customer's mail was forwarded; the report names the forwarding address,
    # only the returned message (message/rfc822) says whose it was (listmonk #492)
    box.add(dsn(eml[c[1]], recipient="old-forward@elsewhere.example", status="5.1.1",
                diagnostic="550-5.1.1 The email account that you tried to reach does not exist",
                style="gmail", when=DAY))
    # Outlook: a full mailbox three times within 14 days (the third suppresses)
    for day in (1, 6, 10):
        box.add(dsn(eml[c[2]], recipient=address[c[2]], status="4.2.2",
                    diagnostic="452 4.2.2 The recipient's mailbox is full", style="outlook",
                    when=DAY + dt.timedelta(days=day)))
    # twice only: not suppressed
    for day in (1, 2):
        box.add(dsn(eml[c[3]], recipient=address[c[3]], status="4.2.2",
                    diagnostic="452 4.2.2 Mailbox full", style="outlook",
                    when=DAY + dt.timedelta(days=day)))
    # a complaint, the complainant's address redacted
    box.add(arf(eml[c[4]], when=DAY))
    # a forged bounce: the signed headers edited to name another customer
    box.add(dsn(tampered(eml[c[7]]), recipient="stranger@example.net", status="5.1.1",
                diagnostic="550 5.1.1 unknown", style="gmail", when=DAY))
    # a message to the bounce address that reports nothing
    box.add(b"From: someone@example.net\nTo: bounces@acme.example\nSubject: hi\n\nthanks!\n")
    mbox = mailbox.mbox(tmp_path / "old.mbox", create=True)
    mbox.add(qmail_bounce(address[c[5]], when=DAY))
    mbox.close()
    ses = tmp_path / "ses.json"
    ses.write_text(json.dumps([ses_notification("Complaint", eml[c[6]], address[c[6]], when=DAY),
                               ses_notification("Delivery", eml[c[8]], address[c[8]], when=DAY),
                               ses_notification("Bounce", eml[c[8]], address[c[8]], when=DAY,
                                                bounce_type="Transient", status="4.4.7")]),
                   encoding="utf-8")

    code, out, err = edition("events", "ingest", tmp_path / "bounces", tmp_path / "old.mbox",
                             ses, cwd=site)
    assert code == 0, out + err
    assert ("2 complaint, 1 delivery, 4 hard bounce, 1 not a report, 6 soft bounce, "
            "7 suppressed") in out, out
    again = edition("events", "ingest", tmp_path / "bounces", tmp_path / "old.mbox", ses,
                    cwd=site)
    assert again[0] == 0 and "suppressed" not in again[1] and "duplicate" in again[1], again

    code, out, err = edition("run", CAMPAIGN, "--customers", "customers.csv", "--out", "out/two",
                             "--as-of", "2026-12-07", cwd=site)
    assert code == 0, out + err
    after = {r["customer_id"]: r for r in manifest(site / "out" / "two")}
    reason = {cid: after[cid]["reason"] for cid in ids}
    assert reason[c[0]] == "suppressed: bounced (hard, 5.1.1) on 2026-11-24 via a bounce message"
    assert reason[c[1]] == "suppressed: bounced (hard, 5.1.1) on 2026-11-24 via a bounce message"
    assert reason[c[2]] == \
        "suppressed: bounced (soft, 3 in 14 days) on 2026-12-04 via a bounce message"
    assert reason[c[3]] is None
    assert reason[c[4]] == "suppressed: complained on 2026-11-24 via the feedback loop"
    assert reason[c[5]] == "suppressed: bounced (hard) on 2026-11-24 via a bounce message"
    assert reason[c[6]] == "suppressed: complained on 2026-11-24 via SES"
    assert reason[c[7]] is None    # the forged bounce named nobody of ours
    assert reason[c[8]] is None    # delivered, then one transient bounce
    with EventStore(site / "out" / "suppression.sqlite") as store:
        counts = store.mailing_counts("weekly-newsletter")[AS_OF]
    assert (counts.hard_bounces, counts.complaints, counts.deliveries) == (2, 2, 1)


def test_ingest_refuses_what_it_cannot_read(site: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"eventType": "Bounce"}\n{not json', encoding="utf-8")
    code, _out, err = edition("events", "ingest", tmp_path / "missing", cwd=site)
    assert code == 2 and "no such file or folder" in err and "Traceback" not in err
    code, _out, err = edition("events", "ingest", tmp_path / "bad.json", cwd=site)
    assert code == 2 and "bad.json:2: not JSON" in err and "Traceback" not in err
    # a "bounce" of MIME parts nested thousands deep (the stdlib parser recurses): counted
    # as unreadable, the ingest goes on
    nested = b"From: a@example.net\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n" + \
        b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                 for i in range(3000))
    (tmp_path / "nested.eml").write_bytes(nested)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    code, out, err = edition("events", "ingest", tmp_path / "nested.eml", cwd=site)
    assert code == 0 and "1 unreadable" in out and "Traceback" not in err, out + err
    code, out, err = edition("events", "ingest", tmp_path / "deep.json", cwd=site)
    assert code == 2 and "deep.json:1: not JSON" in err and "Traceback" not in err, out + err
    # a file that is not mail at all (a note saved in the bounce folder): flufl.bounce's
    # detectors choke on it and logged their tracebacks to the terminal
    (tmp_path / "note.txt").write_text("hello\n", encoding="utf-8")
    code, out, err = edition("events", "ingest", tmp_path / "note.txt", cwd=site)
    assert code == 0 and "1 not a report" in out, out + err
    assert "Traceback" not in err and "Exception in detector" not in err, err


def test_the_campaign_sets_the_soft_bounce_rule(site: Path, tmp_path: Path) -> None:
    path = site / CAMPAIGN
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["suppression"] = {"soft_bounces": {"count": 1, "days": 30}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    code, out, err = edition("validate", CAMPAIGN, "--customers", "customers.csv", cwd=site)
    assert code == 0, out + err
    signed = make_value(campaign="weekly-newsletter", mailing=AS_OF, customer_id="C9",
                        address="ann@example.com", secret=os.environ[SECRET_ENV])
    original = f"To: ann@example.com\n{HEADER}: {signed}\n\nhi\n".encode()
    note = ses_notification("Bounce", original, "ann@example.com", when=DAY,
                            bounce_type="Transient", status="4.2.2")
    (tmp_path / "one.json").write_text(json.dumps(note), encoding="utf-8")
    code, out, err = edition("events", "ingest", tmp_path / "one.json", cwd=site)
    assert code == 0 and "suppressed C9: bounced (soft, 1 in 30 days)" in out, out + err
    data["suppression"] = {"soft_bounces": {"count": 0}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    code, out, err = edition("validate", CAMPAIGN, "--customers", "customers.csv", cwd=site)
    assert code == 2 and "count and days must be 1 or more" in out + err




def test_the_identity_header_is_signed_and_unreadable() -> None:
    """X-Edition-Id names customer and mailing to us only: not readable, not forgeable, not
    an unsubscribe token, and its secret never goes into a pickle."""
    import pickle

    from edition.render.message_identity import MessageIdentity, read_value
    from edition.render.unsubscribe import InvalidToken, verify

    secret = "identity-test-secret-0123456789"
    made = MessageIdentity.for_mailing("weekly", "2026-11-23", {SECRET_ENV: secret})
    assert made is not None
    value = made.headers("C-4711", "Ann@Example.com")[HEADER]
    assert "4711" not in value and "weekly" not in value
    found = read_value(value, [b"older-secret-0123456789abcdef", secret.encode()])
    assert found is not None
    assert (found.campaign, found.mailing, found.customer_id, found.address_hash) == \
        ("weekly", "2026-11-23", "C-4711", address_hash("ann@example.com"))
    assert read_value(value[:-2] + ("AA" if value[-2:] != "AA" else "BA"), [secret]) is None
    assert read_value(value, [b"another-secret-0123456789abcdef"]) is None
    with pytest.raises(InvalidToken):
        verify(value, [secret])         # never usable as an unsubscribe token
    assert secret.encode() not in pickle.dumps(made)
    assert MessageIdentity.for_mailing("weekly", "2026-11-23", {}) is None


def test_a_send_time_refusal_is_a_bounce(tmp_path: Path) -> None:
    """The SMTP target marks a 550 5.1.1 hard and a 554 5.7.1 soft; the deliverer's
    SendBounces records both as events and suppresses only the hard one."""
    from fixtures_delivery import SinkHandler, make_delivery, smtp_sink

    from edition.send.bounces import SendBounces
    from publishers.smtp import SmtpPublisher

    handler = SinkHandler(reject={"gone@example.com": "550 5.1.1 <gone@example.com>: unknown",
                                  "spam@example.com": "554 5.7.1 rejected by policy"})
    with smtp_sink(handler) as (port, _sink), \
            SmtpPublisher(f"smtp://127.0.0.1:{port}") as publisher:
        hard = publisher.publish(make_delivery("c1", "gone@example.com"))
        soft = publisher.publish(make_delivery("c2", "spam@example.com"))
        sent = publisher.publish(make_delivery("c3", "ok@example.com"))
    assert (hard.status, hard.bounce, soft.status, soft.bounce, sent.bounce) == \
        ("failed", "hard", "failed", "soft", "")
    url = str(tmp_path / "store.sqlite")
    bounces = SendBounces(url, "spring", "2026-11-23")
    for cid, address, outcome in (("c1", "gone@example.com", hard),
                                  ("c2", "spam@example.com", soft)):
        bounces.record(customer_id=cid, recipient=address, level=outcome.bounce,
                       reply=outcome.reason or "")
    bounces.close()
    with EventStore(url) as events, SuppressionStore(url) as suppressions:
        assert [(e.customer_id, e.severity, e.status, e.source) for e in events.events()] == \
            [("c1", "hard", "5.1.1", "smtp"), ("c2", "soft", "5.7.1", "smtp")]
        assert [(s.customer_id, s.kind, s.scope) for s in suppressions.entries()] == \
            [("c1", "bounced", "*")]
    # the same refusal again in this mailing is one event; the next mailing's is the
    # second within the campaign's rule (2 in 14 days here): suppressed
    again = SendBounces(url, "spring", "2026-11-23", SoftBounceRule(2, 14))
    again.record(customer_id="c2", recipient="spam@example.com", level="soft",
                 reply=soft.reason or "")
    pickled = pickle.loads(pickle.dumps(SendBounces(url, "spring", "2026-11-30",
                                                    SoftBounceRule(2, 14))))
    pickled.record(customer_id="c2", recipient="spam@example.com", level="soft",
                   reply=soft.reason or "")
    again.close()
    pickled.close()
    with SuppressionStore(url) as suppressions:
        assert [(s.customer_id, s.source) for s in suppressions.entries()][1:] == \
            [("c2", "event:soft, 2 in 14 days|smtp")]


def test_a_report_about_several_recipients_names_each_by_address() -> None:
    """The signed header names the one customer the message was for; another recipient
    the same report lists is not taken for that customer."""
    from edition.feedback.events.mail import events_from_mail

    secret = os.environ[SECRET_ENV]
    signed = make_value(campaign="weekly", mailing="m1", customer_id="C1",
                        address="ann@example.com", secret=secret)
    original = f"To: ann@example.com\r\n{HEADER}: {signed}\r\n\r\nhi\r\n".encode()
    report = dsn(original, recipient="ann@example.com", status="5.1.1", diagnostic="550 5.1.1",
                 style="gmail", when=DAY, others=("bob@example.com",))
    found = events_from_mail(report, (secret.encode(),))
    assert [(e.customer_id, e.recipient_hash, e.campaign) for e in found] == [
        ("C1", address_hash("ann@example.com"), "weekly"),
        ("", address_hash("bob@example.com"), "weekly")]
