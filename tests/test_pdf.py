"""PDF editions: the fast path gives what a whole render of each customer's HTML gives."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fontTools.ttLib import TTFont
from markupsafe import escape
from PIL import Image, ImageChops
from pypdf import PdfReader

from renderers.pdf import PdfBatchRenderer, PdfStats, render_pdf, render_versions
from renderers.pdf.fetcher import FONTS_DIR
from renderers.pdf.slots import Slots, sentinels

REPO_PRINT_CSS = Path(__file__).parents[1] / "templates" / "print.css"
SHIPPED_SANS = set(TTFont(FONTS_DIR / "DejaVuSans.ttf").getBestCmap())

NAMES = ["Maribel", "Jonas", "Aiko", "Bartholomew", "Zoë", "Ann & Bob", "Ingrid", "Tobiah",
         "Leilani", "Kwabena"]
WORDS = [
    "harvest", "orchard", "bridge", "market", "lantern", "meadow", "harbour", "kettle",
    "ribbon", "compass", "willow", "pebble", "thistle", "saddle", "beacon", "granite",
    "juniper", "quarry", "velvet", "tundra",
]


class SharedDocument:
    """Stand-in for edition.render.personal.SharedDocument: parts with holes for customer fields."""

    def __init__(self, parts: list[str], holes: list[str]) -> None:
        self.parts, self.holes = parts, holes

    def fill(self, customer: dict[str, Any]) -> str:
        out = [self.parts[0]]
        for field, part in zip(self.holes, self.parts[1:], strict=True):
            out += (str(escape(customer[field])), part)
        return "".join(out)


def paragraph(seed: int, words: int) -> str:
    text = " ".join(WORDS[(seed * 7 + i * 3 + i * i) % len(WORDS)] for i in range(words))
    return text.capitalize() + "."


def newsletter(version: int, *, large: bool = False, title_hole: bool = False) -> SharedDocument:
    """A three-page newsletter: greeting, four articles, an offer, a footer link."""
    titles = article_titles(version)
    articles = "".join(
        f"<article><h2>{title}</h2>"
        + "".join(f"<p>{paragraph(version * 10 + i * 3 + j, 70 + 9 * j)}</p>" for j in range(4))
        + "</article>"
        for i, title in enumerate(titles)
    )
    body_class = ' class="large-type"' if large else ""
    style = ("<style>body{font-family:sans-serif;max-width:600px;margin:auto}"
             ".account{border:1px solid #999;padding:6px}</style>")
    head = "<!doctype html><html lang=en><head><meta charset=utf-8><title>Spring news"
    body = (
        f"</title>{style}</head><body{body_class} data-campaign='Spring newsletter'>"
        "<header class=masthead><h1>Acme News</h1><p>Spring edition</p></header>"
        "<section class=greeting><p>Dear "
    )
    parts = [
        *([head + " for ", body] if title_hole else [head + body]),
        ",</p><p>Here is what we picked for you this week.</p>"
        "<p class=account>Your invoice total: <strong>",
        f"</strong>, due on 1 June.</p></section>{articles}"
        "<aside class=offer><h2>Just for you</h2><p>Ten percent off garden tools.</p></aside>"
        "<footer><p>Acme Ltd, 1 Main St, Springfield · +1 555 0100 · "
        '<a href="https://acme.example/feedback?c=',
        '">Tell us what you think</a></p></footer></body></html>',
    ]
    holes = [*(["first_name"] if title_hole else []), "first_name", "total", "id"]
    return SharedDocument(parts, holes)


def article_titles(version: int) -> list[str]:
    return [f"{WORDS[(version * 4 + i) % len(WORDS)].title()} notes {version}.{i}"
            for i in range(4)]


def customers_for(version: int) -> list[dict[str, Any]]:
    return [{"id": f"c{version}{i:03d}", "first_name": name, "total": f"${(i + 1) * 13.25:.2f}"}
            for i, name in enumerate(NAMES)]


def text_of(pdf: bytes) -> str:
    # poppler's pdftotext: much faster than pypdf's extractor, and independent of us.
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return done.stdout.decode()


def uris_of(pdf: bytes) -> list[str]:
    return [
        str(annot.get_object()["/A"]["/URI"])
        for page in PdfReader(io.BytesIO(pdf)).pages
        for annot in page.get("/Annots", []) or []
    ]


def page_images(
    pdf: bytes, tmp_path: Path, name: str, dpi: int = 60, last: int | None = None
) -> list[Image.Image]:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    pages = ["-l", str(last)] if last else []
    subprocess.run(
        ["pdftoppm", "-png", "-r", str(dpi), *pages, str(path), str(tmp_path / name)],
        check=True,
    )
    return [Image.open(p).convert("RGB") for p in sorted(tmp_path.glob(f"{name}-*.png"))]


def assert_same_pages(
    fast: bytes, naive: bytes, tmp_path: Path, name: str, dpi: int = 60, last: int | None = None
) -> None:
    """Every page of ``fast`` (up to ``last``) is pixel for pixel the whole render's."""
    count = [len(PdfReader(io.BytesIO(pdf)).pages) for pdf in (fast, naive)]
    assert count[0] == count[1], f"{name}: {count[0]} pages, the whole render {count[1]}"
    fast_pages = page_images(fast, tmp_path, f"fast-{name}", dpi, last)
    naive_pages = page_images(naive, tmp_path, f"naive-{name}", dpi, last)
    for page, (a, b) in enumerate(zip(fast_pages, naive_pages, strict=True), 1):
        assert ImageChops.difference(a, b).getbbox() is None, f"page {page} of {name} differs"


