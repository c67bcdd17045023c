"""Customer fields a template prints, counted before anything runs (issue 17, finding 17).

design.md, "Safety": a missing or empty field is falsy and undefined when tested (`if`,
`is defined`, `default`, `or`, `in`, a loop); it fails the customer only when printed
with nothing to fall back on. `edition.fields` reads Jinja's AST for those places;
validate counts, per template line, the customers who lack a printed field (a warning),
and a field that no customer who gets there has is an error (exit 2) for validate and
for run's preflight, before anything is written.

The first half checks the analysis on idioms teams write (none of them ours); the
second runs the real CLI on a newcomer's content tree (tests/corpus/garden-club): its
own template, modules with keys of their own, a member list with empty cells.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from edition.content.environment import CustomerView, EditionEnvironment

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus" / "garden-club"
CAMPAIGN = "campaigns/allotment-news.yaml"
ENV = EditionEnvironment()


def prints(*args, **kwargs):   # imported here: a collection error would hide the others
    from edition.content.fields import prints

    return prints(*args, **kwargs)


def places(source: str) -> list[tuple[str, int]]:
    return [(p.field, p.line) for p in prints(ENV.parse(source), "t.j2")]


def failing(source: str, fields: dict) -> set[str]:
    """The fields whose print fails a customer with these fields, by the analysis."""
    return {p.field for p in prints(ENV.parse(source), "t.j2") if p.fails(fields)}


def renders(source: str, fields: dict) -> bool:
    """Whether the real template engine renders it for these fields (the ground truth)."""
    try:
        ENV.from_string(source).render(customer=CustomerView(fields))
    except Exception:   # a missing field printed: UndefinedError
        return False
    return True


# Outside idioms: (template, fields of customers it must not fail, fields that fail it)
IDIOMS = {
    "if-else greeting": (
        "{% if customer.first_name %}Hi {{ customer.first_name | title }}{% else %}Hi there"
        "{% endif %}", [{}, {"first_name": "ann"}], []),
    "default": ("<html lang=\"{{ customer.locale | default('en') }}\">", [{}], []),
    "is defined and": (
        "{% if customer.points is defined and customer.points > 0 %}{{ customer.points }}"
        "{% endif %}", [{}, {"points": 0}, {"points": 3}], []),
    "or fallback": ("{{ customer.nickname or customer.first_name }}",
                    [{"nickname": "Bo"}, {"first_name": "Ann"}], [{}, {"nickname": ""}]),
    "loop over a list field": (
        "{% for o in customer.orders %}<li>{{ o.total }}</li>{% else %}none{% endfor %}",
        [{}, {"orders": []}, {"orders": [{"total": 3}]}], []),
    "in a list field": ("{% if 'roses' in customer.tags %}{{ customer.tags | join(', ') }}"
                        "{% endif %}", [{}, {"tags": ["roses"]}], []),
    "is not defined / else": (
        "{% if customer.city is not defined %}-{% else %}{{ customer.city }}{% endif %}",
        [{}, {"city": "Leeds"}], []),
    "conditional expression": ("{{ customer.city if customer.city else 'somewhere' }}",
                               [{}, {"city": "Leeds"}], []),
    "set then test": ("{% set n = customer.nick %}{% if n %}{{ n }}{% endif %}",
                      [{}, {"nick": "x"}], []),
    "printed plainly": ("Dear {{ customer.first_name }},", [{"first_name": "Ann"}], [{}]),
    "filter before default": ("{{ customer.first_name | title | default('you') }}",
                              [{"first_name": "ann"}], [{}]),
    "compared without a guard": ("{% if customer.points > 10 %}gold{% endif %}",
                                 [{"points": 3}], [{}]),
    "default of another field": ("{{ customer.a | default(customer.b) }}",
                                 [{"a": 1}, {"b": 2}], [{}]),
    "in a link": ("<a href=\"https://x.example/?m={{ customer.member_no }}\">x</a>",
                  [{"member_no": "R1"}], [{}]),
    "subscript": ("{{ customer['first name'] }}", [{"first name": "Ann"}], [{}]),
}


@pytest.mark.parametrize("name", list(IDIOMS))
def test_the_analysis_agrees_with_the_render_on_outside_idioms(name: str) -> None:
    source, fine, broken = IDIOMS[name]
    for fields in fine:
        assert renders(source, fields), (name, fields)
        assert failing(source, fields) == set(), (name, fields)
    for fields in broken:
        assert not renders(source, fields), (name, fields)
        assert failing(source, fields), (name, fields)


def test_tested_fields_are_not_places_and_printed_ones_have_their_line() -> None:
    source = ("{% if customer.first_name %}\nHi {{ customer.first_name | title }}\n"
              "{% endif %}\n{{ customer.locale | default('en') }}\n"
              "{% for o in customer.orders %}{{ o.total }}{% endfor %}\n"
              "Member {{ customer.member_no }}\n{{ customer.nickname or customer.first_name }}\n")
    assert places(source) == [("member_no", 6), ("first_name", 7)]


def test_a_module_bodys_lines_are_the_files() -> None:
    found = prints(ENV.parse("One.\n\nPlot {{ customer.plot }}."), "offers/x.md", first_line=7)
    assert [(p.file, p.line) for p in found] == [("offers/x.md", 9)]


def test_included_templates_are_read_with_the_tests_around_the_include() -> None:
    parts = {"part.j2": "Hi {{ customer.first_name }}"}

    def load(name: str):
        return (ENV.parse(parts[name]), f"templates/{name}") if name in parts else None

    tree = ENV.parse("{% if customer.first_name %}{% include 'part.j2' %}{% endif %}"
                     "{% include 'part.j2' %}")
    found = prints(tree, "templates/page.j2", load=load)
    assert [(p.file, p.line) for p in found] == [("templates/part.j2", 1)]


# -- the real command line on a newcomer's content --------------------------------------


@pytest.fixture
def garden(tmp_path: Path) -> Path:
    root = tmp_path / "garden-club"
    shutil.copytree(CORPUS, root)
    return root


def warnings_of(stdout: str) -> list[str]:
    return [line.removeprefix("warning: ") for line in stdout.splitlines()
            if line.startswith("warning: ")]


def line_of(root: Path, file: str, text: str) -> int:
    lines = (root / file).read_text(encoding="utf-8").splitlines()
    (number,) = [i for i, line in enumerate(lines, 1) if text in line]
    return number


def test_validate_counts_customers_lacking_a_printed_field_and_the_run_agrees(
        garden: Path, cli, manifest_of) -> None:
    rc, stdout, stderr = cli("validate", CAMPAIGN, cwd=garden)
    assert rc == 0, stdout + stderr
    found = warnings_of(stdout)
    html_line = line_of(garden, "templates/allotment.html.j2", "customer.member_no")
    text_line = line_of(garden, "templates/allotment.txt.j2", "customer.member_no")
    # m004's member_no cell is empty; m006 is suppressed (not counted)
    for where in (f"templates/allotment.html.j2:{html_line}",
                  f"templates/allotment.txt.j2:{text_line}"):
        assert any(w.startswith(f"{where}: prints customer.member_no, which 1 of 6 ")
                   for w in found), found
    # `nickname or first_name`: m002 and m005 have neither; m007 has a nickname
    assert any(w.startswith(f"templates/allotment.html.j2:{html_line}: prints "
                            f"customer.first_name, which 2 of 4 ") for w in found), found
    # the tested idioms (if/else greeting, default, is defined and, the harvest loop,
    # a module body's guarded field) are not warned about
    assert not any(re.search(r"prints customer\.(locale|points|plot_number|recent_harvests|"
                             r"favourite_crop)", w) for w in found), found
    rc, stdout, stderr = cli("run", CAMPAIGN, "--out", "out/r1", cwd=garden)
    rows = {r["customer_id"]: r for r in manifest_of(garden / "out" / "r1")}
    failed = {cid for cid, r in rows.items() if r["status"] == "failed"}
    assert failed == {"m002", "m004", "m005"}, rows   # exactly the customers counted
    assert "member_no" in rows["m004"]["reason"] and "first_name" in rows["m002"]["reason"]
    assert rc == 3


def test_a_printed_field_that_no_customer_has_stops_validate_and_run(garden: Path,
                                                                      cli) -> None:
    page = garden / "templates" / "allotment.html.j2"
    page.write_text(page.read_text(encoding="utf-8").replace(
        "Member {{ customer.member_no }}", "Member {{ customer.membership_no }}"),
        encoding="utf-8")
    line = line_of(garden, "templates/allotment.html.j2", "customer.membership_no")
    for verb in ("validate", "run"):
        rc, stdout, stderr = cli(verb, CAMPAIGN, "--out" if verb == "run" else "--strict",
                                 *(["out/r1"] if verb == "run" else []), cwd=garden)
        assert rc == 2, stdout + stderr
        assert "Traceback" not in stderr
        assert (f"templates/allotment.html.j2:{line}: prints customer.membership_no, which "
                f"none of the 6 customer(s) who get here has (did you mean 'member_no'?)"
                in stderr), stderr
    assert not (garden / "out").exists()   # nothing written, not even the folder


def test_a_field_printed_only_in_a_module_counts_only_the_customers_who_get_it(
        garden: Path, cli) -> None:
    """seed-swap.md prints plot_number unguarded, but only plot holders (`plot_number is
    defined`) get it: the members without a plot are not counted."""
    rc, stdout, stderr = cli("validate", CAMPAIGN, cwd=garden)
    assert rc == 0 and "customer.plot_number" not in stdout, stdout + stderr
    module = garden / "articles" / "seed-swap.md"
    module.write_text(module.read_text(encoding="utf-8").replace(
        "segments: [plot_holder]\n", ""), encoding="utf-8")
    rc, stdout, stderr = cli("validate", CAMPAIGN, cwd=garden)
    line = line_of(garden, "articles/seed-swap.md", "customer.plot_number")
    assert any(w.startswith(f"articles/seed-swap.md:{line}: prints customer.plot_number, "
                            f"which 2 of 6 ") for w in warnings_of(stdout)), stdout + stderr


def test_tested_fields_never_fail_a_customer_and_loops_run_over_list_fields(
        garden: Path, cli, manifest_of) -> None:
    rc, stdout, stderr = cli("validate", CAMPAIGN, "--customers", "data/members.jsonl",
                             cwd=garden)
    assert rc == 0 and "prints customer." not in stdout, stdout + stderr
    rc, stdout, stderr = cli("run", CAMPAIGN, "--customers", "data/members.jsonl",
                             "--out", "out/j", cwd=garden)
    assert rc == 0, stdout + stderr
    rows = {r["customer_id"]: r for r in manifest_of(garden / "out" / "j")}
    assert {r["status"] for r in rows.values()} == {"rendered"}, rows
    html = {cid: (garden / "out" / "j" / r["files"]["html"]).read_text(encoding="utf-8")
            for cid, r in rows.items()}
    assert "Hi Ann," in html["j1"] and "Hi there," in html["j2"]
    assert "You have 12 volunteering points" in html["j1"]
    assert "volunteering points" not in html["j2"]        # points: 0
    assert "<li>courgettes</li>" in html["j1"] and "harvest log" not in html["j3"]
    assert "Member R-002 · Bobby" in html["j2"]           # the `or` takes the nickname
    text = (garden / "out" / "j" / rows["j2"]["files"]["text"]).read_text(encoding="utf-8")
    assert "Hi there," in text
    run = json.loads((garden / "out" / "j" / "run.json").read_text(encoding="utf-8"))
    assert not any("prints customer." in str(w)
                   for w in run.get("preflight", {}).get("warnings", [])), run


def test_a_name_no_template_sees_stops_validate_and_run_with_the_slots(garden: Path,
                                                                       cli) -> None:
    """A newcomer prints `offers` (the slot is `offer`): every customer would fail alike,
    so it is the template's mistake, found before anything is written, not a warning
    per customer (validate said ok, exit 0, and the run failed everyone)."""
    page = garden / "templates" / "allotment.html.j2"
    page.write_text(page.read_text(encoding="utf-8").replace(
        "{% for g in greeting %}", "{{ offers }}{% for g in greeting %}"),
        encoding="utf-8")
    line = line_of(garden, "templates/allotment.html.j2", "{{ offers }}")
    for verb in ("validate", "run"):
        rc, stdout, stderr = cli(verb, CAMPAIGN, *(["--out", "out/r1"] if verb == "run" else []),
                                 cwd=garden)
        assert rc == 2, stdout + stderr
        assert "Traceback" not in stderr
        assert (f"templates/allotment.html.j2:{line}: prints 'offers', which is not a name "
                f"templates see (slots: greeting, articles, offer; also customer, segments, "
                f"campaign, locale, run) (did you mean 'offer'?)") in stderr, stderr
    assert not (garden / "out").exists()


def test_a_loop_over_a_name_no_template_sees_is_a_warning_with_its_line(garden: Path,
                                                                        cli) -> None:
    """`{% for o in offers %}` over a slot named `offer` is silently empty for everyone:
    validate says so, with the line and the slot it most likely meant."""
    page = garden / "templates" / "allotment.html.j2"
    page.write_text(page.read_text(encoding="utf-8").replace(
        "{% for g in greeting %}", "{% for o in offers %}{{ o.title }}{% endfor %}"
        "{% for g in greeting %}"), encoding="utf-8")
    line = line_of(garden, "templates/allotment.html.j2", "for o in offers")
    rc, stdout, stderr = cli("validate", CAMPAIGN, cwd=garden)
    assert rc == 0, stdout + stderr
    assert (f"templates/allotment.html.j2:{line}: reads 'offers', which is not a name "
            f"templates see: it is always undefined (slots: greeting, articles, offer) "
            f"(did you mean 'offer'?)") in warnings_of(stdout), stdout
    rc, stdout, stderr = cli("validate", CAMPAIGN, "--strict", cwd=garden)
    assert rc == 2, stdout + stderr


def test_a_name_set_for_some_customers_only_fails_those_customers(garden: Path, cli,
                                                                   manifest_of) -> None:
    """Set under a test on the customer, a name is missing only for some: their
    failure, with its reason, and the run goes on (not a template error)."""
    page = garden / "templates" / "allotment.html.j2"
    page.write_text(page.read_text(encoding="utf-8").replace(
        "{% for g in greeting %}",
        "{% if customer.first_name %}{% set hello = customer.first_name %}{% endif %}"
        "<p>{{ hello }}</p>{% for g in greeting %}"), encoding="utf-8")
    rc, stdout, stderr = cli("run", CAMPAIGN, "--out", "out/r1", cwd=garden)
    assert rc == 3 and "Traceback" not in stderr, stdout + stderr
    rows = list(manifest_of(garden / "out" / "r1"))
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and any(r["status"] == "rendered" for r in rows)
    assert all("'hello' is undefined" in r["reason"] or "member_no" in r["reason"]
               for r in failed), failed


def test_a_run_whose_every_customer_fails_writes_its_report(garden: Path, cli,
                                                            manifest_of) -> None:
    """Every customer failing (a field read as an object it is not) is exit 3 with the
    report and the manifest, not a ZeroDivisionError in the report's sharing figures."""
    page = garden / "templates" / "allotment.html.j2"
    page.write_text(page.read_text(encoding="utf-8").replace(
        "{% for g in greeting %}", "{{ customer.id.first }}{% for g in greeting %}"),
        encoding="utf-8")
    rc, stdout, stderr = cli("run", CAMPAIGN, "--out", "out/r1", cwd=garden)
    assert rc == 3, stdout + stderr
    assert "Traceback" not in stderr and "unexpected error" not in stderr
    rows = list(manifest_of(garden / "out" / "r1"))
    assert rows and not any(r["status"] == "rendered" for r in rows)
    report = (garden / "out" / "r1" / "report.md").read_text(encoding="utf-8")
    assert "| failed |" in report
