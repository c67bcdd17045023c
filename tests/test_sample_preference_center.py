"""The sample campaigns use the preference center (issue 20): the invoice links its
customer's page (format, large type, language, preferred day and hour, but no pause: a
bill must come) and the Spanish VIP offers map their topics to the offers' interests.
Real parts: a copy of the repository's sample content pointed at `edition web` on a
loopback port, the CLI in subprocesses, httpx as the browser."""

from __future__ import annotations

import email
import json
import re
import shutil
from email import policy
from pathlib import Path
from typing import Any

import httpx
import yaml
from fixtures_preferences import free_port, run_edition, web_server

REPO = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-23"


def sample_copy(root: Path, server: str) -> Path:
    for folder in ("campaigns", "templates", "articles", "offers", "greetings"):
        shutil.copytree(REPO / folder, root / folder)
    for name in ("invoice", "vip-offers-es"):
        path = root / "campaigns" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert data["preferences"]["url"].startswith("https://acme.example/")
        data["preferences"]["url"] = f"{server}/preferences"
        if "unsubscribe_url" in data:
            data["unsubscribe_url"] = f"{server}/unsubscribe"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return root


def run(root: Path, name: str, customers: Path, out: Path) -> dict[str, dict[str, Any]]:
    code, stdout, stderr = run_edition("run", f"campaigns/{name}.yaml", "--customers",
                                       customers, "--out", out, "--as-of", AS_OF,
                                       "--overwrite", cwd=root)
    assert code == 0, stdout + stderr
    return {r["customer_id"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text(
        encoding="utf-8").splitlines())}


def page_link(out: Path, row: dict[str, Any]) -> str:
    text = (out / row["files"]["text"]).read_text(encoding="utf-8")
    found = re.search(r"(http://127\.0\.0\.1:\d+/preferences\?token=[\w-]+)", text)
    assert found, text
    return found.group(1)


def interests(root: Path) -> dict[str, set[str]]:
    """Each module's interests, from its front matter."""
    found = {}
    for folder in ("articles", "offers", "greetings"):
        for file in (root / folder).glob("*.md"):
            front = yaml.safe_load(file.read_text(encoding="utf-8").split("---")[1]) or {}
            found[file.stem] = set(front.get("interests") or ())
    return found


def test_the_sample_invoice_and_vip_offers_link_their_preference_center(
        tmp_path: Path) -> None:
    port = free_port()
    root = sample_copy(tmp_path / "site", f"http://127.0.0.1:{port}")
    from edition.audience.sampledata import write_customers

    customers = root / "data" / "customers.csv"
    write_customers(customers, 300, seed=7)
    bills = run(root, "invoice", customers, tmp_path / "bills")
    vip = run(root, "vip-offers-es", customers, tmp_path / "vip")
    ann = next(c for c, r in bills.items() if r["status"] == "rendered")
    rich = [c for c, r in vip.items() if r["status"] == "rendered"]
    assert rich, vip
    with web_server(root, port):
        # the bill: format, day and hour offered; no pause, no "how often"
        bill_page = page_link(tmp_path / "bills", bills[ann])
        html = (tmp_path / "bills" / bills[ann]["files"]["html"]).read_text(encoding="utf-8")
        assert bill_page.replace("&", "&amp;") in html or bill_page in html
        shown = httpx.get(bill_page, timeout=60)
        assert shown.status_code == 200
        assert 'name="day"' in shown.text and 'name="format"' in shown.text
        assert 'name="frequency"' not in shown.text
        assert httpx.post(bill_page, data={"frequency": "paused"},
                          timeout=60).status_code == 400
        saved = httpx.post(bill_page, data={"form": "preferences", "format": "pdf",
                                            "day": "1", "hour": "9", "tracking": "on"},
                           timeout=60)
        assert saved.status_code == 200, saved.text
        # a bill carries no List-Unsubscribe, only the preference link
        eml = (tmp_path / "bills" / bills[ann]["files"]["eml"]).read_bytes()
        assert b"List-Unsubscribe" not in eml

        # the VIP offers: topics are the offers' interests, in Spanish
        modules = interests(root)
        who = next((c for c in rich if any(modules[m] for ids in vip[c]["modules"].values()
                                           for m in ids)), rich[0])
        offers_page = page_link(tmp_path / "vip", vip[who])
        shown = httpx.get(offers_page, timeout=60)
        assert shown.status_code == 200 and "Viajes" in shown.text and "Libros" in shown.text
        had = {t for ids in vip[who]["modules"].values() for m in ids for t in modules[m]}
        data = yaml.safe_load((root / "campaigns" / "vip-offers-es.yaml").read_text())
        topics = set(data["preferences"]["topics"])
        assert had <= topics | {""}, had   # every interest of its modules is a topic
        declined = had or {"travel"}
        kept = sorted(topics - declined) or sorted(topics)[:1]
        assert httpx.post(offers_page, data={"form": "preferences", "topics": kept,
                                             "frequency": "every"},
                          timeout=60).status_code == 200

    bills_after = run(root, "invoice", customers, tmp_path / "bills-after")
    assert bills_after[ann]["status"] == "rendered"
    assert {"format", "time"} <= set(bills_after[ann]["choices"]), bills_after[ann]
    message = email.message_from_bytes(
        (tmp_path / "bills-after" / bills_after[ann]["files"]["eml"]).read_bytes(),
        policy=policy.default)
    (attached,) = list(message.iter_attachments())
    assert attached.get_content_type() == "application/pdf"
    vip_after = run(root, "vip-offers-es", customers, tmp_path / "vip-after")
    row = vip_after[who]
    assert "topics" in row.get("choices", []) or row["status"] != "rendered", row
    if row["status"] == "rendered":
        for ids in row["modules"].values():
            for module in ids:
                assert not (modules[module] and modules[module] <= declined), (module, row)
    else:   # every offer of theirs was a declined topic: nothing to send, and it says so
        assert row["status"] == "excluded", row
