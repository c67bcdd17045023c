"""Unsubscribe links: signed tokens, URLs, List-Unsubscribe headers (edition.unsubscribe)."""

from __future__ import annotations

import base64
import json
import pickle
from urllib.parse import parse_qs, urlsplit

import pytest

from edition.addresses import address_hash
from edition.errors import ContentError, EditionError, RunError
from edition.render.unsubscribe import (
    ONE_CLICK,
    SECRET_ENV,
    InvalidToken,
    Subscriber,
    UnsubscribeLinks,
    UnsubscribeSecretError,
    list_unsubscribe_headers,
    make_token,
    secrets_from_env,
    token_of,
    unsubscribe_url,
    verify,
)

SECRET = "s3cret-for-tests-0123456789abcdef"
OTHER = "another-secret-0123456789abcdefgh"


def token(customer_id: str = "C000042", address: str | None = "Ann.Lee@Example.COM",
          campaign: str = "weekly-newsletter", secret: str = SECRET) -> str:
    return make_token(campaign=campaign, customer_id=customer_id, address=address,
                      secret=secret)


def test_a_token_names_campaign_customer_and_address_hash() -> None:
    who = verify(token(), SECRET)
    assert who == Subscriber("weekly-newsletter", "C000042", address_hash("ann.lee@example.com"))
    assert len(who.address_hash) == 32


def test_tokens_are_url_safe_deterministic_and_do_not_show_the_customer() -> None:
    first = token()
    assert first == token()                       # same link in every rerun
    assert first != token("C000043")
    assert all(c.isalnum() or c in "-_" for c in first)
    assert "C000042" not in first
    raw = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4))
    assert b"C000042" not in raw and b"weekly" not in raw   # encrypted, not just encoded


def test_a_customer_id_of_any_text_round_trips() -> None:
    for ident in ["x", "Ünïcode-ID/with?query&chars#", "a" * 2000, "new\nline"]:
        assert verify(token(ident, None), SECRET).customer_id == ident
    assert verify(token("C1", None), SECRET).address_hash == ""


def test_a_token_carries_the_customers_locale_for_the_page() -> None:
    """The unsubscribe page answers in the customer's language: the token says which."""
    spanish = make_token(campaign="boletin", customer_id="C7", address="a@b.example",
                         secret=SECRET, locale="es-MX")
    assert verify(spanish, SECRET) == Subscriber("boletin", "C7", address_hash("a@b.example"),
                                                 "es-MX")
    assert verify(token(), SECRET).locale == ""   # links made without one keep working
    # text that is not a language tag stays out of the token (it is the customer file's)
    for junk in ["", "   ", "<script>", "es\nX-Injected: 1", "x" * 40, "español"]:
        made = make_token(campaign="boletin", customer_id="C7", address=None, secret=SECRET,
                          locale=junk)
        assert verify(made, SECRET).locale == ""
        assert made == make_token(campaign="boletin", customer_id="C7", address=None,
                                  secret=SECRET)
    # a tampered locale token fails like any other
    raw = bytearray(base64.urlsafe_b64decode(spanish + "=" * (-len(spanish) % 4)))
    raw[-1] ^= 1
    with pytest.raises(InvalidToken):
        verify(base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode(), SECRET)
    links = UnsubscribeLinks.build("boletin", "https://acme.example/u",
                                   environ={SECRET_ENV: SECRET})
    assert verify(token_of(links.url("C7", None, "es")), SECRET).locale == "es"
    header = links.headers("C7", None, "es")["List-Unsubscribe"]
    assert verify(token_of(header.strip("<>")), SECRET).locale == "es"


@pytest.mark.parametrize("change", ["flip", "cut", "extend", "empty", "junk", "padding"])
def test_an_edited_token_does_not_verify(change: str) -> None:
    good = token()
    bad = {
        "flip": good[:20] + ("A" if good[20] != "A" else "B") + good[21:],
        "cut": good[:-3],
        "extend": good + "AAAA",
        "empty": "",
        "junk": "not a token!",
        "padding": good + "==",
    }[change]
    with pytest.raises(InvalidToken):
        verify(bad, SECRET)


