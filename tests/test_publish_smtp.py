"""SMTP delivery against a real aiosmtpd server on 127.0.0.1, with injected faults."""

from __future__ import annotations

import contextlib
import logging
import pickle
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

# tests/ is not a package: pytest puts it on sys.path
from fixtures_delivery import (
    SinkHandler,
    free_port,
    make_delivery,
    run_threads,
    self_signed_tls,
    smtp_sink,
)

from edition.send.ledger.sqlite import Claim, SendLedger
from publishers import DeliveryError, open_publisher
from publishers.smtp import SmtpPublisher

FAST = {"backoff": [0.01, 0.02], "timeout": 5}
SECRET = "s3cr3t-Pa55word-do-not-leak"


@pytest.fixture(autouse=True)
def _no_smtp_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDITION_SMTP_USERNAME", raising=False)
    monkeypatch.delenv("EDITION_SMTP_PASSWORD", raising=False)


def smtp(port: int, tmp_path: Path, **options: object) -> SmtpPublisher:
    pub = open_publisher(f"smtp://127.0.0.1:{port}", out_dir=tmp_path, options=FAST | options)
    assert isinstance(pub, SmtpPublisher)
    return pub


def test_many_messages_through_one_connection(tmp_path: Path) -> None:
    deliveries = [make_delivery(f"c{i}") for i in range(40)]
    with smtp_sink() as (port, sink), smtp(port, tmp_path) as pub:
        outcomes = [pub.publish(d) for d in deliveries]
    assert all(o.status == "sent" for o in outcomes)
    assert outcomes[0].provider_id == "250 2.0.0 Ok: queued as Q1"
    assert len(sink.peers) == 1 and pub.connects == 1
    assert sink.received == {f"c{i}@example.com": 1 for i in range(40)}
    # The message arrives byte for byte (dot-stuffing undone), from the From address.
    sender, rcpts, content = sink.messages[0]
    assert (sender, rcpts) == ("news@acme.example", ["c0@example.com"])
    assert content == deliveries[0].eml


def test_temporary_451_is_retried_then_sent(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                            ) -> None:
    handler = SinkHandler(tempfail_once={"c1@example.com"})
    with smtp_sink(handler) as (port, sink), smtp(port, tmp_path) as pub:
        outcome = pub.publish(make_delivery("c1"))
    assert outcome.status == "sent"
    assert sink.received["c1@example.com"] == 1
    assert "451 4.3.0" in caplog.text and "retrying" in caplog.text


def test_temporary_failure_that_persists_fails_after_bounded_attempts(tmp_path: Path) -> None:
    handler = SinkHandler(reject={"c1@example.com": "452 4.2.2 Mailbox full"})
    with smtp_sink(handler) as (port, sink), smtp(port, tmp_path, attempts=3) as pub:
        outcome = pub.publish(make_delivery("c1"))
        assert pub.publish(make_delivery("c2")).status == "sent"
    assert outcome.status == "failed"
    assert outcome.reason == "452 4.2.2 Mailbox full (after 3 attempts)"
    assert sink.commands["MAIL"] == 4  # three tries for c1, one for c2
    assert pub.connects == 1  # RSET kept the connection usable


def test_dropped_connection_reconnects_and_continues(tmp_path: Path) -> None:
    with smtp_sink() as (port, sink), smtp(port, tmp_path) as pub:
        first = [pub.publish(make_delivery(f"a{i}")) for i in range(3)]
        sink.drop_on_mail = 1  # the server closes the pooled connection at the next MAIL
        rest = [pub.publish(make_delivery(f"b{i}")) for i in range(3)]
    assert [o.status for o in first + rest] == ["sent"] * 6
    assert pub.connects == 2 and len(sink.peers) == 2
    assert all(n == 1 for n in sink.received.values()) and len(sink.received) == 6


def test_drop_on_a_fresh_connection_is_retried_with_backoff(tmp_path: Path) -> None:
    handler = SinkHandler(drop_on_mail=2)
    with smtp_sink(handler) as (port, sink), smtp(port, tmp_path, attempts=3) as pub:
        outcome = pub.publish(make_delivery("c1"))
    assert outcome.status == "sent" and sink.received["c1@example.com"] == 1
    assert pub.connects == 3


