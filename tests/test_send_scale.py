"""The send path at scale: batched claims, many messages in flight, crashes in between.

Ledger tests run on both backends (SQLite file, PostgreSQL on the session's throwaway
server). The SMTP tests use an aiosmtpd sink on 127.0.0.1 whose DATA handler is slow and
counts how many messages it holds at once: overlap is asserted on what the server saw,
never on wall time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures_delivery import SinkHandler, moto_url, smtp_sink  # noqa: F401 (moto_url: fixture)

from edition.send.ledger.location import Ledger, open_ledger
from edition.send.ledger.sqlite import Claim
from publishers import Outcome

ROOT = Path(__file__).resolve().parents[1]
SENT = Outcome("sent", provider_id="250 queued")
C = "spring"


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    if request.param == "sqlite":
        return tmp_path / "ledger.sqlite"
    return request.getfixturevalue("fresh_postgresql_url")


def ledger_at(where: Path | str, **kwargs: Any) -> Ledger:
    return open_ledger(where, exclusive=kwargs.pop("exclusive", False), **kwargs)


def states(where: Path | str) -> dict[str, str]:
    with ledger_at(where, readonly=True) as ledger:
        return {e.customer_id: e.state for e in ledger.entries(C)}


# --- claim_many: the same decisions as claim, one commit ----------------------------------


def test_claim_many_decides_like_claim(location: Path | str) -> None:
    with ledger_at(location) as ledger:
        ledger.claim(C, "sent", "k", "r0")
        ledger.record(C, "sent", "k", SENT, "r0")
        ledger.claim(C, "failed", "k", "r0")
        ledger.record(C, "failed", "k", Outcome("failed", reason="550 no"), "r0")
        ledger.claim(C, "flying", "k", "r1")  # in flight in this process
    with ledger_at(location) as other:  # a later run: `flying` was left by a dead one
        items = [("new-b", "k", "h"), ("sent", "k", "h"), ("failed", "k", "h"),
                 ("flying", "k", "h"), ("new-a", "k", "h"), ("new-a", "k", "h")]
        got = other.claim_many(C, items, "r2")
        assert got == [Claim.SEND, Claim.ALREADY_SENT, Claim.FAILED_BEFORE, Claim.UNKNOWN,
                       Claim.SEND, Claim.UNKNOWN]  # a key twice in one batch: sent once
        assert other.claim_many(C, [], "r2") == []
        with ledger_at(location, readonly=True) as ro:  # durable on return
            assert ro.lookup(C, "new-b", "k").state == "sending"
            assert ro.lookup(C, "failed", "k").state == "sending"
            assert ro.lookup(C, "flying", "k").state == "unknown"
            assert [h["state"] for h in ro.history(C, "new-a")] == ["sending"]
        # outcomes of a window, deferred: committed by the next window's claims
        other.record_many(C, [("new-a", "k", SENT), ("new-b", "k", SENT),
                              ("failed", "k", Outcome("failed", reason="451 later"))],
                          "r2", defer=True)
        assert states(location)["new-a"] == "sending"
        assert other.claim_many(C, [("next", "k", "h")], "r2") == [Claim.SEND]
        final = states(location)
        assert (final["new-a"], final["new-b"], final["failed"]) == ("sent", "sent", "failed")
        # an acknowledged send is never downgraded, also inside one batch of records
        other.record_many(C, [("new-a", "k", Outcome("failed", reason="late")),
                              ("next", "k", SENT),
                              ("next", "k", Outcome("unknown", reason="late"))], "r2")
        final = states(location)
        assert (final["new-a"], final["next"]) == ("sent", "sent")
        assert [h["state"] for h in other.history(C, "next")] == ["sending", "sent", "unknown"]
    with ledger_at(location) as third:
        assert third.claim_many(C, [("new-a", "k", "h")], "r3",
                                once_per_customer=True) == [Claim.ALREADY_SENT]
        assert third.claim_many(C, [("new-a", "other-key", "h"), ("fresh", "other-key", "h")],
                                "r3", once_per_customer=True) == [Claim.ALREADY_SENT,
                                                                  Claim.SEND]


BATCH_RACER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, ".")
    from edition.send.ledger.location import open_ledger
    from publishers import Outcome

    where, out, run, n, go, seed = sys.argv[1:7]
    keys = [f"c{i:04d}" for i in range(int(n))]
    # a shard retried while its first worker still runs: the same range, the same order,
    # each racer starting at its own window
    shift = int(seed) * 25 * 3 % len(keys)
    keys = keys[shift:] + keys[:shift]
    wins = []
    with open_ledger(where, exclusive=False) as ledger:
        ledger.claim_many("spring", [("warm-" + seed, "k", "")], run)
        Path(out + ".ready").touch()
        deadline = time.monotonic() + 120
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        for start in range(0, len(keys), 25):
            batch = [(k, "k", "h") for k in keys[start:start + 25]]
            claims = ledger.claim_many("spring", batch, run)
            mine = [b[0] for b, c in zip(batch, claims) if c.name in ("SEND", "FAILED_BEFORE")]
            wins += mine
            ledger.record_many("spring", [(k, "k", Outcome("sent")) for k in mine], run,
                               defer=True)
    json.dump(wins, open(out, "w"))
""")


