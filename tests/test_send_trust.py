"""What is approved is what can be trusted to leave: the real `edition` command, an aiosmtpd
sink on loopback (issue 17, findings 1, 2, 21 and 22).

1. A dry run made without EDITION_UNSUBSCRIBE_SECRET, or of a marketing campaign without
   `unsubscribe_url`, says up front that it cannot be sent; `approve` refuses it, and
   `send` refuses an approval of it (one an older edition recorded), exit 2, nothing out.
2. `approve` holds the run folder from the summary to the record: a re-render with
   --overwrite meanwhile is refused, a manifest edited meanwhile refuses the approval;
   `send` sends only the run and approval it showed, and run.json is approved too.
21. A re-send's counts agree with "0 sent now"; the send report names the customer file;
   approve names the mailing and says it was already sent; the ledger records the
   mailing the approved messages carry in their Feedback-ID.
22. Approve and diff find the campaign's last approved run wherever --out put it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import yaml
from fixtures_delivery import smtp_sink
from fixtures_sending import (  # noqa: F401 (fixtures)
    AS_OF,
    CAMPAIGN,
    NAME,
    cli_env,
    customers,
    edition,
    edition_command,
    ledger_file,
    make_customers,
    manifest,
    run_args,
    set_delivery,
    site,
)
from fixtures_terminal import run_in_pty

NO_SECRET = {"EDITION_UNSUBSCRIBE_SECRET": ""}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_approval(out: Path, by: str = "Old Edition") -> dict[str, Any]:
    """approval.json as an earlier edition wrote it for any finished run (every digest
    right): what `send` is handed when `approve` did not check the links."""
    run = json.loads((out / "run.json").read_text())
    rows = manifest(out)
    files = sorted({rel for r in rows for rel in (r.get("files") or {}).values()})
    document = {
        "approval": 1, "approved_by": by, "approved_at": "2026-11-23T08:00:00+00:00",
        "note": "", "campaign": run["campaign"], "run_id": run["run_id"],
        "mailing": run["options"].get("mailing"), "as_of": run["options"].get("as_of"),
        "campaign_file": run["options"].get("campaign"), "formats": ["html", "text", "eml"],
        "counts": {"rendered": len(rows)}, "allowed_failed": False,
        "manifest": {"path": "manifest.jsonl", "sha256": sha(out / "manifest.jsonl"),
                     "rows": len(rows)},
        "run": {"path": "run.json", "sha256": sha(out / "run.json")},
        "files": {rel: sha(out / rel) for rel in [*files, "versions.json", "report.md"]},
    }
    (out / "approval.json").write_text(json.dumps(document, indent=2))
    return document


def recipients(out: Path) -> set[str]:
    """The To addresses of a run's approved messages."""
    found = set()
    for row in manifest(out):
        eml = (out / row["files"]["eml"]).read_bytes()
        to = str(BytesHeaderParser().parsebytes(eml)["To"])
        found.add(to.rpartition("<")[2].rstrip(">") or to)
    return found


def feedback_mailing(eml: bytes) -> str:
    return str(BytesHeaderParser().parsebytes(eml)["Feedback-ID"]).split(":")[1]


def in_pty(args: list[Any], cwd: Path, answer: bytes, meanwhile: Callable[[], None],
           env: dict[str, str] | None = None, timeout: float = 180) -> tuple[int, str]:
    """Run the CLI on a terminal; when it asks "[y/N]", call `meanwhile`, then answer."""
    return run_in_pty(args, cwd, answer, meanwhile=meanwhile, env=env, timeout=timeout)


# -- 1. no working unsubscribe link: not approved, not sent ------------------------------


