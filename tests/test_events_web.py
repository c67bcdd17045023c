"""SES events through SNS: `POST /events/ses` on the recipient web app (real HTTP on
127.0.0.1, messages signed as SNS signs them with a key made here), and
`edition events ingest sqs://...` from moto's SNS -> SQS in server mode.

Think like an attacker: anyone can POST to the endpoint, create an SNS topic of their
own and subscribe us to it, or name any URL as the "signing certificate" or the
"SubscribeURL". None of that may record anything, or make the server fetch anything but
an SNS host.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fixtures_delivery import AWS_ENV, free_port, moto_server
from fixtures_returned_mail import ses_notification
from fixtures_sending import copy_site, edition
from fixtures_web import running_web

from edition.addresses import address_hash
from edition.feedback.events.sns import SnsRefused, SnsVerifier, canonical, sns_url
from edition.render.message_identity import HEADER, make_value
from edition.render.unsubscribe import SECRET_ENV, secrets_from_env
from edition.store.events import EventStore
from edition.store.suppressions import SuppressionStore
from web.app import create_app
from web.events import MAX_EVENT_BODY, SesEndpoint

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
THEIRS = "arn:aws:sns:eu-west-1:999999999999:attacker"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123.pem"
SUBSCRIBE = ("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
             f"{TOPIC}&Token=abc")
DAY = dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def signer() -> tuple[Any, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


def signed(key: Any, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
    message = message | {"SignatureVersion": version, "SigningCertURL": CERT_URL}
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical(message), padding.PKCS1v15(), digest)
    return message | {"Signature": base64.b64encode(signature).decode()}


def notification(key: Any, customer: str, address: str, *, topic: str = TOPIC,
                 kind: str = "Bounce", version: str = "1") -> dict[str, Any]:
    secret = secrets_from_env()[0]
    header = make_value(campaign="weekly-newsletter", mailing="2026-11-23",
                        customer_id=customer, address=address, secret=secret)
    original = f"To: {address}\n{HEADER}: {header}\n\nhello\n".encode()
    envelope = ses_notification(kind, original, address, when=DAY)
    return signed(key, envelope | {"TopicArn": topic}, version)


@pytest.fixture
def server(tmp_path: Path, signer: tuple[Any, bytes]) -> Iterator[dict[str, Any]]:
    """The app on a real port, its certificate fetches and subscription confirmations
    recorded (the URL checks in front of them are the real ones)."""
    root = copy_site(tmp_path / "site")
    fetched: list[str] = []
    confirmed: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return signer[1]

    verifier = SnsVerifier(frozenset({TOPIC}), fetch=fetch)
    endpoint = SesEndpoint(root, secrets=secrets_from_env(), verifier=verifier,
                           confirm=confirmed.append)
    app = create_app(root, secrets=secrets_from_env(), events=endpoint)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                       lifespan="on"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield {"url": f"http://127.0.0.1:{port}/events/ses", "root": root, "fetched": fetched,
               "confirmed": confirmed, "store": root / "out" / "suppression.sqlite"}
    finally:
        uv.should_exit = True
        thread.join(timeout=60)


def post(url: str, body: Any) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=data, headers={"Content-Type": "text/plain"}, timeout=60,
                      trust_env=False)


def test_sns_messages_are_verified_then_recorded(server: dict[str, Any],
                                                 signer: tuple[Any, bytes]) -> None:
    key = signer[0]
    url = server["url"]
    # the subscription is confirmed by its SubscribeURL
    confirm = signed(key, {"Type": "SubscriptionConfirmation", "MessageId": "m-0",
                           "Token": "abc", "TopicArn": TOPIC, "Message": "confirm it",
                           "SubscribeURL": SUBSCRIBE, "Timestamp": "2026-11-24T08:00:00Z"})
    answer = post(url, confirm)
    assert answer.status_code == 200 and server["confirmed"] == [SUBSCRIBE]
    # a hard bounce (SignatureVersion 1) and a complaint (2)
    bounce = notification(key, "C1", "ann@example.com")
    assert post(url, bounce).json() == {"recorded": {"hard bounce": 1, "suppressed": 1}}
    assert post(url, bounce).json() == {"recorded": {"duplicate": 1}}   # SNS retried
    complaint = notification(key, "C2", "bob@example.com", kind="Complaint", version="2")
    assert post(url, complaint).status_code == 200
    assert server["fetched"] == [CERT_URL]     # fetched once, then kept
    with SuppressionStore(server["store"]) as store:
        assert {(e.customer_id, e.kind) for e in store.entries()} == \
            {("C1", "bounced"), ("C2", "complained")}

    # forged: the Message edited after signing; the attacker's own topic; not SNS at all
    forged = json.loads(json.dumps(notification(key, "C3", "cy@example.com")))
    forged["Message"] = forged["Message"].replace("Permanent", "Permanent ")
    theirs = notification(key, "C4", "di@example.com", topic=THEIRS)
    unsigned = notification(key, "C5", "ed@example.com") | {"Signature": "AAAA"}
    for body in (forged, theirs, unsigned):
        assert post(url, body).status_code == 403
    assert post(url, b"{not json").status_code == 400
    assert post(url, b"[" * 200_000 + b"]" * 200_000).status_code == 400   # nested deep
    assert post(url, b"x" * (MAX_EVENT_BODY + 1)).status_code == 413
    assert httpx.get(url, trust_env=False, timeout=60).status_code in (400, 405)  # records nothing
    # a confirmation that would make us fetch somewhere else
    elsewhere = signed(key, {"Type": "SubscriptionConfirmation", "MessageId": "m-9",
                             "Token": "abc", "TopicArn": TOPIC, "Message": "confirm it",
                             "SubscribeURL": "http://127.0.0.1:9/internal",
                             "Timestamp": "2026-11-24T08:00:00Z"})
    assert post(url, elsewhere).status_code == 403
    assert server["confirmed"] == [SUBSCRIBE]
    with EventStore(server["store"]) as events:
        assert sorted(e.customer_id for e in events.events()) == ["C1", "C2"]
    # the unsubscribe side of the app is still there
    health = httpx.get(url.replace("/events/ses", "/healthz"), trust_env=False, timeout=60)
    assert health.status_code == 200


@pytest.mark.parametrize("url", [
    "http://sns.us-east-1.amazonaws.com/x.pem",                  # not https
    "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",    # a host of theirs
    "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com@127.0.0.1/x.pem",       # user info: goes to 127.0.0.1
    "https://127.0.0.1/x.pem",
    "https://sns.us-east-1.amazonaws.com:8443/x.pem",            # another port
    "https://sns.us-east-1.amazonaws.com/x.pem?u=http://169.254.169.254/",
    "https://sns.us-east-1.amazonaws.com/x.txt",
    "https://SNS.us-east-1.amazonaws.com\\@127.0.0.1/x.pem",
    "file:///etc/passwd",
    "",
])
def test_the_certificate_comes_only_from_an_sns_host(url: str) -> None:
    """Checked before anything is fetched: a listener on 127.0.0.1 sees no connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        verifier = SnsVerifier(frozenset({TOPIC}))   # the real fetch
        message = {"Type": "Notification", "MessageId": "m", "TopicArn": TOPIC,
                   "Message": "{}", "Timestamp": "2026-11-24T08:00:00Z",
                   "SignatureVersion": "1", "Signature": "AAAA",
                   "SigningCertURL": url.replace("127.0.0.1", f"127.0.0.1:"
                                                 f"{listener.getsockname()[1]}")}
        with pytest.raises(SnsRefused):
            verifier.verify(message)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert sns_url(CERT_URL, suffix=".pem") == CERT_URL
    assert sns_url("https://sns.us-gov-west-1.amazonaws.com/a.pem", suffix=".pem")
    assert sns_url("https://sns.cn-north-1.amazonaws.com.cn/a.pem", suffix=".pem")