@pytest.mark.parametrize("runs", ["one-run", "separate-runs"])
def test_processes_racing_with_batches_claim_each_key_once(tmp_path: Path,
                                                            location: Path | str,
                                                            runs: str) -> None:
    script, go, n = tmp_path / "racer.py", tmp_path / "go", 400
    script.write_text(BATCH_RACER)
    outs = [tmp_path / f"wins-{p}.json" for p in range(4)]
    procs = [subprocess.Popen([sys.executable, str(script), str(location), str(out),
                               "run-x" if runs == "one-run" else f"run-{p}", str(n), str(go),
                               str(p)], cwd=ROOT, stderr=subprocess.PIPE)
             for p, out in enumerate(outs)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
            Path(f"{out}.ready").exists() or proc.poll() is not None
            for out, proc in zip(outs, procs, strict=True)):
        time.sleep(0.02)
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
    wins = Counter(key for out in outs for key in json.loads(out.read_text()))
    assert wins == Counter({f"c{i:04d}": 1 for i in range(n)})
    final = states(location)
    assert {k: v for k, v in final.items() if not k.startswith("warm")} == {
        f"c{i:04d}": "sent" for i in range(n)}


# --- many messages in flight per worker, against a slow SMTP server ------------------------


@dataclass
class SlowSink(SinkHandler):
    """Holds each DATA for `delay` seconds and records the most messages held at once."""

    holding: int = 0
    most: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.holding += 1  # one event loop: no lock needed
        self.most = max(self.most, self.holding)
        try:
            await asyncio.sleep(self.delay)
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                  envelope.content))
            for rcpt in envelope.rcpt_tos:
                self.received[rcpt] += 1
            return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"
        finally:
            self.holding -= 1


def messages(n: int, prefix: str = "c") -> list[Any]:
    from fixtures_delivery import make_eml

    from edition.send.delivery import Message

    out = []
    for i in range(n):
        cid = f"{prefix}{i:04d}"
        eml, message_id = make_eml(cid, f"{cid}@example.com")
        out.append(Message(customer_id=cid, recipient=f"{cid}@example.com", digest=f"d{cid}",
                           message_id=message_id,
                           files={"eml": ("message.eml", eml, "message/rfc822")}))
    return out


def test_deliver_many_overlaps_the_waits_on_pooled_connections(tmp_path: Path,
                                                               location: Path | str) -> None:
    from edition.send.delivery import Deliverer

    sink = SlowSink(delay=0.3)
    with smtp_sink(sink) as (port, handler):
        deliverer = Deliverer(target=f"smtp://127.0.0.1:{port}", options={"connections": 8},
                              ledger=location, campaign=C, mailing="m1", run_id="r1",
                              out_dir=tmp_path)
        try:
            batch = messages(40)
            sent = deliverer.deliver_many(batch, in_flight=8)
            again = deliverer.deliver_many(batch[:5], in_flight=8)
        finally:
            deliverer.close()
        assert [s.status for s in sent] == ["sent"] * 40
        assert all(s.extra["provider_id"].startswith("250") for s in sent)
        assert [s.reason.code for s in again] == ["already_sent"] * 5  # type: ignore[union-attr]
        # the server held several messages at once: the waits overlapped
        assert handler.most >= 4, handler.most
        assert handler.most <= 8
        assert handler.received == Counter({f"c{i:04d}@example.com": 1 for i in range(40)})
        assert len(handler.peers) <= 8  # pooled: connections reused across messages
    assert set(states(location).values()) == {"sent"}