def own_stamp_fonts(pdf: bytes) -> set[str]:
    """Fonts that a PDF's stamps bring along, beyond the fonts of its shared pages."""
    own: set[str] = set()
    for page in PdfReader(io.BytesIO(pdf)).pages:
        resources = page["/Resources"]
        shared = {font.get_object()["/BaseFont"] for font in resources["/Font"].values()}
        stamp = resources.get("/XObject", {}).get("/EditionPersonal")
        if stamp is not None:
            for font in stamp.get_object()["/Resources"]["/Font"].values():
                own.add(font.get_object()["/BaseFont"])
        own -= shared
    return own


@pytest.fixture(scope="module")
def no_print_css(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A templates folder without print.css: the renderer's default print look."""
    return tmp_path_factory.mktemp("templates")


@pytest.fixture(scope="module")
def batch(no_print_css: Path) -> dict[str, Any]:
    """Three versions, ten customers each, through the fast path."""
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    runs = []
    for version in range(3):
        doc = newsletter(version)
        customers = customers_for(version)
        runs.append((version, doc, customers, renderer.render(doc, customers)))
    return {"renderer": renderer, "runs": runs}


def test_every_customer_takes_the_fast_path(batch: dict[str, Any]) -> None:
    stats: PdfStats = batch["renderer"].stats
    assert stats.customers == 30
    assert stats.fast == 30, stats.summary()
    assert stats.versions == 3 and not stats.versions_full
    # Greeting and invoice line are plain paragraphs: every stamp is drawn straight.
    assert not stats.versions_laid_out
    assert stats.direct + stats.stamps_reused == 30


def test_each_pdf_holds_its_customer_and_version_only(batch: dict[str, Any]) -> None:
    for version, _, customers, pdfs in batch["runs"]:
        for customer, pdf in zip(customers, pdfs, strict=True):
            text = text_of(pdf)
            assert f"Dear {customer['first_name']}," in text
            assert customer["total"] in text
            for title in article_titles(version):
                assert title in text
            for other in range(3):
                if other != version:
                    assert article_titles(other)[0] not in text
            for name in NAMES:
                if name != customer["first_name"]:
                    assert name not in text, f"{name} in {customer['first_name']}'s PDF"
            assert uris_of(pdf) == [f"https://acme.example/feedback?c={customer['id']}"]


def test_fast_path_looks_like_the_naive_render(
    batch: dict[str, Any], no_print_css: Path, tmp_path: Path
) -> None:
    for version, doc, customers, pdfs in batch["runs"]:
        index = 4 * version  # a different customer in each version
        customer, fast = customers[index], pdfs[index]
        naive = render_pdf(doc.fill(customer), base_url=None, templates_dir=no_print_css)
        fast_pages = page_images(fast, tmp_path, f"fast{version}")
        naive_pages = page_images(naive, tmp_path, f"naive{version}")
        assert len(fast_pages) == len(naive_pages) >= 3
        for page, (a, b) in enumerate(zip(fast_pages, naive_pages, strict=True), 1):
            assert ImageChops.difference(a, b).getbbox() is None, (
                f"page {page} of {customer['first_name']}'s PDF differs from the naive one"
            )


def test_page_one_png_for_people(batch: dict[str, Any], tmp_path: Path) -> None:
    # Under tmp_path: a test never overwrites a tracked file (docs/img has the sample).
    pdf = tmp_path / "edition.pdf"
    pdf.write_bytes(batch["runs"][0][3][0])
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", str(pdf),
         str(tmp_path / "pdf-page1")],
        check=True,
    )
    image = Image.open(tmp_path / "pdf-page1.png")
    assert image.size == (497, 702)  # A4 at 60 dpi


