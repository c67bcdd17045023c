"""Shared helpers for the publisher tests: sample deliveries, an SMTP sink, a moto server.

Imported explicitly by the test files (not a conftest), and bound to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import socket
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from publishers.base import Delivery

SENDER = "Acme News <news@acme.example>"


def make_eml(customer_id: str, to: str, *, sender: str = SENDER,
             size: int = 0) -> tuple[bytes, str]:
    """A small RFC 5322 message (CRLF) for one customer, and its Message-ID."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"Your spring edition, {customer_id}"
    message_id = make_msgid(domain="acme.example")
    msg["Message-ID"] = message_id
    body = f"Hello {customer_id},\n.\n.leading dot line\nSee you.\n" + "x" * size
    msg.set_content(body)
    return msg.as_bytes(), message_id


def make_delivery(customer_id: str = "c1", to: str | None = None, *, campaign: str = "spring",
                  eml: bool = True, files: dict[str, tuple[str, bytes, str]] | None = None,
                  size: int = 0) -> Delivery:
    """A Delivery as the engine would build it."""
    to = to if to is not None else f"{customer_id}@example.com"
    data, message_id = make_eml(customer_id, to, size=size) if eml else (None, "")
    digest = hashlib.sha256(f"{campaign}/{customer_id}".encode()).hexdigest()
    return Delivery(campaign=campaign, customer_id=customer_id, recipient=to if eml else None,
                    content_hash=digest, message_id=message_id, eml=data, files=files or {})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- SMTP sink ------------------------------------------------------------------------------


@dataclass
class SinkHandler:
    """aiosmtpd handler that stores messages and injects faults on request."""

    reject: dict[str, str] = field(default_factory=dict)  # rcpt -> "550 ..." reply
    tempfail_once: set[str] = field(default_factory=set)  # rcpt answered 451 once
    drop_on_mail: int = 0  # drop the connection at the next N MAIL commands
    drop_after_data: set[str] = field(default_factory=set)  # rcpt: store, then drop, no reply
    delay: float = 0.0  # seconds before answering DATA
    data_reply: dict[str, str] = field(default_factory=dict)  # rcpt -> final reply (not stored)
    received: Counter[str] = field(default_factory=Counter)  # rcpt -> messages stored
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    peers: set[Any] = field(default_factory=set)  # one per connection
    logins: list[str] = field(default_factory=list)
    commands: Counter[str] = field(default_factory=Counter)
    mail_options: list[list[str]] = field(default_factory=list)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.peers.add(session.peer)
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.commands["MAIL"] += 1
        if self.drop_on_mail > 0:
            self.drop_on_mail -= 1
            server.transport.abort()
            return "421 dropped"  # never reaches the client
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self.mail_options.append(list(mail_options))
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return self.reject[address]
        if address in self.tempfail_once:
            self.tempfail_once.discard(address)
            return "451 4.3.0 Temporary local problem, try again"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.data_reply:
                return self.data_reply[rcpt]
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        for rcpt in envelope.rcpt_tos:
            self.received[rcpt] += 1
        if self.delay:  # stored already: a client giving up now leaves it delivered
            await asyncio.sleep(self.delay)
        if set(envelope.rcpt_tos) & self.drop_after_data:
            server.transport.abort()  # the message is stored, the reply is lost
            return "250 never seen"
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"


class _Authenticator:
    def __init__(self, handler: SinkHandler, user: str, password: str, echo: bool = False):
        self.handler, self.user, self.password, self.echo = handler, user, password, echo

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            ok = login == self.user and auth_data.password.decode() == self.password
            if ok:
                self.handler.logins.append(login)
            elif self.echo:  # a careless server: it repeats what it was sent
                blob = base64.b64encode(b"\0" + auth_data.login + b"\0" + auth_data.password)
                return AuthResult(success=False, handled=False, message=(
                    f"535 5.7.8 bad login {blob.decode()} for "
                    f"{auth_data.login.decode()}:{auth_data.password.decode()}"))
            return AuthResult(success=ok, handled=False)  # handled=False: send the 535
        return AuthResult(success=False, handled=False)


@contextmanager
def smtp_sink(handler: SinkHandler | None = None, *, auth: tuple[str, str] | None = None,
              tls_context: Any = None, smtputf8: bool = True, echo_login: bool = False
              ) -> Iterator[tuple[int, SinkHandler]]:
    """Run an aiosmtpd server on 127.0.0.1; yields (port, handler).

    `echo_login`: a refused login is answered with a 535 that repeats the credentials.
    """
    handler = handler or SinkHandler()
    kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
    if auth:
        kwargs.update(authenticator=_Authenticator(handler, *auth, echo=echo_login),
                      auth_require_tls=False)
    if tls_context is not None:
        kwargs.update(tls_context=tls_context)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            ready_timeout=10, **kwargs)
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()


# --- moto server ----------------------------------------------------------------------------

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_SESSION_TOKEN": "testing-session-token",
    "AWS_DEFAULT_REGION": "us-east-1",
    "NO_PROXY": "127.0.0.1,localhost",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server in this process on 127.0.0.1 and a free port; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server for one test module, with AWS_ENV set while it runs; its URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        with moto_server() as url:
            yield url


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def moto_reset(url: str) -> None:
    """Forget every bucket, identity and sent message."""
    _NO_PROXY.open(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10)


def moto_sent_raw(url: str) -> list[dict[str, Any]]:
    """Raw messages moto's SES has accepted (id, source, destinations, raw_data)."""
    with _NO_PROXY.open(f"{url}/moto-api/data.json", timeout=10) as resp:
        data = json.load(resp)
    return data.get("ses", {}).get("RawMessage", [])


def run_threads(count: int, target: Any, timeout: float = 60) -> None:
    """Run `target(i)` in `count` threads and wait (bounded) for all of them."""
    errors: list[BaseException] = []

    def wrap(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "thread did not finish in time"
    if errors:
        raise errors[0]


def self_signed_tls(tmp_dir: Any) -> tuple[Any, str]:
    """A server SSLContext for 127.0.0.1 with a fresh self-signed cert, and the cert's path."""
    import datetime as dt
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = f"{tmp_dir}/cert.pem"
    key_path = f"{tmp_dir}/key.pem"
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
