"""The fonts edition ships (renderers/fonts) and the @font-face rules that pin them.

Each family name a template may ask for (FONT_FAMILIES) is declared with the shipped
faces of one family, regular, bold, italic and bold italic, so that WeasyPrint never
asks the host for them: without this "Helvetica" is Liberation Sans on one host and
DejaVu Sans on the next, and a page breaks elsewhere (issue 17, finding 24). Where a
face lacks characters that DejaVu Sans of its weight has (Serif has no Hebrew or Arabic,
the obliques no Arabic), those come from DejaVu Sans, declared with the face's style,
next to its weight and with a unicode-range: neither the host's fallback fonts nor its
fontconfig rules for synthetic italics decide how they look.

The ranges are read from the fonts once and kept in renderers/fonts/coverage.json
(``write_coverage()`` writes it; tests/test_pdf.py checks it), so that
no render pays for reading the fonts' tables.
"""

from __future__ import annotations

import functools
import json

from renderers.pdf.fetcher import FONTS_DIR

COVERAGE = FONTS_DIR / "coverage.json"
# (file, weight, style) of each shipped face, by family
_SANS = [("DejaVuSans.ttf", "normal", "normal"), ("DejaVuSans-Bold.ttf", "bold", "normal"),
         ("DejaVuSans-Oblique.ttf", "normal", "italic"),
         ("DejaVuSans-BoldOblique.ttf", "bold", "italic")]
_SERIF = [("DejaVuSerif.ttf", "normal", "normal"), ("DejaVuSerif-Bold.ttf", "bold", "normal"),
          ("DejaVuSerif-Italic.ttf", "normal", "italic"),
          ("DejaVuSerif-BoldItalic.ttf", "bold", "italic")]
_MONO = [("DejaVuSansMono.ttf", "normal", "normal"),
         ("DejaVuSansMono-Bold.ttf", "bold", "normal"),
         ("DejaVuSansMono-Oblique.ttf", "normal", "italic"),
         ("DejaVuSansMono-BoldOblique.ttf", "bold", "italic")]
_FALLBACK = {"normal": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf"}
# Fallback faces are declared one weight step off their face: WeasyPrint names PDF fonts
# by family, weight and style, and two files under one name get each other's glyphs.
# Text of the face's own weight still takes the face first (its exact weight); the
# steps never reach the weight at which fontconfig would embolden a face. A face has
# at most two fallbacks, with disjoint ranges: which one sorts first does not matter.
_FALLBACK_WEIGHTS = {"normal": ("500", "300"), "bold": ("600", "800")}
# The generic families and the web-safe names templates ask for most. A name not
# listed (a brand font) is looked up on the host, unless the template declares it with
# its own @font-face. Each face costs WeasyPrint ~5 ms when a font configuration first
# meets it (once per process): the list stays short.
FONT_FAMILIES = {
    "sans-serif": _SANS, "Helvetica": _SANS, "Arial": _SANS, "Verdana": _SANS,
    "serif": _SERIF, "Georgia": _SERIF, "Times New Roman": _SERIF,
    "monospace": _MONO, "Courier New": _MONO,
}


@functools.cache
def font_faces() -> str:
    """@font-face rules for the shipped faces, under every name in FONT_FAMILIES."""
    fallbacks = json.loads(COVERAGE.read_text(encoding="utf-8"))
    rules = []
    for family, faces in FONT_FAMILIES.items():
        for file, weight, style in faces:
            rules.append(_rule(family, file, weight, style))
            for (fallback, unicode_range), step in zip(fallbacks[file],
                                                       _FALLBACK_WEIGHTS[weight], strict=False):
                rules.append(_rule(family, fallback, step, style, unicode_range))
    return "\n".join(rules) + "\n"


def _rule(family: str, file: str, weight: str, style: str, unicode_range: str = "") -> str:
    extra = f" unicode-range: {unicode_range};" if unicode_range else ""
    return (f'@font-face {{ font-family: "{family}"; src: url("{(FONTS_DIR / file).as_uri()}"); '
            f"font-weight: {weight}; font-style: {style};{extra} }}")


def coverage() -> dict[str, list[list[str]]]:
    """Per shipped face, its fallbacks: [file, CSS unicode-range] for the characters the
    face lacks, from DejaVu Sans of its weight, then (for an italic) from its family's
    upright face (read from the fonts; slow: for coverage.json)."""
    from fontTools.ttLib import TTFont

    def characters(file: str) -> set[int]:
        return set(TTFont(FONTS_DIR / file, lazy=True)["cmap"].getBestCmap())

    found = {}
    for faces in (_SANS, _SERIF, _MONO):
        upright = {weight: file for file, weight, style in faces if style == "normal"}
        for file, weight, _ in faces:
            have, chain = characters(file), []
            # DejaVu Sans first: a script split over two fallbacks (Mono has half of
            # Arabic) supports its language in neither, and fontconfig then prefers
            # the host's fonts for it.
            for fallback in dict.fromkeys([_FALLBACK[weight], upright[weight]]):
                extra = characters(fallback) - have
                if extra:
                    chain.append([fallback, _ranges(sorted(extra))])
                    have |= extra
            found[file] = chain
    return found


def _ranges(points: list[int]) -> str:
    spans: list[list[int]] = []
    for point in points:
        if spans and point == spans[-1][1] + 1:
            spans[-1][1] = point
        else:
            spans.append([point, point])
    return ", ".join(f"U+{a:X}" if a == b else f"U+{a:X}-{b:X}" for a, b in spans)


def write_coverage() -> None:
    """Write coverage.json after the shipped fonts changed."""
    COVERAGE.write_text(json.dumps(coverage(), indent=1, sort_keys=True) + "\n",
                        encoding="utf-8")
