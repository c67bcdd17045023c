"""The PDF fast path over layouts we did not write (tests/corpus/templates): whatever it
serves is, page for page and pixel for pixel, the whole render of the customer's page.

Issue 19 item 3: on the corpus no customer took the fast path. Email layouts are tables
(the block holding a name was the outer table, split across pages), headings with a name
are bookmarks, and links and classes hold customer values. The engine here is the real
one (Plan, Encoder.pdf_version as the pipeline calls it), in this process.
"""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_corpus import corpus_customers, corpus_site
from PIL import Image, ImageChops
from pypdf import PdfReader

from edition.render.encoding import Encoder, pdf_options
from edition.render.plan import Plan
from renderers.pdf import PdfStats, render_pdf

AS_OF = dt.date(2026, 11, 2)
# One version: the segment fields the corpus campaigns select on, the same for all.
ONE_VERSION = {"locale": "en", "interests": [], "age": 40, "life_stage": "single",
               "tenure_months": 24, "lifetime_value": 1000}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus_site(tmp_path_factory.mktemp("corpus") / "site")


def customers(n: int, **fields: Any) -> Iterator[dict[str, Any]]:
    for i, customer in enumerate(corpus_customers(n)):
        customer.update(ONE_VERSION)
        for name, value in fields.items():
            customer[name] = value(i) if callable(value) else value
        yield customer


def render(site: Path, name: str, people: list[dict[str, Any]]
           ) -> tuple[PdfStats, list[tuple[dict[str, Any], str, bytes]], dict[str, Any]]:
    """Each customer's PDF as a run makes it: grouped by version and shape, then
    Encoder.pdf_version; with the renderer's counts."""
    plan = Plan.load(site / "campaigns" / f"{name}.yaml", formats=("html", "pdf"),
                     as_of=AS_OF)
    encoder = Encoder(plan.campaign, ("html", "pdf"),
                      dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC))
    groups: dict[Any, list[tuple[dict[str, Any], Any, Any]]] = {}
    for fields in people:
        version = plan.version_of(fields)[3]
        rendered = plan.renderer.render(version, fields)
        assert rendered.layout is not None and rendered.page, rendered.paths
        groups.setdefault((version.digest, rendered.layout.key), []).append(
            (fields, rendered, version))
    out = []
    for group in groups.values():
        layout = group[0][1].layout
        pdfs = encoder.pdf_version(layout.statics, [r.page for _, r, _ in group],
                                   group[0][2].locale,
                                   values=[r.layout.values for _, r, _ in group])
        out += [(fields, r.page, pdf) for (fields, r, _), pdf in zip(group, pdfs, strict=True)]
    return encoder.pdf_renderer().stats, out, pdf_options(plan.campaign)


def images(pdf: bytes, tmp_path: Path, name: str) -> list[Image.Image]:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(path), str(tmp_path / name)],
                   check=True, timeout=300)
    return [Image.open(p).convert("RGB") for p in sorted(tmp_path.glob(f"{name}-*.png"))]


def assert_whole_render(made: list[tuple[dict[str, Any], str, bytes]], options: dict[str, Any],
                        tmp_path: Path) -> None:
    """Every PDF is the whole render of its page: the same pages, pixels, links, outline."""
    for fields, page, pdf in made:
        whole = render_pdf(page, **options, locale="en")
        name = str(fields["id"])
        ours = images(pdf, tmp_path, f"fast-{name}")
        theirs = images(whole, tmp_path, f"whole-{name}")
        assert len(ours) == len(theirs), name
        for number, (a, b) in enumerate(zip(ours, theirs, strict=True), 1):
            assert ImageChops.difference(a, b).getbbox() is None, f"{name}: page {number}"
        fast, reference = PdfReader(io.BytesIO(pdf)), PdfReader(io.BytesIO(whole))
        assert links(fast) == links(reference), name
        assert outline(fast) == outline(reference), name


def outline(reader: PdfReader) -> list[str]:
    """The bookmark titles, nested ones flattened in order."""
    titles, stack = [], list(reversed(reader.outline))
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            titles.append(item.title)
    return titles


