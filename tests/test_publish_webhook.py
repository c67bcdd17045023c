"""The webhook target (publishers/webhook.py) against a real HTTP server on 127.0.0.1.

One signed JSON POST per edition; retried on 5xx (and only while the receiver cannot
have taken it), never on 4xx; a reply that never comes is `unknown` and is not sent
again. The end-to-end test drives the real `edition run --send`; the others talk to the
publisher directly, as the engine does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fixtures_delivery import make_delivery
from fixtures_sending import (  # noqa: F401 (fixtures)
    AS_OF,
    NAME,
    customer_rows,
    customers,
    edition,
    manifest,
    run_args,
    set_delivery,
    site,
)

from edition.content.plugins import target_plugin
from edition.errors import DeliveryError
from publishers.webhook import (
    SECRET_ENV,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookPublisher,
)

SECRET = "webhook-tests-secret-0123456789"


class Receiver:
    """What the server was sent, and how it answers each customer's attempts in turn."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[str, list[str]] = {}   # customer id -> "500", "drop", ...
        self.lock = threading.Lock()

    def answer_for(self, body: dict[str, Any]) -> str:
        with self.lock:
            planned = self.answers.get(str(body.get("customer_id")), [])
            return planned.pop(0) if planned else "200"

    def by_customer(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for request in self.requests:
            found.setdefault(request["json"]["customer_id"], []).append(request)
        return found


@contextmanager
def receiver() -> Iterator[tuple[str, Receiver]]:
    """An HTTP server on 127.0.0.1 (a free port) that records every POST."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            parsed = json.loads(body)
            with state.lock:
                state.requests.append({"headers": dict(self.headers), "body": body,
                                       "json": parsed, "path": self.path})
            answer = state.answer_for(parsed)
            if answer == "drop":           # took the request, then lost the reply
                self.close_connection = True
                return
            if answer == "slow":
                time.sleep(3)
            try:
                self.send_response(int(answer) if answer != "slow" else 200)
                self.send_header("Content-Length", "2")
                self.send_header("X-Request-Id", f"req-{len(state.requests)}")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass   # the client gave up waiting ("slow"): what the test is about

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/edition", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def signed_correctly(request: dict[str, Any], secret: str = SECRET) -> bool:
    timestamp = request["headers"][TIMESTAMP_HEADER]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request["body"],
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(request["headers"][SIGNATURE_HEADER], f"sha256={expected}")


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return SECRET


# --- through the real command ------------------------------------------------------------


def test_a_send_posts_each_edition_once_signed_and_the_ledger_keeps_it_once(
        site: Path, customers: Callable[[int], Path], tmp_path: Path) -> None:
    path = customers(8)
    people = customer_rows(path)
    ids = [p["id"] for p in people]
    flaky, refused, lost = ids[1], ids[2], ids[3]
    env = {SECRET_ENV: SECRET}
    with receiver() as (url, state):
        state.answers = {flaky: ["500", "503"], refused: ["400"], lost: ["drop"]}
        set_delivery(site, {"to": url, "backoff": [0.05], "timeout": 10})
        started = time.time()
        code, out, err = edition(*run_args(path, tmp_path / "run1"), "--send", "--yes",
                                 cwd=site, env=env)
        assert code == 3, out + err     # one failed, one unknown: more than max_failed 0
        rows = {r["customer_id"]: r for r in manifest(tmp_path / "run1")}
        assert rows[refused]["status"] == "failed" and "HTTP 400" in rows[refused]["reason"]
        assert rows[lost]["status"] == "unknown"
        assert {rows[i]["status"] for i in ids if i not in (refused, lost)} == {"sent"}

        sent = state.by_customer()
        # one request per customer; the flaky one three times (500, 503, then 200)
        assert {i: len(sent[i]) for i in ids} == {i: 3 if i == flaky else 1 for i in ids}
        assert len({r["body"] for r in sent[flaky]}) == 1
        assert len({r["headers"]["Idempotency-Key"] for r in sent[flaky]}) == 1
        for request in state.requests:
            assert signed_correctly(request)
            assert not signed_correctly(request, "another-secret-0123456789")
            assert started - 5 <= int(request["headers"][TIMESTAMP_HEADER]) <= time.time() + 5
            assert SECRET not in json.dumps(request["headers"]) + request["body"].decode()
        for person in people:
            body = sent[person["id"]][0]["json"]
            eml = (tmp_path / "run1" / "eml" / f"{person['id']}.eml").read_bytes()
            message = BytesParser(policy=policy.default).parsebytes(eml)
            assert body["campaign"] == NAME and body["mailing"] == AS_OF
            assert body["address"] == person["email"]
            assert body["subject"] == str(message["Subject"]) and body["subject"]
            assert body["html"] == (tmp_path / "run1" / "html" / f"{person['id']}.html"
                                    ).read_text(encoding="utf-8")
            assert body["text"] == (tmp_path / "run1" / "text" / f"{person['id']}.txt"
                                    ).read_text(encoding="utf-8")

        # the same mailing again: only the refused customer is tried again; the one
        # whose reply was lost may have been received, so it is not sent twice
        before = len(state.requests)
        code, out, err = edition(*run_args(path, tmp_path / "run2"), "--send", "--yes",
                                 cwd=site, env=env)
        assert code == 3, out + err     # the unknown one stays unknown
        again = [r["json"]["customer_id"] for r in state.requests[before:]]
        assert again == [refused]
        rows = {r["customer_id"]: r for r in manifest(tmp_path / "run2")}
        assert rows[refused]["status"] == "sent" and rows[lost]["status"] == "unknown"


def test_credentials_stay_out_of_the_campaign(site: Path, customers: Callable[[int], Path],
                                              tmp_path: Path) -> None:
    set_delivery(site, {"to": "https://hooks.acme.example/edition", "secret": SECRET})
    code, out, err = edition("validate", "campaigns/weekly-newsletter.yaml", cwd=site)
    assert code == 2, out + err
    assert "unknown delivery option 'secret'" in err and SECRET not in out + err
    set_delivery(site, {"to": "https://bob:hunter22@hooks.acme.example/edition"})
    code, out, err = edition("validate", "campaigns/weekly-newsletter.yaml", cwd=site)
    assert code == 2 and "must not hold credentials" in err and "hunter22" not in out + err
    # without the secret in the environment nothing is sent (exit 1, the variable named)
    with receiver() as (url, state):
        set_delivery(site, {"to": url})
        code, out, err = edition(*run_args(customers(8), tmp_path / "run"), "--send",
                                 "--yes", cwd=site, env={SECRET_ENV: ""})
        assert code == 1 and SECRET_ENV in err, out + err
        assert state.requests == []


# --- the publisher, as the engine drives it ----------------------------------------------


def publisher(url: str, **options: Any) -> WebhookPublisher:
    return WebhookPublisher(url, out_dir=Path("."),
                            options={"backoff": [0.01], "timeout": 5, **options})


def test_retries_on_500_then_succeeds_and_never_retries_a_400(secret: str) -> None:
    with receiver() as (url, state), publisher(url) as target:
        state.answers = {"c1": ["500", "500"], "c2": ["400"], "c3": ["503"] * 9}
        assert target.publish(make_delivery("c1")).status == "sent"
        refused = target.publish(make_delivery("c2"))
        assert refused.status == "failed" and "HTTP 400" in str(refused.reason)
        gave_up = target.publish(make_delivery("c3"))
        assert gave_up.status == "failed" and "after 4 attempts" in str(gave_up.reason)
        counts = {k: len(v) for k, v in state.by_customer().items()}
        assert counts == {"c1": 3, "c2": 1, "c3": 4}
        assert all(signed_correctly(r) for r in state.requests)


def test_a_lost_or_late_reply_is_unknown_and_not_retried(secret: str) -> None:
    with receiver() as (url, state), publisher(url, timeout=1) as target:
        state.answers = {"c1": ["drop"], "c2": ["slow"]}
        lost = target.publish(make_delivery("c1"))
        late = target.publish(make_delivery("c2"))
        assert (lost.status, late.status) == ("unknown", "unknown")
        assert "may have been received" in str(lost.reason)
        assert {k: len(v) for k, v in state.by_customer().items()} == {"c1": 1, "c2": 1}


def test_a_refused_signature_or_no_server_stops_the_run(secret: str) -> None:
    with receiver() as (url, state), publisher(url) as target:
        state.answers = {"c1": ["401"]}
        with pytest.raises(DeliveryError, match=SECRET_ENV):
            target.publish(make_delivery("c1"))
        assert len(state.requests) == 1
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with publisher(f"http://127.0.0.1:{port}/x", attempts=2) as target, \
            pytest.raises(DeliveryError, match="cannot reach"):
        target.publish(make_delivery("c1"))


def test_targets_and_secrets_are_checked_before_anything_is_sent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DeliveryError, match="unencrypted"):
        WebhookPublisher("http://hooks.acme.example/x")
    assert WebhookPublisher("http://hooks.acme.example/x", options={"insecure_http": True})
    with pytest.raises(DeliveryError, match="credentials") as caught:
        WebhookPublisher("https://bob:hunter22@hooks.acme.example/x")
    assert "hunter22" not in str(caught.value)
    with pytest.raises(DeliveryError, match="unknown delivery option 'secrte'"):
        WebhookPublisher("https://hooks.acme.example/x", options={"secrte": "x"})
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(DeliveryError, match="at least 16"):
        WebhookPublisher("https://hooks.acme.example/x").__enter__()
    plugin = target_plugin("https://hooks.acme.example/x")
    assert plugin is WebhookPublisher and plugin.channel == "webhook"
    assert not plugin.needs_email


def test_links_instead_of_the_edition_itself(secret: str) -> None:
    with receiver() as (url, state), \
            publisher(url, link_base="https://cdn.acme.example/editions/") as target:
        delivery = make_delivery("c1", files={
            "html": ("html/c1.html", b"<p>Hello</p>", "text/html"),
            "pdf": ("pdf/c1.pdf", b"%PDF-1.7", "application/pdf")})
        assert target.publish(delivery).status == "sent"
        body = state.requests[0]["json"]
        assert "html" not in body and "text" not in body
        assert body["links"] == {fmt: f"https://cdn.acme.example/editions/{rel}"
                                 for fmt, (rel, _, _) in delivery.files.items()}
