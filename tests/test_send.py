"""End-to-end delivery through the real `edition` command (a subprocess), with real servers.

The sample campaign (campaigns/weekly-newsletter.yaml) runs on customers made by
`edition sample-data`, against an aiosmtpd sink and a moto server on 127.0.0.1. Each
test copies the content into its own folder, so each has its own send ledger
(`<root>/out/weekly-newsletter/ledger.sqlite`). The crash test is in test_crash.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import boto3
import pytest

# tests/ is not a package: pytest puts it on sys.path
from fixtures_delivery import SinkHandler, moto_reset, moto_sent_raw, moto_server, smtp_sink
from fixtures_sending import (  # noqa: F401 (fixtures)
    AWS,
    NAME,
    cli_env,
    customer_rows,
    customers,
    edition,
    edition_command,
    ledger_file,
    manifest,
    run_args,
    set_delivery,
    sink_total,
    site,
)
from fixtures_terminal import run_in_pty

from edition.naming import safe_name

# --- 1. dry run by default ---------------------------------------------------------------


def test_dry_run_sends_nothing_even_with_an_smtp_target(site: Path, customers: Callable,
                                                        tmp_path: Path) -> None:
    path = customers(50)
    with smtp_sink() as (port, sink):
        target = f"smtp://127.0.0.1:{port}"
        code, out, err = edition(*run_args(path, tmp_path / "dry"), "--to", target, cwd=site)
        assert code == 0, out + err
        assert "nothing will be sent" in err.lower()
        rows = manifest(tmp_path / "dry")
        assert len(rows) == 50 and {r["status"] for r in rows} == {"rendered"}
        assert all(r["reason"] is None and "provider_id" not in r for r in rows)

        # the campaign itself says smtp: still a dry run without --send
        set_delivery(site, {"to": target})
        code, out, err = edition(*run_args(path, tmp_path / "dry2"), cwd=site)
        assert code == 0, out + err
        assert "nothing will be sent" in err.lower()
        assert {r["status"] for r in manifest(tmp_path / "dry2")} == {"rendered"}

        # nobody even connected, and no send ledger was started
        assert sink.messages == [] and not sink.peers and sink.commands["MAIL"] == 0
    assert not ledger_file(site).exists()
    assert (tmp_path / "dry2" / "eml").is_dir()  # the emails were made, only not sent


# --- 2. a real send, then a rerun that sends nothing twice ----------------------------------


def test_send_once_per_recipient_and_rerun_sends_nothing(site: Path, customers: Callable,
                                                         tmp_path: Path) -> None:
    path = customers(300)
    people = customer_rows(path)
    emails = {r["email"] for r in people}
    assert len(emails) == 300
    with smtp_sink() as (port, sink):
        args = ["--send", "--yes", "--to", f"smtp://127.0.0.1:{port}"]
        code, out, err = edition(*run_args(path, tmp_path / "run1"), *args, cwd=site)
        assert code == 0, out + err
        assert "300 sent" in out
        assert dict(sink.received) == {e: 1 for e in emails}
        assert len(sink.messages) == 300
        first = manifest(tmp_path / "run1")
        assert [r["customer_id"] for r in first] == [r["id"] for r in people]  # input order
        assert {r["status"] for r in first} == {"sent"}
        assert all(str(r["provider_id"]).startswith("250 ") for r in first)

        # each recipient got their own edition: To, and the campaign's headers
        by_rcpt = {rcpts[0]: content for _, rcpts, content in sink.messages}
        for person in people:
            headers = BytesHeaderParser().parsebytes(by_rcpt[person["email"]])
            assert parseaddr(str(headers["To"]))[1] == person["email"]
            assert parseaddr(str(headers["From"]))[1] == "news@acme.example"
            assert headers["X-Edition-Campaign"] == NAME
        assert {mail_from for mail_from, _, _ in sink.messages} == {"news@acme.example"}

        code, out, err = edition(*run_args(path, tmp_path / "run2"), *args, cwd=site)
        assert code == 0, out + err
        assert len(sink.messages) == 300 and set(sink.received.values()) == {1}
        again = manifest(tmp_path / "run2")
        assert {r["status"] for r in again} == {"sent"}
        assert all(r["reason"].startswith("already sent") for r in again)
        assert [r["provider_id"] for r in again] == [r["provider_id"] for r in first]


# --- 3. faults injected by the server ---------------------------------------------------------


def test_permanent_and_temporary_smtp_failures(site: Path, customers: Callable,
                                               tmp_path: Path) -> None:
    path = customers(300)
    people = customer_rows(path, 30)
    gone, busy, full = people[3], people[7], people[11]
    handler = SinkHandler(
        reject={gone["email"]: f"550 5.1.1 <{gone['email']}>: Recipient address rejected",
                full["email"]: "552 5.2.2 Mailbox full"},
        tempfail_once={busy["email"]})
    with smtp_sink(handler) as (port, sink):
        # retry settings from the campaign's delivery mapping (tiny backoff)
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}", "attempts": 3,
                            "backoff": [0.01, 0.02], "timeout": 10})
        code, out, err = edition(*run_args(path, tmp_path / "run1"), "--limit", 30, "--send",
                                 "--yes", cwd=site)
        # exit 3: the run finished, every row is accounted for, and two customers failed
        assert code == 3, out + err
        rows = {r["customer_id"]: r for r in manifest(tmp_path / "run1")}
        assert len(rows) == 30
        assert rows[gone["id"]]["status"] == rows[full["id"]]["status"] == "failed"
        assert "550" in rows[gone["id"]]["reason"]
        assert rows[busy["id"]]["status"] == "sent"
        others = [r for cid, r in rows.items() if cid not in (gone["id"], full["id"])]
        assert {r["status"] for r in others} == {"sent"}
        assert gone["email"] not in sink.received and full["email"] not in sink.received
        assert sink.received[busy["email"]] == 1
        assert sink_total(sink) == 28 and set(sink.received.values()) == {1}
        assert sink.commands["MAIL"] == 31  # one retry, for the 451; the 5xx are final
        assert "550" in (tmp_path / "run1" / "report.md").read_text(encoding="utf-8")

        # the server lets everyone in again: a rerun sends the full mailbox's edition; the
        # 550 5.1.1 was a hard bounce (listmonk #2623), suppressed from then on
        handler.reject.clear()
        code, out, err = edition(*run_args(path, tmp_path / "run2"), "--limit", 30, "--send",
                                 "--yes", cwd=site)
        assert code == 0, out + err
        rows = {r["customer_id"]: r for r in manifest(tmp_path / "run2")}
        assert rows[full["id"]]["status"] == "sent" and rows[full["id"]]["reason"] is None
        assert rows[gone["id"]]["status"] == "suppressed"
        assert re.fullmatch(r"suppressed: bounced \(hard, 5\.1\.1\) on \d{4}-\d\d-\d\d via "
                            r"the SMTP reply", rows[gone["id"]]["reason"])
        assert all(r["reason"].startswith("already sent")
                   for cid, r in rows.items() if cid not in (gone["id"], full["id"]))
        assert sink.received[full["email"]] == 1 and gone["email"] not in sink.received
        assert sink_total(sink) == 29 and set(sink.received.values()) == {1}


def test_retry_options_in_the_target_query_string(site: Path, customers: Callable,
                                                  tmp_path: Path) -> None:
    path = customers(300)
    people = customer_rows(path, 10)
    handler = SinkHandler(reject={people[2]["email"]: "452 4.2.2 Mailbox full"})
    with smtp_sink(handler) as (port, sink):
        target = f"smtp://127.0.0.1:{port}?attempts=2&backoff=0.01"
        code, out, err = edition(*run_args(path, tmp_path / "run"), "--limit", 10, "--send",
                                 "--yes", "--to", target, cwd=site)
        assert code == 3, out + err  # finished with one failed customer
    rows = {r["customer_id"]: r for r in manifest(tmp_path / "run")}
    assert rows[people[2]["id"]]["status"] == "failed"
    assert rows[people[2]["id"]]["reason"] == "452 4.2.2 Mailbox full (after 2 attempts)"
    assert sink.commands["MAIL"] == 11 and sink_total(sink) == 9


# --- 5./6. S3 and SES against moto ----------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with moto_server() as url:
        yield url


def aws_client(service: str, url: str) -> Any:
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_send_to_s3(site: Path, customers: Callable, tmp_path: Path, moto_url: str) -> None:
    moto_reset(moto_url)
    s3 = aws_client("s3", moto_url)
    s3.create_bucket(Bucket="editions")
    path = customers(50)
    env = AWS | {"EDITION_S3_ENDPOINT_URL": moto_url}
    out_dir = tmp_path / "run"
    code, out, err = edition(*run_args(path, out_dir), "--send", "--yes", "--formats",
                             "html,text", "--to", "s3://editions/weekly/2026-11-23",
                             cwd=site, env=env)
    assert code == 0, out + err
    rows = manifest(out_dir)
    assert len(rows) == 50 and {r["status"] for r in rows} == {"sent"}
    assert all(set(r["files"]) == {"html", "text"} for r in rows)
    assert all("html:" in r["provider_id"] and "text:" in r["provider_id"] for r in rows)
    listed = s3.list_objects_v2(Bucket="editions", Prefix="weekly/2026-11-23/")
    keys = {o["Key"] for o in listed.get("Contents", [])}
    expected = {}
    for row in rows:
        name = safe_name(row["customer_id"])
        expected[f"weekly/2026-11-23/html/{name}.html"] = ("text/html; charset=utf-8",
                                                          row["files"]["html"])
        expected[f"weekly/2026-11-23/text/{name}.txt"] = ("text/plain; charset=utf-8",
                                                         row["files"]["text"])
    assert keys == set(expected)
    for key, (content_type, _) in expected.items():
        head = s3.head_object(Bucket="editions", Key=key)
        assert head["ContentType"] == content_type
    # the bytes stored are the bytes the run wrote
    key, (_, local) = sorted(expected.items())[0]
    body = s3.get_object(Bucket="editions", Key=key)["Body"].read()
    assert body == (out_dir / local).read_bytes()


def test_send_through_ses(site: Path, customers: Callable, tmp_path: Path,
                          moto_url: str) -> None:
    moto_reset(moto_url)
    aws_client("sesv2", moto_url).create_email_identity(EmailIdentity="news@acme.example")
    path = customers(50)
    people = customer_rows(path)
    env = AWS | {"EDITION_SES_ENDPOINT_URL": moto_url}
    code, out, err = edition(*run_args(path, tmp_path / "run"), "--send", "--yes", "--to",
                             "ses", cwd=site, env=env)
    assert code == 0, out + err
    rows = manifest(tmp_path / "run")
    assert {r["status"] for r in rows} == {"sent"} and len(rows) == 50
    sent = moto_sent_raw(moto_url)
    assert len(sent) == 50
    got: dict[str, int] = {}
    for message in sent:
        # moto lists the request's recipient and the To header's (display name and all)
        addresses = {parseaddr(d)[1] for d in message["destinations"]}
        assert len(addresses) == 1, message["destinations"]
        address = addresses.pop()
        got[address] = got.get(address, 0) + 1
    assert got == {p["email"]: 1 for p in people}
    assert {r["provider_id"] for r in rows} == {m["id"] for m in sent}

    # a rerun sends nothing more
    code, out, err = edition(*run_args(path, tmp_path / "run2"), "--send", "--yes", "--to",
                             "ses", cwd=site, env=env)
    assert code == 0, out + err
    assert len(moto_sent_raw(moto_url)) == 50
    assert {r["status"] for r in manifest(tmp_path / "run2")} == {"sent"}


# --- 7. credentials never show -----------------------------------------------------------------

SMTP_SECRET = "pw-SECRET-123"
AWS_SECRET = "aws-SECRET-456"


def assert_nowhere(secret: str, folders: list[Path], *texts: str) -> int:
    """The secret is in none of the texts and no file under the folders; files checked."""
    for text in texts:
        assert secret not in text
    checked = 0
    for folder in folders:
        for file in folder.rglob("*"):
            if file.is_file():
                checked += 1
                assert secret.encode() not in file.read_bytes(), file
    return checked


def test_smtp_login_from_the_environment_never_leaks(site: Path, customers: Callable,
                                                     tmp_path: Path) -> None:
    path = customers(300)
    people = customer_rows(path, 20)
    # a server that echoes the password back in a rejection: the reason is redacted
    handler = SinkHandler(reject={people[4]["email"]: f"550 5.7.1 no thanks {SMTP_SECRET}"})
    env = {"EDITION_SMTP_USERNAME": "alice", "EDITION_SMTP_PASSWORD": SMTP_SECRET}
    with smtp_sink(handler, auth=("alice", SMTP_SECRET)) as (port, sink):
        code, out, err = edition(*run_args(path, tmp_path / "run"), "--limit", 20, "--send",
                                 "--yes", "--to", f"smtp://127.0.0.1:{port}", cwd=site, env=env)
        assert code == 3, out + err  # finished with one failed customer
        assert sink.logins == ["alice"]  # one connection, one login
        assert sink_total(sink) == 19
        # a wrong password: the run stops with a message, still without the secret
        code2, out2, err2 = edition(*run_args(path, tmp_path / "wrong"), "--limit", 20,
                                    "--send", "--yes", "--to", f"smtp://127.0.0.1:{port}",
                                    cwd=site,
                                    env=env | {"EDITION_SMTP_PASSWORD": "x" + SMTP_SECRET})
        assert code2 == 1 and "535" in err2
        assert sink_total(sink) == 19
    rows = {r["customer_id"]: r for r in manifest(tmp_path / "run")}
    assert rows[people[4]["id"]]["status"] == "failed"
    assert "***" in rows[people[4]["id"]]["reason"]
    checked = assert_nowhere(SMTP_SECRET, [tmp_path / "run", tmp_path / "wrong", site / "out"],
                             out, err, out2, err2)
    assert checked >= 20 * 3 + 4  # html, text, eml per customer; manifest, report, ...
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"manifest.jsonl", "report.md",
                                                              "versions.json", "eml"}


def test_aws_secret_never_leaks(site: Path, customers: Callable, tmp_path: Path,
                                moto_url: str) -> None:
    moto_reset(moto_url)
    aws_client("s3", moto_url).create_bucket(Bucket="editions")
    path = customers(50)
    env = AWS | {"AWS_SECRET_ACCESS_KEY": AWS_SECRET, "EDITION_S3_ENDPOINT_URL": moto_url}
    code, out, err = edition(*run_args(path, tmp_path / "run"), "--limit", 20, "--send",
                             "--yes", "--to", "s3://editions/w", cwd=site, env=env)
    assert code == 0, out + err
    assert {r["status"] for r in manifest(tmp_path / "run")} == {"sent"}
    # a bucket that does not exist stops the run: the message is about the bucket only
    # (another ledger: this one already holds these editions as sent)
    set_delivery(site, {"to": "s3://no-such-bucket/w", "ledger": str(tmp_path / "l2.sqlite")})
    code2, out2, err2 = edition(*run_args(path, tmp_path / "nobucket"), "--limit", 20,
                                "--send", "--yes", cwd=site, env=env)
    assert code2 == 1 and "NoSuchBucket" in err2
    assert_nowhere(AWS_SECRET, [tmp_path], out, err, out2, err2)


@pytest.mark.parametrize("password", ["pw", SMTP_SECRET])
def test_credentials_in_the_target_are_refused(site: Path, customers: Callable,
                                               tmp_path: Path, password: str) -> None:
    path = customers(50)
    for extra in ([], ["--send", "--yes"]):
        code, out, err = edition(*run_args(path, tmp_path / "run"), *extra, "--to",
                                 f"smtp://alice:{password}@127.0.0.1:1", cwd=site)
        assert code == 2, out + err
        assert "environment" in err and "EDITION_SMTP_PASSWORD" in err.replace("USERNAME/", "")
        assert f":{password}@" not in out + err and f"alice:{password}" not in out + err
        if password == SMTP_SECRET:
            assert password not in out + err
    assert not (tmp_path / "run" / "manifest.jsonl").exists()
    assert not ledger_file(site).exists()


# --- 8. --send asks on a terminal ---------------------------------------------------------------


def test_send_on_a_terminal_asks_first(site: Path, customers: Callable, tmp_path: Path) -> None:
    path = customers(50)
    with smtp_sink() as (port, sink):
        send = ["--send", "--to", f"smtp://127.0.0.1:{port}", "--limit", 5]
        code, text = run_in_pty(run_args(path, tmp_path / "no", *send), site, answer=b"n\r")
        assert code == 1, text
        assert "for real?" in text and "Aborted" in text
        assert sink_total(sink) == 0 and not sink.peers
        assert not (tmp_path / "no" / "manifest.jsonl").exists()

        code, text = run_in_pty(run_args(path, tmp_path / "yes", *send), site, answer=b"y\r")
        assert code == 0, text
        assert sink_total(sink) == 5

        code, text = run_in_pty(run_args(path, tmp_path / "asked-not", *send, "--yes",
                                         "--limit", 8), site)
        assert code == 0, text
        assert "[y/N]" not in text and "for real" not in text
        assert sink_total(sink) == 8  # 3 more: the first 5 were sent already
        assert set(sink.received.values()) == {1}
