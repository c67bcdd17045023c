"""The unsubscribe server, for real: `edition unsubscribe-server` on 127.0.0.1, requests
with httpx (RFC 8058 one-click POSTs, GETs), the confirmation page clicked in headless
Chromium, and what it records read back through the suppression store and Suppression."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fixtures_delivery import free_port

from edition.campaign import load_campaign
from edition.suppression import Suppression
from edition.suppression_store import ALL_MARKETING, Entry, SuppressionStore
from edition.unsubscribe import SECRET_ENV, make_token, unsubscribe_url

SECRET = "the-unsubscribe-secret-of-the-tests"
BASE = "https://acme.example/unsubscribe"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    url: str
    root: Path
    process: subprocess.Popen[str]
    log: Path

    def link(self, customer_id: str, campaign: str = "weekly-newsletter",
             address: str | None = None) -> str:
        """The customer's link as the message has it, pointed at this server."""
        public = unsubscribe_url(BASE, campaign=campaign, customer_id=customer_id,
                                 address=address or f"{customer_id.lower()}@example.com",
                                 secret=SECRET)
        return public.replace("https://acme.example", self.url)

    def entries(self, store: str = "out/suppression.sqlite") -> list[Entry]:
        with SuppressionStore(self.root / store) as s:
            return s.entries()

    def entries_of(self, customer_id: str, store: str = "out/suppression.sqlite") -> list[Entry]:
        return [e for e in self.entries(store) if e.customer_id == customer_id]


def write_root(root: Path) -> None:
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "templates" / "t.html.j2").write_text("<p>hi</p>", encoding="utf-8")
    common = "template: t.html.j2\nslots: {a: {kind: article}}\n" \
             f"unsubscribe_url: {BASE}\n"
    (root / "campaigns" / "weekly.yaml").write_text("name: weekly-newsletter\n" + common,
                                                    encoding="utf-8")
    (root / "campaigns" / "offers.yaml").write_text(
        "name: offers\n" + common + "suppression: {store: state/offers.sqlite}\n",
        encoding="utf-8")


def start(root: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    environment = dict(os.environ) | {"PYTHONPATH": str(REPO), "NO_COLOR": "1",
                                      "PREFECT_SERVER_ANALYTICS_ENABLED": "false"} | env
    environment.pop("EDITION_SUPPRESSION_STORE", None)
    handle = log.open("w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "unsubscribe-server", "--host", "127.0.0.1",
         "--port", str(port), "--root", str(root)],
        cwd=root, env=environment, stdout=handle, stderr=subprocess.STDOUT, text=True)
    handle.close()
    return process, f"http://127.0.0.1:{port}"


def wait_healthy(url: str, process: subprocess.Popen[str], log: Path,
                 deadline: float = 120.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}):\n"
                                 f"{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server did not answer within {deadline:.0f} s:\n"
                         f"{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("unsubscribe") / "site"
    write_root(root)
    log = root.parent / "server.log"
    process, url = start(root, log, {SECRET_ENV: SECRET})
    try:
        wait_healthy(url, process, log)
        yield Server(url, root, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=60)


