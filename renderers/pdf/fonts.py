"""Fonts for stamps drawn straight to PDF: the version's own font subsets when they hold
every glyph a stamp draws, else a subset made for the stamp and kept for the next one
that draws the same glyphs.

WeasyPrint subsets fonts keeping glyph ids, so a stamp's text may use the version's
font objects as they are; its /W widths seed the stamp's so that every glyph advances
exactly as on the shared pages. Leans on WeasyPrint 70's Font and
build_fonts_dictionary.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pydyf
from weasyprint import DEFAULT_OPTIONS
from weasyprint import pdf as weasyprint_pdf
from weasyprint.pdf.fonts import Font, build_fonts_dictionary

from renderers.pdf.assembly import SharedFont

_SUBSETS_KEPT = 16  # subsets per version, for customers drawing the same glyphs


class FontTable(dict[Any, Font]):
    """The fonts of one stamp, for WeasyPrint's Stream: known fonts with fresh glyph maps."""

    def __init__(
        self,
        known: dict[Any, Font],
        widths: dict[Any, dict[int, int]],
        shared: Mapping[str, SharedFont],
    ) -> None:
        super().__init__()
        self._known = known
        self._widths = widths
        self._shared = shared

    def __contains__(self, key: object) -> bool:
        # Stream.add_font asks before it builds a Font (which copies the whole font
        # file): hand it a copy of one built before.
        if not super().__contains__(key) and key in self._known:
            font = copy.copy(self._known[key])
            font.to_unicode, font.missing = {}, {}
            font.widths = self._widths_of(key, font)
            super().__setitem__(key, font)
        return super().__contains__(key)

    def __setitem__(self, key: Any, font: Font) -> None:
        font.widths = self._widths_of(key, font)
        # Not kept: emoji fonts draw through the Pango font's hb_font, which a Font
        # only borrows (the face it holds a reference to).
        if not _emoji(font):
            known = copy.copy(font)
            known.to_unicode, known.missing, known.widths = {}, {}, {}
            self._known[key] = known
        super().__setitem__(key, font)

    def _widths_of(self, key: Any, font: Font) -> dict[int, int]:
        # Per version, and seeded with its PDF's /W: glyphs the version's font holds
        # must advance by its widths, before any is drawn.
        if key not in self._widths:
            shared = self._shared.get(font.hash)
            self._widths[key] = dict(shared.widths) if shared is not None else {}
        return self._widths[key]


