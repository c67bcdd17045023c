"""DKIM: messages signed with a generated key verify, `h=` covers the bulk-mail headers,
the signature survives a real SMTP hop, a real `edition run --send` signs every message,
and key problems are clear errors without the key."""

from __future__ import annotations

import base64
import datetime as dt
import pickle
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fixtures_delivery import make_delivery, smtp_sink
from fixtures_sending import CAMPAIGN, copy_site, edition, make_customers, manifest, set_delivery

from edition.content.campaign import Campaign, load_campaign
from edition.content.delivery_settings import Dkim as DkimConfig
from edition.errors import ContentError, RunError
from edition.render.list_headers import feedback_id, list_id, mailing_headers
from edition.render.unsubscribe import SECRET_ENV, UnsubscribeLinks
from edition.send.dkim import DkimKeyError, DkimSigner, applies_to, sign, signed_header_names
from publishers import open_publisher
from renderers.eml import MessageWriter

SECRET = "unsubscribe-secret-for-dkim-tests"
DOMAIN, SELECTOR = "acme.example", "s2026"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey, form: str = "pkcs1") -> bytes:
    fmt = (serialization.PrivateFormat.TraditionalOpenSSL if form == "pkcs1"
           else serialization.PrivateFormat.PKCS8)
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def dns_for(key: rsa.RSAPrivateKey, selector: str = SELECTOR,
            domain: str = DOMAIN) -> Callable[..., bytes | None]:
    """A resolver that serves the public key as `<selector>._domainkey.<domain>` TXT."""
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    wanted = f"{selector}._domainkey.{domain}.".encode()

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == wanted else None

    return lookup


@pytest.fixture
def campaign(content_tree: Callable[..., Path], rsa_key: rsa.RSAPrivateKey) -> Campaign:
    root = content_tree(
        templates={"t.html.j2": "<p>hi</p>"},
        campaigns={"weekly.yaml": {
            "name": "weekly-newsletter", "template": "t.html.j2",
            "slots": {"a": {"kind": "article"}}, "subject": "Your edition",
            "sender": "Acme Weekly <news@acme.example>",
            "unsubscribe_url": "https://acme.example/unsubscribe",
            "unsubscribe_mailto": "mailto:unsubscribe@acme.example",
            "delivery": {"to": "smtp://127.0.0.1:2525",
                         "dkim": {"domain": DOMAIN, "selector": SELECTOR,
                                  "key_file": "keys/dkim.pem"}}}},
        files={"keys/dkim.pem": pem(rsa_key).decode()})
    return load_campaign(root / "campaigns" / "weekly.yaml")


def message_for(campaign: Campaign, customer_id: str = "C000042",
                address: str = "ann.lee@example.com", mailing: str = "2026-11-30") -> bytes:
    """A message as the run builds it: the eml writer plus the bulk-mail headers."""
    links = UnsubscribeLinks.for_campaign(campaign, {SECRET_ENV: SECRET})
    assert links is not None
    writer = MessageWriter(sender=("Acme Weekly", "news@acme.example"),
                           date=dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC))
    headers = links.headers(customer_id, address) | mailing_headers(campaign, mailing)
    return writer.build(subject="Ann, your weekly edition – ünïcode", recipient=address,
                        recipient_name="Ann Lee", text="Hello Ann\n.\n", html="<p>Hello</p>",
                        msg_id=f"<{customer_id}.weekly@acme.example>", extra_headers=headers)


def h_tag(signed: bytes) -> list[str]:
    head = signed.split(b"\r\n\r\n", 1)[0].decode()
    signature = re.search(r"^DKIM-Signature:(.*?)(?=^\S)", head, re.S | re.M)
    assert signature is not None
    tags = dict(t.strip().split("=", 1) for t in re.sub(r"\s+", " ", signature.group(1))
                .split(";") if "=" in t)
    return [n.strip() for n in tags["h"].split(":")]


def test_a_signed_message_verifies_and_covers_the_unsubscribe_headers(
        campaign: Campaign, rsa_key: rsa.RSAPrivateKey) -> None:
    assert campaign.dkim == DkimConfig(domain=DOMAIN, selector=SELECTOR,
                                       key_file="keys/dkim.pem")
    message = message_for(campaign)
    signed = sign(message, campaign.dkim, root=campaign.root)
    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert signed.endswith(message)
    assert dkim.verify(signed, dnsfunc=dns_for(rsa_key))
    names = h_tag(signed)
    for header in ("from", "to", "subject", "date", "message-id", "mime-version",
                   "content-type", "list-id", "feedback-id", "list-unsubscribe",
                   "list-unsubscribe-post"):
        assert header in names, header
    # oversigned: a second List-Unsubscribe(-Post) or From added later breaks it
    assert names.count("list-unsubscribe-post") == 2 and names.count("from") == 2


