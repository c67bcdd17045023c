"""Headers always carry their address, and no credential reaches the console.

A non-ASCII sender name became a From of one encoded word with no usable address, a
2,000-character first name turned To into encoded words that swallowed the address,
and an SMTP server's 535 that echoed the login put the password on the console.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import yaml
from fixtures_delivery import smtp_sink
from fixtures_sending import CAMPAIGN, customers, edition, manifest, site  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st

from renderers.eml import address_header

NAMES = ["Zoë", "X" * 2000, "Ann \"Q\" O'Brien, Jr.", "Eve Bcc: x@evil.example", "名前 " * 300,
         "=?utf-8?q?Mallory?=", "\u202eevil", "a\u00a0b", "💌" * 700]


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_any_sender_name_keeps_its_address(site: Path, tmp_path: Path) -> None:
    path = site / CAMPAIGN
    campaign = yaml.safe_load(path.read_text(encoding="utf-8"))
    campaign["sender"] = "Ácme Ünicode News <news@acme.example>"
    path.write_text(yaml.safe_dump(campaign, allow_unicode=True), encoding="utf-8")
    rows = "id,email,first_name\nC1,c1@example.com," + "X" * 2000 + "\nC2,c2@example.com,Zoë\n"
    (tmp_path / "c.csv").write_text(rows, encoding="utf-8")
    code, stdout, stderr = edition("run", CAMPAIGN, "--customers", tmp_path / "c.csv", "--out",
                                   tmp_path / "out", "--as-of", "2026-11-23", cwd=site)
    assert code == 0, stdout + stderr
    for row in manifest(tmp_path / "out"):
        message = parsed((tmp_path / "out" / row["files"]["eml"]).read_bytes())
        [sender] = message["From"].addresses
        assert (sender.display_name, sender.addr_spec) == ("Ácme Ünicode News",
                                                            "news@acme.example")
        [to] = message["To"].addresses
        assert to.addr_spec == f"{row['customer_id'].lower()}@example.com"
        assert all(len(line) <= 998 for line in (tmp_path / "out" / row["files"]["eml"])
                   .read_bytes().split(b"\r\n"))


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(st.sampled_from(NAMES), st.text(max_size=300)),
       address=st.sampled_from(["a@example.com", "üser@example.com", "x.y+z@sub.example.org"]))
def test_a_display_name_never_swallows_the_address(name: str, address: str) -> None:
    header = address_header("To", name, address)
    assert header.endswith(b"\r\n") and b"\r\n\r\n" not in header
    assert all(line.startswith((b"To:", b" ")) for line in header.split(b"\r\n")[:-1])
    [found] = parsed(header + b"\r\n")["To"].addresses
    assert found.addr_spec.encode("utf-8", "surrogateescape").decode() == address


def test_a_server_echoing_the_login_never_puts_it_on_the_console(site: Path, customers,
                                                                  tmp_path: Path) -> None:
    path = customers(30)
    secret = "s3cr3t-Pa55word"
    env = {"EDITION_SMTP_USERNAME": "alice", "EDITION_SMTP_PASSWORD": secret}
    with smtp_sink(auth=("alice", "another-password"), echo_login=True) as (port, _):
        code, stdout, stderr = edition("run", CAMPAIGN, "--customers", path, "--out",
                                       tmp_path / "out", "--limit", 3, "--send", "--yes", "--to",
                                       f"smtp://127.0.0.1:{port}", cwd=site, env=env)
    assert code == 1 and "login refused" in stderr, stdout + stderr
    import base64

    blob = base64.b64encode(f"\0alice\0{secret}".encode()).decode().rstrip("=")
    for text in (stdout, stderr, *(p.read_text(errors="replace") for p in
                                   (tmp_path / "out").rglob("*") if p.is_file())):
        assert secret not in text and blob not in text
