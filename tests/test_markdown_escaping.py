"""Customer values cannot add Markdown to the report or the artifacts (issue 17, 15b).

report.md put customer ids between backticks as they were: an id holding a backtick
closed the code span, and what followed — an image the reviewer's browser fetches,
a link — became part of the report and of the Prefect artifact made from it. Each
report is rendered here with a CommonMark parser (markdown-it-py, tables on, as the
Prefect UI and GitHub render them); no customer value may become an element.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
from conftest import AS_OF, CONTENT_DIRS, REPO, run_cli, write_customers_file
from markdown_it import MarkdownIt

from edition.markdown_text import code, fenced, text

TRACKER = "http://127.0.0.1:9/leak.png"
HOSTILE_IDS = [
    f"x`![seen]({TRACKER})`y",                     # closes the backticks around it
    f"``![seen]({TRACKER})``",
    f"<img src={TRACKER}>",
    "[click me](javascript:alert(1))",
    "a|b ** _c_ &amp; <b>bold</b>",
]
# what a value must never become: an element that fetches, links or runs (emphasis would
# only restyle text, and our own **bold** is ours)
MARKUP = re.compile(r"<(img|a|script|b|iframe)\b", re.IGNORECASE)


def render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def shown_as_code(rendered: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r"<code>(.*?)</code>", rendered, re.S)]


def test_hostile_ids_stay_text_in_the_run_report(tmp_path: Path) -> None:
    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    rows = [{"id": f"C{n}", "email": f"c{n}@example.com", "first_name": "Ann"}
            for n in range(5)]
    # an address that is not one: the row is rejected and its id is an example
    rows += [{"id": hostile, "email": "not an address", "first_name": "Eve"}
             for hostile in HOSTILE_IDS]
    customers = write_customers_file(root / "data" / "hostile.csv", rows)
    out = tmp_path / "run"
    code_, _, stderr = run_cli("run", "campaigns/weekly-newsletter.yaml", "--customers",
                               customers, "--out", out, "--as-of", AS_OF, cwd=root)
    assert code_ == 0, stderr
    report = (out / "report.md").read_text(encoding="utf-8")
    rendered = render(report)
    assert "## Rejected rows" in report
    assert not MARKUP.search(rendered), rendered
    shown = shown_as_code(rendered)
    assert all(hostile in shown for hostile in HOSTILE_IDS), shown


@pytest.mark.parametrize("value", [*HOSTILE_IDS, "`", " `", "", "line\nbreak",
                                   "# heading\n<script>alert(1)</script>",
                                   "right\u202eto left", "tab\there"])
def test_each_helper_keeps_a_value_as_typed(value: str) -> None:
    for markdown in (f"- id: {code(value)}",
                     f"| a | b |\n| --- | --- |\n| {code(value).replace('|', chr(92) + '|')} "
                     f"| {text(value).replace('|', chr(92) + '|')} |",
                     f"- reason: {text(value)}"):
        rendered = render(markdown)
        assert not MARKUP.search(rendered), (markdown, rendered)
        assert "<h1" not in rendered and rendered.count("<li>") <= 1
    # a code span shows the value itself (line breaks and bidi marks as visible escapes)
    expected = (value.replace("\n", "\\x0a").replace("\t", " ").replace("\u202e", "\\u202e")
                or " ")
    assert shown_as_code(render(code(value))) == [expected]


def test_a_fenced_block_cannot_be_closed_from_inside() -> None:
    body = "first\n```\n![seen](" + TRACKER + ")\n````\n<script>x</script>"
    rendered = render(fenced(body, "diff") + "\n\nafter")
    assert rendered.count("<pre>") == 1 and not MARKUP.search(rendered)
    assert html.unescape(rendered).count(TRACKER) == 1 and "<p>after</p>" in rendered


def test_the_preview_artifact_escapes_the_customer(tmp_path: Path) -> None:
    from edition.review.preview import preview_customer
    from edition.review.preview_page import selection_markdown

    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    hostile = HOSTILE_IDS[0]
    customers = write_customers_file(root / "data" / "c.csv", [
        {"id": hostile, "email": "eve@example.com", "first_name": "Eve",
         "interests": ["garden", f"![i]({TRACKER})"]}])
    result = preview_customer(str(root / "campaigns" / "weekly-newsletter.yaml"), hostile,
                              customers=str(customers), as_of=None)
    rendered = render(selection_markdown(result, "weekly-newsletter", None))
    assert not MARKUP.search(rendered), rendered
    assert hostile in shown_as_code(rendered)