def test_a_reflowing_name_falls_back_to_a_whole_render(no_print_css: Path) -> None:
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    doc = newsletter(5)
    long_name = "Maximiliane " * 14 + "Wolkenstein"  # wraps the greeting onto more lines
    customers = [*customers_for(5)[:2], {"id": "c999", "first_name": long_name, "total": "$1"}]
    pdfs = renderer.render(doc, customers)
    assert renderer.stats.fast == 2
    assert renderer.stats.full == {"personal text changes the layout": 1}
    naive = render_pdf(doc.fill(customers[2]), templates_dir=no_print_css)
    assert text_of(pdfs[2]) == text_of(naive)


def test_a_version_whose_every_stamp_reflows_stops_trying(no_print_css: Path) -> None:
    """When every customer's text so far reflowed the version's lines (a greeting far
    longer than its sentinel), each stamp cost about a render before the render that
    decided: after a dozen, the version's other customers go straight to the render."""
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    doc = newsletter(5)
    customers = [{"id": f"w{i}", "first_name": "Maximiliane " * 14 + f"W{i}", "total": "$1"}
                 for i in range(16)]
    pdfs = renderer.render(doc, customers)
    assert renderer.stats.full == {"personal text changes the layout": 12,
                                   "personal text changed the layout of every customer tried": 4}
    naive = render_pdf(doc.fill(customers[-1]), templates_dir=no_print_css)
    assert text_of(pdfs[-1]) == text_of(naive)


def test_holes_in_a_table_and_deep_in_the_document(no_print_css: Path, tmp_path: Path) -> None:
    """A table is stamped whole; a name on page 2 is laid out with what comes before it."""
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    doc = newsletter(4)
    doc.parts[1] = doc.parts[1].replace(
        "<p class=account>Your invoice total: <strong>",
        "<table class=account><tr><th>Invoice total</th><td><strong>",
    )
    after_total = doc.parts[2].replace(
        "</strong>, due on 1 June.</p>", "</strong></td></tr></table>"
    )
    # A personal line at the end of the second article, on page 2.
    cut = after_total.index("</article>", after_total.index("</article>") + 1)
    doc.parts[2:3] = [after_total[:cut] + "<p>A last word for you, ", ".</p>" + after_total[cut:]]
    doc.holes[2:2] = ["first_name"]
    customers = customers_for(4)[:3]
    pdfs = renderer.render(doc, customers)
    assert renderer.stats.fast == 3, renderer.stats.summary()
    version = renderer.prepared(doc.parts)
    assert not isinstance(version, str | None)
    assert sorted({hole.page for hole in version.holes}) == [0, 1]  # pages 1 and 2
    naive = render_pdf(doc.fill(customers[1]), templates_dir=no_print_css)
    fast_pages = page_images(pdfs[1], tmp_path, "fast")
    naive_pages = page_images(naive, tmp_path, "naive")
    assert len(fast_pages) == len(naive_pages)
    for a, b in zip(fast_pages, naive_pages, strict=True):
        assert ImageChops.difference(a, b).getbbox() is None
    assert f"A last word for you, {customers[1]['first_name']}." in text_of(pdfs[1])



def test_a_name_in_a_table_of_auto_width_is_drawn_straight_while_its_columns_hold(
        no_print_css: Path, tmp_path: Path) -> None:
    """An email layout's two columns, a table without a CSS width: its columns follow
    the cells' min- and max-content widths. A name in a cell is drawn straight into the
    column when the customer's text gives the table the version's columns (checked with
    WeasyPrint's table layout, renderers/pdf/tables.py); a name wide enough to move
    them is not (it was: never drawn straight, "personal paragraph in a table cell")."""
    doc = newsletter(6)
    doc.parts[0] = doc.parts[0].replace(
        "<section class=greeting><p>Dear ",
        "<section class=greeting><table><tr><td><p>Dear ")
    doc.parts[1] = doc.parts[1].replace(
        ",</p><p>Here is what we picked for you this week.</p>",
        ",</p><p>Here is what we picked for you this week, wholeheartedly.</p></td>"
        f"<td><p>{paragraph(5, 60)}</p></td></tr></table>", 1)
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    short = ["Al", "Zoë", "Kwabena", "Ингрид", "Li", "Maribel"]
    wide = "Bartholomew-Fitzgerald-Wolfeschlegelstein"  # wider than the cell's longest line
    names = [*short, wide]
    customers = [{"id": f"t{i}", "first_name": n, "total": "$1"} for i, n in enumerate(names)]
    pdfs = renderer.render(doc, customers)
    stats = renderer.stats
    assert stats.direct == len(short), stats.summary()  # not the wide name
    for customer, pdf in zip(customers, pdfs, strict=True):
        naive = render_pdf(doc.fill(customer), templates_dir=no_print_css)
        # The stamps are on page 1; the other pages are the same objects for everyone.
        assert_same_pages(pdf, naive, tmp_path, customer["id"], dpi=100, last=1)



