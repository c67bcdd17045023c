"""`edition replay` of a run in which a customer chose a PDF attached to the e-mail
(the preference center's `format: pdf`): the .eml's multipart/mixed boundary came from
the stdlib's random generator, so the replay never matched byte for byte and blamed
"the environment". The boundary is now made from the message's content, like the
multipart/alternative one. Real parts: the CLI (run, preferences import, replay)."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

from fixtures_preferences import CAMPAIGN, NAME, make_site, run_edition, write_customers


def test_a_run_with_a_pdf_attached_replays_byte_for_byte(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site", "https://news.garden.example")
    customers = write_customers(tmp_path / "customers.csv")
    crm = tmp_path / "crm.csv"
    crm.write_text("id;format\nc1;pdf\n", encoding="utf-8")
    code, out, err = run_edition("preferences", "import", NAME, crm, cwd=root)
    assert code == 0, out + err
    run = tmp_path / "run"
    code, out, err = run_edition("run", CAMPAIGN, "--customers", customers, "--out", run,
                                 "--as-of", "2026-11-23", cwd=root)
    assert code == 0, out + err
    rows = {r["customer_id"]: r for r in map(
        json.loads, (run / "manifest.jsonl").read_text(encoding="utf-8").splitlines())}
    message = email.message_from_bytes((run / rows["c1"]["files"]["eml"]).read_bytes(),
                                       policy=policy.default)
    assert message.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in message.iter_attachments()] == ["application/pdf"]
    code, out, err = run_edition("replay", run, "--out", tmp_path / "again", cwd=root)
    assert code == 0, out + err
    assert "DIFFERENT" not in out, out
    assert (tmp_path / "again" / rows["c1"]["files"]["eml"]).read_bytes() == \
        (run / rows["c1"]["files"]["eml"]).read_bytes()