def test_permanent_550_fails_that_recipient_only(tmp_path: Path) -> None:
    reply = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
    handler = SinkHandler(reject={"gone@example.com": reply})
    with smtp_sink(handler) as (port, sink), smtp(port, tmp_path) as pub:
        outcomes = [pub.publish(make_delivery("c1")),
                    pub.publish(make_delivery("gone", "gone@example.com")),
                    pub.publish(make_delivery("c3"))]
    assert [o.status for o in outcomes] == ["sent", "failed", "sent"]
    assert outcomes[1].reason == reply
    assert sink.commands["MAIL"] == 3  # a permanent failure is not retried
    assert "gone@example.com" not in sink.received and pub.connects == 1


def test_rejection_after_data_is_failed_or_retried_by_code(tmp_path: Path) -> None:
    handler = SinkHandler(data_reply={"spam@example.com": "554 5.7.1 Message looks like spam",
                                      "busy@example.com": "451 4.7.1 Greylisted"})
    with smtp_sink(handler) as (port, sink), smtp(port, tmp_path, attempts=2) as pub:
        spam = pub.publish(make_delivery("s", "spam@example.com"))
        busy = pub.publish(make_delivery("b", "busy@example.com"))
        ok = pub.publish(make_delivery("c1"))
    assert (spam.status, spam.reason) == ("failed", "554 5.7.1 Message looks like spam")
    assert (busy.status, busy.reason) == ("failed", "451 4.7.1 Greylisted (after 2 attempts)")
    assert ok.status == "sent" and pub.connects == 1
    assert sink.commands["MAIL"] == 4