def test_a_float_in_another_cell_leaves_the_name_on_the_fast_path(
        no_print_css: Path, tmp_path: Path) -> None:
    """Email layouts float images in their columns (Foundation for Emails): a float in
    the cell beside a personal paragraph is drawn by the shared page and moves none of
    its lines (it was: the version rendered whole, "a float or positioned box sits
    beside personal text"). A float in the paragraph's own cell still refuses."""
    doc = newsletter(7)
    doc.parts[0] = doc.parts[0].replace(
        "<section class=greeting><p>Dear ",
        '<section class=greeting><table style="width:100%"><tr>'
        '<td style="width:30%"><div style="float:left;width:60px;height:60px;'
        'background:#c00"></div>Our news</td><td><p>Dear ')
    doc.parts[1] = doc.parts[1].replace(
        ",</p><p>Here is what we picked for you this week.</p>",
        ",</p><p>Here is what we picked for you this week.</p></td></tr></table>", 1)
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    customers = customers_for(7)[:5]
    pdfs = renderer.render(doc, customers)
    stats = renderer.stats
    assert not stats.versions_full, stats.summary()
    assert stats.fast == len(customers), stats.summary()
    for customer, pdf in zip(customers, pdfs, strict=True):
        naive = render_pdf(doc.fill(customer), templates_dir=no_print_css)
        assert_same_pages(pdf, naive, tmp_path, customer["id"], dpi=100, last=1)
    # The float in the name's own cell: beside its lines, so the version renders whole.
    same_cell = newsletter(7)
    same_cell.parts[0] = same_cell.parts[0].replace(
        "<section class=greeting><p>Dear ",
        '<section class=greeting><div style="float:left;width:60px;height:60px;'
        'background:#c00"></div><p>Dear ')
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    renderer.render(same_cell, customers)
    assert renderer.stats.versions_full == {
        "a float or positioned box sits beside personal text": 1}, renderer.stats.summary()


# Names whose glyphs the version's fonts lack (Greek, Cyrillic, Hebrew and Arabic
# right to left, CJK that no installed font has, an emoji), accents composed and not,
# ligatures, edge spaces and an empty name; one long enough to wrap the greeting.
HARD_NAMES = [
    "Maribel", "Αθηνά Παπαδοπούλου", "Жанна", "דוד כהן", "محمد", "Zoe\u0308 Ångström",
    "Steffi Œuvre-ﬁnch", "Łukasz Żółć", "O'Brien & Sons", "王小明", "Zoë 😀",
    " Ann  Lee ", "", "Wolfeschlegelsteinhausenbergerdorff", "Maximiliane " * 14,
]


def hard_customers() -> list[dict[str, Any]]:
    return [{"id": f"h{i}", "first_name": name, "total": f"€{i * 7.5:.2f}"}
            for i, name in enumerate(HARD_NAMES)]


def shipped(name: str) -> bool:
    """Every character of ``name`` is in the sans-serif font edition ships."""
    return all(ord(char) in SHIPPED_SANS for char in name if not char.isspace())


@pytest.mark.parametrize("print_css", [None, *([REPO_PRINT_CSS] if REPO_PRINT_CSS.is_file()
                                               else [])], ids=["default", "templates"][:2])
