"""Personal blocks drawn straight to a PDF content stream by WeasyPrint's own drawing
code, on a copy of their page that holds nothing else.

The page comes from the version's stamp document, where everything but the personal
blocks is hidden and so draws nothing: keeping only the blocks and their ancestors
draws the same. Leans on WeasyPrint 70 internals (page boxes, draw_page, Stream).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pydyf
from weasyprint.draw import draw_page
from weasyprint.pdf.stream import Stream

_PT_PER_PX = 0.75  # WeasyPrint writes 72 PDF points per 96 CSS pixels
_COLOR_SPACE = re.compile(rb"(?m) (?:cs|CS)$")
_STREAM_START = b"\nstream\n"
_STREAM_END = b"\nendstream"


class PagePainter:
    """Draws the personal blocks of one page, given their lines."""

    def __init__(
        self, index: int, page: Any, paths: Sequence[tuple[tuple[Any, ...], Any]]
    ) -> None:
        """``page``: a WeasyPrint Page, the ``index``-th; ``paths``: each block with its
        ancestors (the page box first), in document order."""
        self.index = index
        self._width, self._height, self._bleed = page.width, page.height, page.bleed
        # Only the ancestors are kept, without their children: not the rest of the page.
        bare: dict[int, Any] = {}
        for ancestors, _ in paths:
            for ancestor in ancestors:
                if id(ancestor) not in bare:
                    bare[id(ancestor)] = ancestor.copy()
                    bare[id(ancestor)].children = ()
        self._paths = [
            (tuple(bare[id(ancestor)] for ancestor in ancestors), block)
            for ancestors, block in paths
        ]

    def draw(
        self, lines: Sequence[list[Any]], fonts: Mapping[Any, Any]
    ) -> tuple[bytes, bytes] | None:
        """The content stream and its ExtGState resources (PDF syntax) for these lines,
        one list per block; None when the drawing needs other resources."""
        resources = pydyf.Dictionary({
            "ExtGState": pydyf.Dictionary(),
            "XObject": pydyf.Dictionary(),
            "Pattern": pydyf.Dictionary(),
            "Shading": pydyf.Dictionary(),
            "ColorSpace": None,  # groups copy it; a drawing that needs one is refused
        })
        bleed = self._bleed
        rectangle = (
            -bleed["left"], -bleed["top"],
            self._width + bleed["left"] + bleed["right"],
            self._height + bleed["top"] + bleed["bottom"],
        )
        stream = Stream(fonts, rectangle, resources, {}, None, {}, None, compress=False)
        # As weasyprint.pdf.generate_pdf and Page.paint start a page.
        stream.transform(d=-1, f=self._height * _PT_PER_PX)
        with stream.stacked():
            stream.transform(a=_PT_PER_PX, d=_PT_PER_PX)
            draw_page(self._pruned(lines), stream)
        if resources["XObject"] or resources["Pattern"] or resources["Shading"]:
            return None
        if any("SMask" in state for state in resources["ExtGState"].values()):
            return None
        data = stream.data
        content = data[data.index(_STREAM_START) + len(_STREAM_START) : -len(_STREAM_END)]
        if _COLOR_SPACE.search(content):  # lab or CMYK colours need the colour spaces
            return None
        return content, resources["ExtGState"].data

    def _pruned(self, lines: Sequence[list[Any]]) -> Any:
        """The page box with only the blocks, holding these lines, and their ancestors."""
        copies: dict[int, Any] = {}
        root = None
        for (ancestors, block), block_lines in zip(self._paths, lines, strict=True):
            node = block.copy()
            node.children = list(block_lines)
            for ancestor in reversed(ancestors):
                parent = copies.get(id(ancestor))
                if parent is not None:
                    parent.children.append(node)
                    break
                parent = copies[id(ancestor)] = ancestor.copy()
                parent.children = [node]
                node = parent
            else:
                root = node
        return root