def test_8bit_body_and_non_ascii_addresses(tmp_path: Path) -> None:
    eml = (b"From: Acme <news@acme.example>\r\nTo: c1@example.com\r\nSubject: hi\r\n"
           b"Message-ID: <x@acme.example>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           b"\r\nGr\xc3\xbc\xc3\x9fe aus M\xc3\xbcnchen\r\n")
    base = make_delivery("c1")
    with smtp_sink() as (port, sink), smtp(port, tmp_path) as pub:
        sent = pub.publish(replace(base, eml=eml))
        utf8 = pub.publish(replace(base, recipient="jürgen@example.com"))
    assert sent.status == utf8.status == "sent" and sink.messages[0][2] == eml
    assert "BODY=8BITMIME" in sink.mail_options[0] and "SMTPUTF8" in sink.mail_options[1]
    assert sink.received["jürgen@example.com"] == 1
    with smtp_sink(smtputf8=False) as (port, sink), smtp(port, tmp_path) as pub:
        refused = pub.publish(replace(base, recipient="jürgen@example.com"))
    assert refused.status == "failed" and "SMTPUTF8" in (refused.reason or "")


def test_drop_after_data_is_unknown_and_not_retried(tmp_path: Path) -> None:
    handler = SinkHandler(drop_after_data={"c2@example.com"})
    with smtp_sink(handler) as (port, sink), smtp(port, tmp_path) as pub:
        outcomes = [pub.publish(make_delivery(f"c{i}")) for i in range(1, 4)]
    assert [o.status for o in outcomes] == ["sent", "unknown", "sent"]
    assert "before the server confirmed it" in (outcomes[1].reason or "")
    assert sink.received["c2@example.com"] == 1  # the server has it once: no resend
    assert sink.commands["MAIL"] == 3


def test_timeout_waiting_for_the_final_reply_is_unknown(tmp_path: Path) -> None:
    handler = SinkHandler(delay=1.0)
    with smtp_sink(handler) as (port, sink), smtp(port, tmp_path, timeout=0.3) as pub:
        outcome = pub.publish(make_delivery("c1"))
    assert outcome.status == "unknown"
    assert sink.received["c1@example.com"] == 1


def test_pool_of_three_connections_shared_by_threads(tmp_path: Path) -> None:
    handler = SinkHandler(delay=0.005)  # keep connections busy so the pool fills up
    with smtp_sink(handler) as (port, sink), smtp(port, tmp_path, connections=3) as pub:
        outcomes: list[str] = []

        def worker(t: int) -> None:
            for i in range(15):
                outcomes.append(pub.publish(make_delivery(f"t{t}-{i}")).status)

        run_threads(6, worker)
    assert outcomes == ["sent"] * 90
    assert len(sink.received) == 90 and set(sink.received.values()) == {1}
    assert pub.connects == len(sink.peers) == 3


def test_rate_limit_is_respected(tmp_path: Path) -> None:
    with smtp_sink() as (port, sink), smtp(port, tmp_path, rate=50) as pub:
        start = time.monotonic()
        for i in range(20):
            assert pub.publish(make_delivery(f"c{i}")).status == "sent"
        elapsed = time.monotonic() - start
    assert elapsed >= 0.35  # 19 gaps of 1/50 s
    assert len(sink.received) == 20


def test_rate_limit_holds_across_threads(tmp_path: Path) -> None:
    with smtp_sink() as (port, _), smtp(port, tmp_path, rate=100, connections=3) as pub:
        start = time.monotonic()
        run_threads(3, lambda t: [pub.publish(make_delivery(f"t{t}-{i}")) for i in range(10)])
        assert time.monotonic() - start >= 0.28  # 30 messages at 100/s


def test_max_per_connection_reconnects(tmp_path: Path) -> None:
    with smtp_sink() as (port, _), smtp(port, tmp_path, max_per_connection=4) as pub:
        assert all(pub.publish(make_delivery(f"c{i}")).status == "sent" for i in range(10))
    assert pub.connects == 3


def test_invalid_messages_fail_without_touching_the_server(tmp_path: Path) -> None:
    with smtp_sink() as (port, sink), smtp(port, tmp_path) as pub:
        no_eml = pub.publish(make_delivery("c1", eml=False))
        base = make_delivery("c2")
        injected = pub.publish(replace(base, recipient="c2@example.com\r\nRCPT TO:<x@e.example>"))
        empty = pub.publish(replace(base, recipient=""))
        two = pub.publish(replace(base, recipient="a@example.com, b@example.com"))
    assert (no_eml.status, injected.status, empty.status, two.status) == ("failed",) * 4
    assert sink.commands["MAIL"] == 0


def test_target_parsing_and_options(tmp_path: Path) -> None:
    pub = open_publisher("smtp://127.0.0.1:2525?starttls=1&rate=5&connections=2",
                         out_dir=tmp_path)
    assert isinstance(pub, SmtpPublisher)
    assert (pub.starttls, pub.limiter.rate, pub.connections, pub.port) == (True, 5.0, 2, 2525)
    assert open_publisher("smtps://mail.example.com", out_dir=tmp_path).port == 465  # type: ignore[attr-defined]
    with pytest.raises(DeliveryError, match="unknown delivery option 'rat'"):
        open_publisher("smtp://127.0.0.1:25", out_dir=tmp_path, options={"rat": 5})
    with pytest.raises(DeliveryError, match="bad value"):
        open_publisher("smtp://127.0.0.1:25", out_dir=tmp_path, options={"rate": "fast"})


def test_unreachable_server_raises_delivery_error_after_bounded_retries(tmp_path: Path) -> None:
    pub = smtp(free_port(), tmp_path, attempts=2)
    start = time.monotonic()
    with pytest.raises(DeliveryError, match="cannot connect") as info:
        pub.open()
    assert time.monotonic() - start < 5
    assert info.value.target == pub.target
    again = pickle.loads(pickle.dumps(info.value))
    assert (str(again), again.target) == (str(info.value), pub.target)


def test_starttls_with_verified_certificate(tmp_path: Path) -> None:
    context, cafile = self_signed_tls(tmp_path)
    with smtp_sink(tls_context=context) as (port, sink):
        with smtp(port, tmp_path, starttls=True, cafile=cafile) as pub:
            assert pub.publish(make_delivery("c1")).status == "sent"
        assert sink.received["c1@example.com"] == 1
        with pytest.raises(DeliveryError, match="certificate"):
            smtp(port, tmp_path, starttls=True).open()  # system CAs do not trust it


# --- credentials ---------------------------------------------------------------------------


def test_credentials_come_from_env_and_never_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("EDITION_SMTP_USERNAME", "alice")
    monkeypatch.setenv("EDITION_SMTP_PASSWORD", SECRET)
    handler = SinkHandler(tempfail_once={"c2@example.com"}, drop_after_data={"c3@example.com"},
                          reject={"c4@example.com": f"550 5.7.1 rejected {SECRET}"})
    seen: list[str] = []
    with smtp_sink(handler, auth=("alice", SECRET)) as (port, sink):
        with smtp(port, tmp_path) as pub:
            outcomes = [pub.publish(make_delivery(f"c{i}")) for i in range(1, 5)]
            seen += [repr(pub), pub.target]
        assert [o.status for o in outcomes] == ["sent", "sent", "unknown", "failed"]
        assert sink.logins and set(sink.logins) == {"alice"}
        seen += [repr(o) for o in outcomes]

        monkeypatch.setenv("EDITION_SMTP_PASSWORD", SECRET + "-wrong")
        with pytest.raises(DeliveryError) as info:
            smtp(port, tmp_path).open()
        seen += [str(info.value), repr(info.value), repr(info.value.__cause__)]
        assert "535" in str(info.value)

    with pytest.raises(DeliveryError, match="EDITION_SMTP_USERNAME") as info:
        open_publisher(f"smtp://alice:{SECRET}@127.0.0.1:25", out_dir=tmp_path)
    seen += [str(info.value), repr(info.value), str(info.value.target)]
    with pytest.raises(DeliveryError, match="EDITION_SMTP_PASSWORD") as info:
        open_publisher(f"smtp://127.0.0.1:25?password={SECRET}", out_dir=tmp_path)
    seen += [str(info.value), str(info.value.target)]
    # Server-side lines (aiosmtpd's own "mail.log") are not ours; everything else is.
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    assert ours, "expected retry warnings to be logged"
    for text in seen + ours:
        assert SECRET not in text
    assert "***" in (outcomes[3].reason or "")  # a secret echoed by the server is redacted


def test_login_over_plaintext_to_a_remote_host_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDITION_SMTP_USERNAME", "alice")
    monkeypatch.setenv("EDITION_SMTP_PASSWORD", SECRET)
    pub = open_publisher("smtp://mail.example.com:587", out_dir=tmp_path)
    with pytest.raises(DeliveryError, match="unencrypted") as info:
        pub.__enter__()  # refused before any connection is attempted
    assert SECRET not in str(info.value)


# --- with the ledger -----------------------------------------------------------------------


def test_unknown_outcome_is_not_resent_by_a_rerun(tmp_path: Path) -> None:
    handler = SinkHandler(drop_after_data={"c2@example.com"})
    deliveries = [make_delivery(f"c{i}") for i in range(1, 4)]
    ledger_path = tmp_path / "spring" / "ledger.sqlite"

    def run(run_id: str, resend_unknown: bool = False) -> list[Claim]:
        claims = []
        with SendLedger(ledger_path) as ledger, smtp(port, tmp_path) as pub:
            for d in deliveries:
                claim = ledger.claim(d.campaign, d.customer_id, d.content_hash, run_id,
                                     resend_unknown=resend_unknown)
                claims.append(claim)
                if claim.may_send:
                    ledger.record(d.campaign, d.customer_id, d.content_hash, pub.publish(d),
                                  run_id)
        return claims

    with smtp_sink(handler) as (port, sink):
        assert run("r1") == [Claim.SEND] * 3
        assert run("r2") == [Claim.ALREADY_SENT, Claim.UNKNOWN, Claim.ALREADY_SENT]
        assert sink.received["c2@example.com"] == 1
        handler.drop_after_data.clear()
        assert run("r3", resend_unknown=True) == [Claim.ALREADY_SENT, Claim.SEND,
                                                  Claim.ALREADY_SENT]
        assert sink.received == {"c1@example.com": 1, "c2@example.com": 2, "c3@example.com": 1}


def _trickling_smtp_server(slow_rcpt: str) -> tuple[int, dict[str, int], Any, Any]:
    """A raw SMTP server on 127.0.0.1 that answers normally, except the final reply to
    the DATA of `slow_rcpt`: it accepts the message, then hands over one byte of the
    reply every 0.2 s (a stuck path, a broken middlebox) for up to two minutes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    received: dict[str, int] = {}
    stop = threading.Event()
    count = threading.Lock()

    def session(conn: socket.socket) -> None:
        file = conn.makefile("rb")
        conn.sendall(b"220 trickle ESMTP\r\n")
        rcpt = ""
        while not stop.is_set():
            line = file.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250 trickle\r\n")
            elif verb == b"RCPT":
                rcpt = line.decode().split("<", 1)[1].split(">", 1)[0]
                conn.sendall(b"250 ok\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go on\r\n")
                while file.readline() not in (b".\r\n", b""):
                    pass
                with count:
                    received[rcpt] = received.get(rcpt, 0) + 1
                if rcpt == slow_rcpt:
                    for byte in b"250 2.0.0 queued, some day" * 30:  # bounded: ~150 s
                        if stop.wait(0.2):
                            return
                        conn.sendall(bytes([byte]))
                    return
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    def serve_one(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            session(conn)

    def serve() -> None:
        with listener:
            while not stop.is_set():  # one thread per connection: a pool's run side by side
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], received, stop, thread


def test_a_reply_trickling_in_is_bounded_by_the_timeout_and_unknown(tmp_path: Path) -> None:
    """One bounded wait per reply, not per byte: a reply that never completes ends the
    send as `unknown` (the server has the message) within the timeout, and the next
    customers are still sent."""
    port, received, stop, server = _trickling_smtp_server("c2@example.com")
    outcomes: list[str] = []
    pub = smtp(port, tmp_path, timeout=1.0, attempts=1)

    def send() -> None:
        with pub:
            for i in range(1, 4):
                outcomes.append(pub.publish(make_delivery(f"c{i}")).status)

    sender = threading.Thread(target=send, daemon=True)
    try:
        sender.start()
        sender.join(timeout=60)  # the timeout is 1 s: a minute is bounded, on any load
        assert not sender.is_alive(), "the send is still waiting for a reply"
    finally:
        stop.set()
        sender.join(timeout=30)
        server.join(timeout=30)
    assert outcomes == ["sent", "unknown", "sent"]
    assert received == {f"c{i}@example.com": 1 for i in range(1, 4)}  # none sent twice


def test_a_stalled_reply_in_a_window_of_sends_is_unknown_and_never_resent(
        tmp_path: Path) -> None:
    """deliver_many over three connections: the customer whose reply stalls is `unknown`
    within the timeout, the others are sent, and a rerun sends no one twice."""
    from test_send_scale import messages

    from edition.send.delivery import Deliverer

    port, received, stop, server = _trickling_smtp_server("c0002@example.com")
    statuses: dict[str, list[str]] = {}

    def run(run_id: str) -> None:
        deliverer = Deliverer(target=f"smtp://127.0.0.1:{port}",
                              options=FAST | {"timeout": 1.0, "connections": 3},
                              ledger=tmp_path / "ledger.sqlite", campaign="spring",
                              mailing="m1", run_id=run_id, out_dir=tmp_path)
        try:
            sent = deliverer.deliver_many(messages(6), in_flight=3)
        finally:
            deliverer.close()
        statuses[run_id] = [s.status for s in sent]

    try:
        for run_id in ("r1", "r2"):
            sender = threading.Thread(target=run, args=(run_id,), daemon=True)
            sender.start()
            sender.join(timeout=120)  # the timeout is 1 s: two minutes is bounded, loaded
            assert not sender.is_alive(), f"run {run_id} is still waiting for a reply"
    finally:
        stop.set()
        server.join(timeout=30)
    expected = ["sent", "sent", "unknown", "sent", "sent", "sent"]
    assert statuses == {"r1": expected, "r2": expected}  # r2: already sent / unknown
    assert received == {f"c{i:04d}@example.com": 1 for i in range(6)}


@pytest.mark.parametrize(("eml", "sender"), [
    # the body is not headers: a From line after the empty line is not the sender
    (b"To: a@x.example\r\nFrom: Acme <news@acme.example>\r\n\r\nFrom: evil@x.example\r\n",
     "news@acme.example"),
    (b"To: a@x.example\r\n\r\nFrom: evil@x.example\r\n", None),
    # an empty line made of bare CR / LF ends the headers too, as the email parser reads it
    (b"Subject: s\r\r\nFrom: evil@x.example\r\n", None),
    (b"Subject: s\n\rFrom: evil@x.example\n", None),
    (b"From: Acme\r\n <news@acme.example>\r\nTo: a@x.example\r\n\r\nbody", "news@acme.example"),
    (b"From: one@x.example\r\nFrom: two@x.example\r\n\r\n", "one@x.example"),
    (b"From: one@x.example, two@x.example\r\n\r\n", None),
    (b"From: no-blank-line@x.example", "no-blank-line@x.example"),
])
def test_the_envelope_sender_is_the_first_from_header_of_the_header_block(
        eml: bytes, sender: str | None) -> None:
    # sender_address reads only the header block and remembers a From value's address
    # (issue 22: ~0.3 ms of worker CPU per message); twice, so the remembered one counts
    from publishers.base import sender_address
    assert sender_address(eml) == sender
    assert sender_address(eml) == sender
