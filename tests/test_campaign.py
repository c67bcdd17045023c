"""Invalid content is reported all at once, each problem with file and line, exit 2.

Campaigns, templates and modules are checked before anything renders: a user who made
six mistakes sees six messages in one go, none of them a traceback, and the output
folder stays empty.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edition.content.campaign import load_campaign
from edition.content.catalog import load_catalog
from edition.errors import ContentError, ContentErrors

PAGE = ("<html><body>\n{% for a in articles %}<h2>{{ a.title }}</h2>{{ a.html }}{% endfor %}\n"
        "<p>{{ customer.first_name | default('there') }}</p></body></html>\n")
ARTICLES = {"a.md": {"title": "A"}, "b.md": {"title": "B"}}
CUSTOMERS = {"customers.csv": [{"id": "c1", "email": "c1@example.com", "first_name": "Ann"}]}

GOOD = """\
name: x
template: page.html.j2
subject: "Hello {{ customer.first_name | default('there') }}"
sender: "Acme <news@acme.example>"
customers: data/customers.csv
segments:
  senior: "age >= 65"
slots:
  articles: {kind: article, count: 2}
formats: [html, text]
"""

# Six mistakes; the comment at the end of each line says what the engine must report.
BROKEN = """\
name: x
template: missing.html.j2
subject: "Hello {{ customer.first_name | default('there') }}"
sender: "Acme <news@acme.example>"
colour: blue
customers: data/customers.csv
segments:
  senior: "age >= 65"
  broken: "age >= "
slots:
  articles: {kind: article, count: 2}
  widgets: {kind: widget, count: 1}
formats: [html, text]
schedule:
  cron: "61 8 * * MON"
  timezone: Mars/Olympus
"""
BROKEN_LINES = {
    5: "colour",            # unknown key
    2: "missing.html.j2",   # template file not found
    9: "broken",            # segment rule does not parse
    12: "widget",           # slot of an unknown kind
    15: "cron",             # not a cron expression
    16: "Mars/Olympus",     # not a time zone
}


def assert_clean_failure(rc: int, stderr: str) -> None:
    assert rc == 2, stderr
    assert "Traceback" not in stderr
    assert "Nothing was rendered" in stderr


def located(stderr: str) -> dict[str, str]:
    """'file:line' -> message, from the CLI's error lines."""
    found = {}
    for line in stderr.splitlines():
        match = re.search(r"((?:campaigns|templates|articles|offers|greetings)/[^\s:]+):(\d+):"
                          r"\s*(.*)", line)
        if match:
            found[f"{match[1]}:{match[2]}"] = match[3]
    return found


@pytest.fixture
def broken_root(content_tree) -> Path:
    return content_tree(campaigns={"x.yaml": BROKEN}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES, customers=CUSTOMERS)


def test_every_campaign_mistake_is_reported_at_once_with_its_line(broken_root: Path) -> None:
    with pytest.raises(ContentErrors) as caught:
        load_campaign(broken_root / "campaigns" / "x.yaml")
    errors = caught.value.errors
    assert len(errors) == len(BROKEN_LINES), [str(e) for e in errors]
    for error in errors:
        assert error.file == "campaigns/x.yaml"
    by_line = {e.line: e.message for e in errors}
    assert set(by_line) == set(BROKEN_LINES)
    for line, word in BROKEN_LINES.items():
        assert word in by_line[line], (line, by_line[line])
    assert caught.value.exit_code == 2


def test_the_good_campaign_loads(content_tree) -> None:
    root = content_tree(campaigns={"x.yaml": GOOD}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES)
    campaign = load_campaign(root / "campaigns" / "x.yaml")
    assert campaign.name == "x"
    assert [s.name for s in campaign.slots] == ["articles"]
    assert [s.name for s in campaign.segments] == ["senior"]


@pytest.mark.parametrize("verb", ["validate", "run"])
def test_cli_lists_all_campaign_mistakes_and_renders_nothing(broken_root: Path, cli,
                                                              verb: str) -> None:
    out = broken_root / "out"
    args = [verb, "campaigns/x.yaml"] + (["--out", str(out)] if verb == "run" else [])
    rc, _, stderr = cli(*args, cwd=broken_root)
    assert_clean_failure(rc, stderr)
    found = located(stderr)
    for line, word in BROKEN_LINES.items():
        key = f"campaigns/x.yaml:{line}"
        assert key in found, (key, stderr)
        assert word in found[key]
    assert not out.exists() or not any(out.iterdir())


