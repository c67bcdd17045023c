"""The auto table layout around a personal paragraph, checked for a customer's text.

A paragraph in a table cell is laid out in the width its column got, and in an auto
layout table the columns follow every cell's min- and max-content widths. Drawing a
customer's paragraph straight into the cell is right only when their text gives every
table around it the same widths. WeasyPrint's own functions answer that: while the
version's stamp document is laid out, the tables around personal paragraphs are
recorded (the boxes and the room they had); per customer, the paragraph's new box
replaces the version's on a copy of the path down to it, and
``table_and_columns_preferred_widths`` then ``auto_table_layout`` run on the copies,
innermost table first. The other cells' preferred widths are the version's, so they
are computed once and remembered. Leans on WeasyPrint 70 internals (pre-layout boxes,
``layout.preferred``, ``layout.table``); the version checks the round trip against
its own layout before trusting it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from weasyprint.formatting_structure import boxes
from weasyprint.layout import block as block_layout
from weasyprint.layout import preferred
from weasyprint.layout.percent import resolve_percentages
from weasyprint.layout.table import auto_table_layout, fixed_table_layout

_original_table_wrapper_width = block_layout.table_wrapper_width
_original = {
    name: getattr(preferred, name)
    for name in ("min_content_width", "max_content_width", "table_cell_min_max_content_width")
}
# While a version's stamp document is laid out: id(wrapper) -> (wrapper, containing block).
_recording: list[dict[int, tuple[Any, tuple[float, float]]]] = []


def _table_wrapper_width(context: Any, wrapper: Any, containing_block: Any) -> Any:
    if _recording:
        _recording[-1][id(wrapper)] = (wrapper, tuple(containing_block))
    return _original_table_wrapper_width(context, wrapper, containing_block)


@contextmanager
def recording() -> Iterator[dict[int, tuple[Any, tuple[float, float]]]]:
    """Record the block-level tables laid out in the block, with their room."""
    # Installed once and left: outside the block it only calls WeasyPrint's function.
    block_layout.table_wrapper_width = _table_wrapper_width
    tables: dict[int, tuple[Any, tuple[float, float]]] = {}
    _recording.append(tables)
    try:
        yield tables
    finally:
        _recording.remove(tables)


def _path_to(root: Any, element: Any) -> list[Any] | None:
    """The boxes from ``root`` down to the block box of ``element``, or None."""
    stack: list[tuple[Any, list[Any]]] = [(root, [root])]
    found = None
    while stack:
        box, path = stack.pop()
        if box.element is element and isinstance(box, boxes.BlockBox) and box is not root:
            if found is not None:
                return None  # two boxes for one element: not a plain block
            found = path
            continue
        for child in getattr(box, "children", None) or ():
            stack.append((child, [*path, child]))
    return found


def _table_key(result: tuple[Any, ...]) -> tuple[Any, ...]:
    # The grid (last) holds the cells themselves, which a copy replaces.
    return result[:7]


class _Memo:
    """Preferred widths of the version's boxes, computed once; anything else (the
    customer's copies) computed each time."""

    def __init__(self, version_boxes: dict[int, Any]) -> None:
        self._boxes = version_boxes  # id -> box, the version's pre-layout boxes
        self._values: dict[tuple[int, str, bool], Any] = {}

    def _wrap(self, name: str) -> Any:
        function = _original[name]

        def memoized(context: Any, box: Any, outer: bool = True) -> Any:
            if self._boxes.get(id(box)) is not box:
                return function(context, box, outer)
            key = (id(box), name, outer)
            if key not in self._values:
                self._values[key] = function(context, box, outer)
            return self._values[key]

        return memoized

    @contextmanager
    def installed(self) -> Iterator[None]:
        for name in _original:
            setattr(preferred, name, self._wrap(name))
        try:
            yield
        finally:
            for name, function in _original.items():
                setattr(preferred, name, function)


