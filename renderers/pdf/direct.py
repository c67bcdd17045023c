"""Stamps drawn straight to PDF: a customer's personal paragraphs laid out again by
WeasyPrint's line layout and drawn by its drawing code, without a document around
them, a PDF file in between or a font subset when the version's fonts hold the glyphs.

It serves versions whose personal blocks are paragraphs of plain text, checked once
against WeasyPrint's own layout of the version's stamp document; per customer, any
line that moves sends that customer to the laid-out stamp (model.Version) instead.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from weasyprint.document import DocumentMetadata
from weasyprint.html import get_html_metadata

from renderers.pdf.assembly import SharedPdf, info_dictionary
from renderers.pdf.fonts import FontTable, StampFonts
from renderers.pdf.layout import in_table, principal_blocks
from renderers.pdf.paint import PagePainter
from renderers.pdf.relayout import Paragraph, same_lines
from renderers.pdf.tables import TablePath

# Characters names, ids and amounts are likely to hold: the version's PDF embeds their
# glyphs in the fonts of its personal paragraphs, so that most stamps need no font of
# their own. Spaced, so that no pair forms a ligature.
REPERTOIRE = " ".join(
    string.ascii_letters + string.digits + string.punctuation
    + "".join(chr(code) for code in range(0xC0, 0x100) if code not in (0xD7, 0xF7))
    + "\u2018\u2019\u201c\u201d\u2013\u2014\u20ac\u00a3"
)


def plain_value(text: str) -> bool:
    """Whether a customer's value is plain text for a direct stamp."""
    # Empty values may match :empty, edge spaces collapse with the text around them.
    return bool(text) and text.strip() == text and all(
        ord(char) >= 32 and not 0x7F <= ord(char) < 0xA0 for char in text
    )


class DirectStamper:
    """Draws a version's personal paragraphs for the customer now in its stamp tree."""

    def __init__(
        self,
        pages: Sequence[tuple[PagePainter, list[Paragraph]]],
        metadata_html: Any | None,
        fonts: dict[Any, Any],
    ) -> None:
        self._pages = pages
        self._metadata_html = metadata_html  # the stamp tree's HTML, for a personal title
        self._known_fonts = fonts
        self._shared: SharedPdf | None = None
        self._fonts = StampFonts(fonts, {})

    @classmethod
    def create(
        cls,
        document: Any,
        calls: dict[int, list[Any]],
        keys: Sequence[str],
        metadata_html: Any | None,
        base_url: str | None,
        counter_style: Any,
        fonts: dict[Any, Any],
        tables: dict[int, Any] | None = None,
    ) -> DirectStamper | str:
        """A stamper for the version's stamp document, just laid out with ``calls``
        and ``tables`` (tables.recording) recorded, or why its stamps must be laid out
        whole."""
        # fonts: WeasyPrint Font objects by Pango font key, shared by a batch's versions.
        found = principal_blocks(document, lambda e: e.get("data-edition-key"))
        by_page: dict[int, list[tuple[tuple[Any, ...], Any, Paragraph]]] = {}
        for key in keys:
            ((page_index, block, ancestors),) = found[key]
            paragraph = Paragraph.from_calls(
                calls.get(id(block.element), []), block,
                document.pages[page_index]._page_box, base_url, counter_style,
            )
            if isinstance(paragraph, str):
                return paragraph
            if in_table(ancestors):
                # Its lines are laid out in the width the table gave the cell; another
                # text may change the columns: the table layout is checked per customer.
                path = TablePath.find(calls[id(block.element)][-1].context, tables or {},
                                      block.element)
                if path is None:
                    return "personal paragraph in a table cell"
                if not path.laid_out_as_recorded():
                    return "table around a personal paragraph laid out otherwise"
                paragraph.tables = path
                paragraph.align_in_cell()
            by_page.setdefault(page_index, []).append((ancestors, block, paragraph))
        pages = [
            (
                PagePainter(
                    index, document.pages[index], [(a, b) for a, b, _ in by_page[index]]
                ),
                [p for _, _, p in by_page[index]],
            )
            for index in sorted(by_page)
        ]
        # The round trip must give WeasyPrint's own lines for the version's sentinels.
        for _, paragraphs in pages:
            for paragraph in paragraphs:
                lines = paragraph.lay_out()
                if lines is None or not same_lines(lines, paragraph.reference_lines()):
                    return "personal paragraph lays out differently on its own"
        stamper = cls(pages, metadata_html, fonts)
        if not stamper.draw_into(stamper.font_table()):
            return "personal paragraph draws with more than text"
        return stamper

    def font_table(self) -> FontTable:
        """An empty table of fonts to draw with."""
        return FontTable(self._known_fonts, {}, {})

    def draw_into(self, fonts: FontTable, *, exact: bool = True) -> bool:
        """Draw the text now in the stamp tree with these fonts, for their glyphs."""
        for painter, paragraphs in self._pages:
            lines = []
            for paragraph in paragraphs:
                laid_out = paragraph.lay_out(exact=exact)
                if laid_out is None:
                    return False
                lines.append(laid_out)
            if painter.draw(lines, fonts) is None:
                return False
        return True

    def attach(self, shared: SharedPdf) -> str | None:
        """Stamp onto the version's PDF from now on; why not, if it cannot."""
        if self._metadata_html is not None and shared.info is None:
            return "no document information to replace"
        if shared.stamped_pages != self.pages():
            return "personal blocks on other pages than the version's"
        self._shared = shared
        self._fonts = StampFonts(self._known_fonts, shared.fonts)
        if self.stamp() is None:
            return "personal paragraph draws with more than text"
        return None

    def pages(self) -> list[int]:
        """The indexes of the pages with personal paragraphs."""
        return [painter.index for painter, _ in self._pages]

    def stamp(self) -> dict[int, bytes] | None:
        """The objects the customer's stamp adds or replaces, or None if this customer's
        text moves a line or needs more than the stamp can draw."""
        shared = self._shared
        assert shared is not None, "attach the stamper to the version's PDF first"
        table = self._fonts.table()
        forms = []
        for painter, paragraphs in self._pages:
            lines = []
            for paragraph in paragraphs:
                laid_out = paragraph.lay_out()
                if laid_out is None:
                    return None
                lines.append(laid_out)
            drawn = painter.draw(lines, table)
            if drawn is None:
                return None
            forms.append(drawn)
        fonts = self._fonts.objects(table, shared.first_free)
        if fonts is None:
            return None
        names, chunks = fonts
        font_resources = b"".join(
            b"/%s %d 0 R" % (name.encode(), number) for name, number in sorted(names.items())
        )
        resources = [
            (content, b"<</ExtGState%s/Font<<%s>>>>" % (states, font_resources))
            for content, states in forms
        ]
        first = max(chunks, default=shared.first_free - 1) + 1
        chunks.update(shared.stamp_pages(resources, first))
        if self._metadata_html is not None and shared.info is not None:
            metadata = DocumentMetadata(**get_html_metadata(self._metadata_html))
            chunks[shared.info] = info_dictionary(metadata)
        return chunks