class StampFonts:
    """The fonts a version's stamps draw with, and their PDF objects."""

    def __init__(self, known: dict[Any, Font], shared: Mapping[str, SharedFont]) -> None:
        """``known``: Font objects by Pango font key, shared by the versions of a batch
        (each holds a whole font file); ``shared``: the version's font objects."""
        self._known = known
        self._shared = shared  # resource name -> the version's font object
        self._widths: dict[Any, dict[int, int]] = {}
        self._subsets: OrderedDict[tuple[Any, ...], tuple[int, dict[int, bytes]]] = (
            OrderedDict()
        )

    def table(self) -> FontTable:
        """A table for one stamp's drawing."""
        return FontTable(self._known, self._widths, self._shared)

    def objects(
        self, table: FontTable, first_number: int
    ) -> tuple[dict[str, int], dict[int, bytes]] | None:
        """Resource name -> font object for each font the stamp drew, and the objects
        to add (numbered from ``first_number``); None if a font cannot be stamped."""
        names: dict[str, int] = {}
        chunks: dict[int, bytes] = {}
        number = first_number
        for font in table.values():
            glyphs = frozenset(font.to_unicode)
            if not glyphs:
                continue
            if font.bitmap or font.missing or _emoji(font):
                return None  # emoji, bitmap and .notdef glyphs: laid out as a document
            shared = self._shared.get(font.hash)
            if shared is not None and glyphs <= shared.glyphs:
                names[font.hash] = shared.number
                continue
            reference, objects = self._subset(font, glyphs, number)
            names[font.hash] = reference
            chunks.update(objects)
            number = max(objects) + 1
        return names, chunks

    def _subset(
        self, font: Font, glyphs: frozenset[int], base: int
    ) -> tuple[int, dict[int, bytes]]:
        key = (font.hash, glyphs, base)
        if key in self._subsets:
            self._subsets.move_to_end(key)
            return self._subsets[key]
        subset = copy.copy(font)
        subset.to_unicode = {glyph: font.to_unicode[glyph] for glyph in sorted(glyphs)}
        subset.widths = {glyph: font.widths[glyph] for glyph in glyphs}
        # Its own subset tag: viewers that look fonts up by name must not take the
        # version's subset of the same font for it.
        subset.name = b"/" + _other_tag(font.hash).encode() + subset.name[7:]
        pdf = pydyf.PDF()
        # pydyf numbers objects by their place in the list: start them at ``base``.
        pdf.objects.extend([pdf.objects[0]] * (base - len(pdf.objects)))
        fonts = build_fonts_dictionary(
            pdf, {font.hash: subset}, True, True, DEFAULT_OPTIONS
        )
        objects = {obj.number: obj.data for obj in pdf.objects[base:]}
        reference = int(fonts[font.hash].split()[0])
        self._subsets[key] = (reference, objects)
        if len(self._subsets) > _SUBSETS_KEPT:
            self._subsets.popitem(last=False)
        return reference, objects


def _emoji(font: Font) -> bool:
    return bool(font.png or font.svg or font.colr)


def _other_tag(tag: str) -> str:
    return "".join(chr(65 + (ord(letter) - 65 + 13) % 26) for letter in tag)


# While a version's PDF is written, its fonts get the glyphs its stamps are likely to
# draw, so that most stamps use the version's fonts as they are. WeasyPrint has no hook
# for that: its font dictionary builder is wrapped, and extends only the font tables
# registered here (by identity).
_extra_glyphs: dict[int, tuple[dict[Any, Font], Mapping[Any, Font]]] = {}


def _build_fonts_dictionary(pdf: Any, fonts: dict[Any, Font], *args: Any, **kwargs: Any) -> Any:
    entry = _extra_glyphs.get(id(fonts))
    if entry is not None and entry[0] is fonts:
        _add_glyphs(fonts, entry[1])
    return build_fonts_dictionary(pdf, fonts, *args, **kwargs)


def _add_glyphs(fonts: dict[Any, Font], extra: Mapping[Any, Font]) -> None:
    by_hash: dict[str, list[Font]] = {}
    for font in fonts.values():
        by_hash.setdefault(font.hash, []).append(font)
    for key, stamp_font in extra.items():
        # Glyph ids past the font's own stand for characters it lacks (.notdef).
        glyphs = {g: t for g, t in stamp_font.to_unicode.items() if g < stamp_font.glyph_count}
        widths = {g: stamp_font.widths[g] for g in glyphs}
        present = by_hash.get(stamp_font.hash)
        if present is None:  # a font only personal text uses
            added = copy.copy(stamp_font)
            added.to_unicode, added.widths, added.missing = glyphs, widths, {}
            fonts[key] = added
            continue
        for font in present:
            for glyph, text in glyphs.items():
                font.to_unicode.setdefault(glyph, text)
                font.widths.setdefault(glyph, widths[glyph])


@contextmanager
def more_glyphs(document: Any, fonts: Mapping[Any, Font]) -> Iterator[None]:
    """Embed the glyphs of ``fonts`` too while ``document`` is written to PDF."""
    weasyprint_pdf.build_fonts_dictionary = _build_fonts_dictionary
    _extra_glyphs[id(document.fonts)] = (document.fonts, fonts)
    try:
        yield
    finally:
        _extra_glyphs.pop(id(document.fonts), None)
