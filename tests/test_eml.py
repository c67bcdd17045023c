"""Email payloads: standard MIME a mail client reads back exactly, with no injectable header.

Each produced .eml is parsed with the stdlib (policy=default) and compared with a message
built purely with the stdlib's EmailMessage API for the same inputs.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edition.audience.customers import read_customers
from edition.render.encoding import Encoder
from edition.render.message_identity import read_value
from edition.render.plan import Plan
from edition.render.unsubscribe import secrets_from_env
from renderers.eml import MessageWriter

AS_OF = "2026-11-02"
SENDER = "Acme News <news@acme.example>"
UNSUBSCRIBE = "https://acme.example/unsubscribe"
SUBJECT = "{{ customer.first_name | default('Hello') }}, your news from Acme"
HEADERS = {"Subject", "From", "To", "Date", "Message-ID", "List-Unsubscribe",
           "List-Unsubscribe-Post", "List-Id", "Feedback-ID", "X-Edition-Campaign",
           "X-Edition-Version", "X-Edition-Id", "MIME-Version", "Content-Type"}
BREAKS = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
CUSTOMERS = [
    {"id": "c1", "email": "ann@example.com", "first_name": "Ann", "last_name": "Smith"},
    {"id": "c2", "email": "eve@example.com", "first_name": "Eve\r\nBcc: victim@evil.example",
     "last_name": "X\r\nCc: other@evil.example"},
    {"id": "c3", "email": "zoe@example.org", "first_name": "Zoë 🎉", "last_name": "Ñandú"},
    {"id": "c4", "email": "dana@example.com", "first_name": "שלום", "last_name": "עולם"},
    {"id": "c5", "email": "obrien@example.com", "first_name": 'O"Brien, Ann', "last_name": "<x>"},
    {"id": "c6", "email": "anon@example.com", "first_name": "", "last_name": ""},
    {"id": "c7", "email": "ew@example.com", "first_name": "=?utf-8?q?Bcc=3A_x?=",
     "last_name": "=?utf-8?q?y?="},
    {"id": "c8 long/odd", "email": "long@example.com", "first_name": "X" * 120,
     "last_name": "Y\u00a0Z"},
]


def one_line(value: str) -> str:
    return BREAKS.sub(" ", value).strip()


def normalized(body: str) -> str:
    return "\n".join(body.splitlines()).rstrip("\n")


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


@pytest.fixture(scope="module")
def eml_run(shared_content_tree, manifest_of) -> dict[str, Any]:
    from conftest import run_cli

    root = shared_content_tree(
        name="eml",
        campaigns={"news.yaml": {
            "name": "news", "template": "news.html.j2", "text_template": "news.txt.j2",
            "subject": SUBJECT, "sender": SENDER, "customers": "data/customers.csv",
            "slots": {"articles": {"kind": "article", "count": 1}},
            "formats": ["html", "text", "eml"], "unsubscribe_url": UNSUBSCRIBE}},
        templates={
            "news.html.j2": "<html><head><style>p { color: red }</style></head><body>"
                            "<p>Hi {{ customer.first_name | default('there') }}</p>"
                            "{% for a in articles %}{{ a.html }}{% endfor %}</body></html>\n",
            "news.txt.j2": "Hi {{ customer.first_name | default('there') }}\n"
                           "{% for a in articles %}{{ a.text }}{% endfor %}\n"},
        articles={"a.md": {"title": "A", "body": "Ünïcödé body, with a [link](https://x.example).\n"}},
        customers={"customers.csv": CUSTOMERS})
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    out = root / "out"
    rc, _, stderr = run_cli("run", "campaigns/news.yaml", "--out", str(out), "--as-of", AS_OF,
                            cwd=root)
    assert rc == 0, stderr
    plan = Plan.load(root / "campaigns" / "news.yaml", as_of=dt.date.fromisoformat(AS_OF))
    rendered = {}
    for row in read_customers(root / str(plan.campaign.customers), need_email=True):
        version = plan.version_of(dict(row.fields))[3]
        rendered[row.customer_id] = (dict(row.fields), plan.renderer.render(version, row.fields))
    return {"out": out, "rows": {r["customer_id"]: r for r in manifest_of(out)},
            "rendered": rendered, "before": before, "plan": plan}


def message_of(eml_run: dict[str, Any], cid: str) -> tuple[bytes, email.message.EmailMessage]:
    row = eml_run["rows"][cid]
    assert row["status"] == "rendered", row
    data = (eml_run["out"] / row["files"]["eml"]).read_bytes()
    return data, parse(data)


@pytest.mark.parametrize("cid", [c["id"] for c in CUSTOMERS])
def test_message_structure_and_headers(eml_run: dict[str, Any], cid: str) -> None:
    data, msg = message_of(eml_run, cid)
    fields, rendered = eml_run["rendered"][cid]
    assert not msg.defects
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert set(msg.keys()) == HEADERS and len(msg.items()) == len(HEADERS)
    assert "Bcc" not in msg and "Cc" not in msg
    assert msg["Subject"] == one_line(rendered.subject)
    assert msg["From"].addresses[0].addr_spec == "news@acme.example"
    assert msg["From"].addresses[0].display_name == "Acme News"
    assert msg["To"].addresses[0].addr_spec == fields["email"]
    name = " ".join(fields[k] for k in ("first_name", "last_name") if k in fields)
    assert msg["To"].addresses[0].display_name == one_line(name)
    date = parsedate_to_datetime(msg["Date"])
    assert date.tzinfo is not None and date >= eml_run["before"] - dt.timedelta(seconds=1)
    assert re.fullmatch(r"<[^<>@\s]+@acme\.example>", msg["Message-ID"])
    # a signed token, never the bare customer id (anyone could unsubscribe anyone)
    link = msg["List-Unsubscribe"]
    assert link.startswith(f"<{UNSUBSCRIBE}?token=") and f"={quote(cid, safe='')}>" not in link
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "<news.acme.example>"
    assert msg["Feedback-ID"].startswith(f"news:{AS_OF}:marketing:")
    assert msg["X-Edition-Version"] == eml_run["rows"][cid]["version"]
    # who it was for, as a bounce of it will say (signed, the id not readable)
    who = read_value(msg["X-Edition-Id"], secrets_from_env())
    assert who is not None and (who.campaign, who.mailing, who.customer_id) == \
        ("news", AS_OF, cid) and cid not in msg["X-Edition-Id"]
    # the bodies are the run's own html and text files
    row = eml_run["rows"][cid]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert text == (eml_run["out"] / row["files"]["text"]).read_text(encoding="utf-8")
    assert html == (eml_run["out"] / row["files"]["html"]).read_text(encoding="utf-8")


def test_subjects_read_back_exactly(eml_run: dict[str, Any]) -> None:
    subjects = {cid: message_of(eml_run, cid)[1]["Subject"] for cid in eml_run["rows"]}
    assert subjects["c1"] == "Ann, your news from Acme"
    assert subjects["c2"] == "Eve Bcc: victim@evil.example, your news from Acme"
    assert subjects["c3"] == "Zoë 🎉, your news from Acme"
    assert subjects["c4"] == "שלום, your news from Acme"
    assert subjects["c6"] == "Hello, your news from Acme"        # empty cell: default()
    assert subjects["c7"] == "=?utf-8?q?Bcc=3A_x?=, your news from Acme"
    assert subjects["c8 long/odd"] == "X" * 120 + ", your news from Acme"


def test_message_ids_are_distinct_and_depend_only_on_content(eml_run: dict[str, Any]) -> None:
    ids = {cid: message_of(eml_run, cid)[1]["Message-ID"] for cid in eml_run["rows"]}
    assert len(set(ids.values())) == len(ids)
    plan = eml_run["plan"]
    encoder = Encoder(plan.campaign, plan.formats, eml_run["before"])
    for cid, (fields, rendered) in eml_run["rendered"].items():
        version = plan.version_of(fields)[3]
        assert ids[cid] == encoder.message_id(encoder.content_hash(cid, version.digest, rendered))


def reference(msg: email.message.EmailMessage, *, subject: str, name: str, address: str,
              cid: str, version: str, text: str, html: str) -> email.message.EmailMessage:
    """The same message, built with nothing but the stdlib's EmailMessage API."""
    ref = EmailMessage()
    ref["Subject"] = one_line(subject)
    ref["From"] = Address("Acme News", addr_spec="news@acme.example")
    ref["To"] = Address(one_line(name), addr_spec=address)
    ref["Date"] = msg["Date"]
    ref["Message-ID"] = msg["Message-ID"]
    ref["List-Unsubscribe"] = msg["List-Unsubscribe"]
    ref["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    ref["List-Id"] = msg["List-Id"]
    ref["Feedback-ID"] = msg["Feedback-ID"]
    ref["X-Edition-Campaign"] = "news"
    ref["X-Edition-Version"] = version
    ref["X-Edition-Id"] = msg["X-Edition-Id"]
    ref.set_content(text)
    ref.add_alternative(html, subtype="html")
    return parse(ref.as_bytes(policy=email.policy.SMTP))


# (not c7/c8: for an encoded-word look-alike or a 120-letter name the stdlib itself writes
# a To header that reads back differently; ours reads back exactly, see above)
@pytest.mark.parametrize("cid", ["c1", "c2", "c3", "c4", "c5", "c6"])
def test_same_as_the_stdlib_message(eml_run: dict[str, Any], cid: str) -> None:
    _, msg = message_of(eml_run, cid)
    fields, rendered = eml_run["rendered"][cid]
    name = " ".join(fields[k] for k in ("first_name", "last_name") if k in fields)
    ref = reference(msg, subject=rendered.subject, name=name, address=fields["email"], cid=cid,
                    version=eml_run["rows"][cid]["version"], text=rendered.text,
                    html=rendered.html)
    assert sorted(msg.keys()) == sorted(ref.keys())
    for key in ref:
        if key in {"From", "To"}:
            assert [(a.display_name, a.addr_spec) for a in msg[key].addresses] == \
                   [(a.display_name, a.addr_spec) for a in ref[key].addresses], key
        elif key == "X-Edition-Id":
            # one word longer than a line: the stdlib folds it onto a line of its own and
            # reads the fold's space back; ours keeps it on one line (under 998 octets)
            assert str(msg[key]) == str(ref[key]).lstrip(), key
        elif key != "Content-Type":
            assert str(msg[key]) == str(ref[key]), key
    assert msg.get_content_type() == ref.get_content_type()
    for kind in ("plain", "html"):
        ours, theirs = msg.get_body((kind,)), ref.get_body((kind,))
        assert ours.get_content_type() == theirs.get_content_type()
        assert ours.get_content_charset() == theirs.get_content_charset() == "utf-8"
        # set_content() normalizes line ends and always ends the text with one
        assert normalized(ours.get_content()) == normalized(theirs.get_content())


HEADER_TEXT = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["Ann\r\nBcc: x@evil.example", "\nSubject: spoof", "=?utf-8?q?x?=",
                     "x" * 200, "a" + " " * 90 + "b", "Zoë 🎉 שלום", "\u2028\x85", "é" * 120]))