def test_hard_names_look_like_their_whole_render(print_css: Path | None, tmp_path: Path) -> None:
    """Whatever fonts the host has (issue 17, finding 24: Debian's chromium brings
    fonts-liberation, which turned four stamps into whole renders here), each customer's
    PDF is pixel for pixel their whole render; the fast path serves every name the
    shipped fonts draw, whose layout therefore no longer depends on the host."""
    templates = tmp_path / "templates"
    templates.mkdir()
    if print_css is not None:
        shutil.copy(print_css, templates / "print.css")
    renderer = PdfBatchRenderer(templates_dir=templates)
    doc = newsletter(2)
    customers = hard_customers()
    pdfs = renderer.render(doc, customers)
    for index, (customer, pdf) in enumerate(zip(customers, pdfs, strict=True)):
        naive = render_pdf(doc.fill(customer), templates_dir=templates)
        # The stamps are on page 1; the other pages are the same objects for everyone.
        last = None if index == 0 else 1
        assert_same_pages(pdf, naive, tmp_path, customer["id"], dpi=80, last=last)
    # The names the shipped fonts draw: all on the fast path but the one long enough
    # to wrap; characters beyond them (CJK here) come from the host and may go either way.
    wraps = "Maximiliane " * 14
    covered = [name for name in HARD_NAMES if shipped(name)]
    stats = renderer.stats
    assert stats.fast >= len(covered) - 1, stats.summary()
    assert stats.full["personal text changes the layout"] >= 1, stats.summary()
    # Drawn straight: the plain ones among them (no edge spaces, not empty, no emoji,
    # which some hosts draw from a colour font of their own).
    plain = [n for n in covered if n and n == n.strip() and n != wraps
             and all(ord(c) < 0x1F000 for c in n)]
    assert stats.direct >= len(plain), stats.summary()
    by_name = dict(zip(HARD_NAMES, pdfs, strict=True))
    assert not own_stamp_fonts(by_name["Maribel"])  # the version's fonts hold its glyphs
    assert own_stamp_fonts(by_name["Αθηνά Παπαδοπούλου"])  # a subset of its own


def test_lines_that_reflow_inside_a_paragraph(no_print_css: Path, tmp_path: Path) -> None:
    """Justified, hyphenated text after the name: words move between lines, the
    paragraph keeps its height, and the stamp is still drawn straight."""
    doc = newsletter(11)
    doc.parts[0] = doc.parts[0].replace(
        "<section class=greeting><p>Dear ",
        '<section class=greeting><p style="text-align: justify; hyphens: auto">Dear ',
    )
    doc.parts[1] = doc.parts[1].replace(
        ",</p><p>Here is",
        f", {paragraph(3, 55)} <em>{paragraph(4, 14)}</em> and more.</p><p>Here is",
        1,
    )
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    names = ["Al", "Bartholomew-Fitzgerald", "Zoë", "Kwabena Asante", "Ингрид", "Li"]
    customers = [{"id": f"r{i}", "first_name": n, "total": "$1"} for i, n in enumerate(names)]
    pdfs = renderer.render(doc, customers)
    assert renderer.stats.direct == len(names), renderer.stats.summary()
    for index, (customer, pdf) in enumerate(zip(customers, pdfs, strict=True)):
        naive = render_pdf(doc.fill(customer), templates_dir=no_print_css)
        last = None if index == 0 else 1  # the stamp is on page 1
        assert_same_pages(pdf, naive, tmp_path, customer["id"], dpi=100, last=last)


def test_right_to_left_paragraph_and_a_name_on_page_two(
    no_print_css: Path, tmp_path: Path
) -> None:
    doc = newsletter(12)
    doc.parts[0] = doc.parts[0].replace(
        "<section class=greeting><p>Dear ",
        '<section class=greeting><p dir=rtl lang=he style="text-align: start">שלום ',
    )
    # A personal line at the end of the second article, on page 2.
    cut = doc.parts[2].index("</article>", doc.parts[2].index("</article>") + 1)
    doc.parts[2:3] = [doc.parts[2][:cut] + "<p>A last word for <b>you</b>, ",
                      ".</p>" + doc.parts[2][cut:]]
    doc.holes[2:2] = ["first_name"]
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    names = ["דוד", "Jonas", "محمد علي", "Zoë"]
    customers = [{"id": f"l{i}", "first_name": n, "total": "$2"} for i, n in enumerate(names)]
    pdfs = renderer.render(doc, customers)
    version = renderer.prepared(doc.parts)
    assert not isinstance(version, str | None)
    assert sorted({hole.page for hole in version.holes}) == [0, 1]
    assert renderer.stats.direct == len(names), renderer.stats.summary()
    for customer, pdf in zip(customers, pdfs, strict=True):
        naive = render_pdf(doc.fill(customer), templates_dir=no_print_css)
        assert_same_pages(pdf, naive, tmp_path, customer["id"], dpi=80, last=2)
        assert text_of(pdf) == text_of(naive)
        assert customer["first_name"] in text_of(pdf).split("A last word for you, ")[1]


