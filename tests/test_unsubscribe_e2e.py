"""Unsubscribing from a real message, end to end: the sample newsletter rendered to .eml
with its unsubscribe links pointing at `edition unsubscribe-server` (the real CLI on a
loopback port); one customer's `List-Unsubscribe` URL POSTed one-click with httpx,
another's body link opened in headless Chromium and its button clicked, a tampered token
refused; then `edition run --send` to an SMTP sink skips both, and the sink never sees
their addresses.

tests/test_unsubscribe_server.py covers the server's answers one by one with links made
in the test; this file starts from the links a run wrote into its messages.
"""

from __future__ import annotations

import email
import os
import re
import shutil
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import yaml
from fixtures_delivery import free_port, smtp_sink
from fixtures_sending import CAMPAIGN, copy_site, customer_rows, edition, make_customers, manifest
from fixtures_web import running_web

from edition.store.suppressions import SuppressionStore

AS_OF = "2026-11-23"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The sample site, its newsletter's unsubscribe_url on a running unsubscribe server."""
    root = copy_site(tmp_path_factory.mktemp("e2e") / "site")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = root / CAMPAIGN
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["unsubscribe_url"] = f"{url}/unsubscribe"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "EDITION_SUPPRESSION_STORE"}
    env |= {"PYTHONPATH": str(REPO), "NO_COLOR": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    assert env.get("EDITION_UNSUBSCRIBE_SECRET")  # conftest sets it: the run's and the server's
    log = root.parent / "server.log"
    with running_web(root, port, env, log, verb="unsubscribe-server") as url:
        yield root, url


def message(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]


def list_unsubscribe_url(msg: EmailMessage, server: str) -> str:
    links = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
    web = [link for link in links if link.startswith(("https://", "http://"))]
    assert len(web) == 1, links
    assert web[0].startswith(f"{server}/unsubscribe?"), web[0]
    return web[0]


def body_link(msg: EmailMessage, server: str) -> str:
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    links = {href.replace("&amp;", "&")
             for href in re.findall(r'href="([^"]+)"', html) if href.startswith(server)}
    assert len(links) == 1, links
    return links.pop()


def entries(root: Path) -> list:
    store = root / "out" / "suppression.sqlite"
    if not store.exists():
        return []
    with SuppressionStore(store) as s:
        return s.entries()


def test_unsubscribe_from_real_messages_then_a_send_skips_them(
        site: tuple[Path, str], tmp_path: Path) -> None:
    root, server = site
    customers = make_customers(12, tmp_path / "customers.csv")
    people = customer_rows(customers)
    code, out, err = edition("run", CAMPAIGN, "--customers", customers, "--out",
                             tmp_path / "dry", "--as-of", AS_OF, cwd=root)
    assert code == 0, out + err
    rows = {r["customer_id"]: r for r in manifest(tmp_path / "dry")}
    one_click, by_page, tampered = people[0], people[1], people[2]

    # 1. the one-click POST a mail program makes, to the URL in the message's header
    msg = message(tmp_path / "dry" / rows[one_click["id"]]["files"]["eml"])
    link = list_unsubscribe_url(msg, server)
    assert one_click["id"] not in link and one_click["email"] not in link  # a token, no id
    assert msg["List-Unsubscribe-Post"] is None  # RFC 8058: one-click is for https links
    response = httpx.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=60)
    assert response.status_code == 200, response.text
    assert [(e.customer_id, e.scope, e.source) for e in entries(root)] == [
        (one_click["id"], "weekly-newsletter", "one-click")]

    # 2. the link in the body: a page whose button unsubscribes (opening it does not)
    msg = message(tmp_path / "dry" / rows[by_page["id"]]["files"]["eml"])
    link = body_link(msg, server)
    assert link == list_unsubscribe_url(msg, server)
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser step"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--no-sandbox", "--no-first-run"])
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(link)
            assert len(entries(root)) == 1  # a GET (a mail scanner's prefetch) changes nothing
            page.click("#unsubscribe")
            # the page speaks the customer's language (their link carries their locale)
            done = ("Se ha dado de baja" if str(by_page["locale"]).startswith("es")
                    else "You are unsubscribed")
            page.wait_for_selector(f"text={done}")
        finally:
            browser.close()
    assert {(e.customer_id, e.source) for e in entries(root)} == {
        (one_click["id"], "one-click"), (by_page["id"], "page")}

    # 3. a tampered token: 400, nothing recorded
    msg = message(tmp_path / "dry" / rows[tampered["id"]]["files"]["eml"])
    link = list_unsubscribe_url(msg, server)
    position = len(link) - 8
    bad = link[:position] + ("A" if link[position] != "A" else "B") + link[position + 1:]
    assert httpx.post(bad, data={"List-Unsubscribe": "One-Click"}, timeout=60).status_code == 400
    assert httpx.get(bad, timeout=60).status_code == 400
    assert len(entries(root)) == 2

    # 4. the send: both are suppressed, everyone else is sent, the sink never sees the two
    with smtp_sink() as (port, sink):
        code, out, err = edition("run", CAMPAIGN, "--customers", customers, "--out",
                                 tmp_path / "sent", "--as-of", AS_OF, "--send", "--yes",
                                 "--to", f"smtp://127.0.0.1:{port}", cwd=root)
        assert code == 0, out + err
    sent = {r["customer_id"]: r for r in manifest(tmp_path / "sent")}
    for person, via in ((one_click, "one-click unsubscribe"), (by_page, "the unsubscribe link")):
        row = sent[person["id"]]
        assert row["status"] == "suppressed", row
        assert "unsubscribed" in row["reason"] and via in row["reason"], row["reason"]
        assert row["files"] == {}
    assert {cid for cid, r in sent.items() if r["status"] == "sent"} == {
        p["id"] for p in people[2:]}
    gone = {one_click["email"], by_page["email"]}
    assert sum(sink.received.values()) == len(people) - 2
    assert not gone & set(sink.received)
    for _, recipients, content in sink.messages:
        assert not gone & set(recipients)
        assert not any(address.encode() in content for address in gone)


def test_a_spanish_customers_link_opens_the_page_in_spanish(
        site: tuple[Path, str], tmp_path: Path) -> None:
    """The link a run signs carries the customer's locale: the page answers in Spanish,
    naming the campaign as its sender does ("Acme Weekly"), whatever the browser says."""
    root, server = site
    customers = tmp_path / "customers.csv"
    customers.write_text("id,email,first_name,locale\n"
                         "S1,jose@example.es,José,es-MX\nS2,ann@example.com,Ann,en\n",
                         encoding="utf-8")
    code, out, err = edition("run", CAMPAIGN, "--customers", customers, "--out",
                             tmp_path / "dry", "--as-of", AS_OF, cwd=root)
    assert code == 0, out + err
    rows = {r["customer_id"]: r for r in manifest(tmp_path / "dry")}
    spanish = list_unsubscribe_url(message(tmp_path / "dry" / rows["S1"]["files"]["eml"]),
                                   server)
    page = httpx.get(spanish, headers={"Accept-Language": "en-GB,en;q=0.9"}, timeout=60)
    assert page.status_code == 200 and page.headers["content-language"] == "es"
    assert "¿Dejar de recibir <b>Acme Weekly</b>?" in page.text
    english = list_unsubscribe_url(message(tmp_path / "dry" / rows["S2"]["files"]["eml"]),
                                   server)
    assert "Stop receiving <b>Acme Weekly</b>?" in httpx.get(english, timeout=60).text
    assert not any(e.customer_id in {"S1", "S2"} for e in entries(root))  # GETs record nothing
