"""What the fast path reads from WeasyPrint's layout, and the documents it lays out.

Box walking finds the blocks that hold personal text; documents built from an edited
tree, with their stylesheets parsed once, lay out a customer's stamp. Both lean on
WeasyPrint 70 internals (page boxes, ``find_stylesheets``, HTML objects built from a
parsed tree).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cssselect2
from weasyprint import CSS, HTML
from weasyprint import css as weasyprint_css
from weasyprint.formatting_structure import boxes

# Running headers and footers; not @footnote, which takes room from the page area.
_MARGIN_BOXES = frozenset(
    f"@{side}-{where}"
    for side, places in (
        ("top", "left-corner left center right right-corner"),
        ("bottom", "left-corner left center right right-corner"),
        ("left", "top middle bottom"),
        ("right", "top middle bottom"),
    )
    for where in places.split()
)


def walk(page_box: boxes.Box) -> Iterator[tuple[boxes.Box, tuple[boxes.Box, ...]]]:
    """Every box of a page with its ancestors (outermost first)."""
    stack: list[tuple[Any, tuple[boxes.Box, ...]]] = [(page_box, ())]
    while stack:
        box, ancestors = stack.pop()
        box = getattr(box, "_box", box)  # absolute placeholders wrap their box
        yield box, ancestors
        children = getattr(box, "children", None) or ()
        inner = (*ancestors, box)
        stack.extend((child, inner) for child in reversed(children))


def _in_flow(box: boxes.Box) -> bool:
    style = box.style
    return style["float"] == "none" and style["position"] in ("static", "relative")


def _is_flow_block(box: boxes.Box) -> bool:
    """A block whose size and place do not depend on its content, only its height."""
    return (
        type(box) is boxes.BlockBox
        and not box.is_table_wrapper
        and _in_flow(box)
        and box.style["column_width"] == "auto"
        and box.style["column_count"] == "auto"
    )


_TABLE_PARTS = (boxes.TableBox, boxes.TableRowGroupBox, boxes.TableRowBox, boxes.TableCellBox)


def _is_table_part(box: boxes.Box, parent: boxes.Box | None = None) -> bool:
    """A table (its wrapper, row groups, rows, cells) in the flow: an email layout's grid.

    Its cells are placed by the column widths, which may follow the cells' content: a
    stamp checks the columns of every table around it and the block's own place
    (``geometry``; tables.py for a stamp drawn straight), so a block in a cell can be
    stamped like a block in the flow. A table of auto width that does not fill its
    container follows its content (email layouts whose width="100%" CSS ignores): it is
    stamped whole, and may change its width and place in its cell.
    """
    if type(box) is boxes.BlockBox and box.is_table_wrapper:
        return _in_flow(box) and (_sized(box.get_wrapped_table()) or _full(box, parent))
    if type(box) is boxes.TableBox:  # not an inline table: it sits in a line
        return True  # reached through its wrapper
    return type(box) in _TABLE_PARTS


def _sized(table: boxes.Box) -> bool:
    """A table whose width is given (width="100%")."""
    # (table-layout: fixed needs a width too; without one WeasyPrint lays out auto.)
    return table.style["width"] != "auto"


def _full(wrapper: boxes.Box, parent: boxes.Box | None) -> bool:
    """A table of auto width that fills its container, or overflows it: its content is
    wider than the room it has (long paragraphs; images side by side wider than the
    page)."""
    # Its border box, not its margins: auto margins (centring) fill any room.
    return parent is not None and wrapper.border_width() > parent.width - 0.01


def _holds_no_text(box: boxes.Box) -> bool:
    """A table wrapper, table, row group or row: never the block of a text."""
    return box.is_table_wrapper or type(box) in _TABLE_PARTS[:3]


def band(box: boxes.Box, ancestors: Sequence[boxes.Box]) -> tuple[float, float] | None:
    """Left and right of what a stamp of ``box`` may cover: its cell for a table stamped
    whole (whose width follows its content), its own box elsewhere in a table, None
    (the page's width) in the flow."""
    if box.is_table_wrapper and in_table(ancestors):
        cell = next(a for a in reversed(ancestors) if isinstance(a, boxes.TableCellBox))
        return cell.border_box_x(), cell.border_box_x() + cell.border_width()
    if isinstance(box, boxes.TableCellBox) or in_table(ancestors):
        return box.position_x, box.position_x + box.margin_width()
    return None


def in_table(ancestors: Sequence[boxes.Box]) -> bool:
    """Whether a block with these ancestors sits in a table cell."""
    return any(isinstance(a, boxes.TableCellBox) for a in ancestors)


def stamp_block(ancestors: Sequence[boxes.Box]) -> boxes.Box | None:
    """The block to stamp for text with these ancestors (page box first)."""
    # The deepest block whose ancestors are all plain flow blocks or table parts, so
    # that only its size can move anything else on the page. A flex or grid box under
    # that chain is stamped whole: its width may follow its content, but nothing beside
    # it. Text straight in a table cell stamps the cell.
    chain = list(ancestors[1:])  # without the page box
    depth = 0
    while depth < len(chain) and (_is_flow_block(chain[depth]) or _is_table_part(
            chain[depth], chain[depth - 1] if depth else ancestors[0])):
        depth += 1
    if depth < len(chain):
        leaf = chain[depth]
        if isinstance(leaf, boxes.BlockLevelBox) and _in_flow(leaf):
            return leaf
    while depth and _holds_no_text(chain[depth - 1]):
        depth -= 1
    return chain[depth - 1] if depth else None


def geometry(box: boxes.Box, ancestors: Sequence[boxes.Box]) -> tuple[float, ...]:
    """What the rest of the page sees of a stamped block."""
    values = [box.position_y, box.border_box_y(), box.border_height(), box.margin_height()]
    if isinstance(box, boxes.TableCellBox) or in_table(ancestors):
        # In a table cell, the width follows the column widths, which the block's
        # content may change; a cell's padding holds its vertical alignment.
        cell = box if isinstance(box, boxes.TableCellBox) else next(
            a for a in reversed(ancestors) if isinstance(a, boxes.TableCellBox))
        if box.is_table_wrapper:
            # A table stamped whole: its width and place follow its content, which
            # moves nothing beside it as long as it stays inside its cell.
            left, right = box.position_x, box.position_x + box.margin_width()
            inside = cell.content_box_x() - 0.001 <= left and (
                right <= cell.content_box_x() + cell.width + 0.001)
            values += [float(inside)]
        else:
            values += [box.position_x, box.border_box_x(), box.border_width()]
        if isinstance(box, boxes.TableCellBox):
            values += [box.padding_top, box.padding_bottom]
        # Every table around it keeps its place and its columns: then no other cell
        # moved either (their heights are the rows', which the block's height keeps).
        for table in ancestors:
            if isinstance(table, boxes.TableBox):
                values += [table.position_x, table.width, *table.column_widths]
    return tuple(round(value, 3) for value in values)


def principal_blocks(
    document: Any, marked: Callable[[Any], str | None]
) -> dict[str, list[tuple[int, boxes.Box, tuple[boxes.Box, ...]]]]:
    """The top fragment of each block whose element is ``marked``, page by page."""
    found: dict[str, list[tuple[int, boxes.Box, tuple[boxes.Box, ...]]]] = defaultdict(list)
    for page_index, page in enumerate(document.pages):
        for box, ancestors in walk(page._page_box):
            element = box.element
            if element is None or not isinstance(box, (boxes.BlockLevelBox, boxes.TableCellBox)):
                continue
            key = marked(element)
            if key is None or (ancestors and ancestors[-1].element is element):
                continue
            found[key].append((page_index, box, ancestors))
    return found


# Per customer, the mini document's <style> elements are the version's: parse them once.
# WeasyPrint has no hook for author stylesheets, so its lookup function is wrapped; it
# answers from this registry only for trees registered here (by identity).
_original_find_stylesheets = weasyprint_css.find_stylesheets
_parsed_sheets: dict[int, tuple[Any, list[CSS]]] = {}


def _find_stylesheets(wrapper_element: Any, *args: Any, **kwargs: Any) -> Iterator[CSS]:
    root = wrapper_element.etree_element
    entry = _parsed_sheets.get(id(root))
    if entry is not None and entry[0] is root:
        return iter(entry[1])
    return _original_find_stylesheets(wrapper_element, *args, **kwargs)


def cache_stylesheets(tree: Any, sheets: list[CSS]) -> None:
    """From now on, WeasyPrint lays ``tree`` out with these parsed stylesheets."""
    weasyprint_css.find_stylesheets = _find_stylesheets
    _parsed_sheets[id(tree)] = (tree, sheets)


def forget_stylesheets(tree: Any) -> None:
    """Let WeasyPrint parse ``tree``'s stylesheets itself again."""
    _parsed_sheets.pop(id(tree), None)


def parse_stylesheets(
    document: HTML, font_config: Any, counter_style: Any, color_profiles: dict[str, Any]
) -> list[CSS]:
    """The author stylesheets of ``document``, parsed as WeasyPrint would."""
    return list(_original_find_stylesheets(
        document.wrapper_element,
        document.media_type,
        document.url_fetcher,
        document.base_url,
        font_config,
        counter_style,
        color_profiles,
        [],
        [],
    ))


def without_margin_boxes(sheet: CSS) -> CSS:
    """A shallow copy of a parsed stylesheet without its margin box (@top-left…) rules."""
    stripped = copy.copy(sheet)
    stripped.page_rules = [
        rule for rule in sheet.page_rules if not any(s[1] in _MARGIN_BOXES for s in rule[1])
    ]
    return stripped


class StampHTML(HTML):
    """A mini document: its user agent stylesheet styles no margin boxes either."""

    def _ua_stylesheets(self, forms: bool = False) -> list[CSS]:
        return [without_margin_boxes(sheet) for sheet in super()._ua_stylesheets(forms)]


def html_from_tree(root: Any, template: HTML, cls: type[HTML] = HTML) -> HTML:
    """A WeasyPrint HTML object around an already parsed (and edited) tree."""
    # Skips tinyhtml5 per customer: the tree is edited in place, not re-parsed.
    document = cls.__new__(cls)
    document.base_url = template.base_url
    document.url_fetcher = template.url_fetcher
    document.media_type = template.media_type
    document.wrapper_element = cssselect2.ElementWrapper.from_html_root(
        root, content_language=None
    )
    document.etree_element = document.wrapper_element.etree_element
    return document