@pytest.mark.parametrize("change", [
    (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""),
    (b"Subject: ", b"Subject: Re: "),
    (b"MIME-Version: 1.0\r\n",
     b"MIME-Version: 1.0\r\nList-Unsubscribe: <https://evil.example/u>\r\n"),
    (b"Feedback-ID: weekly-newsletter", b"Feedback-ID: other"),
])
def test_a_changed_header_fails_verification(campaign: Campaign, rsa_key: rsa.RSAPrivateKey,
                                             change: tuple[bytes, bytes]) -> None:
    signed = sign(message_for(campaign), campaign.dkim, root=campaign.root)  # type: ignore[arg-type]
    old, new = change
    assert old in signed
    assert not dkim.verify(signed.replace(old, new, 1), dnsfunc=dns_for(rsa_key))


def test_the_signature_survives_a_real_smtp_hop(campaign: Campaign, rsa_key: rsa.RSAPrivateKey,
                                                tmp_path: Path) -> None:
    """Signed bytes through the SMTP publisher (dot-stuffing, CRLF) still verify."""
    signed = sign(message_for(campaign), campaign.dkim, root=campaign.root)  # type: ignore[arg-type]
    delivery = replace(make_delivery("C000042", "ann.lee@example.com"), eml=signed)
    with smtp_sink() as (port, sink), open_publisher(
            f"smtp://127.0.0.1:{port}", out_dir=tmp_path, options={"timeout": 30}) as publisher:
        outcome = publisher.publish(delivery)
    assert outcome.status == "sent"
    (_, _, received), = sink.messages
    assert dkim.verify(received, dnsfunc=dns_for(rsa_key))


def test_a_pkcs8_key_and_a_key_from_the_environment(rsa_key: rsa.RSAPrivateKey,
                                                    tmp_path: Path) -> None:
    message = make_delivery("c1").eml or b""
    key_file = tmp_path / "k8.pem"
    key_file.write_bytes(pem(rsa_key, "pkcs8"))
    from_file = DkimSigner.load(DkimConfig(domain=DOMAIN, selector=SELECTOR,
                                           key_file=str(key_file)))
    assert dkim.verify(from_file.sign(message), dnsfunc=dns_for(rsa_key))
    one_line = pem(rsa_key).decode().replace("\n", "\\n")  # how a secret store often has it
    from_env = DkimSigner.load(DkimConfig(domain=DOMAIN, selector=SELECTOR,
                                          key_env="EDITION_DKIM_KEY"),
                               environ={"EDITION_DKIM_KEY": one_line})
    assert dkim.verify(from_env.sign(message), dnsfunc=dns_for(rsa_key))