def test_one_connection_does_not_overlap(tmp_path: Path) -> None:
    """The control for the test above: the same sink, one connection, one at a time."""
    from edition.send.delivery import Deliverer

    with smtp_sink(SlowSink(delay=0.05)) as (port, handler):
        deliverer = Deliverer(target=f"smtp://127.0.0.1:{port}", options={"connections": 1},
                              ledger=tmp_path / "l.sqlite", campaign=C, mailing="m1",
                              run_id="r1", out_dir=tmp_path)
        try:
            deliverer.deliver_many(messages(10), in_flight=8)
        finally:
            deliverer.close()
        assert handler.most == 1
        assert sum(handler.received.values()) == 10


# --- kill -9 in the middle of windows of claims ------------------------------------------

SENDER_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path[:0] = [".", "tests"]
    from test_send_scale import messages
    from edition.send.delivery import Deliverer

    where, port, run, n, window, resend, out = sys.argv[1:8]
    deliverer = Deliverer(target=f"smtp://127.0.0.1:{port}",
                          options={"connections": int(window)}, ledger=where,
                          campaign="spring", mailing="m1", run_id=run, out_dir=Path(out),
                          resend_unknown=resend == "1")
    try:
        batch = messages(int(n))
        for start in range(0, len(batch), 100):
            deliverer.deliver_many(batch[start:start + 100], in_flight=int(window))
            print(start, flush=True)
    finally:
        deliverer.close()
