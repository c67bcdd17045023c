"""The SES target against moto in server mode on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

# tests/ is not a package: pytest puts it on sys.path
from fixtures_delivery import (  # noqa: F401 (moto_url is a fixture)
    AWS_ENV,
    make_delivery,
    moto_reset,
    moto_sent_raw,
    moto_url,
)
from fixtures_sending import (
    AWS,
    NAME,
    copy_site,
    customer_rows,
    edition,
    ledger_file,
    make_customers,
    manifest,
    run_args,
)

from edition.send.ledger.sqlite import SendLedger
from publishers import DeliveryError, open_publisher
from publishers.ses import SesPublisher

FAST = {"backoff": [0.01, 0.02]}


@pytest.fixture
def ses(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EDITION_SES_ENDPOINT_URL", raising=False)
    moto_reset(moto_url)
    client = boto3.client("sesv2", endpoint_url=moto_url, region_name="us-east-1")
    client.create_email_identity(EmailIdentity="news@acme.example")
    return client


def publisher(url: str, target: str = "ses", **options: Any) -> SesPublisher:
    pub = open_publisher(target, out_dir=Path("."), options={"endpoint_url": url, **FAST,
                                                           **options})
    assert isinstance(pub, SesPublisher)
    return pub


def sent_to(url: str, address: str) -> list[dict[str, Any]]:
    return [m for m in moto_sent_raw(url) if address in m["destinations"]]


def client_error(code: str, status: int = 400, message: str = "nope") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail")


def flaky(pub: SesPublisher, monkeypatch: pytest.MonkeyPatch, *errors: Exception) -> list[int]:
    """Make the client raise `errors` in turn, then really send; returns the call log."""
    real = pub.client.send_email
    calls: list[int] = []

    def send_email(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return real(**kwargs)

    monkeypatch.setattr(pub.client, "send_email", send_email)
    return calls


def test_sends_the_raw_message_once_per_recipient(ses: Any, moto_url: str) -> None:
    deliveries = [make_delivery(f"c{i}") for i in range(3)]
    with publisher(moto_url) as pub:
        outcomes = [pub.publish(d) for d in deliveries]
    assert [o.status for o in outcomes] == ["sent"] * 3
    for d, outcome in zip(deliveries, outcomes, strict=True):
        [message] = sent_to(moto_url, d.recipient or "")
        assert message["id"] == outcome.provider_id
        assert message["source"] == "news@acme.example"
        assert message["raw_data"].encode() == d.eml
    assert len(moto_sent_raw(moto_url)) == 3


def test_configuration_set_and_region_target(ses: Any, moto_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ses.create_configuration_set(ConfigurationSetName="marketing")
    monkeypatch.setenv("EDITION_SES_ENDPOINT_URL", moto_url)
    pub = open_publisher("ses://us-east-1", out_dir=Path("."),
                         options={"configuration_set": "marketing"})
    assert pub.target == "ses://us-east-1"
    with pub:
        assert pub.publish(make_delivery("c1")).status == "sent"
    assert len(sent_to(moto_url, "c1@example.com")) == 1


def test_unverified_sender_is_failed_with_the_error_message(ses: Any, moto_url: str) -> None:
    d = make_delivery("c1")
    other = d.__class__(**{**d.__dict__, "eml": (d.eml or b"").replace(b"news@", b"spam@")})
    with publisher(moto_url) as pub:
        outcome = pub.publish(other)
    assert outcome.status == "failed"
    assert outcome.reason == "MessageRejected: Did not have authority to send from email " \
                             "spam@acme.example"


def test_throttling_is_retried_then_sent_once(ses: Any, moto_url: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with publisher(moto_url) as pub:
        calls = flaky(pub, monkeypatch, client_error("TooManyRequestsException", 429,
                                                     "Too many requests"))
        outcome = pub.publish(make_delivery("c1"))
    assert outcome.status == "sent" and len(calls) == 2
    assert len(sent_to(moto_url, "c1@example.com")) == 1
    assert "TooManyRequestsException" in caplog.text


def test_persistent_throttling_fails_after_bounded_attempts(ses: Any, moto_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with publisher(moto_url, attempts=3) as pub:
        calls = flaky(pub, monkeypatch, *[client_error("Throttling", 400, "Rate exceeded")] * 9)
        outcome = pub.publish(make_delivery("c1"))
    assert len(calls) == 3 and outcome.status == "failed"
    assert outcome.reason == "Throttling: Rate exceeded (after 3 attempts)"


def test_ambiguous_failures_are_unknown_and_not_retried(ses: Any, moto_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with publisher(moto_url) as pub:
        calls = flaky(pub, monkeypatch, client_error("InternalFailure", 500),
                      ReadTimeoutError(endpoint_url=moto_url))
        first = pub.publish(make_delivery("c1"))
        second = pub.publish(make_delivery("c2"))
    assert (first.status, second.status) == ("unknown", "unknown") and len(calls) == 2
    assert "InternalFailure" in (first.reason or "") and "timeout" in (second.reason or "")


def test_no_connection_is_retried_then_a_target_error(ses: Any, moto_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with publisher(moto_url, attempts=2) as pub:
        calls = flaky(pub, monkeypatch, EndpointConnectionError(endpoint_url=moto_url))
        assert pub.publish(make_delivery("c1")).status == "sent"
        calls = flaky(pub, monkeypatch, *[EndpointConnectionError(endpoint_url=moto_url)] * 2)
        with pytest.raises(DeliveryError, match="Could not connect"):
            pub.publish(make_delivery("c2"))
    assert len(calls) == 2


def test_account_level_errors_stop_the_run(ses: Any, moto_url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with publisher(moto_url) as pub:
        flaky(pub, monkeypatch, client_error("SendingPausedException", 400, "paused"))
        with pytest.raises(DeliveryError, match="SendingPausedException: paused"):
            pub.publish(make_delivery("c1"))


def test_missing_parts_fail_without_calling_ses(ses: Any, moto_url: str) -> None:
    with publisher(moto_url) as pub:
        assert pub.publish(make_delivery("c1", eml=False)).status == "failed"
        d = make_delivery("c2")
        bad = d.__class__(**{**d.__dict__, "recipient": "not an address"})
        assert pub.publish(bad).status == "failed"
    assert moto_sent_raw(moto_url) == []


def test_targets(moto_url: str) -> None:
    assert open_publisher("ses", out_dir=Path("."), options={"region": "eu-west-1"}).target == "ses"
    with pytest.raises(DeliveryError, match="AWS_ACCESS_KEY_ID") as info:
        open_publisher("ses://AKIA:wJalrXUtnFEMI@eu-west-1", out_dir=Path("."))
    assert "wJalrXUtnFEMI" not in str(info.value)
    with pytest.raises(DeliveryError, match="expected ses"):
        open_publisher("ses://eu-west-1/extra", out_dir=Path("."))


def test_aws_secret_never_in_outcomes_or_logs(ses: Any, moto_url: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = AWS_ENV["AWS_SECRET_ACCESS_KEY"]
    with publisher(moto_url) as pub:
        flaky(pub, monkeypatch, client_error("Throttling", 400, f"echo {secret}"),
              client_error("MessageRejected", 400, f"bad {secret}"))
        outcome = pub.publish(make_delivery("c1"))
    assert outcome.status == "failed" and "***" in (outcome.reason or "")
    assert secret not in repr(outcome)
    assert secret not in caplog.text


# --- a reply lost after SES took the message (issue 17, finding 4) ---------------------------


class _LossySes(ThreadingHTTPServer):
    """SES v2 `SendEmail` on 127.0.0.1 that reads each request, counts it per recipient, and
    drops the connection without a reply on the first request for each `lose` recipient:
    the message was taken, the reply is lost. Every other request gets a MessageId."""

    daemon_threads = True

    def __init__(self, lose: set[str]):
        super().__init__(("127.0.0.1", 0), _LossyHandler)
        self.lose = set(lose)
        self.requests: Counter[str] = Counter()
        self.lost: set[str] = set()
        self.guard = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _LossyHandler(BaseHTTPRequestHandler):
    server: _LossySes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v2/email/outbound-emails":
            self.send_error(404)
            return
        [to] = json.loads(body)["Destination"]["ToAddresses"]
        with self.server.guard:
            self.server.requests[to] += 1
            lose = to in self.server.lose and to not in self.server.lost
            if lose:
                self.server.lost.add(to)
        if lose:  # taken, then the connection goes (RST): no reply ever reaches the client
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        reply = json.dumps({"MessageId": f"m-{to}-{self.server.requests[to]}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


@contextmanager
def lossy_ses(lose: set[str]) -> Iterator[_LossySes]:
    server = _LossySes(lose)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_lost_reply_is_unknown_after_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    with lossy_ses({"c1@example.com"}) as server, publisher(server.url) as pub:
        lost = pub.publish(make_delivery("c1"))
        kept = pub.publish(make_delivery("c2"))
    assert server.requests == {"c1@example.com": 1, "c2@example.com": 1}
    assert lost.status == "unknown" and "may have been sent" in (lost.reason or "")
    assert (kept.status, kept.provider_id) == ("sent", "m-c2@example.com-1")


def test_send_with_lost_replies_never_mails_anyone_twice(tmp_path: Path) -> None:
    """The real CLI sends 20 customers; SES takes half of them and loses the reply. Each
    recipient gets one request; the lost ones are `unknown` in the manifest and the ledger
    (exit 3, max_failed 0), and a second send of the mailing leaves them alone."""
    site = copy_site(tmp_path / "site")
    path = make_customers(20, tmp_path / "customers.csv")
    people = [row["email"] for row in customer_rows(path)]
    lose = set(people[::2])
    with lossy_ses(lose) as server:
        env = AWS | {"EDITION_SES_ENDPOINT_URL": server.url}
        code, out, err = edition(*run_args(path, tmp_path / "run"), "--send", "--yes",
                                 "--to", "ses", cwd=site, env=env)
        assert code == 3, out + err
        assert server.requests == Counter(people), "a recipient got more than one request"
        rows = manifest(tmp_path / "run")
        by_email = dict(zip(people, rows, strict=True))
        assert {e for e, r in by_email.items() if r["status"] == "unknown"} == lose
        assert {e for e, r in by_email.items() if r["status"] == "sent"} == set(people) - lose
        with SendLedger(ledger_file(site)) as ledger:
            assert ledger.counts(NAME)["unknown"] == len(lose)
            assert ledger.counts(NAME)["sent"] == len(people) - len(lose)

        # the same mailing again: the unknown ones are not guessed at, nobody is re-sent
        code, out, err = edition(*run_args(path, tmp_path / "again"), "--send", "--yes",
                                 "--to", "ses", cwd=site, env=env)
        assert code == 3, out + err
        assert server.requests == Counter(people)
        assert {r["status"] for r in manifest(tmp_path / "again")} == {"sent", "unknown"}
