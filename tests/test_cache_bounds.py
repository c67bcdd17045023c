"""Memory stays flat whatever the customer data's cardinality (issue 17, finding 14).

`Plan._selections` kept every (segments, locale, interests) key it met, in every worker:
272 MiB grew to 2,035 MiB at 100,000 customers whose interests were free text. Now only
the interests some module lists enter the key, and every per-process cache has a bound
that a stream of distinct interests, locales and versions never passes (checked after
every customer, not by timing; bench/run.py measures the memory itself).
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

from edition.render import editions, plan
from edition.render.plan import Plan

PAGE = ("<!doctype html><html lang=en><body>{% for a in articles %}<h2>{{ a.title }}</h2>"
        "{{ a.html }}{% endfor %}<p>{{ 1234.5 | money }} for {{ customer.first_name }}</p>"
        "</body></html>\n")
CAMPAIGN = {"name": "club", "template": "page.html.j2", "subject": "News",
            "segments": {"big": "spend >= 100"},
            "slots": {"articles": {"kind": "article", "count": 2}},
            "formats": ["html", "text"], "customers": "data/customers.csv"}
ARTICLES = {
    "roses.md": {"title": "Roses", "interests": ["roses", "garden"]},
    "tools.md": {"title": "Tools", "interests": ["tools"]},
    "trips.md": {"title": "Trips", "interests": ["travel"], "segments": ["big"]},
    "basics.md": {"title": "Basics"},
}
LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "nl", "sv", "da", "fi", "pl", "cs"]
REGIONS = ["", "-GB", "-US", "-ES", "-MX", "-CA", "-AU", "-IE"]


def load(root: Path) -> Plan:
    return Plan.load(root / "campaigns" / "club.yaml", as_of=dt.date(2026, 11, 2))


def within_bounds(p: Plan) -> None:
    for name, (size, bound) in p.cache_sizes().items():
        assert size <= bound, f"{name}: {size:,} entries past its bound of {bound:,}"


def test_free_text_interests_and_many_locales_keep_every_cache_bounded(content_tree,
                                                                      monkeypatch) -> None:
    # small bounds, so that a few thousand customers go past each of them many times over
    monkeypatch.setattr(plan, "CACHED_SELECTIONS", 64)
    monkeypatch.setattr(editions, "CACHED_VERSIONS", 16)
    monkeypatch.setattr(editions, "CACHED_LOCALES", 4)
    monkeypatch.setattr(editions, "CACHED_SHARING", 32)
    root = content_tree(campaigns={"club.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES)
    p = load(root)
    locales = [lang + region for lang, region in itertools.product(LANGUAGES, REGIONS)]
    versions = set()
    for i in range(3_000):
        fields = {"id": f"C{i}", "first_name": "Ann", "spend": i % 200,
                  "locale": locales[i % len(locales)],
                  "interests": [f"hobby {i}", f"note {i * 7919 % 100_003}",
                                ["roses", "tools", "travel"][i % 3]]}
        version = p.version_of(fields)[3]
        versions.add(version.digest)
        if i % 7 == 0:  # render some: the renderer's caches fill with versions and locales
            p.renderer.render(version, fields)
        within_bounds(p)
    assert len(versions) > 64  # more distinct versions than any cache may hold
    sizes = p.cache_sizes()
    assert sizes["selections"][0] == 64 and sizes["locale environments"][0] == 4


def test_interests_no_module_lists_do_not_change_the_selection_or_its_key(
        content_tree) -> None:
    root = content_tree(campaigns={"club.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES)
    p = load(root)
    base = {"id": "A", "locale": "en", "spend": 5}
    plain = p.version_of(base | {"interests": []})
    noisy = [p.version_of(base | {"interests": [f"thing {i}", f"other {i}"]})
             for i in range(1_000)]
    assert {v[3].digest for v in noisy} == {plain[3].digest}
    assert p.cache_sizes()["selections"][0] == 1  # one key for all of them
    # a known interest still ranks its module first (design.md's selection rules)
    tools = p.version_of(base | {"interests": ["Tools", "free text"]})
    assert tools[2].ids()["articles"] == ["tools", "basics"]
    assert plain[2].ids()["articles"] == ["basics", "roses"]