""")


def test_kill_9_during_windows_leaves_at_most_one_window_unknown(tmp_path: Path,
                                                                 location: Path | str) -> None:
    """A sender with 8 messages in flight is killed while the sink holds 30 % of them;
    the rerun sends everyone else exactly once, and at most 8 (one window) are unknown."""
    script = tmp_path / "sender.py"
    script.write_text(SENDER_SCRIPT)
    n, window = 600, 8
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}

    def sender(port: int, run: str, resend: bool = False) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(script), str(location), str(port), run, str(n), str(window),
             "1" if resend else "0", str(tmp_path)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)

    with smtp_sink(SlowSink(delay=0.01)) as (port, handler):
        proc = sender(port, "run-1")
        deadline = time.monotonic() + 180
        while sum(handler.received.values()) < n * 0.3 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        first = sum(handler.received.values())
        assert n * 0.3 <= first < n, first
        # what the killed sender had on the wire lands or not; then the count is still
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            before = sum(handler.received.values())
            time.sleep(0.5)
            if sum(handler.received.values()) == before:
                break

        rerun = sender(port, "run-2")
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err.decode()
        final = states(location)
        assert len(final) == n
        assert max(handler.received.values()) == 1, "a customer was sent twice"
        unknown = {cid for cid, state in final.items() if state == "unknown"}
        assert set(final.values()) <= {"sent", "unknown"}
        assert len(unknown) <= window
        got = {rcpt.split("@")[0] for rcpt in handler.received}
        assert got | unknown == set(final)  # nobody skipped silently
        assert all(cid in got for cid, state in final.items() if state == "sent")

        # --resend-unknown sends exactly those, once each
        before = Counter(handler.received)
        resend = sender(port, "run-3", resend=True)
        _, err = resend.communicate(timeout=300)
        assert resend.returncode == 0, err.decode()
        again = Counter(handler.received) - before
        assert {rcpt.split("@")[0] for rcpt in again} == unknown
        assert set(states(location).values()) == {"sent"}


# --- one send rate for every worker -----------------------------------------------------

@dataclass
class ClockedSink(SinkHandler):
    """Notes when each message arrived (the server's clock: one clock for all senders)."""

    arrivals: list[float] | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.arrivals is None:
            self.arrivals = []
        self.arrivals.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


RATED_SENDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path[:0] = [".", "tests"]
    from fixtures_delivery import make_delivery
    from publishers.smtp import SmtpPublisher

    port, store, rate, n, index, go = sys.argv[1:7]
    options = {"rate": float(rate)}
    if store != "-":
        options["rate_store"] = store
    with SmtpPublisher(f"smtp://127.0.0.1:{port}", options=options) as publisher:
        Path(go + f".ready{index}").touch()
        deadline = time.monotonic() + 120
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        for i in range(int(n)):
            outcome = publisher.publish(make_delivery(f"p{index}-{i}"))
            assert outcome.status == "sent", outcome
""")


def rate_of_four_senders(tmp_path: Path, store: str, rate: float, each: int) -> float:
    """Four processes send `each` messages through SMTP with one `rate`; the rate the
    server saw, from the first arrival to the last."""
    script, go = tmp_path / "rated.py", tmp_path / "go"
    script.write_text(RATED_SENDER)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
    with smtp_sink(ClockedSink()) as (port, handler):
        procs = [subprocess.Popen([sys.executable, str(script), str(port), store, str(rate),
                                   str(each), str(i), str(go)], cwd=ROOT, env=env,
                                  stderr=subprocess.PIPE) for i in range(4)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
                Path(f"{go}.ready{i}").exists() or procs[i].poll() is not None
                for i in range(4)):
            time.sleep(0.02)
        go.touch()
        for proc in procs:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err.decode()
        arrivals = sorted(handler.arrivals or [])
    assert len(arrivals) == 4 * each
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


def test_four_processes_share_one_send_rate(tmp_path: Path, location: Path | str) -> None:
    store = str(tmp_path / "rate.sqlite") if isinstance(location, Path) else location
    measured = rate_of_four_senders(tmp_path, store, rate=40.0, each=30)
    assert 36.0 <= measured <= 44.0, measured  # within 10 % of the one limit


def test_without_a_rate_store_each_process_has_its_own_rate(tmp_path: Path) -> None:
    """The control: the per-process bucket lets four processes send about 4 × the rate."""
    measured = rate_of_four_senders(tmp_path, "-", rate=10.0, each=15)
    assert measured > 20.0, measured


def test_domain_throttle_backs_off_on_pushback_and_paces_domains() -> None:
    from edition.send.rate import DomainThrottle, is_throttling

    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    throttle = DomainThrottle({"gmail.com": 2.0}, backoff=1.0, longest=4.0,
                              clock=lambda: now[0], sleep=sleep)
    assert [throttle.wait("a@GMail.com") for _ in range(3)] == [0.0, 0.5, 0.5]
    assert throttle.wait("b@yahoo.com") == 0.0  # no rate for yahoo: not paced
    for reason in ("421 4.7.0 Try again later", "451 4.3.0 Temporary local problem"):
        throttle.outcome("b@yahoo.com", "failed", reason)
    assert throttle.pause_for("c@yahoo.com") == 2.0  # 1 s, then doubled
    assert throttle.wait("c@yahoo.com") == 2.0
    for _ in range(5):
        throttle.outcome("c@yahoo.com", "failed", "ThrottlingException: Maximum sending rate "
                                                  "exceeded. (after 5 attempts)")
    assert throttle.pause_for("c@yahoo.com") == 4.0  # capped
    throttle.outcome("c@yahoo.com", "sent", None)
    assert throttle.pause_for("c@yahoo.com") == 0.0
    assert not is_throttling("failed", "550 5.1.1 no such user")
    assert not is_throttling("sent", "421 odd but sent")
    assert is_throttling("failed", "TooManyRequestsException: slow down")


def test_ses_reads_the_account_rate_when_none_is_set(moto_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from fixtures_delivery import AWS_ENV, make_delivery, moto_reset, moto_sent_raw

    from publishers import open_publisher

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    moto_reset(moto_url)
    import boto3

    account = boto3.client("ses", endpoint_url=moto_url, region_name="us-east-1")
    quota = account.get_send_quota()["MaxSendRate"]  # what moto's account allows
    boto3.client("sesv2", endpoint_url=moto_url, region_name="us-east-1").create_email_identity(
        EmailIdentity="news@acme.example")
    with open_publisher("ses", out_dir=tmp_path, options={
            "endpoint_url": moto_url, "account_rate": True}) as pub:
        assert pub.limiter.rate == quota  # type: ignore[attr-defined]
        assert pub.publish(make_delivery("c1")).status == "sent"
    with open_publisher("ses", out_dir=tmp_path, options={
            "endpoint_url": moto_url, "account_rate": True, "rate": 50}) as pub:
        assert pub.limiter.rate == 50  # type: ignore[attr-defined]  # set: kept
    assert len(moto_sent_raw(moto_url)) == 1


def test_smtp_pauses_a_domain_after_a_4xx_and_not_the_others(tmp_path: Path) -> None:
    from fixtures_delivery import make_delivery

    from publishers.smtp import SmtpPublisher

    sink = ClockedSink(tempfail_once={"a@yahoo.example"})
    with smtp_sink(sink) as (port, handler):
        with SmtpPublisher(f"smtp://127.0.0.1:{port}", options={
                "attempts": 1, "domain_backoff": 0.5}) as pub:
            first = pub.publish(make_delivery("a", "a@yahoo.example"))
            assert first.status == "failed" and first.reason.startswith("451")
            assert pub.throttle.pause_for("b@yahoo.example") > 0
            assert pub.throttle.pause_for("x@gmail.example") == 0
            failed_at = time.monotonic()
            assert pub.publish(make_delivery("b", "b@yahoo.example")).status == "sent"
            # the server saw the next yahoo message only after the pause
            assert (handler.arrivals or [0.0])[-1] - failed_at >= 0.45
            assert pub.throttle.pause_for("c@yahoo.example") == 0  # it went through: reset
        assert handler.received["b@yahoo.example"] == 1


def test_deliver_many_calls_ses_concurrently_and_sends_each_once(
        moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import boto3
    from fixtures_delivery import AWS_ENV, moto_reset, moto_sent_raw

    from edition.send.delivery import Deliverer

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    moto_reset(moto_url)
    boto3.client("sesv2", endpoint_url=moto_url, region_name="us-east-1").create_email_identity(
        EmailIdentity="news@acme.example")
    deliverer = Deliverer(target="ses", options={"endpoint_url": moto_url, "connections": 8},
                          ledger=tmp_path / "l.sqlite", campaign=C, mailing="m1",
                          run_id="r1", out_dir=tmp_path)
    lock, calls = threading.Lock(), {"now": 0, "most": 0}
    try:
        deliverer.publisher.open()
        real = deliverer.publisher.client.send_email  # type: ignore[attr-defined]

        def send_email(**kwargs: Any) -> Any:  # SES's latency, and who is waiting at once
            with lock:
                calls["now"] += 1
                calls["most"] = max(calls["most"], calls["now"])
            try:
                time.sleep(0.1)
                return real(**kwargs)
            finally:
                with lock:
                    calls["now"] -= 1

        monkeypatch.setattr(deliverer.publisher.client, "send_email", send_email)
        sent = deliverer.deliver_many(messages(24), in_flight=8)
    finally:
        deliverer.close()
    assert [s.status for s in sent] == ["sent"] * 24
    assert calls["most"] >= 4, calls
    raw = moto_sent_raw(moto_url)
    # (moto lists a recipient once per header and envelope: count messages, not entries)
    assert Counter(d for m in raw for d in set(m["destinations"])) == Counter(
        {f"c{i:04d}@example.com": 1 for i in range(24)})
    assert set(states(tmp_path / "l.sqlite").values()) == {"sent"}


def test_shared_rate_leases_and_errors(tmp_path: Path) -> None:
    from edition.errors import DeliveryError
    from edition.send.rate import SharedRate

    rate = SharedRate(tmp_path / "rate.sqlite", 50.0, take=4)  # 4 slots per round trip
    try:
        times = []
        for _ in range(41):
            rate.acquire()
            times.append(time.monotonic())
    finally:
        rate.close()
    assert (len(times) - 1) / (times[-1] - times[0]) <= 55.0  # the lease keeps the pace
    with pytest.raises(DeliveryError, match="above 0"):
        SharedRate(tmp_path / "r.sqlite", 0)
    from fixtures_postgres import free_port

    dead = SharedRate(f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x", 10.0)
    with pytest.raises(DeliveryError, match="unavailable") as caught:
        dead.acquire()
    assert "hunter2" not in str(caught.value)


def test_a_campaigns_in_flight_overlaps_run_send_and_approved_send(
        content_tree: Any, cli: Any) -> None:
    """`delivery.in_flight` reaches real sends: `edition run --send` and `edition send` of
    an approved run keep several messages in flight, each recipient mailed once."""
    from cadence_content import campaign, house, people
    from conftest import read_manifest

    with smtp_sink(SlowSink(delay=0.3)) as (port, handler):
        delivery = {"to": f"smtp://127.0.0.1:{port}", "in_flight": 6, "connections": 6}
        root = house(content_tree, people(24), **{
            "news-a": campaign("news-a", delivery=delivery),
            "news-b": campaign("news-b", delivery=delivery)})
        code, out, err = cli("run", "campaigns/news-a.yaml", "--send", "--yes", "--out",
                             "out/a", cwd=root)
        assert code == 0, out + err
        assert {r["status"] for r in read_manifest(root / "out" / "a")} == {"sent"}
        assert handler.most >= 2, handler.most          # the waits overlapped
        assert sum(handler.received.values()) == 24
        handler.most = 0
        code, out, err = cli("run", "campaigns/news-b.yaml", "--out", "out/b", cwd=root)
        assert code == 0, out + err
        code, out, err = cli("approve", "out/b", "--by", "Ann", "--yes", cwd=root)
        assert code == 0, out + err
        code, out, err = cli("send", "out/b", "--yes", cwd=root)
        assert code == 0, out + err
        assert handler.most >= 2, handler.most
        assert handler.received == Counter({f"c{i:03d}@example.com": 2 for i in range(24)})
        # again: the ledger says already sent, nobody is mailed a third time
        code, out, err = cli("send", "out/b", "--yes", cwd=root)
        assert sum(handler.received.values()) == 48, out + err


def test_in_flight_out_of_range_is_a_campaign_error(content_tree: Any, cli: Any) -> None:
    from cadence_content import campaign, house, people

    root = house(content_tree, people(2), **{
        "news-a": campaign("news-a", delivery={"to": "local", "in_flight": 0})})
    code, _, err = cli("validate", "campaigns/news-a.yaml", cwd=root)
    assert code == 2 and "delivery.in_flight must be a whole number from 1 to 256" in err
    assert "news-a.yaml" in err and "Traceback" not in err


@dataclass
class BrokenAt(SinkHandler):
    """Drops the connection, with no reply, whenever `broken` is named at RCPT: with one
    attempt per message the SMTP target is unusable (DeliveryError) mid-window."""

    broken: str = ""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address == self.broken:
            server.transport.abort()
            return "421 dropped"   # never reaches the client
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def test_a_target_error_mid_window_leaves_no_sent_customer_shown_failed(
        content_tree: Any, cli: Any) -> None:
    """delivery.in_flight 4 and the target failing in the second window of the batch: the
    pipeline's placeholder rows for the customers in flight never reach the manifest (the
    batch raises, the lifecycle's repair lists its customers from their files): one row
    per customer, none the sink received is shown `failed`; the rerun sends the rest,
    each customer once."""
    from cadence_content import campaign, house, people
    from conftest import read_manifest

    ids = [f"c{i:03d}" for i in range(12)]
    with smtp_sink(BrokenAt(broken="c005@example.com")) as (port, first):
        delivery = {"to": f"smtp://127.0.0.1:{port}", "in_flight": 4, "connections": 4,
                    "attempts": 1}
        root = house(content_tree, people(12),
                     **{"news-a": campaign("news-a", delivery=delivery)})
        code, out, err = cli("run", "campaigns/news-a.yaml", "--send", "--yes", "--out",
                             "out/a", cwd=root)
    assert code == 1 and "Traceback" not in err, out + err
    rows = read_manifest(root / "out" / "a")
    assert [r["customer_id"] for r in rows] == ids            # one row each, in order
    received = {rcpt.split("@")[0] for rcpt in first.received}
    assert received >= {"c000", "c001", "c002", "c003"}         # the first window went out
    assert "c005" not in received
    shown = {r["customer_id"]: r["status"] for r in rows}
    assert all(shown[cid] in ("sent", "unknown") for cid in received), (shown, received)
    with ledger_at(root / "out" / "news-a" / "ledger.sqlite", readonly=True) as ledger:
        states = {e.customer_id: e.state for e in ledger.entries("news-a")}
    assert {cid for cid, state in states.items() if state == "sent"} == received

    with smtp_sink(SinkHandler()) as (port, second):
        code, out, err = cli("run", "campaigns/news-a.yaml", "--send", "--yes", "--out",
                             "out/a", "--to", f"smtp://127.0.0.1:{port}", cwd=root)
    assert code == 0, out + err
    rows = read_manifest(root / "out" / "a")
    assert [r["customer_id"] for r in rows] == ids
    assert {r["status"] for r in rows} == {"sent"}, rows
    again = {rcpt.split("@")[0] for rcpt in second.received}
    assert again == set(ids) - received and max(second.received.values()) == 1
    assert max(first.received.values()) == 1
