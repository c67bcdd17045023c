"""The unsubscribe server, for real: `edition unsubscribe-server` on 127.0.0.1, requests
with httpx (RFC 8058 one-click POSTs, GETs), the confirmation page clicked in headless
Chromium, and what it records read back through the suppression store and Suppression.
Also: hostile bodies POSTed with a valid token (400, never 500, while /healthz keeps
answering), and the page in the customer's language with the campaign's display name,
from a template the team can override."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fixtures_delivery import free_port

from edition.audience.suppression import Suppression
from edition.content.campaign import load_campaign
from edition.render.unsubscribe import SECRET_ENV, make_token, token_of, unsubscribe_url
from edition.store.suppressions import ALL_MARKETING, Entry, SuppressionStore

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
             address: str | None = None, locale: str | None = None) -> str:
        """The customer's link as the message has it, pointed at this server."""
        public = unsubscribe_url(BASE, campaign=campaign, customer_id=customer_id,
                                 address=address or f"{customer_id.lower()}@example.com",
                                 secret=SECRET, locale=locale)
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
    # a garden club's Spanish newsletter, named for its readers (and a hostile name)
    (root / "campaigns" / "jardin.yaml").write_text(
        "name: boletin-jardin\n" + common + 'sender: "Club Jardín <club@jardin.example>"\n'
        "title: {es: 'Boletín del Club Jardín', en: Garden Club news}\n",
        encoding="utf-8")
    (root / "campaigns" / "hostile.yaml").write_text(
        "name: hostile\n" + common + "title: '<script>alert(1)</script> & Co'\n",
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


def nested_multipart(size: int = 64 * 1024 - 256) -> bytes:
    """Multipart parts nested in each other until the body is `size` bytes (the attack)."""
    head, tail, level = [], [], 0
    while sum(map(len, head)) + sum(map(len, tail)) < size:
        head.append(f"--{level}\r\nContent-Type:multipart/mixed;boundary={level + 1}"
                    f"\r\n\r\n".encode())
        tail.append(f"\r\n--{level}--".encode())
        level += 1
    return b"".join(head) + b"".join(reversed(tail))


def multipart(*parts: str, boundary: str = "xyz", close: bool = True) -> bytes:
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts)
    return (body + (f"--{boundary}--\r\n" if close else "")).encode()