def test_no_topic_named_refuses_everything(signer: tuple[Any, bytes]) -> None:
    with pytest.raises(SnsRefused, match="EDITION_SNS_TOPIC_ARNS"):
        SnsVerifier(frozenset(), fetch=lambda url: signer[1]).verify(
            notification(signer[0], "C1", "ann@example.com"))


def test_ses_events_from_moto_sns_through_sqs(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """SES -> SNS topic -> SQS queue (moto in server mode); `edition events ingest
    sqs://QUEUE` records each event once, suppresses, and empties the queue."""
    root = copy_site(tmp_path / "site")
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    with moto_server() as url:
        sns = boto3.client("sns", endpoint_url=url, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1")
        topic = sns.create_topic(Name="ses-events")["TopicArn"]
        queue = sqs.create_queue(QueueName="ses-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        secret = secrets_from_env()[0]
        for n, kind in enumerate(("Bounce", "Complaint", "Delivery", "DeliveryDelay")):
            address = f"c{n}@example.com"
            header = make_value(campaign="weekly-newsletter", mailing="2026-11-23",
                                customer_id=f"C{n}", address=address, secret=secret)
            original = f"To: {address}\n{HEADER}: {header}\n\nhello\n".encode()
            note = ses_notification(kind, original, address, when=DAY)
            sns.publish(TopicArn=topic, Message=note["Message"])
        sqs.send_message(QueueUrl=queue, MessageBody="not json at all")
        env = AWS_ENV | {"AWS_ENDPOINT_URL_SQS": url, SECRET_ENV: secret.decode()}
        code, out, err = edition("events", "ingest", "sqs://ses-events", cwd=root, env=env)
        assert code == 0, out + err
        assert "1 complaint, 1 delay, 1 delivery, 1 hard bounce" in out, out
        assert "1 not an event" in out and "2 suppressed" in out, out
        left = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        # the bad one stays in the queue (in flight now); the others were deleted
        assert sum(int(v) for v in left["Attributes"].values()) == 1
    with SuppressionStore(root / "out" / "suppression.sqlite") as store:
        assert {(e.customer_id, e.kind) for e in store.entries()} == \
            {("C0", "bounced"), ("C1", "complained")}
    with EventStore(root / "out" / "suppression.sqlite") as events:
        assert {e.recipient_hash for e in events.events()} == \
            {address_hash(f"c{n}@example.com") for n in range(4)}


def test_the_real_server_refuses_unnamed_topics(tmp_path: Path,
                                                signer: tuple[Any, bytes]) -> None:
    """`edition unsubscribe-server` (the real CLI) serves POST /events/ses; with no topic
    named in EDITION_SNS_TOPIC_ARNS it takes nothing, and fetches nothing."""
    import os

    root = copy_site(tmp_path / "site")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("EDITION_SNS_TOPIC_ARNS",
                                                            "EDITION_STORE")}
    log = tmp_path / "server.log"
    with running_web(root, port, env, log, verb="unsubscribe-server") as url:
        answer = post(f"{url}/events/ses", notification(signer[0], "C1", "ann@example.com"))
        assert answer.status_code == 403
    assert "EDITION_SNS_TOPIC_ARNS" in log.read_text(errors="replace")
    assert not (root / "out" / "suppression.sqlite").exists()
