# ruff: noqa: E501  (templates are easier to read on one line)
"""Click tracking end to end: the real CLI renders a campaign with `tracking:`, its links
go through `<base_url>/c/<token>` (unsubscribe, mailto and the customer's own opt-out
left alone), and the real `edition unsubscribe-server` on loopback answers those tokens
with a 302 to exactly the signed link, refuses forged ones without a redirect, and
records people's and machines' clicks apart in the house store (SQLite and PostgreSQL).
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_delivery import free_port
from fixtures_web import running_web

from edition.render.tracking import Click, InvalidClick, make_token, secrets_from_env, verify
from edition.store.clicks import ClickStore

REPO = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-02"
SECRET = os.environ["EDITION_UNSUBSCRIBE_SECRET"]
PAGE = """<html><body><p>Hello {{ customer.first_name | default('there') }}</p>
{% for a in articles %}<h2>{{ a.title }}</h2>{{ a.html }}{% endfor %}
<p><a href="https://acme.example/home?a=1&amp;b=%C3%A9">Home</a> <a href='mailto:help@acme.example'>Mail</a> <A HREF="https://acme.example/help">Help</A> <img src="https://cdn.acme.example/logo.png" alt=""></p>
<p><a href="{{ customer.unsubscribe_url }}">Unsubscribe</a></p></body></html>
"""
ARTICLES = {
    "garden.md": {"title": "Garden", "priority": 5, "body": "Read [the guide](https://shop.example/guide?id=7&x=y) today.\n"},
    "vip.md": {"title": "VIP", "segments": ["vip"], "priority": 9, "body": "See [your offer](https://shop.example/vip) now.\n"},
}
CUSTOMERS = [
    {"id": "c1", "email": "c1@example.com", "first_name": "Ann", "spend": 10},
    {"id": "c2", "email": "c2@example.com", "first_name": "Bob", "spend": 20},
    {"id": "v/1 ;'x", "email": "v1@example.com", "first_name": "Zoë", "spend": 9000},
    {"id": "c4", "email": "c4@example.com", "first_name": "Cy", "spend": 30, "tracking": "off"},
]


def campaign(base_url: str, level: str = "aggregate") -> dict[str, Any]:
    return {"name": "news", "template": "news.html.j2", "subject": "News",
            "sender": "Acme <news@acme.example>", "customers": "data/customers.csv",
            "segments": {"vip": "spend >= 5000"},
            "slots": {"articles": {"kind": "article", "count": 2}},
            "formats": ["html", "text", "eml"],
            "unsubscribe_url": "https://acme.example/unsubscribe",
            "tracking": {"base_url": base_url, "level": level}}


def site(content_tree: Callable[..., Path], base_url: str, level: str = "aggregate",
         name: str = "site") -> Path:
    return content_tree(name=name, campaigns={"news.yaml": campaign(base_url, level)},
                        templates={"news.html.j2": PAGE}, articles=ARTICLES,
                        customers={"customers.csv": CUSTOMERS})


def hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r"""<a\b[^>]*href=["']([^"']*)""", page)]


def tokens(links: list[str], base: str) -> list[Click]:
    secrets = secrets_from_env()
    return [verify(link.removeprefix(base + "/c/"), secrets) for link in links
            if link.startswith(base + "/c/")]


def render(cli: Callable[..., Any], root: Path) -> dict[str, dict[str, Any]]:
    rc, _, err = cli("run", "campaigns/news.yaml", "--out", "out", "--as-of", AS_OF, cwd=root)
    assert rc == 0, err
    from conftest import read_manifest
    return {r["customer_id"]: r for r in read_manifest(root / "out")}


def test_links_go_through_signed_tokens_and_the_rest_is_left_alone(
        content_tree: Callable[..., Path], cli: Callable[..., Any]) -> None:
    base = "https://go.acme.example/t"
    root = site(content_tree, base)
    rows = render(cli, root)
    out = root / "out"
    page = (out / rows["c1"]["files"]["html"]).read_text(encoding="utf-8")
    links = hrefs(page)
    tracked = [link for link in links if link.startswith(base + "/c/")]
    plain = [link for link in links if not link.startswith(base + "/c/")]
    # the unsubscribe link (signed, personal) and the mailto stay; the image is no link
    assert len(plain) == 2 and plain[0].startswith("mailto:") and \
        plain[1].startswith("https://acme.example/unsubscribe?token="), plain
    assert "https://cdn.acme.example/logo.png" in page
    clicks = {c.url: c for c in tokens(tracked, base)}
    assert set(clicks) == {"https://shop.example/guide?id=7&x=y",
                           "https://acme.example/home?a=1&b=%C3%A9", "https://acme.example/help"}
    assert clicks["https://shop.example/guide?id=7&x=y"].module == "garden"
    assert clicks["https://acme.example/home?a=1&b=%C3%A9"].module == ""   # the template's
    for click in clicks.values():
        assert (click.campaign, click.mailing, click.version) == ("news", AS_OF,
                                                                  rows["c1"]["version"])
        assert click.customer_id is None   # aggregate: nobody is named
    # aggregate tokens are the version's: two customers of one version get the same bytes
    # (but for their own unsubscribe link)
    other = (out / rows["c2"]["files"]["html"]).read_text(encoding="utf-8")
    assert rows["c2"]["version"] == rows["c1"]["version"]
    assert [t for t in hrefs(other) if t.startswith(base)] == tracked
    # the VIP's own module, and the text and .eml carry tracked links too
    vip = tokens(hrefs((out / rows["v/1 ;'x"]["files"]["html"]).read_text(encoding="utf-8")), base)
    assert {c.module for c in vip} == {"vip", "garden", ""}
    assert all(c.segments == ("vip",) for c in vip)
    text = (out / rows["c1"]["files"]["text"]).read_text(encoding="utf-8")
    assert "https://shop.example/guide" not in text and f"{base}/c/" in text
    eml = (out / rows["c1"]["files"]["eml"]).read_bytes()
    assert b"shop.example/guide" not in eml
    # the customer who said no to tracking gets plain links
    own = hrefs((out / rows["c4"]["files"]["html"]).read_text(encoding="utf-8"))
    assert "https://shop.example/guide?id=7&x=y" in own
    assert not any(link.startswith(base) for link in own)


def test_customer_level_names_the_customer_inside_a_sealed_token(
        content_tree: Callable[..., Path], cli: Callable[..., Any]) -> None:
    base = "https://go.acme.example"
    root = site(content_tree, base, level="customer")
    rows = render(cli, root)
    for cid in ("c1", "v/1 ;'x"):
        links = [h for h in hrefs((root / "out" / rows[cid]["files"]["html"]).read_text(
            encoding="utf-8")) if h.startswith(base + "/c/")]
        assert {c.customer_id for c in tokens(links, base)} == {cid}
        for link in links:   # sealed: the id (and the link) cannot be read from the URL
            token = link.split("/c/", 1)[1]
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            assert cid.encode() not in raw and b"shop.example" not in raw


def test_forged_and_edited_tokens_do_not_verify() -> None:
    secrets = secrets_from_env()
    good = make_token(Click("news", "m", "v1", "garden", "https://shop.example/"), secrets[0])
    assert verify(good, secrets).url == "https://shop.example/"
    forged = make_token(Click("news", "m", "v1", "garden", "https://evil.example/"),
                        b"another-secret-0123456789")
    edited = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    for bad in (forged, edited, good[:-4], "", "x" * 9000, good + "=", "../../etc"):
        with pytest.raises(InvalidClick):
            verify(bad, secrets)
    # a token we signed around a non-web link is refused too (never a javascript: 302)
    with pytest.raises(InvalidClick):
        verify(make_token(Click("n", "m", "v", "", "javascript:alert(1)"), secrets[0]), secrets)


@pytest.fixture
def server(content_tree: Callable[..., Path]) -> Iterator[tuple[Path, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root = site(content_tree, f"{url}/t", name="served")
    env = {k: v for k, v in os.environ.items()
           if k not in ("EDITION_STORE", "EDITION_SUPPRESSION_STORE", "EDITION_TRACKING_SECRET")}
    env |= {"PYTHONPATH": str(REPO), "NO_COLOR": "1", "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1"}
    log = root.parent / "server.log"
    with running_web(root, port, env, log, verb="unsubscribe-server") as url:
        yield root, url


BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"}


def test_clicks_through_the_server_redirect_exactly_and_are_recorded(
        server: tuple[Path, str], cli: Callable[..., Any]) -> None:
    root, url = server
    base = f"{url}/t"
    rows = render(cli, root)
    page = (root / "out" / rows["c1"]["files"]["html"]).read_text(encoding="utf-8")
    links = [h for h in hrefs(page) if h.startswith(base + "/c/")]
    signed = {link: c.url for link, c in zip(links, tokens(links, base), strict=True)}
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        # one person clicks one link: 302 to exactly the signed URL, whatever is appended
        link = next(iter(signed))
        answer = client.get(link + "?next=https://evil.example/", headers=BROWSER)
        assert answer.status_code == 302
        assert answer.headers["location"] == signed[link]
        # forged, edited, foreign: 4xx and no Location at all
        token = link.rsplit("/", 1)[1]
        forged = make_token(Click("news", AS_OF, "v1", "", "https://evil.example/"),
                            b"not-the-server-secret-0123456789")
        for bad in (f"{base}/c/{forged}", f"{base}/c/{token[:-3]}",
                    f"{base}/c/{token[:10]}A{token[11:]}", f"{base}/c/https:%2F%2Fevil.example",
                    f"{url}/c/"):
            refused = client.get(bad, headers=BROWSER)
            assert 400 <= refused.status_code < 500, (bad, refused.status_code)
            assert "location" not in refused.headers
        # a scanner fetches every link: recorded apart
        for each in signed:
            scanned = client.get(each, headers={"User-Agent": "Mimecast Link Scanner"})
            assert scanned.status_code == 302
        # another client opens every link within a second: a burst, a machine too
        for each in signed:
            assert client.get(each, headers={"User-Agent": "Mozilla/5.0 Burst"}).status_code == 302
    store = root / "out" / "suppression.sqlite"
    with ClickStore(store) as clicks:
        recorded = clicks.clicks("news", AS_OF)
    assert len(recorded) == 1 + 2 * len(signed)
    people = [c for c in recorded if not c.machine]
    assert len(people) == 1 and people[0].url == signed[link] and people[0].customer_id is None
    assert sum("scanner" in c.why for c in recorded) == len(signed)
    assert sum(c.why.startswith("burst") for c in recorded) == len(signed)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_click_store_counts_people_and_machines_apart(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import datetime as dt

    location = (str(tmp_path / "store.sqlite") if backend == "sqlite"
                else request.getfixturevalue("fresh_postgresql_url"))
    start = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    common = {"campaign": "news", "mailing": "m1", "version": "v1", "segments": ("vip", "new")}
    with ClickStore(location) as store:
        # a person: two links a minute apart
        assert store.record(**common, module="a", url="https://x.example/1", customer_id=None,
                            client="p1", at=start)
        assert store.record(**common, module="b", url="https://x.example/2", customer_id=None,
                            client="p1", at=start + dt.timedelta(minutes=1))
        # a gateway: three different links within two seconds, all of them machine
        for i in range(3):
            person = store.record(**common, module="a", url=f"https://x.example/{i}",
                                  customer_id="c9", client="gw",
                                  at=start + dt.timedelta(seconds=i))
        assert person is False
        # a scanner by its user agent
        assert not store.record(**common, module="a", url="https://x.example/1",
                                customer_id=None, client="s", machine_reason="scanner")
        counts = store.counts("news")
    assert counts.machine == 4 and counts.total == 2
    assert counts.people == {("m1", "v1", "a", "vip"): 1, ("m1", "v1", "a", "new"): 1,
                             ("m1", "v1", "b", "vip"): 1, ("m1", "v1", "b", "new"): 1}


def test_the_next_mailings_report_shows_clicks_per_module_and_segment(
        content_tree: Callable[..., Path], cli: Callable[..., Any]) -> None:
    base = "https://go.acme.example"
    root = site(content_tree, base)
    rc, _, err = cli("run", "campaigns/news.yaml", "--out", "out/m1", "--as-of", AS_OF,
                     "--send", "--yes", "--mailing", "m1", cwd=root)
    assert rc == 0, err
    from conftest import read_manifest
    rows = {r["customer_id"]: r for r in read_manifest(root / "out" / "m1")}
    assert {r["status"] for r in rows.values()} == {"sent"}
    # the people's clicks, as the server records them: c1 and the VIP open the garden
    # guide, the VIP their offer; a scanner opens the VIP's offer too
    def click_on(customer: str, module: str) -> Click:
        page = (root / "out" / "m1" / rows[customer]["files"]["html"]).read_text(
            encoding="utf-8")
        return next(c for c in tokens(hrefs(page), base) if c.module == module)

    with ClickStore(root / "out" / "suppression.sqlite") as store:
        for who, module, machine in (("c1", "garden", ""), ("v/1 ;'x", "garden", ""),
                                     ("v/1 ;'x", "vip", ""), ("v/1 ;'x", "vip", "scanner")):
            c = click_on(who, module)
            store.record(campaign=c.campaign, mailing=c.mailing, version=c.version,
                         module=c.module, url=c.url, segments=c.segments,
                         customer_id=c.customer_id, client=who.encode().hex()[:32],
                         machine_reason=machine)
    rc, _, err = cli("run", "campaigns/news.yaml", "--out", "out/next", "--as-of",
                     "2026-11-09", cwd=root)
    assert rc == 0, err
    report = (root / "out" / "next" / "report.md").read_text(encoding="utf-8")
    section = report.split("## Clicks in the previous mailing (m1)", 1)[1]
    table = {tuple(c.strip(" `") for c in line.strip("|").split("|"))
             for line in section.splitlines() if line.startswith("| `")}
    # c1, c2, c4 are in no segment (garden only, with 3 template links); the VIP has both
    assert ("garden", "(none)", "3", "1", "33.3%") in table
    assert ("garden", "vip", "1", "1", "100.0%") in table
    assert ("vip", "vip", "1", "1", "100.0%") in table
    assert ("(template)", "(none)", "3", "0", "0.0%") in table
    assert "1 machine click(s)" in section


def test_hostile_links_never_become_a_redirect_anywhere_else() -> None:
    from web.clicks import location

    secrets = secrets_from_env()
    # a link with a header break, a javascript: one, one without a host: never signed as
    # a redirect target (the tracker leaves them alone, verify refuses them)
    for url in ("https://shop.example/a\r\nSet-Cookie: x=1", "javascript:alert(1)",
                "https:///nohost", "//evil.example/x", "data:text/html,hi"):
        with pytest.raises(InvalidClick):
            verify(make_token(Click("n", "m", "v", "", url), secrets[0]), secrets)
    # the Location is the signed URL itself; only what a header cannot carry is encoded
    assert location("https://shop.example/a?b=1&c=|x|#f") == "https://shop.example/a?b=1&c=|x|#f"
    assert location("https://shop.example/café?q=ü v") == \
        "https://shop.example/caf%C3%A9?q=%C3%BC%20v"
