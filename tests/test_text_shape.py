"""The text made from a page, converted once per shape (renderers.text.TextShape).

A campaign without a text template gets each customer's text from the page. The page's
template text is converted once, with the customer's values marked, and per customer
only the blocks holding a value are filled: the text must equal `html_to_text` of that
customer's page, whatever the template text around the values and whatever the values.
Where a value could change how the page is read (a tag's name, a comment, after a lone
`<` or `&`), the shape refuses, and the page is converted per customer.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from renderers.text import NotConvertible, TextShape, html_to_text

sys.path.insert(0, str(Path(__file__).parent))

AS_OF = dt.date(2026, 11, 2)

# Template text as layouts write it, and the awkward spots around a value
TEMPLATE = ["<p>", "</p>", "<h1>", "</h1>", "<h2>", "<h3>", "</h3>", "<h4>", "<ul>", "</ul>",
            "<ol>", "</ol>", "<li>", "</li>", "<pre>", "</pre>", "<blockquote>",
            "</blockquote>", "<br>", "<br/>", "<hr>", "<div class=\"a\">", "</div>",
            "<table><tr><td>", "</td></tr></table>", "<a href=\"", "\">", "</a>",
            "<a href='", "'>", "<a href=", ">", "<a href=\"#", "<a title=\"x\">", "<!-- ",
            " -->", "<![if mso]>", "<style>p{}</style>", "<style>", "</style>",
            "<head><title>", "</title></head>", "<span lang=\"", "<img alt=\"", "\" />",
            "&amp;", "&nbsp;", "&", "&am", "&#3", "<", "</", "<b", "<!", "<?", " ", "\n",
            "  ", "Hello ", "Dear", ",", "https://shop.example/u?id=", "x" * 30,
            "a rather long line of template text that will need wrapping at some point "]
VALUE = st.one_of(
    st.sampled_from(["", " ", "Ann", "ann lee", "O&#39;Brien &amp; &#34;Sons&#34;",
                     "&lt;b&gt;", "&amp;", "p", "--", "-", "amp;", "/p", "#top",
                     "https://shop.example/u?id=7", "shop.example", "Hello", "\n\t x ",
                     "<b>bold</b>", "a\"b", "it's", "&", "\ue010", "\ue0020\ue003",
                     "é" * 50, "word " * 30, "> quoted", "1."]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statics=st.lists(st.lists(st.sampled_from(TEMPLATE), max_size=6).map("".join),
                        min_size=1, max_size=10),
       data=st.data())
def test_a_shape_filled_equals_the_page_converted(statics: list[str],
                                                  data: st.DataObject) -> None:
    try:
        shape = TextShape(statics)
    except NotConvertible:
        event("refused")
        return
    for _ in range(3):   # one shape, several customers
        values = data.draw(st.lists(VALUE, min_size=len(statics) - 1,
                                    max_size=len(statics) - 1))
        page = [statics[0]]
        for value, static in zip(values, statics[1:], strict=True):
            page += (value, static)
        filled = shape.fill(values)
        if filled is None:
            event("per customer")
            continue
        event("filled")
        assert filled == html_to_text("".join(page)), (statics, values)


@pytest.mark.parametrize(("statics", "why"), [
    (["<p>", "</p>"], None),
    (["<h", ">Hi</h1>"], "tag"),
    (["<p>", " &amp; ", " more</p>"], None),
    (["<p>&am", "</p>"], "character reference"),
    (["<p><", "</p>"], "tag"),
    (["<a href=", ">x</a>"], "quoted"),
    (["<!-- ", " -->"], "comment"),
])
def test_a_value_where_it_would_change_the_parse_is_refused(statics: list[str],
                                                            why: str | None) -> None:
    if why is None:
        assert TextShape(statics).fill(["Ann"] * (len(statics) - 1)) == html_to_text(
            "Ann".join(statics))
    else:
        with pytest.raises(NotConvertible, match=why):
            TextShape(statics)


def test_a_link_whose_label_or_url_holds_a_value_is_spelled_out_per_customer() -> None:
    shape = TextShape(['<p><a href="https://shop.example/u?id=', '">', '</a></p>'])
    same = "https://shop.example/u?id=7"
    assert shape.fill(["7", same]) == f"{same}\n"
    assert shape.fill(["7", "Your account"]) == f"Your account <{same}>\n"
    assert shape.fill(["7", "Your account"]) == html_to_text(
        f'<p><a href="{same}">Your account</a></p>')


def test_the_corpus_text_is_converted_once_per_shape(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """Layouts without a text template: their customers' texts come from shapes, not from
    converting each customer's page, and equal the whole render's."""
    from fixtures_corpus import NAMES, corpus_customers, corpus_site

    from edition.render import editions
    from edition.render.plan import Plan

    calls = []

    def counted(html: str) -> str:
        calls.append(1)
        return html_to_text(html)

    monkeypatch.setattr(editions, "from_html", counted)
    root = corpus_site(tmp_path / "site")
    customers = list(corpus_customers(150))
    checked = 0
    for name in NAMES:
        plan = Plan.load(root / "campaigns" / f"{name}.yaml", as_of=AS_OF)
        if plan.campaign.text_template:
            continue
        renderer = editions.EditionRenderer(plan.campaign, AS_OF, kinds=editions.KINDS)
        texts: list[tuple[Any, dict[str, Any], str | None]] = []
        for fields in customers:
            version = plan.version_of(fields)[3]
            try:
                texts.append((version, fields, renderer.render(version, fields).text))
            except editions.RenderFailure:
                continue   # a hostile row fails both ways (test_shared_equals_whole)
        calls.clear()
        for version, fields, text in texts[:40]:   # warm: these shapes are built
            assert renderer.render(version, fields).text == text
        assert len(calls) < 4, (name, len(calls))   # hostile values: per customer
        for version, fields, text in texts:
            assert renderer.whole(version, fields).text == text
        checked += 1
    assert checked >= 3


@settings(max_examples=2000, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab  -\t\n\r\x0b\x0c\x1c\xa0\u2003é>")),
                    max_size=90),
       indent=st.sampled_from(["", "  ", "> > "]), width=st.sampled_from([1, 8, 72]))
def test_a_line_that_fits_is_filled_as_textwrap_fills_it(text: str, indent: str,
                                                         width: int) -> None:
    import textwrap

    from renderers.text import _fill

    assert _fill(text, width, indent) == textwrap.fill(
        text, width, subsequent_indent=indent, break_long_words=False,
        break_on_hyphens=False)