ONE_CLICK_PART = 'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click'
HOSTILE = {
    "nested multipart, 64 KB": ("multipart/form-data; boundary=0", nested_multipart()),
    "1,000 parts": ("multipart/form-data; boundary=xyz", multipart(
        *[f'Content-Disposition: form-data; name="f{i}"\r\n\r\n' for i in range(1000)],
        ONE_CLICK_PART)),
    "a file": ("multipart/form-data; boundary=xyz", multipart(
        ONE_CLICK_PART, 'Content-Disposition: form-data; name="f"; filename="a.exe"\r\n'
        "Content-Type: application/octet-stream\r\n\r\nMZ" + "A" * 1000)),
    "a 40 KB part": ("multipart/form-data; boundary=xyz", multipart(
        ONE_CLICK_PART, 'Content-Disposition: form-data; name="via"\r\n\r\n' + "v" * 40_000)),
    "a 10 KB part header": ("multipart/form-data; boundary=xyz", multipart(
        'Content-Disposition: form-data; name="List-Unsubscribe"; x="' + "h" * 10_000
        + '"\r\n\r\nOne-Click')),
    "no boundary": ("multipart/form-data", b"List-Unsubscribe=One-Click"),
    "no closing boundary": ("multipart/form-data; boundary=xyz",
                            multipart(ONE_CLICK_PART, close=False)),
    "10,000 fields": ("application/x-www-form-urlencoded",
                      b"List-Unsubscribe=One-Click" + b"&a=1" * 10_000),
    "raw bytes": ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click&x=\xff"),
    "bad percent-escapes": ("application/x-www-form-urlencoded",
                            b"List-Unsubscribe=One-Click&x=%ff%fe"),
    "json": ("application/json", b'{"List-Unsubscribe": "One-Click"}'),
    "xml": ("text/xml", b"<List-Unsubscribe>One-Click</List-Unsubscribe>"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_body_that_is_not_a_small_form_gets_400(server: Server, kind: str) -> None:
    content_type, body = HOSTILE[kind]
    link = server.link("C120")
    response = post(link, content=body, headers={"content-type": content_type})
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert server.entries_of("C120") == []
    assert httpx.get(f"{server.url}/healthz", timeout=60).status_code == 200


def test_the_one_click_body_alone_is_taken_typed_or_not(server: Server) -> None:
    assert post(server.link("C121"), content=b"List-Unsubscribe=One-Click").status_code == 200
    assert post(server.link("C122"), content=b"List-Unsubscribe=One-Click\r\n",
                headers={"content-type": "text/plain"}).status_code == 200
    assert len(server.entries_of("C121")) == len(server.entries_of("C122")) == 1


HEALTHZ_BOUND = 1.5  # seconds per probe; the stalled server kept it waiting 7-10 s


def test_hostile_posts_in_parallel_do_not_stall_the_server(server: Server) -> None:
    """Eight 64 KB nested-multipart POSTs at once (one valid token): each answered 400,
    and /healthz keeps answering meanwhile. The parse used to run on the event loop for
    ~1.6 s per body and end in RecursionError (500)."""
    link = server.link("C123")
    body = nested_multipart()
    headers = {"content-type": "multipart/form-data; boundary=0"}

    # clients made up front: the probe times the server, not this process's TLS set-up
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=8)) as attackers, \
            httpx.Client(timeout=60) as probe:
        assert probe.get(f"{server.url}/healthz").status_code == 200

        def attack(_: int) -> int:
            return attackers.post(link, content=body, headers=headers).status_code

        waits: list[float] = []
        with ThreadPoolExecutor(8) as pool:
            posts = [pool.submit(attack, n) for n in range(8)]
            deadline = time.monotonic() + 120
            while (not all(p.done() for p in posts) or len(waits) < 10) \
                    and time.monotonic() < deadline:
                start = time.monotonic()
                assert probe.get(f"{server.url}/healthz").status_code == 200
                waits.append(time.monotonic() - start)
            statuses = [p.result() for p in posts]
    assert max(waits) < HEALTHZ_BOUND, f"/healthz waited {max(waits):.2f} s: {waits}"
    assert statuses == [400] * 8
    assert server.entries_of("C123") == []


# -- the page: the customer's language, the campaign's name, the team's template -----------


def test_the_page_speaks_the_customers_language_and_names_the_campaign(server: Server) -> None:
    spanish = server.link("C130", campaign="boletin-jardin", locale="es-MX")
    page = httpx.get(spanish, timeout=60)     # no Accept-Language: the token's locale
    assert page.status_code == 200 and page.headers["content-language"] == "es"
    assert '<html lang="es">' in page.text
    assert "¿Dejar de recibir <b>Boletín del Club Jardín</b>?" in page.text
    assert "boletin-jardin" not in page.text and ">Unsubscribe" not in page.text
    done = post(spanish)
    assert done.status_code == 200
    assert "Se ha dado de baja de <b>Boletín del Club Jardín</b>." in done.text
    assert len(server.entries_of("C130")) == 1

    # the customer's locale wins over the browser's; the English name for English readers
    english = server.link("C131", campaign="boletin-jardin", locale="en")
    page = httpx.get(english, headers={"Accept-Language": "es-ES,es;q=0.9"}, timeout=60)
    assert "Stop receiving <b>Garden Club news</b>?" in page.text
    # a language the pages do not speak: the browser's, then English
    german = server.link("C132", campaign="boletin-jardin", locale="de-AT")
    assert "¿Dejar de recibir" in httpx.get(
        german, headers={"Accept-Language": "de;q=1, es;q=0.8, en;q=0.5"}, timeout=60).text
    assert "Stop receiving" in httpx.get(german, timeout=60).text
    # a link made before tokens carried a locale: the browser decides
    old = server.link("C133", campaign="boletin-jardin")
    assert "¿Dejar de recibir" in httpx.get(old, headers={"Accept-Language": "es"},
                                            timeout=60).text
    # no title: the sender's name, else the campaign's
    assert "Stop receiving <b>weekly-newsletter</b>?" in httpx.get(server.link("C134"),
                                                                   timeout=60).text