def test_template_syntax_error_names_template_and_line(content_tree, cli) -> None:
    page = "<html>\n<body>\n<p>ok</p>\n{% if %}\n</body></html>\n"
    root = content_tree(campaigns={"x.yaml": GOOD}, templates={"page.html.j2": page},
                        articles=ARTICLES, customers=CUSTOMERS)
    for verb in ("validate", "run"):
        rc, _, stderr = cli(verb, "campaigns/x.yaml", *(["--out", "out"] if verb == "run"
                                                        else []), cwd=root)
        assert_clean_failure(rc, stderr)
        assert "templates/page.html.j2:4" in stderr
    assert not (root / "out").exists()


def test_syntax_error_in_an_included_template_names_that_file(content_tree, cli) -> None:
    page = "<html><body>\n{% include 'part.html.j2' %}\n</body></html>\n"
    part = "<p>one</p>\n<p>two</p>\n<p>{{ customer.first_name | default('x') }</p>\n"
    root = content_tree(campaigns={"x.yaml": GOOD},
                        templates={"page.html.j2": page, "part.html.j2": part},
                        articles=ARTICLES)
    rc, _, stderr = cli("validate", "campaigns/x.yaml", cwd=root)
    assert_clean_failure(rc, stderr)
    assert "templates/part.html.j2:3" in stderr


def test_module_front_matter_problems_are_all_listed(content_tree, cli) -> None:
    articles = {
        "a.md": "---\nid: a\ntitle: A\nkind: widget\n---\nBody.\n",                # line 4
        "b.md": "---\ntitle: B\nvalid_from: next tuesday\n---\nBody.\n",           # line 3
        "c.md": "---\ntitle: C\npriority: 1\nvalid_until: 2026-13-45\n---\nBody.\n",  # line 4
        "d.md": "---\nid: same\ntitle: D\n---\nBody.\n",
        "travel/e.md": "---\ntitle: E\nid: same\n---\nBody.\n",                    # line 3
        # a key of the module's own that looks misspelt is a warning, not an error (the
        # contract: meta holds all its front matter); test_module_keys.py has the rest
        "f.md": "---\ntitle: F\nsegmets: [mvc]\n---\nBody.\n",                      # line 3
    }
    root = content_tree(campaigns={"x.yaml": GOOD}, templates={"page.html.j2": PAGE},
                        articles=articles)
    catalog, errors = load_catalog(root, raise_errors=False)
    where = {f"{e.file}:{e.line}" for e in errors}
    expected = {"articles/a.md:4", "articles/b.md:3", "articles/c.md:4",
                "articles/travel/e.md:3"}
    assert where == expected, [str(e) for e in errors]
    (f,) = [m for m in catalog if m.id == "f"]
    assert f.meta["segmets"] == ["mvc"] and f.segments == frozenset()
    assert any(n.startswith("articles/f.md:3:") and "did you mean 'segments'" in n
               for n in f.notes), f.notes

    rc, _, stderr = cli("validate", "campaigns/x.yaml", cwd=root)
    assert_clean_failure(rc, stderr)
    found = located(stderr)
    assert expected <= set(found), stderr
    assert "widget" in found["articles/a.md:4"]
    assert "next tuesday" in found["articles/b.md:3"]
    assert "2026-13-45" in found["articles/c.md:4"]
    assert "same" in found["articles/travel/e.md:3"]
    assert "articles/d.md" in found["articles/travel/e.md:3"]   # names the other file


def test_module_in_a_subfolder_takes_its_kind_from_the_top_folder(content_tree) -> None:
    root = content_tree(offers={"seasonal/spring.md": {"title": "Spring"}})
    catalog, errors = load_catalog(root, raise_errors=False)
    assert errors == []
    assert [m.kind for m in catalog] == ["offer"]