@settings(max_examples=200, deadline=None)
@given(subject=HEADER_TEXT, name=HEADER_TEXT)
def test_no_value_adds_or_changes_a_header(subject: str, name: str) -> None:
    writer = MessageWriter(sender=("Acme News", "news@acme.example"),
                           date=dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC))
    data = writer.build(subject=subject, recipient="ann@example.com", recipient_name=name,
                        text="plain\n", html="<p>html</p>", msg_id="<abc.news@acme.example>",
                        extra_headers={"List-Unsubscribe": f"<{UNSUBSCRIBE}?token=1>",
                                       "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    msg = parse(data)
    expected = HEADERS - {"X-Edition-Campaign", "X-Edition-Version", "X-Edition-Id", "List-Id",
                          "Feedback-ID"}
    assert set(msg.keys()) == expected
    assert len(msg.items()) == len(expected)
    assert msg["Subject"] == one_line(subject)
    assert msg["To"].addresses[0].addr_spec == "ann@example.com"
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert msg.get_body(("plain",)).get_content() == "plain\n"


def test_plan_without_sender_cannot_make_email(content_tree) -> None:
    root = content_tree(
        campaigns={"x.yaml": {"name": "x", "template": "p.html.j2", "subject": "Hi",
                              "slots": {"articles": {"kind": "article", "count": 1}},
                              "formats": ["html", "eml"]}},
        templates={"p.html.j2": "<p>x</p>"}, articles={"a.md": {"title": "A"}})
    from edition.errors import ContentError

    with pytest.raises(ContentError) as caught:
        Plan.load(root / "campaigns" / "x.yaml")
    assert "sender" in str(caught.value)
    assert Path(caught.value.file or "").name == "x.yaml"