class TablePath:
    """The tables around one personal paragraph, and the widths they gave it."""

    def __init__(self, context: Any, path: list[Any],
                 rooms: dict[int, tuple[float, float]]) -> None:
        self._context = context
        self._path = path  # pre-layout boxes, the outermost table wrapper first
        self._rooms = rooms  # id(wrapper) -> its containing block
        version_boxes: dict[int, Any] = {}
        stack = [path[0]]
        while stack:
            box = stack.pop()
            version_boxes[id(box)] = box
            stack.extend(getattr(box, "children", None) or ())
        for box in path:  # the customer's copies replace these
            version_boxes.pop(id(box), None)
        self._memo = _Memo(version_boxes)
        self._reference = self._widths(path)

    @classmethod
    def find(cls, context: Any, tables: dict[int, tuple[Any, tuple[float, float]]],
             element: Any) -> TablePath | None:
        """The path from the outermost recorded table down to ``element``'s block."""
        best = None
        for wrapper, _ in tables.values():
            path = _path_to(wrapper, element)
            if path is not None and (best is None or len(path) > len(best)):
                best = path
        if best is None:
            return None
        rooms = {id(box): tables[id(box)][1] for box in best
                 if box.is_table_wrapper and id(box) in tables}
        if not all(id(box) in rooms for box in best if box.is_table_wrapper):
            return None
        return cls(context, best, rooms)

    def laid_out_as_recorded(self) -> bool:
        """Whether the widths computed here are the ones the layout used."""
        return all(
            reference == (box.get_wrapped_table().width,
                          list(box.get_wrapped_table().column_widths))
            for box, reference in zip(
                [b for b in self._path if b.is_table_wrapper], self._reference, strict=True)
        )

    def _copies(self, block: Any) -> list[Any]:
        """The path with ``block`` for the paragraph's box: each ancestor a shallow
        copy whose children hold the copy below it."""
        copies = [block]
        for box, child in zip(reversed(self._path[:-1]), reversed(self._path[1:]),
                              strict=True):
            copy = box.copy()
            copy.children = [copies[0] if c is child else c for c in box.children]
            copies.insert(0, copy)
        return copies

    def _widths(self, path: list[Any]) -> list[tuple[float, list[float]] | None]:
        """Per table on the path (outermost first), its width and column widths;
        None from where a table's preferred widths are the version's (nothing above
        it can change)."""
        # Innermost first: as soon as a table's preferred widths are the version's,
        # the cell around it, and so everything further out, prefers what it did.
        originals = [b for b in self._path if b.is_table_wrapper]
        wrappers = [b for b in path if b.is_table_wrapper]
        results: list[tuple[float, list[float]] | None] = [None] * len(wrappers)
        tables = self._context.tables
        made = []
        try:
            with self._memo.installed():
                for index in reversed(range(len(wrappers))):
                    wrapper, original = wrappers[index], originals[index]
                    table = wrapper.get_wrapped_table()
                    # The version's, computed (or remembered by WeasyPrint) first.
                    preferred.table_and_columns_preferred_widths(self._context, original)
                    if wrapper is not original:
                        made.append(table)
                        new = preferred.table_and_columns_preferred_widths(
                            self._context, wrapper, False)
                        old = preferred.table_and_columns_preferred_widths(
                            self._context, original, False)
                        same = _table_key(new) == _table_key(old) and _table_key(
                            tables[table][True]) == _table_key(
                            tables[original.get_wrapped_table()][True])
                        if same:
                            break
                    else:  # the reference: a copy, laid out like the customer's
                        table = table.copy()
                        made.append(table)
                        wrapper = wrapper.copy()
                        wrapper.children = [table if c is original.get_wrapped_table()
                                            else c for c in original.children]
                        tables[table] = tables[original.get_wrapped_table()]
                    results[index] = self._used(wrapper, table, self._rooms[id(original)])
        finally:
            for table in made:
                tables.pop(table, None)
        return results

    def _used(self, wrapper: Any, table: Any, room: tuple[float, float]) -> tuple[
            float, list[float]]:
        """The width and column widths the table layout gives ``table`` in ``room``
        (as table_wrapper_width, on the copy)."""
        resolve_percentages(table, room)
        if table.style["table_layout"] == "fixed" and table.width != "auto":
            fixed_table_layout(wrapper)
        else:
            auto_table_layout(self._context, wrapper, room)
        return table.width, list(table.column_widths)

    def same_for(self, block: Any) -> bool:
        """Whether every table on the path gives the customer's paragraph box
        ``block`` (built, not laid out) the widths it gave the version's."""
        widths = self._widths(self._copies(block))
        return all(new is None or new == old
                   for new, old in zip(widths, self._reference, strict=True))