STYLED = {
    # Drawn straight: all of this is WeasyPrint's own line layout and drawing.
    "transformed": (True, ".greeting p{text-transform:capitalize;text-indent:3em;"
                    "text-align:center;line-height:2.2;border:2px dashed #c00;padding:4px;"
                    "background:#eef;text-shadow:1px 1px 2px #888;word-spacing:3px}"),
    "decorated": (True, ".greeting p{text-transform:uppercase;font-variant:small-caps;"
                  "letter-spacing:.05em;text-align:justify;text-align-last:justify}"
                  ".account strong{text-decoration:underline wavy;background:#ff0;"
                  "padding:0 4px;border-radius:3px}"),
    "ellipsis": (True, ".greeting p{overflow:hidden;white-space:nowrap;"
                 "text-overflow:ellipsis;width:120px}"),
    # Laid out instead: generated boxes, a transparency group, a shifted block.
    "generated": (False, ".greeting p::first-letter{font-size:200%}.account{opacity:.6}"),
    "shifted": (False, ".greeting p{position:relative;left:10px}"
                ".account{position:relative;top:2px}"),
}


@pytest.mark.parametrize("style", list(STYLED))
def test_styled_paragraphs_look_like_their_whole_render(
    style: str, no_print_css: Path, tmp_path: Path
) -> None:
    direct, css = STYLED[style]
    doc = newsletter(14)
    doc.parts[0] = doc.parts[0].replace("</style>", css + "</style>")
    names = ["Bartholomew Fitzgerald", "Zoë", "דוד"]
    customers = [{"id": f"s{i}", "first_name": n, "total": f"${i}.50"}
                 for i, n in enumerate(names)]
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    pdfs = renderer.render(doc, customers)
    assert renderer.stats.fast == len(names), renderer.stats.summary()
    assert renderer.stats.direct == (len(names) if direct else 0)
    for customer, pdf in zip(customers, pdfs, strict=True):
        naive = render_pdf(doc.fill(customer), templates_dir=no_print_css)
        assert_same_pages(pdf, naive, tmp_path, customer["id"], dpi=80, last=1)


def test_stamp_caches_stay_bounded(no_print_css: Path) -> None:
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    doc = newsletter(13)
    customers = [{"id": f"m{i}", "first_name": f"Ξένια {i:04d}", "total": f"${i}"}
                 for i in range(300)]
    pdfs = renderer.render(doc, customers)
    assert renderer.stats.direct == 300
    version = renderer.prepared(doc.parts)
    assert not isinstance(version, str | None)
    assert len(version.stamps) <= 256
    assert version.stamps.size <= 1 << 20
    assert "Ξένια 0299" in text_of(pdfs[-1])


def test_same_personal_text_reuses_the_stamp(no_print_css: Path) -> None:
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    twins = [{"id": f"t{i}", "first_name": "Aiko", "total": "$5.00"} for i in range(2)]
    pdfs = renderer.render(newsletter(3), twins)
    assert renderer.stats.fast == 2 and renderer.stats.stamps_reused == 1
    assert [uris_of(pdf) for pdf in pdfs] == [
        ["https://acme.example/feedback?c=t0"], ["https://acme.example/feedback?c=t1"]
    ]
    assert "Dear Aiko," in text_of(pdfs[1])


def test_unsupported_holes_render_whole(no_print_css: Path) -> None:
    """A value in a style attribute may restyle anything: that version renders whole."""
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    doc = newsletter(6)
    doc.parts[0] = doc.parts[0].replace("<p>Dear ", '<p style="font-family: ')
    doc.parts[1] = '">Dear reader' + doc.parts[1]
    pdfs = renderer.render(doc, customers_for(6)[:2])
    assert renderer.stats.versions_full == {"personal value in the style attribute of <p>": 1}
    assert renderer.stats.fast == 0
    assert "Dear reader," in text_of(pdfs[0])


def test_personal_title_goes_into_the_metadata(no_print_css: Path) -> None:
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    doc = newsletter(7, title_hole=True)
    customers = customers_for(7)[:3]
    pdfs = renderer.render(doc, customers)
    assert renderer.stats.fast == 3
    for customer, pdf in zip(customers, pdfs, strict=True):
        title = PdfReader(io.BytesIO(pdf)).metadata.title
        assert title == f"Spring news for {customer['first_name']}"


def test_letter_paper(no_print_css: Path) -> None:
    renderer = PdfBatchRenderer(page_size="Letter", templates_dir=no_print_css)
    doc = newsletter(8)
    (pdf, _) = renderer.render(doc, customers_for(8)[:2])
    box = PdfReader(io.BytesIO(pdf)).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (612, 792)
    with pytest.raises(ValueError, match="page_size"):
        PdfBatchRenderer(page_size="A5")


