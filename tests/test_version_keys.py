"""Version ids are whole sha256 digests, and locales are language tags (issue 17, finding 5).

A version id used to be `v` + 11 hex digits (44 bits) and keyed the shared renders; the
locale in the key was free text, so two versions with one id were found on purpose in
seconds, and a Spanish customer got the English version's edition while the manifest
listed their own modules. Here the real CLI runs with the hash's first 44 bits forced
equal for every version (a collision of every short id at once): each customer must
still get exactly their own version's content. Locales that are not language tags are
rejected with the reason; spellings of one tag (`en_GB`, `EN-gb`) are one locale.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import AS_OF, read_manifest, run_cli

from edition.locales import NotALanguageTag, language_tag

PAGE = ("<!doctype html><html lang=en><body><h1>{{ campaign.subject }}</h1>"
        "{% for a in articles %}<h2>{{ a.title }}</h2>{{ a.html }}{% endfor %}"
        "<p>Hi {{ customer.first_name }}</p></body></html>\n")
CAMPAIGN = {"name": "news", "template": "page.html.j2",
            "subject": {"en": "Your news", "es": "Tus noticias"},
            "segments": {"gold": "tier == 'gold'"},
            "slots": {"articles": {"kind": "article", "count": 1}},
            "formats": ["html", "text"], "customers": "data/customers.csv"}
ARTICLES = {
    "english.md": {"title": "English article", "locales": ["en"], "body": "In English.\n"},
    "spanish.md": {"title": "Artículo en español", "locales": ["es"],
                   "body": "En español.\n"},
    "gold.md": {"title": "Gold members only", "segments": ["gold"], "priority": 5,
                "body": "For gold.\n"},
}
PEOPLE = [
    {"id": "E1", "first_name": "Ann", "locale": "en", "tier": "basic"},
    {"id": "S1", "first_name": "Bea", "locale": "es", "tier": "basic"},
    {"id": "G1", "first_name": "Cal", "locale": "en", "tier": "gold"},
    {"id": "E2", "first_name": "Dan", "locale": "en", "tier": "basic"},
    {"id": "S2", "first_name": "Eva", "locale": "es", "tier": "basic"},
]
OWN = {  # what each customer's own version holds: (subject, article title)
    "en": ("Your news", "English article"),
    "es": ("Tus noticias", "Artículo en español"),
    "gold": ("Your news", "Gold members only"),
}

# The CLI with every version hash's first 11 hex digits (the old id) set to zeros.
COLLIDING_CLI = """
import hashlib, sys, types
import edition.render.versions

class Colliding:
    def __init__(self, data=b""):
        self._hash = hashlib.sha256(data)
    def update(self, data):
        self._hash.update(data)
    def hexdigest(self):
        return "0" * 11 + self._hash.hexdigest()[11:]