def test_unsigned_links_are_not_approved_or_sent(site: Path, customers: Callable,
                                                 tmp_path: Path) -> None:
    path, out = customers(12), tmp_path / "nov-30"
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        code, stdout, stderr = edition(*run_args(path, out), cwd=site, env=NO_SECRET)
        assert code == 0, stdout + stderr
        # the dry run says up front that it cannot be sent, and its report says it first
        first = stderr.index("This dry run cannot be sent as it is")
        assert first < stderr.index("progress:"), stderr
        assert "EDITION_UNSUBSCRIBE_SECRET is not set" in stderr[first:first + 300]
        report = (out / "report.md").read_text()
        assert report.index("Cannot be sent as it is") < report.index("## Status")
        assert "unsigned-preview" in (out / manifest(out)[0]["files"]["eml"]).read_text()

        code, stdout, stderr = edition("approve", out, "--by", "Ann", "--yes", cwd=site)
        assert code == 2, stdout + stderr
        assert "unsigned unsubscribe links" in stderr and "EDITION_UNSUBSCRIBE_SECRET" in stderr
        assert not (out / "approval.json").exists()

        # approved anyway (as an earlier edition did): the send refuses it, secret set now
        recorded_approval(out)
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 2, stdout + stderr
        assert "cannot be sent as it is" in stderr and "unsigned" in stderr, stderr
        assert "nothing was sent" in stderr
        assert sink.messages == [] and not (out / "sends").exists()

        # signed with one secret, sent with another that the server would use: refused
        signed = tmp_path / "signed"
        code, stdout, stderr = edition(*run_args(path, signed), cwd=site)
        assert code == 0 and "cannot be sent" not in stderr, stdout + stderr
        code, stdout, stderr = edition("approve", signed, "--by", "Ann", "--yes", cwd=site)
        assert code == 0, stdout + stderr
        other = {"EDITION_UNSUBSCRIBE_SECRET": "another-secret-0123456789abcdef"}
        code, stdout, stderr = edition("send", signed, "--yes", cwd=site, env=other)
        assert code == 2 and "does not verify" in stderr, stdout + stderr
        assert sink.messages == []
        code, stdout, stderr = edition("send", signed, "--yes", cwd=site)
        assert code == 0, stdout + stderr
        assert len(sink.messages) == 12