STYLESHEETS = [pytest.param(None, id="default-print-css")]
if REPO_PRINT_CSS.is_file():
    STYLESHEETS.append(pytest.param(REPO_PRINT_CSS, id="templates-print-css"))


@pytest.mark.parametrize("print_css", STYLESHEETS)
def test_large_type_for_seniors(print_css: Path | None, tmp_path: Path) -> None:
    if print_css is not None:
        shutil.copy(print_css, tmp_path / "print.css")
    renderer = PdfBatchRenderer(templates_dir=tmp_path)
    customer = customers_for(9)[:1]
    (regular,) = renderer.render(newsletter(9), customer)
    (senior,) = renderer.render(newsletter(9, large=True), customer)
    regular_pages = PdfReader(io.BytesIO(regular)).pages
    senior_pages = PdfReader(io.BytesIO(senior)).pages
    assert len(senior_pages) > len(regular_pages)
    words = [len(pages[0].extract_text().split()) for pages in (regular_pages, senior_pages)]
    assert words[0] > 150
    assert words[1] < 0.8 * words[0]


def test_process_pool_gives_the_same_pdfs(batch: dict[str, Any], no_print_css: Path) -> None:
    runs = batch["runs"]
    # Three customers in chunks of two, then two versions too small to share.
    jobs = [(runs[0][1], runs[0][2][:3]), (runs[1][1], runs[1][2][:1]), (runs[2][1], [])]
    stats = PdfStats()
    results = list(
        render_versions(jobs, workers=2, chunk_size=2, stats=stats, templates_dir=no_print_css)
    )
    assert [len(r) for r in results] == [3, 1, 0]
    assert stats.customers == 4 and stats.fast == 3
    assert stats.full == {"too few customers to share the layout": 1}
    for pooled, (_, _, _, pdfs) in zip(results, runs, strict=True):
        for one, other in zip(pdfs, pooled, strict=False):
            assert text_of(one) == text_of(other)


def test_slots_cut_values_out_of_a_fill() -> None:
    slots = Slots(["<p>Dear ", " ", ',</p><a href="?c=', '">x</a>'])
    # "{{first}} {{last}}" is one slot: the space could also be inside a value.
    assert slots.count == 2
    assert slots.split('<p>Dear Ann Lee Smith,</p><a href="?c=7">x</a>') == ["Ann Lee Smith", "7"]
    assert slots.split('<p>Dear <b>Ann</b>,</p><a href="?c=7">x</a>') is None  # not escaped
    assert slots.split("<p>Something else</p>") is None


def test_sentinels_are_about_as_wide_as_typical_values(no_print_css: Path) -> None:
    # Short markers for a few slots, padded to the value's length, none in the text.
    taken = "<p>Hello zqaqz</p>"
    markers = sentinels([3, 12], taken)
    assert [len(marker) for marker in markers] == [5, 12]
    assert len(set(markers)) == 2 and not any(marker[:5] in taken for marker in markers)
    # The version is laid out for the median customer, not for whoever comes first.
    renderer = PdfBatchRenderer(templates_dir=no_print_css)
    doc = newsletter(15)
    names = ["Bartholomew-Fitzgerald", "Al", "Jo", "Li", "Ann"]
    renderer.render(doc, [{"id": f"w{i}", "first_name": n, "total": "$1"}
                          for i, n in enumerate(names)])
    version = renderer.prepared(doc.parts)
    assert not isinstance(version, str | None)
    assert len(version.sentinels[0]) == 5


# Text in every family name the print stylesheet pins, in the scripts the shipped fonts
# hold, regular, bold, italic and both. Not pinned: Hebrew and Arabic in monospace
# (DejaVu Sans Mono has half of Arabic, and a host's fontconfig may prefer its own
# monospace fonts for the numbers in it), and scripts beyond the shipped fonts (CJK).
FAMILIES = ["sans-serif", "serif", "monospace", "Helvetica", "Arial", "Verdana", "Georgia",
            "Times New Roman", "Courier New"]
SPECIMEN = "Zoë Ångström Œuvre-ﬁnch Αθηνά Жанна €12,50 “quotes” – № ✓"
RIGHT_TO_LEFT = " דוד כהן محمد علي"
MONOSPACE = {"monospace", "Courier New"}
_RENDER = """
import sys
from pathlib import Path
from renderers.pdf import render_pdf
html, templates, out = Path(sys.argv[1]).read_text(), sys.argv[2], sys.argv[3]
Path(out).write_bytes(render_pdf(html, templates_dir=templates))
"""