def test_every_single_character_change_is_caught() -> None:
    good = token("C7", "a@b.example")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(good)):
        replacement = alphabet[(alphabet.index(good[i]) + 1) % len(alphabet)]
        edited = good[:i] + replacement + good[i + 1:]
        with pytest.raises(InvalidToken):
            verify(edited, SECRET)


def test_another_secret_does_not_verify_but_a_rotated_list_does() -> None:
    with pytest.raises(InvalidToken):
        verify(token(), OTHER)
    # after rotation the new secret signs and the old one still verifies
    assert verify(token(), [OTHER, SECRET]).customer_id == "C000042"


def test_invalid_token_is_an_edition_error() -> None:
    assert issubclass(InvalidToken, EditionError)


def test_the_address_hash_ignores_case_and_surrounding_space() -> None:
    assert address_hash(" Ann.Lee@EXAMPLE.com ") == address_hash("ann.lee@example.com")
    assert address_hash("ann@example.com") != address_hash("bob@example.com")
    assert address_hash("") == address_hash(None) == ""


def test_the_url_keeps_the_base_query_and_fragment() -> None:
    url = unsubscribe_url("https://acme.example/u?list=weekly&lang=es#top",
                          campaign="weekly-newsletter", customer_id="C1", address="a@b.example",
                          secret=SECRET)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.netloc == "acme.example" and parts.path == "/u" and parts.fragment == "top"
    assert query["list"] == ["weekly"] and query["lang"] == ["es"]
    assert verify(query["token"][0], SECRET).customer_id == "C1"
    assert token_of(url) == query["token"][0]
    assert "C1" not in url


def test_a_mailto_link_carries_the_token_in_the_subject() -> None:
    url = unsubscribe_url("mailto:unsubscribe@acme.example", campaign="weekly-newsletter",
                          customer_id="C1", address="a@b.example", secret=SECRET)
    assert url.startswith("mailto:unsubscribe@acme.example?subject=unsubscribe%20")
    assert verify(token_of(url) or "", SECRET).customer_id == "C1"


