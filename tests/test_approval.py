"""Review, approve, send: the real `edition` command against an aiosmtpd sink on loopback.

A dry run is approved (approval.json: who, when, the note, a sha256 of every file), one
approved .eml byte is changed (the send is refused naming it, nothing reaches the sink),
the byte is put back, and the send delivers the approved messages byte for byte; a
second send sends nothing new. Suppression is asked again at send time; a campaign with
`approval: required` cannot be sent by `run --send`; runs with failures, unfinished runs
and runs that sent themselves are not approved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from email.parser import BytesHeaderParser
from pathlib import Path

import yaml
from fixtures_delivery import smtp_sink
from fixtures_sending import (  # noqa: F401 (fixtures)
    CAMPAIGN,
    NAME,
    customers,
    edition,
    ledger_file,
    manifest,
    run_args,
    set_delivery,
    site,
)

from edition.review.approval import read_approval, verify


def approve_args(out: Path, *extra: str) -> list[object]:
    return ["approve", out, "--by", "Ann Approver", *extra]


def message_id(eml: bytes) -> str:
    return str(BytesHeaderParser().parsebytes(eml)["Message-ID"])


def sends_of(out: Path) -> list[Path]:
    return sorted((out / "sends").iterdir(), key=lambda p: json.loads(
        (p / "send.json").read_text())["started"]) if (out / "sends").is_dir() else []


def test_approve_tamper_refuse_restore_send_exactly_once(site: Path, customers: Callable,
                                                         tmp_path: Path) -> None:
    path, out = customers(20), tmp_path / "run"
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        code, stdout, stderr = edition(*run_args(path, out), cwd=site)
        assert code == 0, stdout + stderr
        rows = manifest(out)
        assert {r["status"] for r in rows} == {"rendered"}

        # not approved yet: nothing is sent
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 2 and "not approved" in stderr and "edition approve" in stderr, stderr
        # not a terminal, no --yes: the summary is shown, the approval is refused
        code, stdout, stderr = edition(*approve_args(out), cwd=site)
        assert code == 2 and "pass --yes" in stderr, stderr
        assert "customers: 20 (20 rendered)" in stdout
        assert not (out / "approval.json").exists()

        code, stdout, stderr = edition(*approve_args(out, "--note", "offers checked", "--yes"),
                                       cwd=site)
        assert code == 0, stdout + stderr
        assert "approved by Ann Approver" in stdout and f"edition send {out}" in stdout
        approval = json.loads((out / "approval.json").read_text())
        run = json.loads((out / "run.json").read_text())
        assert approval["approved_by"] == "Ann Approver" and approval["note"] == "offers checked"
        assert approval["campaign"] == NAME and approval["run_id"] == run["run_id"]
        assert approval["approved_at"].endswith("+00:00")
        assert approval["manifest"]["sha256"] == hashlib.sha256(
            (out / "manifest.jsonl").read_bytes()).hexdigest()
        listed = {rel for r in rows for rel in r["files"].values()}
        assert set(approval["files"]) == listed | {"versions.json", "report.md"}
        for rel, digest in approval["files"].items():
            assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest, rel

        # one byte of one approved message changed: refused, naming it; nothing leaves
        rel = rows[3]["files"]["eml"]
        victim = out / rel
        original = victim.read_bytes()
        at = original.index(b"\r\n\r\n") + 10
        victim.write_bytes(original[:at] + bytes([original[at] ^ 1]) + original[at + 1:])
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 2, stdout + stderr
        assert f"1 file(s) changed: {rel}" in stderr and "nothing was sent" in stderr, stderr
        # a file added, a file missing, the manifest changed: refused the same way
        (out / "html" / "EXTRA.html").write_text("<p>not approved</p>")
        text = out / rows[5]["files"]["text"]
        kept = text.read_bytes()
        text.unlink()
        code, _, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 2 and "added: html/EXTRA.html" in stderr, stderr
        assert f"missing: {rows[5]['files']['text']}" in stderr
        (out / "html" / "EXTRA.html").unlink()
        text.write_bytes(kept)
        lines = (out / "manifest.jsonl").read_bytes()
        (out / "manifest.jsonl").write_bytes(lines.replace(b'"rendered"', b'"rendered" ', 1))
        code, _, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 2 and "manifest.jsonl changed" in stderr, stderr
        (out / "manifest.jsonl").write_bytes(lines)
        assert sink.messages == [] and not sink.peers, "nothing may leave before it matches"
        assert not ledger_file(site).exists()

        victim.write_bytes(original)   # restored: the send goes
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 0, stdout + stderr
        assert "62 approved files verified against approval.json" in stderr
        assert "mailing " in stdout and "20 sent now" in stdout, stdout
        assert len(sink.messages) == 20
        approved = {message_id((out / r["files"]["eml"]).read_bytes()): r for r in rows}
        for _, recipients, content in sink.messages:
            row = approved.pop(message_id(content))
            eml = (out / row["files"]["eml"]).read_bytes()
            assert content == eml, row["customer_id"]   # byte for byte, CRLF as approved
            to = BytesHeaderParser().parsebytes(eml)["To"]
            assert recipients == [str(to).rpartition("<")[2].rstrip(">") or str(to)]
        assert approved == {}
        assert verify(out, read_approval(out)).ok   # the approved folder is untouched
        sent = sends_of(out)
        assert len(sent) == 1
        send_rows = manifest(sent[0])
        assert [r["customer_id"] for r in send_rows] == [r["customer_id"] for r in rows]
        assert {r["status"] for r in send_rows} == {"sent"}
        assert all(str(r["provider_id"]).startswith("250 ") for r in send_rows)
        assert "Approved run sent" in (sent[0] / "report.md").read_text()
        assert json.loads((sent[0] / "send.json").read_text())["status"] == "finished"

        # again: nobody is mailed twice in the mailing
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 0, stdout + stderr
        assert "0 sent now, 20 already sent in mailing" in stdout, stdout
        assert len(sink.messages) == 20
        # the new send's folder (send.json's start has whole seconds: two sends may tie)
        [second] = [p for p in sends_of(out) if p not in sent]
        again = manifest(second)
        assert {r["reason_code"] for r in again} == {"already_sent"}
        assert verify(out, read_approval(out)).ok


def test_a_customer_suppressed_after_the_approval_is_skipped(site: Path, customers: Callable,
                                                             tmp_path: Path) -> None:
    from edition.review.approval import approve
    from edition.review.sending import send_approved

    path, out = customers(20), tmp_path / "run"
    code, stdout, stderr = edition(*run_args(path, out), cwd=site)
    assert code == 0, stdout + stderr
    approve(out, by="Ann")
    rows = manifest(out)
    gone = BytesHeaderParser().parsebytes((out / rows[2]["files"]["eml"]).read_bytes())["To"]
    address = str(gone).rpartition("<")[2].rstrip(">")
    unsubscribed = {address: "unsubscribed on 2026-11-24 (stub list)"}   # after the approval
    asked: list[tuple[str, str | None]] = []

    def is_suppressed(customer_id: str, fields: dict) -> str | None:
        asked.append((customer_id, fields["email"]))
        assert fields["manifest"]["customer_id"] == customer_id
        return unsubscribed.get(fields["email"])

    with smtp_sink() as (port, sink):
        summary = send_approved(out, to=f"smtp://127.0.0.1:{port}", is_suppressed=is_suppressed)
    assert summary.counts == {"sent": 19, "suppressed": 1} and summary.exit_code == 0
    assert summary.suppressed == 1
    assert len(asked) == 20 and all(email for _, email in asked)
    assert address not in sink.received and len(sink.messages) == 19
    row = next(r for r in manifest(Path(summary.send_dir)) if r["status"] == "suppressed")
    assert row["customer_id"] == rows[2]["customer_id"]
    assert row["reason"] == "suppressed at send time: unsubscribed on 2026-11-24 (stub list)"
    assert "Suppressed customers" in (Path(summary.send_dir) / "report.md").read_text()


def _require_approval(root: Path, to: str, value: str = "required") -> int:
    path = root / CAMPAIGN
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["delivery"] = {"to": to}
    data["approval"] = value
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("approval:"))


def test_approval_required_campaign_is_sent_only_approved(site: Path, customers: Callable,
                                                          tmp_path: Path) -> None:
    path = customers(20)
    with smtp_sink() as (port, sink):
        line = _require_approval(site, f"smtp://127.0.0.1:{port}", "sometimes")
        code, stdout, stderr = edition("validate", CAMPAIGN, "--customers", path, cwd=site)
        assert code == 2, stdout + stderr
        assert f"{CAMPAIGN}:{line}: approval 'sometimes' must be required or optional" in stderr

        _require_approval(site, f"smtp://127.0.0.1:{port}")
        code, stdout, stderr = edition(*run_args(path, tmp_path / "direct"), "--send", "--yes",
                                       cwd=site)
        assert code == 2, stdout + stderr
        assert "approval: required" in stderr and "approve it (edition approve" in stderr
        assert not (tmp_path / "direct").exists() and sink.messages == []
        code, stdout, stderr = edition(*run_args(path, tmp_path / "direct"), "--send", "--yes",
                                       "--via-prefect", cwd=site)
        assert code == 2 and "approval: required" in stderr, stdout + stderr
        assert not (tmp_path / "direct").exists() and sink.messages == []

        out = tmp_path / "dry"
        code, stdout, stderr = edition(*run_args(path, out), cwd=site)
        assert code == 0, stdout + stderr
        code, stdout, stderr = edition(*approve_args(out, "--yes"), cwd=site)
        assert code == 0, stdout + stderr
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 0, stdout + stderr
        assert "20 sent now" in stdout and len(sink.messages) == 20


def _failing_site(content_tree: Callable) -> Path:
    page = ("<html lang=en><body><h1>{{ customer.nickname }}</h1>"
            "{% for a in articles %}<p>{{ a.title }}</p>{% endfor %}</body></html>\n")
    people = [{"id": f"C{i}", "email": f"c{i}@example.com", "nickname": f"Nick {i}"}
              for i in range(1, 5)]
    people[2] = {"id": "C3", "email": "c3@example.com", "nickname": ""}   # fails: no field
    people.append({"id": "", "email": "nobody@example.com", "nickname": "x"})  # rejected
    return content_tree(
        campaigns={"x.yaml": {"name": "x-mixed", "template": "page.html.j2",
                              "slots": {"articles": {"kind": "article", "count": 1}},
                              "formats": ["html", "text"], "customers": "data/c.csv"}},
        templates={"page.html.j2": page}, articles={"a.md": {"title": "A"}},
        customers={"c.csv": people})


def test_failed_unfinished_and_self_sent_runs_are_not_approved(content_tree: Callable,
                                                               tmp_path: Path) -> None:
    from edition.review.sending import send_approved

    root = _failing_site(content_tree)
    out = tmp_path / "mixed"
    code, stdout, stderr = edition("run", "campaigns/x.yaml", "--out", out, cwd=root)
    assert code == 3, stdout + stderr   # one failed, more than max_failed 0
    statuses = [r["status"] for r in manifest(out)]
    assert sorted(statuses) == ["failed", "rejected", "rendered", "rendered", "rendered"]
    code, stdout, stderr = edition("approve", out, "--yes", cwd=root)
    assert code == 2 and "1 customer(s) failed" in stderr and "--allow-failed" in stderr
    assert "Failed customers" in stdout   # the report's warnings were shown
    assert not (out / "approval.json").exists()

    code, stdout, stderr = edition("approve", out, "--yes", "--allow-failed", "--by", "Cy",
                                   cwd=root)
    assert code == 0, stdout + stderr
    assert json.loads((out / "approval.json").read_text())["allowed_failed"] is True
    summary = send_approved(out)    # local target: the outbox is inside the send folder
    assert summary.counts == {"sent": 3, "failed": 1, "rejected": 1}
    assert summary.exit_code == 0   # the failed row was approved as failed, not sent now
    outbox = Path(summary.send_dir) / "outbox"
    assert sorted(p.name for p in (outbox / "html").iterdir()) == ["C1.html", "C2.html",
                                                                   "C4.html"]
    assert not (out / "outbox").exists()
    assert verify(out, read_approval(out)).ok

    # a run that did not finish
    info = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(info | {"status": "interrupted"}))
    code, _, stderr = edition("approve", out, "--yes", "--allow-failed", cwd=root)
    assert code == 2 and "not finished" in stderr, stderr
    (out / "run.json").write_text(json.dumps(info))

    # a run that sent its editions itself
    sent = tmp_path / "sent"
    code, stdout, stderr = edition("run", "campaigns/x.yaml", "--out", sent, "--send", "--yes",
                                   cwd=root)
    assert code == 3, stdout + stderr
    code, _, stderr = edition("approve", sent, "--yes", "--allow-failed", cwd=root)
    assert code == 2 and "run --send" in stderr, stderr

    code, _, stderr = edition("approve", tmp_path / "nowhere", "--yes", cwd=root)
    assert code == 2 and "not a run folder" in stderr


def test_approve_and_send_ask_on_a_terminal(site: Path, customers: Callable,
                                            tmp_path: Path) -> None:
    from fixtures_terminal import run_in_pty

    path, out = customers(20), tmp_path / "run"
    code, stdout, stderr = edition(*run_args(path, out, "--limit", 5), cwd=site)
    assert code == 0, stdout + stderr
    code, text = run_in_pty(["approve", out, "--by", "Gil"], site, answer=b"n\r")
    assert code == 1 and "Approve run" in text and "Aborted" in text, text
    assert not (out / "approval.json").exists()
    code, text = run_in_pty(["approve", out, "--by", "Gil"], site, answer=b"y\r")
    assert code == 0 and "approved by Gil" in text, text
    with smtp_sink() as (port, sink):
        target = f"smtp://127.0.0.1:{port}"
        code, text = run_in_pty(["send", out, "--to", target], site, answer=b"n\r")
        assert code == 1 and "for real?" in text and sink.messages == [], text
        code, text = run_in_pty(["send", out, "--to", target], site, answer=b"y\r")
        assert code == 0 and "5 sent now" in text, text
        assert len(sink.messages) == 5


def test_edition_send_asks_the_unsubscribe_store_again(site: Path, customers: Callable,
                                                      tmp_path: Path) -> None:
    """The real plug: an unsubscribe recorded after the approval stops that message."""
    from edition.addresses import address_hash
    from edition.content.campaign import load_campaign
    from edition.store.suppressions import SuppressionStore, store_location

    path, out = customers(12), tmp_path / "run"
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        code, stdout, stderr = edition(*run_args(path, out), cwd=site)
        assert code == 0, stdout + stderr
        code, stdout, stderr = edition(*approve_args(out, "--yes"), cwd=site)
        assert code == 0, stdout + stderr
        rows = manifest(out)
        eml = (out / rows[4]["files"]["eml"]).read_bytes()
        address = str(BytesHeaderParser().parsebytes(eml)["To"]).rpartition("<")[2].rstrip(">")
        campaign = load_campaign(site / CAMPAIGN)
        with SuppressionStore(store_location(campaign), campaign.root) as store:
            store.record(campaign.name, rows[4]["customer_id"], address_hash(address), "page")
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 0, stdout + stderr
        assert len(sink.messages) == 11 and address not in sink.received
    sent = manifest(sends_of(out)[-1])
    row = next(r for r in sent if r["customer_id"] == rows[4]["customer_id"])
    assert row["status"] == "suppressed"
    assert "unsubscribed via the unsubscribe link" in row["reason"], row
    assert row["reason_code"] == "suppressed"