def links(reader: PdfReader) -> list[str]:
    return sorted(str(a.get_object()["/A"]["/URI"]) for page in reader.pages
                  for a in page.get("/Annots", []) or [] if "/URI" in a.get_object()["/A"])


def test_leemunroe_names_links_and_classes_in_table_cells(site: Path, tmp_path: Path) -> None:
    """Names in cells of the layout's tables, a personal class (`points vip`) that no
    rule selects, the customer's own unsubscribe link (a whole href, on another host for
    some): every customer but the first of each shape on the fast path (was none:
    "personal text in a block split across pages")."""
    people = list(customers(
        10, vip=lambda i: i % 3 == 0,
        unsubscribe_url=lambda i: f"https://{'shop' if i % 4 else 'other'}.example/u/{i}"))
    stats, made, options = render(site, "leemunroe", people)
    shapes = {(tuple(sorted(k for k, v in p.items() if v in ("", None))), p.get("vip"),
               bool(p.get("points"))) for p in people}
    assert stats.fast >= len(people) - len(shapes), stats.summary()
    assert set(stats.full) <= {"first customer of the version"}, stats.summary()
    assert_whole_render(made, options, tmp_path)
    assert any("https://other.example/u/0" in links(PdfReader(io.BytesIO(pdf)))
               for _, _, pdf in made)


def test_a_personal_class_that_css_selects_falls_back(site: Path, tmp_path: Path) -> None:
    """With a rule for `.vip`, the VIP customers' paragraph is restyled: they get a whole
    render, with the reason; the others stay on the fast path."""
    template = site / "templates" / "leemunroe" / "leemunroe.html.j2"
    original = template.read_text(encoding="utf-8")
    styled = site.parent / "styled"
    if not styled.exists():
        corpus_site(styled)
    (styled / "templates" / "leemunroe" / "leemunroe.html.j2").write_text(
        original.replace("</style>", ".vip { color: #c00000; font-weight: bold; }\n</style>",
                         1), encoding="utf-8")
    people = list(customers(8, vip=lambda i: i % 2 == 0, points=120))
    stats, made, options = render(styled, "leemunroe", people)
    vips = sum(1 for p in people if p["vip"])
    assert stats.full == {"personal class or link selects other CSS rules": vips}, \
        stats.summary()
    assert stats.fast == len(people) - vips, stats.summary()
    assert_whole_render(made, options, tmp_path)


def test_postmark_headings_with_a_name_keep_their_bookmarks(site: Path, tmp_path: Path) -> None:
    """"Hi {{ first name }}," and the VIP discount are headings, so PDF bookmarks: the
    outline is remade per customer (it was: "personal value in a bookmark", every
    customer rendered whole). Customers without orders: their receipt table is the
    version's (order lines in an auto-width table change its columns: those fall back)."""
    people = list(customers(8, orders=[], vip=lambda i: i % 2 == 0))
    for person in people:
        person.pop("total", None)
    stats, made, options = render(site, "postmark-receipt", people)
    assert stats.fast >= len(people) - 2, stats.summary()  # the first of each vip shape
    assert_whole_render(made, options, tmp_path)
    for fields, _, pdf in made:
        titles = outline(PdfReader(io.BytesIO(pdf)))
        assert f"Hi {fields['first_name']}," in titles, titles


@pytest.mark.parametrize("name", ["mailchimp-simple", "cerberus"])
def test_tables_that_follow_their_text_are_stamped_whole(site: Path, tmp_path: Path,
                                                         name: str) -> None:
    """Mailchimp's preheader and Cerberus's centred blocks sit in tables of auto width
    (CSS ignores width="100%"): a name changes their columns and width. Such a table is
    laid out again whole for the customer and stamped, as long as the tables around it
    keep their columns (it was: 0 % fast on both, "personal text changes the layout",
    "personal text in a block split across pages"). Where a name changes the rows (an
    image scaled by its column), the customer is rendered whole."""
    people = list(customers(12))
    stats, made, options = render(site, name, people)
    assert stats.fast >= 3, stats.summary()
    assert set(stats.full) <= {"first customer of the version",
                               "personal text changes the layout"}, stats.summary()
    assert_whole_render(made, options, tmp_path)