def post(url: str, data: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
    return httpx.post(url, data=data if data is not None else ONE_CLICK, timeout=60,
                      **kwargs)  # type: ignore[arg-type]


# -- one-click (RFC 8058) ------------------------------------------------------------------


def test_a_one_click_post_unsubscribes(server: Server) -> None:
    response = post(server.link("C100"))
    assert response.status_code == 200
    assert "unsubscribed from <b>weekly-newsletter</b>" in response.text
    (entry,) = server.entries_of("C100")
    assert (entry.kind, entry.scope, entry.source) == ("unsubscribed", "weekly-newsletter",
                                                       "one-click")
    assert entry.day == dt.datetime.now(dt.UTC).date().isoformat()


def test_a_multipart_one_click_post_unsubscribes(server: Server) -> None:
    response = httpx.post(server.link("C101"), files={"List-Unsubscribe": (None, "One-Click")},
                          timeout=60)
    assert response.status_code == 200
    assert len(server.entries_of("C101")) == 1


def test_unsubscribing_is_idempotent(server: Server) -> None:
    link = server.link("C102")
    assert [post(link).status_code for _ in range(3)] == [200, 200, 200]
    assert len(server.entries_of("C102")) == 1


def test_a_get_never_unsubscribes(server: Server) -> None:
    link = server.link("C103")
    page = httpx.get(link, timeout=60)
    assert page.status_code == 200
    assert '<form method="post">' in page.text and "One-Click" in page.text
    assert httpx.head(link, timeout=60).status_code == 200
    assert server.entries_of("C103") == []
    # the page shows neither the customer nor the token's contents
    assert "C103" not in page.text and "c103@example.com" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


@pytest.mark.parametrize("how", ["edited", "cut", "other-secret", "missing"])
def test_a_bad_token_is_refused_and_nothing_recorded(server: Server, how: str) -> None:
    link = server.link("C104")
    token = link.rsplit("token=", 1)[1]
    bad = {
        "edited": link[:-5] + ("A" if link[-5] != "A" else "B") + link[-4:],
        "cut": link[:-6],
        "other-secret": link.replace(token, make_token(
            campaign="weekly-newsletter", customer_id="C104", address="c104@example.com",
            secret="some-other-secret-0123456789")),
        "missing": link.split("?", 1)[0],
    }[how]
    assert post(bad).status_code == 400
    assert httpx.get(bad, timeout=60).status_code == 400
    assert server.entries_of("C104") == []


def test_a_post_without_the_one_click_body_is_refused(server: Server) -> None:
    link = server.link("C105")
    assert post(link, {}).status_code == 400
    assert post(link, {"List-Unsubscribe": "yes"}).status_code == 400
    assert post(link, content=b"x" * (70 * 1024),
                headers={"content-type": "application/x-www-form-urlencoded"}
                ).status_code == 413
    assert server.entries_of("C105") == []


def test_the_store_the_campaign_names_is_written(server: Server) -> None:
    assert post(server.link("C106", campaign="offers")).status_code == 200
    assert [e.scope for e in server.entries_of("C106", "state/offers.sqlite")] == ["offers"]
    assert server.entries_of("C106") == []


def test_a_run_then_suppresses_the_customer(server: Server) -> None:
    """Server → store → Suppression: the next run does not mail them, by id or address."""
    assert post(server.link("C107", address="Eve.Ng@Example.com")).status_code == 200
    campaign = load_campaign(server.root / "campaigns" / "weekly.yaml")
    suppression = Suppression.load(campaign, environ={})
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert suppression.reason_for({"id": "C107", "email": "x@example.com"}) == (
        f"suppressed: unsubscribed via one-click unsubscribe in their mail program on {today}")
    assert suppression.reason_for({"id": "C999", "email": "eve.ng@example.com"}) is not None
    assert suppression.reason_for({"id": "C998", "email": "other@example.com"}) is None


def test_logs_hold_no_token_and_no_customer(server: Server) -> None:
    link = server.link("C108")
    post(link)
    httpx.get(link, timeout=60)
    time.sleep(0.5)
    log = server.log.read_text(errors="replace")
    assert "unsubscribe recorded: campaign weekly-newsletter" in log
    assert link.rsplit("token=", 1)[1] not in log and "C108" not in log
    assert SECRET not in log


# -- the confirmation page in a browser -------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed for the browser tests"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"])
        try:
            yield launched
        finally:
            launched.close()


def test_the_page_button_unsubscribes(server: Server, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.set_default_timeout(60_000)
    try:
        page.goto(server.link("C200"))
        assert server.entries_of("C200") == []          # opening the page changes nothing
        page.click("#unsubscribe")
        page.wait_for_selector("text=You are unsubscribed")
        assert "weekly-newsletter" in page.content()
    finally:
        page.close()
    (entry,) = server.entries_of("C200")
    assert (entry.scope, entry.source) == ("weekly-newsletter", "page")
    # a second visit says so, and offers only the wider unsubscribe
    again = httpx.get(server.link("C200"), timeout=60)
    assert "already unsubscribed" in again.text and 'id="unsubscribe"' not in again.text


def test_the_all_marketing_button(server: Server, browser: object) -> None:
    page = browser.new_page(locale="es-ES",  # type: ignore[attr-defined]
                            extra_http_headers={"Accept-Language": "es-ES,es;q=0.9"})
    page.set_default_timeout(60_000)
    try:
        page.goto(server.link("C201"))
        assert "Darme de baja" in page.content()
        page.click("#unsubscribe-all")
        page.wait_for_selector("text=todos nuestros correos comerciales")
    finally:
        page.close()
    (entry,) = server.entries_of("C201")
    assert entry.scope == ALL_MARKETING
    other = load_campaign(server.root / "campaigns" / "weekly.yaml")
    assert "from all marketing" in str(Suppression.load(other, environ={}).reason_for(
        {"id": "C201", "email": "c201@example.com"}))


# -- starting it -------------------------------------------------------------------------------


def test_the_server_needs_the_secret(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_root(root)
    environment = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    environment |= {"PYTHONPATH": str(REPO), "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "cli", "unsubscribe-server", "--port",
                           str(free_port()), "--root", str(root)], cwd=root, env=environment,
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 1
    assert f"{SECRET_ENV} is not set" in proc.stderr