def test_key_problems_are_clear_errors_that_never_show_the_key(
        rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    def load(**where: Any) -> DkimSigner:
        return DkimSigner.load(DkimConfig(domain=DOMAIN, selector=SELECTOR, **where),
                               root=tmp_path, environ={})

    with pytest.raises(DkimKeyError, match=r"DKIM key not found: key file .*missing\.pem "
                                           r"does not exist") as missing:
        load(key_file="keys/missing.pem")
    assert isinstance(missing.value, RunError) and missing.value.exit_code == 1
    with pytest.raises(DkimKeyError, match="environment variable EDITION_DKIM_KEY is not set"):
        load(key_env="EDITION_DKIM_KEY")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n"
                       "-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(DkimKeyError, match="not a usable RSA private key") as bad:
        load(key_file=str(garbage))
    assert "bm90IGEga2V5" not in str(bad.value)
    (tmp_path / "cert.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    with pytest.raises(DkimKeyError, match="not a PEM private key"):
        load(key_file="cert.pem")
    key_file = tmp_path / "good.pem"
    key_file.write_bytes(pem(rsa_key))
    signer = load(key_file=str(key_file))
    body = pem(rsa_key).split(b"\n")[1].decode()
    assert body not in repr(signer)
    assert body.encode() not in pickle.dumps(signer)         # a copy reads the file again
    assert pickle.loads(pickle.dumps(signer)).sign(b"From: a@acme.example\r\n\r\nx\r\n")


def test_an_unreadable_key_file(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.pem"
    folder.mkdir()
    with pytest.raises(DkimKeyError, match="DKIM key unreadable"):
        DkimSigner.load(DkimConfig(domain=DOMAIN, selector=SELECTOR, key_file=str(folder)))


def test_dkim_in_the_campaign_is_checked_with_its_line(content_tree: Callable[..., Path]) -> None:
    root = content_tree(templates={"t.html.j2": "x"}, campaigns={"c.yaml": (
        "name: c\n"
        "template: t.html.j2\n"
        "slots: {a: {kind: article}}\n"
        "delivery:\n"
        "  to: smtp://127.0.0.1:25\n"
        "  dkim:\n"
        "    domain: acme.example\n"
        "    selector: s1\n"
        "    key_file: k.pem\n"
        "    key_env: K\n")})
    with pytest.raises(ContentError, match=r"c.yaml:7: dkim needs exactly one of key_file"):
        load_campaign(root / "campaigns" / "c.yaml")
    (root / "campaigns" / "c.yaml").write_text(
        "name: c\ntemplate: t.html.j2\nslots: {a: {kind: article}}\n"
        "delivery: {to: local, dkim: {domain: 'not a domain', selector: s1, key_env: K}}\n")
    with pytest.raises(ContentError, match=r"c.yaml:4: dkim.domain 'not a domain'"):
        load_campaign(root / "campaigns" / "c.yaml")


def test_ses_signs_its_own() -> None:
    assert applies_to("smtp://mail.acme.example:587") and applies_to("smtps://m:465")
    assert not applies_to("ses") and not applies_to("ses://eu-west-1")
    assert not applies_to("local") and not applies_to("s3://bucket/x")


def test_list_id_and_feedback_id(campaign: Campaign) -> None:
    assert list_id("weekly-newsletter", "acme.example") == "<weekly-newsletter.acme.example>"
    assert list_id("x", "acme.example", configured="weekly.acme.example") == \
        "<weekly.acme.example>"
    assert feedback_id("weekly-newsletter", "2026-11-30", "marketing", "acme") == \
        "weekly-newsletter:2026-11-30:marketing:acme"
    # ':' separates the fields, so a mailing key like spring:2027 cannot keep it
    assert feedback_id("w", "spring:2027", "marketing", "acme") == "w:spring-2027:marketing:acme"
    assert mailing_headers(campaign, "2026-11-30") == {
        "List-Id": "<weekly-newsletter.acme.example>",
        "Feedback-ID": "weekly-newsletter:2026-11-30:marketing:acme.example"}
    bill = campaign.model_copy(update={"kind": "transactional", "feedback_id": "acme-billing"})
    assert mailing_headers(bill, "2026-12") == {
        "Feedback-ID": "weekly-newsletter:2026-12:transactional:acme-billing"}


def test_signed_header_names_follow_the_message() -> None:
    message = (b"From: a@acme.example\r\nTo: b@example.com\r\nX-Other: 1\r\n"
               b"Received: from somewhere\r\nSubject: hi\r\n  folded\r\n\r\nbody\r\n")
    names = signed_header_names(message)
    assert names.count("from") == 2 and names.count("subject") == 2
    assert "x-other" not in names and "received" not in names
    assert "list-unsubscribe-post" in names    # absent: signed as absent (oversigned)


def test_a_real_send_signs_every_message(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    """`edition run --send` of the sample newsletter to an SMTP sink, with `delivery.dkim`:
    every message at the sink verifies against the published key and signs the bulk-mail
    headers; the key appears in none of the run's outputs."""
    site = copy_site(tmp_path / "site")
    (site / "keys").mkdir()
    (site / "keys" / "dkim.pem").write_bytes(pem(rsa_key))
    customers = make_customers(15, tmp_path / "customers.csv")
    out = tmp_path / "sent"
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}",
                            "dkim": {"domain": DOMAIN, "selector": SELECTOR,
                                     "key_file": "keys/dkim.pem"}})
        code, stdout, stderr = edition("run", CAMPAIGN, "--customers", customers, "--out", out,
                                       "--as-of", "2026-11-23", "--send", "--yes", cwd=site)
        assert code == 0, stdout + stderr
    assert {r["status"] for r in manifest(out)} == {"sent"}
    assert len(sink.messages) == 15
    resolver = dns_for(rsa_key)
    for _, recipients, received in sink.messages:
        assert dkim.verify(received, dnsfunc=resolver), recipients
        names = h_tag(received)
        assert {"from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post",
                "list-id", "feedback-id"} <= set(names), names
        head = received.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click" in head
        assert re.search(rb"d=acme\.example;", head) and re.search(rb"s=s2026;", head)
        # a changed Subject (as a meddling relay would make it) no longer verifies
        tampered = re.sub(rb"(?m)^Subject: ", b"Subject: [EXT] ", received, count=1)
        assert not dkim.verify(tampered, dnsfunc=resolver)
    body = pem(rsa_key).split(b"\n")[1]
    for path in [p for p in out.rglob("*") if p.is_file()]:
        assert body not in path.read_bytes(), path
    assert body.decode() not in stdout + stderr
