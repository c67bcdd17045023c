"""SES events whose mail carries no headers (a configuration set without "include
original headers") are matched by the messageId SES gave each message at send time, which
the send ledger keeps: exact, where the address alone names nobody's mailing (issue 20).
Real parts: `edition run --send --to ses` against moto's server, SES's event JSON for the
very message ids moto answered, `edition events ingest` and the next run, in subprocesses."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import boto3
from fixtures_delivery import moto_reset, moto_url  # noqa: F401 (moto_url is a fixture)
from fixtures_returned_mail import ses_notification
from fixtures_sending import (  # noqa: F401 (fixtures)
    AS_OF,
    AWS,
    CAMPAIGN,
    NAME,
    customers,
    edition,
    manifest,
    run_args,
    site,
)

from edition.store.events import EventStore

SECRET = {"EDITION_UNSUBSCRIBE_SECRET": "a-test-secret-of-at-least-32-bytes-long!"}
DAY = dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC)


def test_ses_events_without_headers_are_matched_by_message_id(
        site: Path, customers: Callable[[int], Path], tmp_path: Path, moto_url: str) -> None:
    moto_reset(moto_url)
    boto3.client("sesv2", endpoint_url=moto_url, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing"
                 ).create_email_identity(EmailIdentity="news@acme.example")
    env = AWS | SECRET | {"EDITION_SES_ENDPOINT_URL": moto_url}
    code, out, err = edition(*run_args(customers(6), tmp_path / "run"), "--send", "--yes",
                             "--to", "ses", cwd=site, env=env)
    assert code == 0, out + err
    rows = {r["customer_id"]: r for r in manifest(tmp_path / "run")}
    first, second, third = sorted(rows)[:3]
    for who in (first, second, third):
        assert rows[who]["status"] == "sent" and rows[who]["provider_id"], rows[who]
    eml = {who: (tmp_path / "run" / rows[who]["files"]["eml"]).read_bytes()
           for who in (first, second, third)}

    def headerless(kind: str, who: str, **extra: str) -> dict:
        """SES's event for the message sent to `who`, without the original headers, the
        recipient's address as SES names it (the local part's case changed)."""
        note = ses_notification(kind, eml[who], f"Someone.{who}@Elsewhere.example", when=DAY,
                                with_headers=False, **extra)
        inner = json.loads(note["Message"])
        inner["mail"]["messageId"] = rows[who]["provider_id"]
        note["Message"] = json.dumps(inner)
        return note

    unknown = headerless("Bounce", third)
    inner = json.loads(unknown["Message"])
    inner["mail"]["messageId"] = "not-one-of-ours"
    unknown["Message"] = json.dumps(inner)
    events = tmp_path / "ses.json"
    events.write_text(json.dumps([headerless("Bounce", first), headerless("Complaint", second),
                                  unknown]), encoding="utf-8")
    code, out, err = edition("events", "ingest", events, cwd=site, env=SECRET)
    assert code == 0, out + err
    assert f"suppressed {first}: bounced (hard, 5.1.1)" in out, out
    assert f"suppressed {second}: complained" in out, out

    # the mailing's sender health counts them: they are known to be of this mailing
    with EventStore(site / "out" / "suppression.sqlite") as store:
        counts = store.mailing_counts(NAME)[AS_OF]
    assert (counts.hard_bounces, counts.complaints) == (1, 1)

    code, out, err = edition(*run_args(customers(6), tmp_path / "next"), "--as-of",
                             "2026-12-07", cwd=site, env=SECRET)
    assert code == 0, out + err
    after = {r["customer_id"]: r for r in manifest(tmp_path / "next")}
    assert after[first]["reason"] == "suppressed: bounced (hard, 5.1.1) on 2026-11-24 via SES"
    assert after[second]["reason"] == "suppressed: complained on 2026-11-24 via SES"
    assert after[third]["status"] != "suppressed"   # an id we never sent names nobody
    assert CAMPAIGN.endswith(f"{NAME}.yaml")


def test_an_unsubscribe_mailed_to_the_list_unsubscribe_address_is_honoured(
        site: Path, customers: Callable[[int], Path], tmp_path: Path) -> None:
    """The List-Unsubscribe mailto, acted on by a mail program: the message lands in the
    Maildir `edition events ingest` reads and the customer is out of the next run; a
    subject whose token was edited unsubscribes nobody."""
    import mailbox
    from email.message import EmailMessage
    from email.parser import BytesHeaderParser
    from urllib.parse import parse_qs, urlsplit

    import yaml

    campaign = site / CAMPAIGN
    data = yaml.safe_load(campaign.read_text(encoding="utf-8"))
    data["unsubscribe_mailto"] = "mailto:unsubscribe@acme.example?subject=unsubscribe"
    campaign.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    path = customers(6)
    code, out, err = edition(*run_args(path, tmp_path / "run"), cwd=site, env=SECRET)
    assert code == 0, out + err
    rows = {r["customer_id"]: r for r in manifest(tmp_path / "run")}
    first, second = sorted(rows)[:2]

    def request(who: str, edit: bool = False) -> bytes:
        eml = (tmp_path / "run" / rows[who]["files"]["eml"]).read_bytes()
        header = str(BytesHeaderParser().parsebytes(eml)["List-Unsubscribe"])
        mailto = next(p.strip(" <>") for p in header.split(",") if "mailto:" in p)
        subject = parse_qs(urlsplit(mailto).query)["subject"][0]
        if edit:
            subject = subject[:-3] + ("AAA" if not subject.endswith("AAA") else "BBB")
        message = EmailMessage()
        message["From"] = "someone@example.net"
        message["To"] = "unsubscribe@acme.example"
        message["Subject"] = f"Re: {subject}"
        message.set_content("unsubscribe me")
        return message.as_bytes()

    box = mailbox.Maildir(tmp_path / "inbox", create=True)
    box.add(request(first))
    box.add(request(second, edit=True))
    code, out, err = edition("events", "ingest", tmp_path / "inbox", cwd=site, env=SECRET)
    assert code == 0, out + err
    assert f"suppressed {first}: unsubscribed (mailto)" in out and second not in out, out
    assert "1 unsubscribe request" in out and "1 not a report" in out, out
    again = edition("events", "ingest", tmp_path / "inbox", cwd=site, env=SECRET)
    assert again[0] == 0 and "1 duplicate" in again[1], again

    code, out, err = edition(*run_args(path, tmp_path / "next"), cwd=site, env=SECRET)
    assert code == 0, out + err
    after = {r["customer_id"]: r for r in manifest(tmp_path / "next")}
    assert after[first]["reason"].startswith(
        "suppressed: unsubscribed via the unsubscribe e-mail address on "), after[first]
    assert after[second]["status"] == "rendered"
    code, out, err = edition("preferences", "export", "--customer", first, cwd=site)
    assert code == 0, err
    assert [(r["form"], r["source"]) for r in json.loads(out)] == [("unsubscribe", "mailto")]