def fontconfig(tmp_path: Path, name: str, folders: list[str]) -> dict[str, str]:
    """An environment whose fontconfig sees only ``folders`` (no system config at all)."""
    config = tmp_path / f"{name}.conf"
    dirs = "".join(f"<dir>{folder}</dir>" for folder in folders)
    config.write_text(f'<?xml version="1.0"?><fontconfig>{dirs}'
                      f"<cachedir>{tmp_path / 'fc-cache'}</cachedir></fontconfig>")
    return {"FONTCONFIG_FILE": str(config)}


def test_pages_do_not_depend_on_the_hosts_fonts(tmp_path: Path) -> None:
    """The same document renders to the same pixels whatever fontconfig offers: the
    host's own fonts, only Liberation's (what Debian's chromium pulls in), or no fonts
    at all (issue 17, finding 24). With the repository's print.css, whose Helvetica
    was Liberation Sans on one host and DejaVu Sans on the next."""
    templates = tmp_path / "templates"
    templates.mkdir()
    shutil.copy(REPO_PRINT_CSS, templates / "print.css")
    blocks = "".join(
        f'<p style="font-family: {family}">{family}: {text} <b>bold {text}</b> '
        f"<i>italic {text}</i> <b><i>both {text}</i></b></p>"
        for family in FAMILIES
        for text in [SPECIMEN + ("" if family in MONOSPACE else RIGHT_TO_LEFT)])
    document = newsletter(3).fill(customers_for(3)[0]).replace("<header", blocks + "<header")
    source = tmp_path / "doc.html"
    source.write_text(document, encoding="utf-8")
    environments = {
        "host": {},
        "liberation only": fontconfig(tmp_path, "liberation",
                                      ["/usr/share/fonts/truetype/liberation"]),
        "no fonts": fontconfig(tmp_path, "none", []),
    }
    reference: list[Image.Image] = []
    for name, env in environments.items():
        out = tmp_path / f"{name}.pdf"
        subprocess.run([sys.executable, "-c", _RENDER, str(source), str(templates), str(out)],
                       check=True, env={**os.environ, **env}, capture_output=True, timeout=300)
        images = page_images(out.read_bytes(), tmp_path, name.replace(" ", "-"), dpi=60)
        if not reference:
            reference = images
            assert len(reference) >= 3
            continue
        assert len(images) == len(reference), name
        for number, (a, b) in enumerate(zip(reference, images, strict=True), 1):
            assert ImageChops.difference(a, b).getbbox() is None, f"page {number} with {name}"


def test_shipped_fonts_have_their_licence_and_coverage() -> None:
    """The fonts carry their licence, and coverage.json is what the fonts hold."""
    from renderers.pdf.fontfaces import COVERAGE, FONT_FAMILIES, coverage

    files = {file for faces in FONT_FAMILIES.values() for file, _, _ in faces}
    assert files <= {path.name for path in FONTS_DIR.glob("*.ttf")}
    assert "Bitstream Vera" in (FONTS_DIR / "LICENSE").read_text(encoding="utf-8")
    assert json.loads(COVERAGE.read_text(encoding="utf-8")) == coverage()


def test_another_weasyprint_renders_whole_with_a_warning(
    no_print_css: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path reads WeasyPrint's internals: on a release it was not written for it
    must not run. The renderer warns once and renders every customer whole (issue 19, 7)."""
    from renderers.pdf import pin

    assert pin.fast_path_problem() is None  # the pinned release is the one installed here
    monkeypatch.setattr(pin, "installed_weasyprint", lambda: "71.0")
    monkeypatch.setattr(pin, "_warned", set())
    with pytest.warns(RuntimeWarning, match="WeasyPrint 71.0 is installed"):
        renderer = PdfBatchRenderer(templates_dir=no_print_css)
    doc, customers = newsletter(0), customers_for(0)[:3]
    pdfs = renderer.render(doc, customers)
    assert renderer.stats.fast == 0
    assert renderer.stats.full == {pin.fast_path_problem(): 3}
    for customer, pdf in zip(customers, pdfs, strict=True):
        assert f"Dear {customer['first_name']}," in text_of(pdf)
    naive = render_pdf(doc.fill(customers[1]), base_url=None, templates_dir=no_print_css)
    assert_same_pages(pdfs[1], naive, tmp_path, "unguarded")
