"""A personal paragraph laid out again per customer by WeasyPrint's own line layout,
called with the arguments the version's layout gave it.

WeasyPrint lays out a block's inline content with ``iter_line_boxes``; while a version
is prepared, a wrapper records those calls for the personal blocks. Per customer, the
block's boxes are built again from its edited element and their lines laid out with
the recorded arguments: when the lines come out at the same heights, nothing else on
the page can move. Leans on WeasyPrint 70 internals (box building, line layout); the
version checks the round trip against WeasyPrint's own layout before trusting it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from weasyprint.css.targets import TargetCollector
from weasyprint.formatting_structure import boxes
from weasyprint.formatting_structure.build import create_anonymous_boxes, element_to_box
from weasyprint.layout import block as block_layout
from weasyprint.layout.background import layout_box_backgrounds


@dataclass
class _Call:
    """One call of ``iter_line_boxes`` for a personal block, and the lines it gave."""

    context: Any
    position_y: float
    bottom_space: float
    skip_stack: Any
    containing_block: Any  # a shallow copy, as it was at the call
    first_letter_style: Any
    first_line_style: Any
    excluded_shapes: list[Any]  # floats the lines had to avoid
    current_page: int | None
    lines: list[Any] = field(default_factory=list)
    finished: bool = False  # the caller took every line


# Watched elements, by identity: id -> (element, its calls so far).
_watched: dict[int, tuple[Any, list[_Call]]] = {}
_original_iter_line_boxes = block_layout.iter_line_boxes


def _iter_line_boxes(
    context: Any,
    box: Any,
    position_y: float,
    bottom_space: float,
    skip_stack: Any,
    containing_block: Any,
    absolute_boxes: list[Any],
    fixed_boxes: list[Any],
    first_letter_style: Any,
    first_line_style: Any,
) -> Iterator[tuple[Any, Any]]:
    lines = _original_iter_line_boxes(
        context, box, position_y, bottom_space, skip_stack, containing_block,
        absolute_boxes, fixed_boxes, first_letter_style, first_line_style,
    )
    entry = _watched.get(id(containing_block.element))
    if entry is None or entry[0] is not containing_block.element:
        return lines
    # Copies: the layout goes on editing what it passed.
    call = _Call(
        context, position_y, bottom_space, skip_stack, containing_block.copy(),
        first_letter_style and dict(first_letter_style),
        first_line_style and dict(first_line_style),
        list(context.excluded_shapes), context.current_page,
    )
    entry[1].append(call)
    return _recorded(lines, call)


def _recorded(lines: Iterator[tuple[Any, Any]], call: _Call) -> Iterator[tuple[Any, Any]]:
    for line, resume_at in lines:
        call.lines.append(line)
        yield line, resume_at
    call.finished = True


@contextmanager
def watching(elements: Iterable[Any]) -> Iterator[dict[int, list[_Call]]]:
    """Record WeasyPrint's line layout of these block elements while in the block."""
    # Installed once and left: unwatched blocks go straight to WeasyPrint's function.
    block_layout.iter_line_boxes = _iter_line_boxes
    calls: dict[int, list[_Call]] = {}
    for element in elements:
        calls[id(element)] = []
        _watched[id(element)] = (element, calls[id(element)])
    try:
        yield calls
    finally:
        for key in calls:
            _watched.pop(key, None)


# Boxes a personal paragraph may hold: plain text in inline elements, nothing that
# generates content, floats, atomic boxes or links (whose annotations the stamp lacks).
_PLAIN = (boxes.LineBox, boxes.InlineBox, boxes.TextBox)


def _plain_inline(box: Any) -> bool:
    for child in box.descendants():
        if type(child) not in _PLAIN or "::" in child.element_tag:
            return False
        style = child.style
        if child.link or style["position"] != "static" or style["float"] != "none":
            return False
        if child is not box and style["anchor"]:
            return False
    return True


