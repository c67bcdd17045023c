"""The print stylesheet adds paper to a template and leaves its brand alone (issue 17,
finding 20): page rules, page breaks and a running header and footer, in the edition's
language and with the campaign's display name; never the template's colours or fonts.

The default print sheet used to restyle headings in near-black, so a team's headline
vanished on its dark banner; the header showed the campaign's slug and Spanish
editions said "Page 1 of 3".
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import read_manifest
from PIL import Image
from pypdf import PdfReader

from renderers.pdf import render_pdf

REPO = Path(__file__).resolve().parents[1]
BANNER, HEADLINE, INK = (11, 46, 19), (244, 210, 94), (122, 62, 0)
# An outside team's template: a dark banner whose light colour the headline inherits,
# brown body text, its own fonts (Georgia headline, Verdana text), no print.css.
TEMPLATE = """<!doctype html>
<html lang="{{ locale }}"><head><meta charset="utf-8"><title>Garden club</title>
<style>
  body { font-family: Verdana, sans-serif; color: #7a3e00; font-size: 15px; }
  .banner { background: #0b2e13; color: #f4d25e; padding: 18px 24px; }
  .banner h1 { font-family: Georgia, serif; font-size: 44px; margin: 0; }
  h2 { color: #0b2e13; }
</style></head>
<body>
<div class="banner"><h1>GARDEN CLUB</h1></div>
<p>Dear {{ customer.first_name | default('member') }},</p>
{% for a in articles %}<article><h2>{{ a.title }}</h2>{{ a.html }}</article>{% endfor %}
</body></html>
"""
LONG = "\n\n".join(
    "Roses want a sunny spot, rich soil and water at the roots, not on the leaves. "
    "Prune in late winter above an outward facing bud, and feed after the first flush. " * 4
    for _ in range(6)) + "\n"


def garden_site(content_tree: Callable[..., Path], **campaign: Any) -> Path:
    return content_tree(
        campaigns={"garden.yaml": {
            "name": "garden-club", "template": "garden.html.j2", "formats": ["pdf"],
            "kind": "transactional", "customers": "data/customers.csv",
            "slots": {"articles": {"kind": "article", "count": 2}}, **campaign}},
        templates={"garden.html.j2": TEMPLATE},
        articles={"roses.md": {"title": "Roses", "body": LONG},
                  "tulips.md": {"title": "Tulips", "body": LONG}},
        customers={"customers.csv": [
            {"id": "en1", "email": "a@x.example", "first_name": "Ann", "locale": "en"},
            {"id": "es1", "email": "b@x.example", "first_name": "Begoña", "locale": "es-MX"},
            {"id": "fi1", "email": "c@x.example", "first_name": "Aino", "locale": "fi"}]},
    )


def pdf_of(out: Path, customer: str) -> Path:
    """The customer's PDF, as the run's manifest names it."""
    (row,) = [r for r in read_manifest(out) if r["customer_id"] == customer]
    return out / row["files"]["pdf"]


def pdftotext(path: Path) -> str:
    return subprocess.run(["pdftotext", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def page_one(path: Path, tmp_path: Path, dpi: int = 72) -> Image.Image:
    prefix = tmp_path / path.stem
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile",
                    str(path), str(prefix)], check=True)
    return Image.open(f"{prefix}.png").convert("RGB")


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return sum(abs(a - b) for a, b in zip(pixel, colour, strict=True)) <= tolerance


def fonts_of(path: Path) -> str:
    return subprocess.run(["pdffonts", str(path)], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def rendered(content_tree: Callable[..., Path], tmp_path: Path,
             cli: Callable[..., Any]) -> Callable[..., Path]:
    """`rendered(**campaign keys)`: run the garden club's campaign to PDF; its run folder."""

    def run(**campaign: Any) -> Path:
        root = garden_site(content_tree, **campaign)
        out = tmp_path / "out"
        code, stdout, stderr = cli("run", "campaigns/garden.yaml", "--out", out,
                                   "--overwrite", cwd=root)
        assert code == 0, stdout + stderr
        return out

    return run


def test_the_template_keeps_its_colours_and_fonts(rendered: Callable[..., Path],
                                                  tmp_path: Path) -> None:
    out = rendered()
    pdf = pdf_of(out, "en1")
    image = page_one(pdf, tmp_path)
    pixels = image.load()
    width, height = image.size
    banner = [(x, y) for y in range(height) for x in range(width) if near(pixels[x, y], BANNER)]
    assert len(banner) > 2000, "the template's dark banner is on the page"
    xs, ys = [x for x, _ in banner], [y for _, y in banner]
    box = (min(xs), min(ys), max(xs), max(ys))
    inside = [pixels[x, y] for y in range(box[1], box[3] + 1) for x in range(box[0], box[2] + 1)]
    headline = sum(near(p, HEADLINE, 60) for p in inside)
    dark_text = sum(max(p) < 60 and not near(p, BANNER) for p in inside)
    assert headline > 150, f"the headline keeps its own colour on the banner ({headline} px)"
    assert dark_text < 20, f"no near-black print colour on the banner ({dark_text} px)"
    below = [pixels[x, y] for y in range(box[3] + 5, height // 2) for x in range(width)]
    assert sum(near(p, INK, 60) for p in below) > 200, "body text keeps the template's ink"
    fonts = fonts_of(pdf)   # the template's own font names (pinned to the shipped fonts)
    assert "+Georgia" in fonts and "+Verdana" in fonts, fonts


def test_page_furniture_speaks_the_editions_language(rendered: Callable[..., Path]) -> None:
    out = rendered(title={"en": "Garden Club News", "es": "Noticias del Club de Jardín"})
    paths = [pdf_of(out, c) for c in ("en1", "es1", "fi1")]
    english, spanish, other = (pdftotext(path) for path in paths)
    n = len(PdfReader(paths[0]).pages)
    assert n > 1 and all(len(PdfReader(path).pages) == n for path in paths)
    assert f"Page 1 of {n}" in english and f"Page {n} of {n}" in english
    assert f"Página 1 de {n}" in spanish and f"Página {n} de {n}" in spanish
    assert "Page" not in spanish and " of " not in spanish
    # a language without words of its own: "1 / 3" (pdftotext may drop the thin spaces)
    assert re.search(rf"(?m)^1 ?/ ?{n}$", other) and "Page" not in other
    assert "Garden Club News" in english and "Garden Club News" in other
    assert "Noticias del Club de Jardín" in spanish
    for text in (english, spanish, other):
        assert "garden-club" not in text   # never the slug


def test_the_display_name_defaults_to_the_name_made_readable(
    rendered: Callable[..., Path],
) -> None:
    text = pdftotext(pdf_of(rendered(), "en1"))
    assert "Garden club" in text and "garden-club" not in text


@pytest.mark.parametrize("templates", ["default", "repository"])
def test_both_print_sheets_say_pagina_in_spanish(templates: str, tmp_path: Path) -> None:
    """The repository's own templates/print.css follows the locale too."""
    folder = REPO / "templates" if templates == "repository" else tmp_path
    page = "<p>" + "Hola. " * 900 + "</p>"
    spanish = tmp_path / "es.pdf"
    spanish.write_bytes(render_pdf(page, templates_dir=folder, locale="es",
                                   campaign_name="Ofertas"))
    text = pdftotext(spanish)
    assert "Página 1 de 2" in text and "Page" not in text
    english = tmp_path / "en.pdf"
    english.write_bytes(render_pdf(page, templates_dir=folder, locale="en-GB"))
    assert "Page 2 of 2" in pdftotext(english)


def test_one_version_html_in_two_languages_keeps_each_ones_furniture(tmp_path: Path) -> None:
    """The batch renderer shares a layout per version and language, not per HTML alone."""
    from renderers.pdf import PdfBatchRenderer

    renderer = PdfBatchRenderer(templates_dir=tmp_path,
                                campaign_name={"en": "Garden news", "es": "Noticias"})
    parts = ["<p>Dear ", ",</p><p>" + "Roses and tulips. " * 300 + "</p>"]
    texts = {}
    for locale in ("es", "en"):
        pdfs = renderer.render_filled(parts, [parts[0] + name + parts[1] for name in "AB"],
                                      locale=locale)
        path = tmp_path / f"{locale}.pdf"
        path.write_bytes(pdfs[1])
        texts[locale] = pdftotext(path)
    assert renderer.stats.fast == 4, renderer.stats.summary()
    assert "Noticias" in texts["es"] and "Página 1 de 2" in texts["es"], texts["es"]
    assert "Garden news" in texts["en"] and "Page 1 of 2" in texts["en"]