def test_template_reaching_for_python_internals_is_refused(content_tree, cli) -> None:
    page = "<html><body>\n<p>{{ ''.__class__.__mro__ }}</p>\n</body></html>\n"
    root = content_tree(campaigns={"x.yaml": GOOD}, templates={"page.html.j2": page},
                        articles=ARTICLES, customers=CUSTOMERS)
    rc, _, stderr = cli("run", "campaigns/x.yaml", "--out", "out", cwd=root)
    assert_clean_failure(rc, stderr)
    assert "templates/page.html.j2:2" in stderr
    assert "sandbox" in stderr
    assert "__class__" in stderr or "__mro__" in stderr
    assert not (root / "out").exists()


def test_segment_rule_reaching_for_internals_is_refused(content_tree, cli) -> None:
    campaign = GOOD.replace('senior: "age >= 65"', 'sneaky: "x.__class__"')
    root = content_tree(campaigns={"x.yaml": campaign}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES, customers=CUSTOMERS)
    with pytest.raises(ContentError) as caught:
        load_campaign(root / "campaigns" / "x.yaml")
    assert caught.value.line == 7 and "sandbox" in caught.value.message
    rc, _, stderr = cli("validate", "campaigns/x.yaml", cwd=root)
    assert_clean_failure(rc, stderr)
    assert "campaigns/x.yaml:7" in stderr
    assert "sneaky" in stderr and "__class__" in stderr and "sandbox" in stderr


def test_subject_with_a_syntax_error_names_the_campaign_line(content_tree) -> None:
    campaign = GOOD.replace("default('there') }}", "default('there') }")
    root = content_tree(campaigns={"x.yaml": campaign}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES)
    with pytest.raises(ContentError) as caught:
        load_campaign(root / "campaigns" / "x.yaml")
    assert (caught.value.file, caught.value.line) == ("campaigns/x.yaml", 3)
    assert "subject" in caught.value.message


def test_campaign_and_module_mistakes_are_reported_together(content_tree, cli) -> None:
    articles = dict(ARTICLES, **{"bad.md": "---\ntitle: Bad\nkind: widget\n---\nBody.\n"})
    root = content_tree(campaigns={"x.yaml": BROKEN}, templates={"page.html.j2": PAGE},
                        articles=articles, customers=CUSTOMERS)
    rc, _, stderr = cli("validate", "campaigns/x.yaml", cwd=root)
    assert_clean_failure(rc, stderr)
    found = located(stderr)
    assert "articles/bad.md:3" in found
    assert {f"campaigns/x.yaml:{line}" for line in BROKEN_LINES} <= set(found)
    assert f"{len(BROKEN_LINES) + 1} problems found" in stderr


@pytest.mark.parametrize(("where", "location"), [
    ("template", "templates/page.html.j2:3"),
    ("module", "articles/a.md:4"),
    ("subject", "campaigns/x.yaml:3"),
])
def test_an_unknown_filter_is_a_content_error_not_a_failure_per_customer(
        content_tree, cli, where: str, location: str) -> None:
    """Before, every customer failed at render time and the run exited 0."""
    page = PAGE.replace("<p>{{", "<p>{{ customer.first_name | shout }}{{", 1) \
        if where == "template" else PAGE
    campaign = GOOD.replace("default('there') }}\"", "default('there') | shout }}\"") \
        if where == "subject" else GOOD
    body = "Hi {{ customer.first_name | shout }}.\n" if where == "module" else "Body.\n"
    root = content_tree(campaigns={"x.yaml": campaign}, templates={"page.html.j2": page},
                        articles={"a.md": {"title": "A", "body": body}, "b.md": {"title": "B"}},
                        customers=CUSTOMERS)
    for verb in ("validate", "run"):
        rc, _, stderr = cli(verb, "campaigns/x.yaml", cwd=root)
        assert_clean_failure(rc, stderr)
        assert location in stderr and "shout" in stderr, stderr


def test_an_include_outside_templates_is_a_content_error(content_tree, cli) -> None:
    page = PAGE.replace("</body>", "{% include '../../etc/passwd' %}</body>")
    root = content_tree(campaigns={"x.yaml": GOOD}, templates={"page.html.j2": page},
                        articles=ARTICLES, customers=CUSTOMERS)
    rc, _, stderr = cli("validate", "campaigns/x.yaml", cwd=root)
    assert_clean_failure(rc, stderr)
    assert "templates/page.html.j2:" in stderr and "not found in templates/" in stderr