def test_a_bad_link_is_refused_in_the_browsers_language(server: Server) -> None:
    bad = server.link("C135", campaign="boletin-jardin", locale="es")[:-4]
    page = httpx.get(bad, headers={"Accept-Language": "es"}, timeout=60)
    assert page.status_code == 400 and "no es válido" in page.text
    assert "not valid" in httpx.get(bad, timeout=60).text


def test_a_hostile_display_name_is_text(server: Server) -> None:
    page = httpx.get(server.link("C136", campaign="hostile"), timeout=60).text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in page


def test_every_message_of_the_pages_is_translated() -> None:
    """The Spanish catalog holds every message the templates show (a new one fails here)."""
    from babel.messages.extract import extract_from_dir

    from web.pages import OWN_TEMPLATES, languages, translations

    found = {message for _, _, message, _, _ in extract_from_dir(
        str(OWN_TEMPLATES), method_map=[("**.j2", "jinja2.ext:babel_extract")],
        options_map={"**.j2": {"extensions": "jinja2.ext.i18n"}})}
    assert len(found) >= 10 and "es" in languages()
    spanish = translations("es")
    untranslated = [m for m in found if spanish.gettext(m) == m]
    assert untranslated == []


def test_a_team_template_overrides_the_page(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_root(root)
    (root / "templates" / "unsubscribe.html.j2").write_text(
        '{% extends "web-page.html.j2" %}{% block main %}<p id="ours">Garden Club: '
        '{{ _("Unsubscribe") }} — {{ brand }} ({{ state }})</p>'
        '{% if state == "ask" %}<form method="post"><input type="hidden" '
        'name="List-Unsubscribe" value="One-Click"><button>x</button></form>{% endif %}'
        "{% endblock %}", encoding="utf-8")
    log = tmp_path / "server.log"
    process, url = start(root, log, {SECRET_ENV: SECRET})
    try:
        wait_healthy(url, process, log)
        link = unsubscribe_url(BASE, campaign="boletin-jardin", customer_id="C140",
                               address="c140@example.com", secret=SECRET, locale="es")
        link = link.replace("https://acme.example", url)
        page = httpx.get(link, timeout=60)
        assert '<p id="ours">Garden Club: Darse de baja — Boletín del Club Jardín (ask)' \
            in page.text
        assert '<header id="brand">Boletín del Club Jardín</header>' in page.text
        done = post(link)
        assert done.status_code == 200 and "(done)" in done.text
        # a template the team broke: the recipient still gets an answer (ours), and the
        # unsubscribe is recorded; the log says why
        page_file = root / "templates" / "unsubscribe.html.j2"
        page_file.write_text('{% extends "web-page.html.j2" %}{% block main %}{% if %}'
                             "{% endblock %}", encoding="utf-8")
        later = page_file.stat().st_mtime + 5
        os.utime(page_file, (later, later))
        other = link.replace(token_of(link) or "", make_token(
            campaign="boletin-jardin", customer_id="C141", address=None, secret=SECRET,
            locale="es"))
        answer = post(other)
        assert answer.status_code == 200
        assert "Se ha dado de baja de <b>Boletín del Club Jardín</b>." in answer.text
        with SuppressionStore(root / "out" / "suppression.sqlite") as store:
            assert [e.customer_id for e in store.entries()] == ["C140", "C141"]
        assert "the page template unsubscribe.html.j2 failed" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=60)


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


def test_edition_web_refuses_a_port_or_root_it_cannot_serve(tmp_path: Path) -> None:
    """A port past 65535 was uvicorn's traceback (exit 1); a content root that does not
    exist served nothing and answered every link 404. Both are usage errors now."""
    from conftest import run_cli

    code, _, err = run_cli("web", "--port", "99999", "--root", tmp_path, cwd=tmp_path,
                           timeout=60)
    assert code == 2 and "Traceback" not in err and "--port" in err, err
    code, _, err = run_cli("web", "--port", "0", "--root", tmp_path / "missing",
                           cwd=tmp_path, timeout=60)
    assert code == 2 and "Traceback" not in err, err
    assert "no such folder" in err and "missing" in err, err
