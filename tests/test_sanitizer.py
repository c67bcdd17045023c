"""Nothing executable gets into an edition's HTML, whoever wrote it.

Module authors and customer values got past the sanitizer: `| safe` in a body put a
raw <script> into the HTML and the .eml, an expression inside an href gave
`href="javascript:..."`, a customer value `javascript:alert(document.cookie)` became a
link, a body's literal `edjinja0x` was replaced by another expression's output, and a
body whose only Jinja was a comment was published verbatim.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = ("<!doctype html><html lang=en><body>{% for a in articles %}{{ a.html }}{% endfor %}"
        '<p><a href="{{ customer.homepage | default(\'https://acme.example\') }}">home</a></p>'
        "</body></html>\n")
CAMPAIGN = {"name": "x", "template": "page.html.j2", "subject": "Hi",
            "sender": "Acme <news@acme.example>",
            "slots": {"articles": {"kind": "article", "count": 1}},
            "formats": ["html", "text", "eml"], "customers": "data/customers.csv"}
BAD_URLS = ["javascript:alert(document.cookie)", " JaVaScRiPt:alert(1)", "java\tscript:x",
            "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox(1)"]
GOOD_URLS = ["https://ok.example/a?b=1", "mailto:a@b.example", "tel:+15550100", "/relative"]


def run(content_tree, cli, manifest_of, body: str, rows: list[dict]) -> tuple[Path, dict]:
    root = content_tree(campaigns={"x.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles={"a.md": {"title": "A", "body": body}},
                        customers={"customers.csv": rows})
    out = root / "out"
    rc, stdout, stderr = cli("run", "campaigns/x.yaml", "--out", str(out), cwd=root)
    assert rc == 0, stdout + stderr
    return out, {r["customer_id"]: r for r in manifest_of(out)}


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


@pytest.mark.parametrize("body", [
    "Hi {{ '<script>alert(9)</script>' | safe }}.\n",
    "{% autoescape false %}{{ customer.first_name }}{% endautoescape %}\n",
    "{% include 'page.html.j2' %}\n",
    "{% include '/etc/passwd' %}\n",
    "{% import 'page.html.j2' as p %}\n",
])
def test_a_module_cannot_switch_escaping_off_or_pull_in_files(content_tree, cli,
                                                              body: str) -> None:
    root = content_tree(campaigns={"x.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles={"a.md": {"title": "A", "body": body}},
                        customers={"customers.csv": [{"id": "C1", "email": "c1@example.com"}]})
    rc, _, stderr = cli("validate", "campaigns/x.yaml", cwd=root)
    assert rc == 2 and "articles/a.md:" in stderr and "not allowed in a module" in stderr, stderr
    assert "Traceback" not in stderr


def test_urls_from_expressions_and_customers_are_only_http_mailto_tel_or_relative(
        content_tree, cli, manifest_of) -> None:
    body = ('[your page]({{ customer.homepage }}) and <a href="{{ \'javascript:alert(8)\' }}">'
            "x</a> and ![pic]({{ customer.homepage }})\n")
    rows = [{"id": f"C{i}", "email": f"c{i}@example.com", "homepage": url}
            for i, url in enumerate(BAD_URLS + GOOD_URLS)]
    out, manifest = run(content_tree, cli, manifest_of, body, rows)
    for i, url in enumerate(BAD_URLS + GOOD_URLS):
        html = (out / manifest[f"C{i}"]["files"]["html"]).read_text(encoding="utf-8")
        assert "javascript" not in html.lower() and "data:" not in html
        assert "vbscript" not in html.lower() and "<script" not in html
        links = hrefs(html)
        if url in GOOD_URLS:
            assert url in links, (url, links)
        else:
            assert "" in links  # the customer's link is emptied, not executed
        eml = (out / manifest[f"C{i}"]["files"]["eml"]).read_bytes()
        assert b"javascript" not in eml.lower()


def test_protect_tokens_cannot_collide_with_text_in_a_body(content_tree, cli,
                                                           manifest_of) -> None:
    body = "Literal edjinja0x and edj0q0x stay, {{ customer.first_name }} is filled.\n"
    out, manifest = run(content_tree, cli, manifest_of, body,
                        [{"id": "C1", "email": "c1@example.com", "first_name": "Ann"}])
    html = (out / manifest["C1"]["files"]["html"]).read_text(encoding="utf-8")
    assert "Literal edjinja0x and edj0q0x stay, Ann is filled." in html


def test_a_jinja_comment_is_never_published(content_tree, cli, manifest_of) -> None:
    body = "Public words. {# internal: do not publish #}\n\nMore {# two\nlines #} words.\n"
    out, manifest = run(content_tree, cli, manifest_of, body,
                        [{"id": "C1", "email": "c1@example.com"}])
    for fmt in ("html", "text", "eml"):
        data = (out / manifest["C1"]["files"][fmt]).read_bytes()
        assert b"internal" not in data and b"{#" not in data and b"two" not in data
    assert "Public words." in (out / manifest["C1"]["files"]["html"]).read_text()


def test_jinja_the_sanitizer_would_cut_is_a_content_error(content_tree, cli) -> None:
    body = ('<span onclick="{{ customer.first_name }}">x</span>\n\n'
            "<p {% if customer.vip %}class=\"vip\"{% endif %}>y</p>\n")
    root = content_tree(campaigns={"x.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles={"a.md": {"title": "A", "body": body}},
                        customers={"customers.csv": [{"id": "C1", "email": "c1@example.com"}]})
    rc, _, stderr = cli("validate", "campaigns/x.yaml", cwd=root)
    assert rc == 2 and "articles/a.md:" in stderr and "sanitizer" in stderr, stderr