class Paragraph:
    """A personal block of inline content that can be laid out again per customer."""

    def __init__(
        self, call: _Call, block: Any, page_box: Any, base_url: str | None, counter_style: Any
    ) -> None:
        self._call = call
        self.block = block  # the laid-out block in the version's stamp document
        self._page_box = page_box
        self._base_url = base_url
        self._counter_style = counter_style
        # In a table cell: the tables around it, checked for the customer's text, and
        # how far the cell's vertical alignment moved its lines after their layout.
        self.tables: Any = None
        self.shift = 0.0

    @classmethod
    def from_calls(
        cls,
        calls: list[_Call],
        block: Any,
        page_box: Any,
        base_url: str | None,
        counter_style: Any,
    ) -> Paragraph | str:
        """The paragraph of a laid-out block, or why its lines cannot be redone."""
        if not calls or not isinstance(block, boxes.BlockBox):
            return "personal block without lines of its own"
        call = calls[-1]  # pages may be laid out more than once: the last one counts
        if call.skip_stack is not None or not call.finished:
            return "personal block split across pages"
        if len(call.lines) != len(block.children) or any(
            line is not child for line, child in zip(call.lines, block.children, strict=True)
        ):
            return "personal block laid out in more than one go"
        if not all(_plain_inline(line) for line in call.lines):
            return "personal block with more than plain text"
        return cls(call, block, page_box, base_url, counter_style)

    def lay_out(self, *, exact: bool = True) -> list[Any] | None:
        """The block's lines from its element as it stands, or None if they moved
        (``exact``) or hold more than plain text."""
        call, element = self._call, self.block.element
        context = call.context
        built = element_to_box(
            element, context.style_for, context.get_image_from_uri, self._base_url,
            TargetCollector(), self._counter_style, [],
        )
        if len(built) != 1:
            return None
        (box,) = built
        box.process_whitespace()
        box.process_text_transform()
        box = create_anonymous_boxes(box)
        if len(box.children) != 1 or not isinstance(box.children[0], boxes.LineBox):
            return None
        if not _plain_inline(box.children[0]):
            return None
        if self.tables is not None and not self.tables.same_for(box):
            return None  # the customer's text moves the columns it is laid out in
        absolute: list[Any] = []
        fixed: list[Any] = []
        # The context is the version's, left as WeasyPrint finished with it: give the
        # lines the floats and the page they had.
        context.create_block_formatting_context(object(), list(call.excluded_shapes))
        current_page, context.current_page = context.current_page, call.current_page
        try:
            laid_out = list(_original_iter_line_boxes(
                context, box.children[0], call.position_y, call.bottom_space, None,
                call.containing_block.copy(), absolute, fixed,
                call.first_letter_style, call.first_line_style,
            ))
        finally:
            context.current_page = current_page
            context.finish_block_formatting_context()
        if absolute or fixed or not laid_out:
            return None
        for line, _ in laid_out:
            line.translate(dy=self.shift)
        if exact:
            if len(laid_out) != len(call.lines) or laid_out[-1][1] is not None:
                return None
            for (line, _), reference in zip(laid_out, call.lines, strict=True):
                if (line.position_y, line.height) != (reference.position_y, reference.height):
                    return None
                # In a cell, the first baseline may align the row's cells.
                if self.tables is not None and line.baseline != reference.baseline:
                    return None
        lines = []
        for line, resume_at in laid_out:
            line.resume_at = resume_at
            lines.append(line)
        # What block_container_layout and layout_backgrounds do after the lines.
        for line in lines:
            block_layout.relative_positioning(line, (self.block.width, self.block.height))
            layout_box_backgrounds(self._page_box, line, context.get_image_from_uri)
        return lines

    def align_in_cell(self) -> None:
        """Learn how far the cell's vertical-align moved the block's lines (WeasyPrint
        moves them after laying them out, by half or all of the room the row leaves):
        the same for every customer whose lines keep their heights in the same row."""
        lines = self.lay_out(exact=False)
        if lines:
            self.shift = self._call.lines[0].position_y - lines[0].position_y

    def reference_lines(self) -> list[Any]:
        """The lines WeasyPrint laid out for the block."""
        return list(self._call.lines)


def same_lines(these: list[Any], those: list[Any]) -> bool:
    """Whether two lists of laid-out lines hold the same boxes at the same places."""
    if len(these) != len(those):
        return False
    for this, that in zip(these, those, strict=True):
        a, b = list(this.descendants()), list(that.descendants())
        if len(a) != len(b):
            return False
        for x, y in zip(a, b, strict=True):
            if type(x) is not type(y) or x.element is not y.element:
                return False
            if getattr(x, "text", None) != getattr(y, "text", None):
                return False
            for name in ("position_x", "position_y", "width", "height", "baseline"):
                if getattr(x, name, None) != getattr(y, name, None):
                    return False
    return True