def test_list_unsubscribe_headers() -> None:
    https = "https://acme.example/u?token=abc"
    mailto = "mailto:u@acme.example?subject=unsubscribe%20abc"
    assert list_unsubscribe_headers(https) == {
        "List-Unsubscribe": f"<{https}>", "List-Unsubscribe-Post": ONE_CLICK}
    both = list_unsubscribe_headers(mailto, https)       # https first, whatever the order
    assert both["List-Unsubscribe"] == f"<{https}>, <{mailto}>"
    assert both["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # one-click needs https (RFC 8058): mailto or plain http get no Post header
    assert list_unsubscribe_headers(mailto) == {"List-Unsubscribe": f"<{mailto}>"}
    assert "List-Unsubscribe-Post" not in list_unsubscribe_headers("http://acme.example/u")
    assert list_unsubscribe_headers(None) == {}


def test_the_secret_comes_from_the_environment_and_is_never_shown() -> None:
    assert secrets_from_env({SECRET_ENV: f"{SECRET}, {OTHER}"}) == (SECRET.encode(),
                                                                   OTHER.encode())
    with pytest.raises(UnsubscribeSecretError, match=SECRET_ENV) as missing:
        secrets_from_env({})
    assert isinstance(missing.value, RunError) and missing.value.exit_code == 1
    with pytest.raises(UnsubscribeSecretError, match="shorter") as short:
        secrets_from_env({SECRET_ENV: "tiny-secret"})
    assert "tiny-secret" not in str(short.value)


class _Campaign:
    """The attributes of edition.content.campaign.Campaign the links read."""

    def __init__(self, **values: object):
        self.name = "weekly-newsletter"
        self.file = "campaigns/weekly-newsletter.yaml"
        self.kind = "marketing"
        self.unsubscribe_url = "https://acme.example/unsubscribe"
        self.unsubscribe_mailto = "mailto:unsubscribe@acme.example"
        self.__dict__.update(values)


def test_links_for_a_campaign(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {SECRET_ENV: SECRET}
    links = UnsubscribeLinks.for_campaign(_Campaign(), env)   # type: ignore[arg-type]
    assert links is not None and links.signed
    url = links.url("C9", "c9@example.com")
    assert verify(token_of(url) or "", SECRET) == Subscriber(
        "weekly-newsletter", "C9", address_hash("c9@example.com"))
    headers = links.headers("C9", "c9@example.com")
    assert headers["List-Unsubscribe"].startswith(f"<{url}>, <mailto:unsubscribe@acme")
    assert headers["List-Unsubscribe-Post"] == ONE_CLICK
    assert SECRET not in repr(links)
    # pickles without the secret; the copy reads it again where it is unpickled
    data = pickle.dumps(links)
    assert SECRET.encode() not in data
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert pickle.loads(data).url("C9", "c9@example.com") == url


def test_links_need_the_secret_and_a_url_for_marketing() -> None:
    with pytest.raises(UnsubscribeSecretError):
        UnsubscribeLinks.for_campaign(_Campaign(), {})        # type: ignore[arg-type]
    unsigned = UnsubscribeLinks.for_campaign(_Campaign(), {},  # type: ignore[arg-type]
                                             allow_unsigned=True)
    assert unsigned is not None and not unsigned.signed
    with pytest.raises(InvalidToken):
        verify(token_of(unsigned.url("C1", None)) or "", SECRET)
    with pytest.raises(ContentError, match="unsubscribe_url is required"):
        UnsubscribeLinks.for_campaign(_Campaign(unsubscribe_url=None),  # type: ignore[arg-type]
                                      {SECRET_ENV: SECRET})
    # transactional mail (a bill) carries no unsubscribe link at all
    assert UnsubscribeLinks.for_campaign(_Campaign(kind="transactional"),  # type: ignore[arg-type]
                                         {SECRET_ENV: SECRET}) is None


@pytest.mark.parametrize("base", [
    "https://acme.example/unsubscribe",
    "https://acme.example/u?list=weekly&token=old#top",
    "http://acme.example/u/?a=%C3%A9&b=",
    "mailto:unsubscribe@acme.example",
    "mailto:unsubscribe@acme.example?subject=stop%20please&body=x",
])
@pytest.mark.parametrize("token", ["AbC-_09", "x.y~z", "é ü/+=?&#"])
def test_the_fast_link_is_the_same_string_as_with_token(base: str, token: str) -> None:
    from edition.render.unsubscribe import _tokened, with_token

    assert _tokened(base, token) == with_token(base, token)


def test_an_html_only_run_carries_each_customers_signed_link(content_tree, cli) -> None:
    """design.md: `customer.unsubscribe_url` is the customer's signed link, whatever the
    formats: a web or PDF edition printing it unguarded failed every customer ("the run
    makes it for e-mail") when run with --formats html."""
    root = content_tree(
        campaigns={"web.yaml": {
            "name": "web-edition", "template": "web.html.j2", "subject": "News",
            "sender": "Shop <news@shop.example>", "formats": ["html", "eml"],
            "slots": {"articles": {"kind": "article", "count": 1}},
            "unsubscribe_url": "https://shop.example/unsubscribe"}},
        templates={"web.html.j2": "<html lang=\"en\"><body>{% for a in articles %}{{ a.html }}"
                                  "{% endfor %}<a href=\"{{ customer.unsubscribe_url }}\">"
                                  "Unsubscribe</a></body></html>"},
        articles={"a.md": {"title": "A", "body": "Hello."}},
        customers={"c.csv": [{"id": "c1", "email": "ann@example.com"},
                             {"id": "c2", "email": "bo@example.com"}]})
    rc, stdout, stderr = cli("run", "campaigns/web.yaml", "--customers", "data/c.csv",
                             "--formats", "html", "--out", "out/r1", cwd=root)
    assert rc == 0, stdout + stderr
    folder = root / "out" / "r1"
    files = {row["customer_id"]: row["files"]["html"] for row in map(
        json.loads, (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines())}
    for customer, address in (("c1", "ann@example.com"), ("c2", "bo@example.com")):
        page = (folder / files[customer]).read_text(encoding="utf-8")
        link = page.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        assert link.startswith("https://shop.example/unsubscribe?token=")
        who = verify(token_of(link), secrets_from_env()[0])
        assert (who.customer_id, who.address_hash) == (customer, address_hash(address))