def test_marketing_without_unsubscribe_url_is_not_approved_or_sent(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    path, out = customers(8), tmp_path / "run"
    data = yaml.safe_load((site / CAMPAIGN).read_text())
    data.pop("unsubscribe_url")
    with smtp_sink() as (port, sink):
        data["delivery"] = {"to": f"smtp://127.0.0.1:{port}"}
        (site / CAMPAIGN).write_text(yaml.safe_dump(data, sort_keys=False))
        code, stdout, stderr = edition(*run_args(path, out), cwd=site)
        assert code == 0, stdout + stderr
        assert "cannot be sent as it is: marketing e-mail needs unsubscribe_url" in stderr
        assert (out / "report.md").read_text().startswith(
            "# Run report: weekly-newsletter\n\n> **Cannot be sent as it is.** marketing")
        eml = (out / manifest(out)[0]["files"]["eml"]).read_bytes()
        assert b"List-Unsubscribe" not in eml
        # `run --send` refuses this campaign (exit 2): approve and send do too
        code, _, stderr = edition(*run_args(path, tmp_path / "direct"), "--send", "--yes",
                                  cwd=site)
        assert code == 2 and "unsubscribe_url" in stderr, stderr
        code, stdout, stderr = edition("approve", out, "--yes", cwd=site)
        assert code == 2 and "no List-Unsubscribe link" in stderr, stdout + stderr
        assert not (out / "approval.json").exists()
        recorded_approval(out)
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 2 and "no List-Unsubscribe link" in stderr, stdout + stderr
        assert sink.messages == [] and not (out / "sends").exists()


# -- 2. what is approved is what was shown -------------------------------------------------


def test_a_rerender_while_approve_asks_is_refused(site: Path, customers: Callable,
                                                  tmp_path: Path) -> None:
    path, out = customers(10), tmp_path / "nov-30"
    others = make_customers(10, tmp_path / "others.csv", seed=99)
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        code, stdout, stderr = edition(*run_args(path, out), cwd=site)
        assert code == 0, stdout + stderr
        shown_run = json.loads((out / "run.json").read_text())["run_id"]
        reviewed = recipients(out)
        attempt: dict[str, Any] = {}

        def rerender() -> None:   # someone re-renders the folder while the approver reads
            attempt["result"] = edition(*run_args(others, out), "--overwrite", cwd=site)

        code, text = in_pty(["approve", out, "--by", "Gil"], site, b"y\r", rerender)
        rc, stdout, stderr = attempt["result"]
        assert rc == 1 and "is using this run folder" in stderr, stdout + stderr
        assert code == 0 and "approved by Gil" in text, text
        approval = json.loads((out / "approval.json").read_text())
        assert approval["run_id"] == shown_run
        assert approval["run"]["sha256"] == sha(out / "run.json")
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 0, stdout + stderr
        assert set(sink.received) == reviewed and len(sink.messages) == 10

        # the manifest edited by hand while the question is open: nothing is approved
        second = tmp_path / "second"
        code, stdout, stderr = edition(*run_args(path, second, "--limit", 4), cwd=site)
        assert code == 0, stdout + stderr

        def edit() -> None:
            lines = (second / "manifest.jsonl").read_bytes().splitlines(keepends=True)
            (second / "manifest.jsonl").write_bytes(b"".join(lines[:3]))

        code, text = in_pty(["approve", second, "--by", "Gil"], second.parent, b"y\r", edit)
        assert code == 2 and "changed since its summary was shown" in text, text
        assert "manifest.jsonl" in text and not (second / "approval.json").exists()


def test_send_sends_only_the_run_and_approval_it_showed(site: Path, customers: Callable,
                                                        tmp_path: Path) -> None:
    path, out = customers(6), tmp_path / "nov-30"
    others = make_customers(6, tmp_path / "others.csv", seed=99)
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        code, stdout, stderr = edition(*run_args(path, out), cwd=site)
        assert code == 0, stdout + stderr
        code, stdout, stderr = edition("approve", out, "--by", "Ann", "--yes", cwd=site)
        assert code == 0, stdout + stderr
        shown = recipients(out)

        def replaced() -> None:   # re-rendered and re-approved while `send` asks
            assert edition(*run_args(others, out), "--overwrite", cwd=site)[0] == 0
            assert edition("approve", out, "--by", "Bob", "--yes", cwd=site)[0] == 0

        code, text = in_pty(["send", out], site, b"y\r", replaced)
        assert code == 2 and "nothing was sent" in text, text
        assert "not run" in text or "approval.json changed" in text, text
        assert sink.messages == [] and recipients(out) != shown

        # run.json is approved too: `send` reads the campaign file from it
        code, stdout, stderr = edition("approve", out, "--by", "Ann", "--yes", cwd=site)
        assert code == 0, stdout + stderr
        info = json.loads((out / "run.json").read_text())
        other = site / "campaigns" / "other.yaml"
        data = yaml.safe_load((site / CAMPAIGN).read_text())
        other.write_text(yaml.safe_dump(data | {"delivery": {"to": "local"}}))
        info["options"]["campaign"] = str(other)
        (out / "run.json").write_text(json.dumps(info))
        code, stdout, stderr = edition("send", out, "--yes", cwd=site)
        assert code == 2 and "run.json changed" in stderr, stdout + stderr
        assert sink.messages == [] and not (out / "sends").exists()


# -- 21. summaries that agree -----------------------------------------------------------------


def ledger_mailings(root: Path) -> dict[str, int]:
    with sqlite3.connect(ledger_file(root)) as db:
        rows = db.execute("SELECT send_key, COUNT(*) FROM sends WHERE state='sent' "
                          "GROUP BY send_key").fetchall()
    return {key.split("\x1f")[0]: n for key, n in rows}


def test_summaries_say_the_same_thing(site: Path, customers: Callable, tmp_path: Path) -> None:
    (site / "data").mkdir()
    (site / "data" / "customers.csv").write_bytes(customers(8).read_bytes())
    first, second = tmp_path / "first", tmp_path / "second"
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        # the campaign's own customer file (no --customers)
        code, stdout, stderr = edition("run", CAMPAIGN, "--out", first, "--as-of", AS_OF,
                                       cwd=site)
        assert code == 0, stdout + stderr
        code, stdout, stderr = edition("approve", first, "--by", "Ann", "--yes", cwd=site)
        assert code == 0, stdout + stderr
        assert f"goes out as mailing {AS_OF}" in stdout and "already sent" not in stdout
        code, stdout, stderr = edition("send", first, "--yes", cwd=site)
        assert code == 0 and "8 customers (8 sent)" in stdout, stdout + stderr
        [send_dir] = (first / "sends").iterdir()
        report = (send_dir / "report.md").read_text()
        assert "customers file: ``" not in report
        assert f"customers file: `{site / 'data' / 'customers.csv'}`" in report, report

        # the same send again: its counts agree with "0 sent now"
        code, stdout, stderr = edition("send", first, "--yes", cwd=site)
        assert code == 0, stdout + stderr
        assert "8 customers (8 already sent)" in stdout and "(8 sent)" not in stdout, stdout
        assert f"0 sent now, 8 already sent in mailing {AS_OF}" in stdout
        assert "Nothing new was sent" in stderr, stderr

        # a second approved run of the same day: approve says the mailing was sent
        code, stdout, stderr = edition("run", CAMPAIGN, "--out", second, "--as-of", AS_OF,
                                       cwd=site)
        assert code == 0, stdout + stderr
        code, stdout, stderr = edition("approve", second, "--by", "Ann", "--yes", cwd=site)
        assert code == 0, stdout + stderr
        assert f"mailing {AS_OF} was already sent: 8 customer(s)" in stdout, stdout
        assert "--mailing" in stdout
        # another mailing than the one the approved messages carry: refused
        code, stdout, stderr = edition("send", second, "--yes", "--mailing", "nov-30b",
                                       cwd=site)
        assert code == 2 and "Feedback-ID" in stderr and "nothing was sent" in stderr, stderr
        assert len(sink.messages) == 8 and "nov-30b" not in ledger_mailings(site)

        # the way to send it as a new issue: the dry run names the mailing
        third = tmp_path / "third"
        code, stdout, stderr = edition("run", CAMPAIGN, "--out", third, "--as-of", AS_OF,
                                       "--mailing", "nov-30b", cwd=site)
        assert code == 0, stdout + stderr
        code, stdout, stderr = edition("approve", third, "--by", "Ann", "--yes", cwd=site)
        assert code == 0 and "goes out as mailing nov-30b" in stdout, stdout + stderr
        code, stdout, stderr = edition("send", third, "--yes", cwd=site)
        assert code == 0 and "8 sent now" in stdout, stdout + stderr
        assert len(sink.messages) == 16
        # every message names the mailing the ledger recorded it under
        sent = ledger_mailings(site)
        assert sent == {AS_OF: 8, "nov-30b": 8}, sent
        named = [feedback_mailing(content) for _, _, content in sink.messages]
        assert sorted(named) == [AS_OF] * 8 + ["nov-30b"] * 8


# -- 22. earlier runs wherever they were written ------------------------------------------------


def test_the_last_approved_run_is_found_wherever_it_was_written(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    path = customers(6)
    week1 = tmp_path / "shared-drive" / "2026" / "nov-23"     # not under the content root
    code, stdout, stderr = edition(*run_args(path, week1), cwd=site)
    assert code == 0, stdout + stderr
    code, stdout, stderr = edition("approve", week1, "--by", "Ann", "--yes", cwd=site)
    assert code == 0 and "No earlier approved or sent run" in stdout, stdout + stderr
    code, stdout, stderr = edition("send", week1, "--yes", cwd=site)
    assert code == 0, stdout + stderr

    # the README's own example: --out out/nov-30, relative to the content root
    code, stdout, stderr = edition("run", CAMPAIGN, "--customers", path, "--out", "out/nov-30",
                                   "--as-of", "2026-11-30", cwd=site)
    assert code == 0, stdout + stderr
    code, stdout, stderr = edition("approve", "out/nov-30", "--by", "Ann", "--yes", cwd=site)
    assert code == 0, stdout + stderr
    assert "No earlier approved or sent run" not in stdout
    assert f"Changes since the last approved or sent run ({week1})" in stdout, stdout
    # `edition diff RUN` compares with that run too
    code, stdout, stderr = edition("diff", "out/nov-30", "--json", cwd=site)
    assert code == 0, stdout + stderr
    result = json.loads(stdout)
    assert result["a"]["folder"] == str(week1) and result["a"]["customers"] == 6
    assert result["b"]["folder"].endswith("out/nov-30")
    # from anywhere: the index is under the content root, the folders are absolute
    code, stdout, stderr = edition("diff", site / "out" / "nov-30", cwd=tmp_path)
    assert code == 0 and f"({week1}) ->" in stdout, stdout + stderr
    index = site / "out" / NAME / "runs.jsonl"
    assert oct(index.stat().st_mode & 0o777) == "0o600"
    # nothing approved or sent before it: diff says so (exit 2), approve goes on
    code, stdout, stderr = edition("diff", week1, cwd=site)
    assert code == 2 and "no earlier approved or sent run" in stderr, stdout + stderr