edition.render.versions.hashlib = types.SimpleNamespace(sha256=Colliding)
from cli import main
sys.argv = ["edition", *sys.argv[1:]]
main()
"""


def colliding_cli(*args: str | Path, cwd: Path) -> tuple[int, str, str]:
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               NO_COLOR="1", PYTHONIOENCODING="utf-8")
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-c", COLLIDING_CLI, *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, encoding="utf-8",
                          timeout=300, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def expected(person: dict[str, Any]) -> tuple[str, str]:
    return OWN["gold" if person["tier"] == "gold" else person["locale"]]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_versions_whose_short_ids_collide_keep_their_own_content(content_tree,
                                                                  workers: str) -> None:
    root = content_tree(campaigns={"news.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES, customers={"customers.csv": PEOPLE})
    out = root / "out"
    rc, stdout, stderr = colliding_cli("run", "campaigns/news.yaml", "--out", out, "--as-of",
                                       AS_OF, "--workers", workers, cwd=root)
    assert rc == 0, stdout + stderr
    rows = {r["customer_id"]: r for r in read_manifest(out)}
    for person in PEOPLE:
        row = rows[person["id"]]
        subject, title = expected(person)
        html = (out / row["files"]["html"]).read_text(encoding="utf-8")
        text = (out / row["files"]["text"]).read_text(encoding="utf-8")
        others = {t for s, t in OWN.values()} - {title}
        assert f"<h1>{subject}</h1>" in html and title in html, (person, html)
        assert not any(t in html or t in text for t in others), (person, html)
        assert f"Hi {person['first_name']}" in html
        assert title in text
    # the short ids collide; the whole digests (what everything keys by) do not
    assert {r["version"] for r in rows.values()} == {"v" + "0" * 11}
    digests = {r["version_digest"] for r in rows.values()}
    assert len(digests) == 3
    listed = json.loads((out / "versions.json").read_text(encoding="utf-8"))["versions"]
    assert {v["digest"] for v in listed} == digests
    assert sorted(v["customers"] for v in listed) == [1, 2, 2]
    for v in listed:
        members = [r for r in rows.values() if r["version_digest"] == v["digest"]]
        assert len(members) == v["customers"]
        assert all(r["modules"] == v["modules"] for r in members)


def test_versions_are_keyed_by_whole_digests_and_shown_by_short_ids(content_tree) -> None:
    root = content_tree(campaigns={"news.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES, customers={"customers.csv": PEOPLE})
    out = root / "out"
    rc, stdout, stderr = run_cli("run", "campaigns/news.yaml", "--out", out, "--as-of", AS_OF,
                                 cwd=root)
    assert rc == 0, stdout + stderr
    rows = read_manifest(out)
    for row in rows:
        assert re.fullmatch(r"v[0-9a-f]{11}", row["version"])
        assert re.fullmatch(r"[0-9a-f]{64}", row["version_digest"])
        assert row["version_digest"].startswith(row["version"][1:])
    rc, listing, stderr = run_cli("versions", "campaigns/news.yaml", "--as-of", AS_OF,
                                  "--json", cwd=root)
    assert rc == 0, stderr
    assert {(v["id"], v["digest"]) for v in json.loads(listing)["versions"]} == {
        (r["version"], r["version_digest"]) for r in rows}


@pytest.mark.parametrize(("written", "tag"), [
    ("en", "en"), ("EN", "en"), ("en_GB", "en-GB"), ("en-gb", "en-GB"), (" es-mx ", "es-MX"),
    ("zh_hant_tw", "zh-Hant-TW"), ("es-419", "es-419"), ("de-CH-1996", "de-CH-1996"),
    ("de_DE.UTF-8@euro", "de-DE"), ("sr-latn", "sr-Latn")])
def test_spellings_of_a_language_tag_are_one_tag(written: str, tag: str) -> None:
    assert language_tag(written) == tag


@pytest.mark.parametrize("written", ["english", "e", "en GB", "12", "en-", "x-klingon",
                                     "en-GB-US", "español", "en-" + "a" * 40, "{{ 7*7 }}"])
def test_free_text_is_not_a_language_tag(written: str) -> None:
    with pytest.raises(NotALanguageTag):
        language_tag(written)


def test_a_locale_that_is_not_a_tag_rejects_its_row_and_spellings_share_versions(
        content_tree) -> None:
    people = [
        {"id": "A", "first_name": "Ann", "locale": "en_GB", "tier": "basic"},
        {"id": "B", "first_name": "Bea", "locale": "EN-gb", "tier": "basic"},
        {"id": "C", "first_name": "Cal", "locale": "English", "tier": "basic"},
        {"id": "D", "first_name": "Dan", "locale": "es_MX", "tier": "basic"},
        {"id": "E", "first_name": "Eva", "locale": "", "tier": "basic"},
        {"id": "F", "first_name": "Fay", "locale": "en-GB-x-" + "9" * 30, "tier": "basic"},
    ]
    root = content_tree(campaigns={"news.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES, customers={"customers.csv": people})
    out = root / "out"
    rc, stdout, stderr = run_cli("run", "campaigns/news.yaml", "--out", out, "--as-of", AS_OF,
                                 cwd=root)
    assert rc == 0, stdout + stderr  # rejected rows are reported, the run goes on
    rows = {r["customer_id"] if r["customer_id"] else r["line"]: r for r in read_manifest(out)}
    for bad in ("C", "F"):
        assert rows[bad]["status"] == "rejected"
        assert "is not a language tag" in rows[bad]["reason"], rows[bad]
    assert rows["A"]["status"] == rows["B"]["status"] == "rendered"
    assert rows["A"]["version"] == rows["B"]["version"]  # en_GB and EN-gb: one locale
    listed = {v["id"]: v for v in json.loads(
        (out / "versions.json").read_text(encoding="utf-8"))["versions"]}
    assert listed[rows["A"]["version"]]["locale"] == "en-GB"
    assert listed[rows["D"]["version"]]["locale"] == "es-MX"
    assert listed[rows["E"]["version"]]["locale"] == "en"  # an empty cell: the default
    # es-MX is Spanish: the Spanish subject and the module for `es`
    html = (out / rows["D"]["files"]["html"]).read_text(encoding="utf-8")
    assert "<h1>Tus noticias</h1>" in html and "Artículo en español" in html
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "not a language tag" in report


def test_a_module_locale_that_is_not_a_tag_is_a_content_error(content_tree) -> None:
    articles = dict(ARTICLES, **{"odd.md": {"title": "Odd", "locales": ["English"]}})
    root = content_tree(campaigns={"news.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles=articles, customers={"customers.csv": PEOPLE})
    rc, stdout, stderr = run_cli("validate", "campaigns/news.yaml", cwd=root)
    assert rc == 2, stdout + stderr
    assert "articles/odd.md" in stderr and "not a language tag" in stderr
    assert "Traceback" not in stderr
