"""PDF editions with WeasyPrint: a naive one-document render and a fast batch path.

The fast path lays out each version once, with the personal layer replaced by
sentinels, and writes its pages once. Per customer it lays out only the blocks that
hold personal text (everything else on the page hidden, everything after them cut),
checks that they occupy exactly the space the version's blocks did, and stamps them
onto the shared pages; personal links are patched in the PDF link annotations.
Whenever that check fails, the customer gets a full render instead.

It leans on WeasyPrint 70 internals (page boxes, ``find_stylesheets``, HTML objects
built from a parsed tree) and on pypdf's raw stream data; tests/test_pdf.py compares
its pages pixel by pixel with whole renders, so an upgrade that breaks it shows there.
A PdfBatchRenderer renders one document at a time (a lock); use one per process.
"""

from __future__ import annotations

import copy
import hashlib
import html as html_lib
import io
import os
import re
import threading
import zlib
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cssselect2
from pypdf import PdfReader
from pypdf.generic import IndirectObject, NameObject, StreamObject, create_string_object
from weasyprint import CSS, HTML
from weasyprint import css as weasyprint_css
from weasyprint.css.counters import CounterStyle
from weasyprint.formatting_structure import boxes
from weasyprint.html import parse_url
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import get_link

__all__ = [
    "PAGE_SIZES",
    "PdfBatchRenderer",
    "PdfStats",
    "SharedDocument",
    "print_stylesheet",
    "render_pdf",
    "render_versions",
    "with_print_css",
]

PAGE_SIZES = {"A4": "A4", "Letter": "letter"}
DEFAULT_PRINT_CSS = Path(__file__).with_name("print_default.css")

# Characters an escaped customer value never contains: a static part holding one of
# them can be found unambiguously after a value.
_SPECIAL = frozenset("<>\"'")
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_PT_PER_PX = 0.75  # WeasyPrint writes 72 PDF points per 96 CSS pixels
_STAMPS_PER_VERSION = 256  # stamps kept per version, for customers with the same text

# User-origin !important rules win over any author rule, so templates cannot undo them.
_MINI_CSS = """
[data-edition-hide] { visibility: hidden !important; }
[data-edition-cut] { display: none !important; }
[data-edition-hole="show"] { visibility: visible !important; }
html, body { background: none !important; }
@page { background: none !important; border-color: transparent !important; }
"""
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


class SharedDocument(Protocol):
    """A version's HTML with the personal layer left as holes (see edition.personal)."""

    parts: list[str]
    holes: list[object]

    def fill(self, customer: Any) -> str: ...


# --------------------------------------------------------------------------- print CSS


def print_stylesheet(
    *,
    page_size: str = "A4",
    campaign_name: str | None = None,
    templates_dir: str | Path | None = None,
) -> str:
    """The print CSS: templates/print.css if present, else ours; plus size and name."""
    if page_size not in PAGE_SIZES:
        raise ValueError(f"page_size must be one of {', '.join(PAGE_SIZES)}, not {page_size!r}")
    folder = Path("templates") if templates_dir is None else Path(templates_dir)
    custom = folder / "print.css"
    css = (custom if custom.is_file() else DEFAULT_PRINT_CSS).read_text(encoding="utf-8")
    css += f"\n@page {{ size: {PAGE_SIZES[page_size]}; }}\n"
    if campaign_name:
        css += f"html {{ string-set: campaign {_css_string(campaign_name)}; }}\n"
    return css


def _css_string(text: str) -> str:
    # Escaping "<" keeps a name like "</style>" from closing the style element.
    escaped = "".join(
        f"\\{ord(char):x} " if char in '\\"<>\n\r\f' or ord(char) < 32 else char
        for char in text
    )
    return f'"{escaped}"'


_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)
_BODY_START = re.compile(r"<body[\s>]", re.IGNORECASE)


def with_print_css(html: str, css: str) -> str:
    """Insert the print CSS as the document's last author stylesheet."""
    # As an author sheet after the template's own <style> it wins ties, like a browser's
    # print stylesheet; user-origin sheets would lose to every template rule.
    style = f"<style>{css}</style>"
    for pattern in (_HEAD_END, _BODY_START):
        if match := pattern.search(html):
            return html[: match.start()] + style + html[match.start() :]
    return style + html


# --------------------------------------------------------------------------- naive path


def render_pdf(
    html: str,
    *,
    base_url: str | None = None,
    page_size: str = "A4",
    campaign_name: str | None = None,
    templates_dir: str | Path | None = None,
) -> bytes:
    """Render one HTML document to PDF bytes: one WeasyPrint document, nothing shared."""
    css = print_stylesheet(
        page_size=page_size, campaign_name=campaign_name, templates_dir=templates_dir
    )
    return HTML(string=with_print_css(html, css), base_url=base_url).write_pdf()


# --------------------------------------------------------------------------- holes


class _Slots:
    """The holes of a version, grouped so each group's value can be cut out of a fill."""

    def __init__(self, parts: Sequence[str]) -> None:
        if not parts:
            raise ValueError("a shared document has at least one part")
        self.prefix = parts[0]
        self.suffix = parts[-1] if len(parts) > 1 else ""
        # Holes separated only by plain text (e.g. "{{first}} {{last}}") form one slot:
        # the text between them could also occur inside a value.
        self.separators = [part for part in parts[1:-1] if _SPECIAL.intersection(part)]
        self.count = len(self.separators) + 1 if len(parts) > 1 else 0

    def join(self, values: Sequence[str]) -> str:
        pieces = [self.prefix]
        for value, separator in zip(values, [*self.separators, self.suffix], strict=True):
            pieces += (value, separator)
        return "".join(pieces)

    def split(self, html: str) -> list[str] | None:
        """Each slot's (escaped) value in a filled document, or None if not a fill."""
        if self.count == 0:
            return [] if html == self.prefix else None
        end = len(html) - len(self.suffix)
        if end < len(self.prefix) or not html.startswith(self.prefix):
            return None
        if not html.endswith(self.suffix):
            return None
        values, pos = [], len(self.prefix)
        for separator in self.separators:
            # An escaped value holds none of _SPECIAL, so the first match is the separator.
            found = html.find(separator, pos, end)
            if found < 0:
                return None
            values.append(html[pos:found])
            pos = found + len(separator)
        if pos > end:
            return None
        values.append(html[pos:end])
        if any(_SPECIAL.intersection(value) for value in values):
            return None
        return values


def _unescape(value: str) -> str | None:
    """The text the HTML parser makes of an escaped value, or None when unsure."""
    if "\r" in value or "\0" in value:
        return None
    if "&" not in value:
        return value
    if "&" in _ENTITY.sub("", value):
        return None
    return html_lib.unescape(value)


def _sentinels(widths: Sequence[int], taken: str) -> list[str]:
    """Unique letter-only markers, about as wide as the values they stand for."""
    taken = taken.lower()
    for prefix in ("zq", "qz", "vq", "qv", "jq"):
        markers = []
        for index, width in enumerate(widths):
            code = "".join("abcdefghijklmnop"[(index >> shift) & 15] for shift in (8, 4, 0))
            marker = f"{prefix}{code}{prefix[::-1]}"
            markers.append(marker + "x" * max(0, min(width, 40) - len(marker)))
        if not any(marker[:7] in taken for marker in markers):
            return markers
    raise RuntimeError("no free sentinel prefix")  # pragma: no cover


# --------------------------------------------------------------------------- stats


@dataclass
class PdfStats:
    """How the customers of a batch were rendered."""

    customers: int = 0
    fast: int = 0
    full: Counter[str] = field(default_factory=Counter)  # reason -> customers
    versions: int = 0
    versions_full: Counter[str] = field(default_factory=Counter)  # reason -> versions
    stamps_reused: int = 0  # fast customers whose personal text an earlier one had

    def add(self, other: PdfStats) -> None:
        self.customers += other.customers
        self.fast += other.fast
        self.full.update(other.full)
        self.versions += other.versions
        self.versions_full.update(other.versions_full)
        self.stamps_reused += other.stamps_reused

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.full.most_common())
        return (
            f"{self.customers} customers, {self.fast} on the fast path"
            f" ({self.stamps_reused} reusing an earlier customer's personal blocks)"
            + (f"; full render: {reasons}" if reasons else "")
        )


class _Unsupported(Exception):
    """The version's personal layer cannot be stamped; render its customers whole."""


# --------------------------------------------------------------------------- box walking


def _walk(page_box: boxes.Box) -> Iterator[tuple[boxes.Box, tuple[boxes.Box, ...]]]:
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


def _stamp_block(ancestors: Sequence[boxes.Box]) -> boxes.Box | None:
    """The block to stamp for text with these ancestors (page box first).

    It is the deepest block whose ancestors are all plain flow blocks, so that only its
    height can move anything else on the page. A table, flex or grid box under that
    chain is stamped whole: its width may follow its content, but nothing beside it.
    """
    chain = list(ancestors[1:])  # without the page box
    depth = 0
    while depth < len(chain) and _is_flow_block(chain[depth]):
        depth += 1
    if depth < len(chain):
        leaf = chain[depth]
        if isinstance(leaf, boxes.BlockLevelBox) and _in_flow(leaf):
            return leaf
    return chain[depth - 1] if depth else None


def _geometry(box: boxes.Box) -> tuple[float, ...]:
    """What the rest of the page sees of a stamped block."""
    return tuple(
        round(value, 3)
        for value in (box.position_y, box.border_box_y(), box.border_height(), box.margin_height())
    )


def _principal_blocks(
    document: Any, marked: Callable[[Any], str | None]
) -> dict[str, list[tuple[int, boxes.Box, tuple[boxes.Box, ...]]]]:
    """The top fragment of each block whose element is ``marked``, page by page."""
    found: dict[str, list[tuple[int, boxes.Box, tuple[boxes.Box, ...]]]] = defaultdict(list)
    for page_index, page in enumerate(document.pages):
        for box, ancestors in _walk(page._page_box):
            element = box.element
            if element is None or not isinstance(box, boxes.BlockLevelBox):
                continue
            key = marked(element)
            if key is None or (ancestors and ancestors[-1].element is element):
                continue
            found[key].append((page_index, box, ancestors))
    return found


# --------------------------------------------------------------------------- the version


@dataclass
class _Occurrence:
    slot: int
    element: Any
    attribute: str | None  # None: element.text, "#tail": element.tail


@dataclass
class _HoleBlock:
    key: str
    page: int
    geometry: tuple[float, ...]
    rect: tuple[float, float, float, float]  # PDF points


def _read_field(element: Any, attribute: str | None) -> str | None:
    if attribute is None:
        return element.text
    if attribute == "#tail":
        return element.tail
    return element.get(attribute)


def _write_field(element: Any, attribute: str | None, value: str) -> None:
    if attribute is None:
        element.text = value
    elif attribute == "#tail":
        element.tail = value
    else:
        element.set(attribute, value)


def _find_occurrences(root: Any, sentinels: Sequence[str]) -> list[_Occurrence]:
    found = []
    for element in root.iter():
        fields: list[str | None] = [None, "#tail"]
        if isinstance(element.tag, str):
            fields += list(element.attrib)
        for attribute in fields:
            text = _read_field(element, attribute)
            if not text:
                continue
            for slot, sentinel in enumerate(sentinels):
                if sentinel in text:
                    found.append(_Occurrence(slot, element, attribute))
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


def _install_stylesheet_cache() -> None:
    weasyprint_css.find_stylesheets = _find_stylesheets


def _without_margin_boxes(sheet: CSS) -> CSS:
    """A shallow copy of a parsed stylesheet without its margin box (@top-left…) rules."""
    stripped = copy.copy(sheet)
    stripped.page_rules = [
        rule for rule in sheet.page_rules if not any(s[1] in _MARGIN_BOXES for s in rule[1])
    ]
    return stripped


class _StampHTML(HTML):
    """A mini document: its user agent stylesheet styles no margin boxes either."""

    def _ua_stylesheets(self, forms: bool = False) -> list[CSS]:
        return [_without_margin_boxes(sheet) for sheet in super()._ua_stylesheets(forms)]


def _html_from_tree(root: Any, template: HTML, cls: type[HTML] = HTML) -> HTML:
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


class _Version:
    """Everything shared by the customers of one version, prepared once."""

    def __init__(self, renderer: PdfBatchRenderer, parts: Sequence[str], sample: list[str]):
        self.renderer = renderer
        self.counter_style = CounterStyle()
        self.color_profiles: dict[str, Any] = {}
        self.slots = _Slots(parts)
        widths = [len(_unescape(value) or value) for value in sample]
        self.sentinels = _sentinels(widths, "".join(parts))
        sentinel_html = with_print_css(self.slots.join(self.sentinels), renderer.css)
        self.template = HTML(string=sentinel_html, base_url=renderer.base_url)
        root = self.template.etree_element
        self.parent = {child: parent for parent in root.iter() for child in parent}
        self.links: dict[int, _Occurrence] = {}  # slot -> <a href> occurrence
        self.hole_keys: dict[int, str] = {}  # id(element) -> key, for personal blocks
        self.hole_visible: dict[str, bool] = {}
        text, meta = self._classify(_find_occurrences(root, self.sentinels))
        reference = renderer._render(self.template, [], self)
        self.holes = self._hole_blocks(reference, text)
        self.pages = len(reference.pages)
        self.shared = self._shared_pdf(reference)
        self.needs_mini = bool(self.holes) or bool(meta)
        if self.needs_mini:
            self._prepare_mini(root)

    # -- analysis ------------------------------------------------------------------

    def _inside(self, element: Any, tag: str) -> bool:
        while element is not None:
            if element.tag == tag:
                return True
            element = self.parent.get(element)
        return False

    def _classify(self, occurrences: list[_Occurrence]) -> tuple[list[_Occurrence], bool]:
        """Sort holes into visible text, link targets and document metadata."""
        text, meta = [], False
        for occurrence in occurrences:
            element, attribute = occurrence.element, occurrence.attribute
            owner = self.parent.get(element) if attribute == "#tail" else element
            tag = owner.tag if owner is not None and isinstance(owner.tag, str) else None
            if tag is None or tag in ("script", "template") or self._inside(owner, "template"):
                continue  # comments, scripts: never rendered
            if attribute in (None, "#tail"):
                if tag == "title" and self._inside(owner, "head"):
                    meta = True
                elif tag == "style" or not self._inside(owner, "body"):
                    raise _Unsupported("personal value in a stylesheet or the head")
                else:
                    text.append(occurrence)
            elif tag == "meta" and attribute == "content":
                meta = True
            elif tag == "a" and attribute == "href" and self._inside(owner, "body"):
                self.links[occurrence.slot] = occurrence
            else:
                raise _Unsupported(f"personal value in the {attribute} attribute of <{tag}>")
        return text, meta

    def _hole_blocks(self, reference: Any, text: list[_Occurrence]) -> list[_HoleBlock]:
        """Find the blocks that show personal values and check they can be stamped."""
        # Link targets count too: CSS may print them, as in a[href]::after.
        shown = {o.slot for o in text} | set(self.links)
        markers = {slot: self.sentinels[slot] for slot in shown}
        rendered: set[int] = set()
        blocks: dict[int, Any] = {}  # id -> element of the block to stamp
        with_boxes: set[int] = set()
        for page in reference.pages:
            for box, ancestors in _walk(page._page_box):
                if box.element is not None:
                    with_boxes.add(id(box.element))
                label = box.bookmark_label
                if label and any(s in label.lower() for s in self.sentinels):
                    raise _Unsupported("personal value in a bookmark")
                if not isinstance(box, boxes.TextBox):
                    continue
                lowered = box.text.lower()  # text-transform may change the case
                hits = [slot for slot, marker in markers.items() if marker in lowered]
                if not hits:
                    continue
                if any(isinstance(a, boxes.MarginBox) for a in ancestors):
                    raise _Unsupported("personal value in a running header or footer")
                block = _stamp_block(ancestors)
                if block is None or block.element is None:
                    raise _Unsupported("personal text outside any block")
                rendered.update(hits)
                blocks[id(block.element)] = block.element
        for occurrence in text:
            owner = occurrence.element
            if occurrence.attribute == "#tail":
                owner = self.parent.get(owner)
            if occurrence.slot not in rendered and id(owner) in with_boxes:
                raise _Unsupported("personal text not found in the layout")
            # Not rendered and no box: it sits in something not displayed.

        # A block inside another stamped block is drawn with it.
        elements = list(blocks.values())
        ancestors_of = {id(e): self._ancestors(e) for e in elements}
        outer = [e for e in elements if not any(id(o) in ancestors_of[id(e)] for o in elements)]
        order = {id(e): i for i, e in enumerate(self.template.etree_element.iter())}
        outer.sort(key=lambda e: order[id(e)])
        self.hole_keys = {id(e): str(i) for i, e in enumerate(outer)}

        found = _principal_blocks(reference, lambda e: self.hole_keys.get(id(e)))
        holes = []
        for element in outer:
            key = self.hole_keys[id(element)]
            fragments = found.get(key, [])
            if len(fragments) != 1:
                raise _Unsupported("personal text in a block split across pages")
            page_index, box, _ = fragments[0]
            page = reference.pages[page_index]
            top, bottom = box.position_y, box.position_y + box.margin_height()
            # The band the block spans, across the page: flow blocks have nothing beside.
            rect = (0.0, (page.height - bottom) * _PT_PER_PX, page.width * _PT_PER_PX,
                    (page.height - top) * _PT_PER_PX)
            self._check_nothing_on_top(page, box, top, bottom)
            self.hole_visible[key] = box.style["visibility"] == "visible"
            holes.append(_HoleBlock(key, page_index, _geometry(box), rect))
        return holes

    def _ancestors(self, element: Any) -> set[int]:
        found = set()
        element = self.parent.get(element)
        while element is not None:
            found.add(id(element))
            element = self.parent.get(element)
        return found

    def _check_nothing_on_top(self, page: Any, block: boxes.Box, top: float, bottom: float) -> None:
        """Stamping draws the block last: nothing floated or positioned may share its band."""
        for box, ancestors in _walk(page._page_box):
            if not (box.is_floated() or box.is_absolutely_positioned()):
                continue
            if box is block or any(a is block for a in ancestors):
                continue
            y = box.border_box_y()
            if y < bottom and y + box.border_height() > top:
                raise _Unsupported("a float or positioned box sits beside personal text")

    # -- the shared pages ----------------------------------------------------------

    def _shared_pdf(self, reference: Any) -> _SharedPdf:
        """Write the version's pages once, with the personal blocks left blank."""
        # Hiding them in the laid-out boxes saves a second layout. Styles are shared
        # between boxes, so each box in a block gets its own hidden copy.
        found = _principal_blocks(reference, lambda e: self.hole_keys.get(id(e)))
        for hole in self.holes:
            (_, block, _), = found[hole.key]
            for box, _ in _walk(block):
                box.style = box.style.copy()
                box.style["visibility"] = "hidden"
                box.background = None
        return _SharedPdf(reference.write_pdf(), self)

    # -- the per-customer document -------------------------------------------------

    def _prepare_mini(self, root: Any) -> None:
        """A copy of the version's tree that lays out only the personal blocks."""
        tree = copy.deepcopy(root)
        twin = {id(o): e for o, e in zip(root.iter(), tree.iter(), strict=True)}
        elements = list(tree.iter())
        parent = {child: p for p in tree.iter() for child in p}
        body = next((e for e in elements if e.tag == "body"), None)
        holes = sorted(
            ((twin[i], key) for i, key in self.hole_keys.items()), key=lambda h: int(h[1])
        )
        inside: set[int] = set()
        ancestors: set[int] = set()
        for hole, key in holes:
            inside.update(id(e) for e in hole.iter())
            node = parent.get(hole)
            while node is not None:
                ancestors.add(id(node))
                node = parent.get(node)
            hole.set("data-edition-hole", "show" if self.hole_visible[key] else "hidden")
            hole.set("data-edition-key", key)
        position = {id(e): i for i, e in enumerate(elements)}
        last = max((position[id(e)] for h, _ in holes for e in h.iter()), default=-1)
        if body is not None:
            for element in elements[position[id(body)] :]:
                if id(element) in inside or not isinstance(element.tag, str):
                    continue
                if id(element) in ancestors or position[id(element)] < last:
                    element.set("data-edition-hide", "")
                    continue
                # After the last personal block: no layout needed. The element stays,
                # empty, so that selectors like :last-child match as in the full document.
                container = parent.get(element)
                if container is not None and container.get("data-edition-cut") is None:
                    element.set("data-edition-cut", "")
                    element.text = element.tail = None
                    for child in list(element):
                        element.remove(child)
            # Text after the last personal block is cut too.
            node = holes[-1][0] if holes else None
            while node is not None and node is not body:
                node.tail = None
                node = parent.get(node)
        self.mini_tree = tree
        self.mini_html = _html_from_tree(tree, self.template)
        sheets = list(_original_find_stylesheets(
            self.mini_html.wrapper_element,
            self.mini_html.media_type,
            self.mini_html.url_fetcher,
            self.mini_html.base_url,
            self.renderer.font_config,
            self.counter_style,
            self.color_profiles,
            [],
            [],
        ))
        # The stamp must not repeat the running header and footer (its "Page 1 of 1"
        # would cover the shared "Page 1 of 4"); margin boxes never move page content.
        sheets = [_without_margin_boxes(sheet) for sheet in sheets]
        _install_stylesheet_cache()
        _parsed_sheets[id(tree)] = (tree, sheets)
        unique = {(id(o.element), o.attribute): o for o in _find_occurrences(tree, self.sentinels)}
        self.mini_fields = [
            (o.element, o.attribute, _read_field(o.element, o.attribute) or "")
            for o in unique.values()
        ]
        self.mini_slots = sorted({o.slot for o in unique.values()})
        self.stamps: OrderedDict[tuple[str, ...], dict[int, bytes] | None] = OrderedDict()
        self.overlay_pages = sorted({hole.page for hole in self.holes})
        # With the version's own (sentinel) values the stamp must match the reference;
        # if cutting the document moved anything, no customer could use it.
        if self._stamp_document() is None:
            raise _Unsupported("the cut-down document lays out differently")

    def _stamp_document(self) -> Any | None:
        """Lay out the mini tree as it stands; None if a personal block moved or resized."""
        document = self.renderer._render(
            _html_from_tree(self.mini_tree, self.template, _StampHTML),
            [self.renderer.mini_css],
            self,
        )
        found = _principal_blocks(document, lambda e: e.get("data-edition-key"))
        for hole in self.holes:
            fragments = found.get(hole.key, [])
            if [(p, _geometry(b)) for p, b, _ in fragments] != [(hole.page, hole.geometry)]:
                return None
        return document

    def close(self) -> None:
        """Forget the version's parsed stylesheets."""
        if hasattr(self, "mini_tree"):
            _parsed_sheets.pop(id(self.mini_tree), None)

    def render(self, values: list[str]) -> bytes | str:
        """One customer's PDF, or the reason it needs a full render."""
        texts = [_unescape(value) for value in values]
        if any(text is None for text in texts):
            return "value needs the HTML parser"
        plain: list[str] = texts  # type: ignore[assignment]

        def substitute(template: str) -> str:
            for slot, sentinel in enumerate(self.sentinels):
                if sentinel in template:
                    template = template.replace(sentinel, plain[slot])
            return template

        uris: dict[str, str] = {}
        for occurrence in self.links.values():
            # What WeasyPrint's <a> handler makes of the customer's href.
            template = occurrence.element.get("href")
            base_url = self.template.base_url
            url = parse_url(substitute(template), base_url, allow_relative=True)
            link = get_link(url, base_url) if url else None
            if not link or link[1][0] != "external":
                return "personal link is not an external URL"
            uris[template] = link[1][1]

        stamp: dict[int, bytes] = {}
        if self.needs_mini:
            # Customers with the same personal text (often: the same first name) get
            # the same stamp; a text that reflowed once reflows again.
            key = tuple(plain[slot] for slot in self.mini_slots)
            if key in self.stamps:
                self.stamps.move_to_end(key)
                cached = self.stamps[key]
                if cached is None:
                    return "personal text changes the layout"
                self.renderer.stats.stamps_reused += 1
                stamp = cached
            else:
                for element, attribute, template in self.mini_fields:
                    _write_field(element, attribute, substitute(template))
                document = self._stamp_document()
                if document is not None:
                    pages = [document.pages[i] for i in self.overlay_pages] or document.pages[:1]
                    mini = PdfReader(io.BytesIO(document.copy(pages).write_pdf()))
                    stamp = self.shared.stamp(mini)
                self.stamps[key] = stamp if document is not None else None
                if len(self.stamps) > _STAMPS_PER_VERSION:
                    self.stamps.popitem(last=False)
                if document is None:
                    return "personal text changes the layout"
        return self.shared.assemble(stamp, uris)


# --------------------------------------------------------------------------- PDF assembly


def _serialize(value: Any, ref: Callable[[int], int]) -> bytes:
    """PDF syntax for a pypdf object, with indirect references renumbered by ``ref``."""
    if isinstance(value, IndirectObject):
        return b"%d 0 R" % ref(value.idnum)
    if isinstance(value, StreamObject):
        data = value._data
        entries = {key: item for key, item in value.items() if key != "/Length"}
        return (
            _serialize_dict(entries, ref)[:-2]
            + b"/Length %d>>\nstream\n" % len(data)
            + data
            + b"\nendstream"
        )
    if isinstance(value, dict):
        return _serialize_dict(value, ref)
    if isinstance(value, list):
        return b"[" + b" ".join(_serialize(item, ref) for item in value) + b"]"
    if isinstance(value, bytes):  # already PDF syntax
        return value
    if isinstance(value, str) and not hasattr(value, "write_to_stream"):
        raise TypeError(f"plain str in a PDF object: {value!r}")
    stream = io.BytesIO()
    value.write_to_stream(stream)
    return stream.getvalue()


def _serialize_dict(value: Mapping[str, Any], ref: Callable[[int], int]) -> bytes:
    pieces = [b"<<"]
    for key, item in value.items():
        name = io.BytesIO()
        NameObject(key).write_to_stream(name)
        pieces += (name.getvalue(), b" ", _serialize(item, ref))
    pieces.append(b">>")
    return b"".join(pieces)


def _same(number: int) -> int:
    return number


def _reachable(roots: Iterable[Any]) -> list[int]:
    """Object numbers referenced, directly or not, from ``roots``."""
    seen: dict[int, None] = {}
    stack = list(roots)
    while stack:
        value = stack.pop()
        if isinstance(value, IndirectObject):
            if value.idnum in seen:
                continue
            seen[value.idnum] = None
            stack.append(value.get_object())
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return list(seen)


_SUBSET_TAG = re.compile(r"/([A-Z]{6})\+")


def _retagged(value: Any) -> Any:
    """A stamp's font with its own subset tag.

    WeasyPrint derives the tag (the ABCDEF+ in ABCDEF+DejaVu-Serif) from the font alone,
    so the stamp's subset would share it with the page's, and viewers that look fonts
    up by name could draw the wrong glyphs.
    """
    if not isinstance(value, dict) or isinstance(value, StreamObject):
        return value
    key = "/BaseFont" if "/BaseFont" in value else "/FontName" if "/FontName" in value else None
    if key is None or not (match := _SUBSET_TAG.match(str(value[key]))):
        return value
    tag = "".join(chr(65 + (ord(letter) - 65 + 13) % 26) for letter in match[1])
    renamed = dict(value)
    renamed[key] = NameObject(f"/{tag}+{str(value[key])[8:]}")
    return renamed


def _center_in(rect: Sequence[Any], box: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = (float(v) for v in rect)
    x, y = (x0 + x1) / 2, (y0 + y1) / 2
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


_STAMP = b"\x00stamp\x00"
_ANNOTS = b"\x00annots\x00"
_URI = b"\x00uri\x00"


class _SharedPdf:
    """The version's PDF, parsed once, reassembled per customer by object surgery."""

    def __init__(self, data: bytes, version: _Version) -> None:
        reader = PdfReader(io.BytesIO(data))
        trailer = reader.trailer
        self.root = trailer.raw_get("/Root").idnum
        info = trailer.raw_get("/Info") if "/Info" in trailer else None
        self.info = info.idnum if info is not None else None
        self.chunks: dict[int, bytes] = {}
        for number in range(1, int(trailer["/Size"])):
            try:
                value = reader.get_object(number)
            except Exception:  # a free entry
                continue
            if value is None:
                continue
            if isinstance(value, StreamObject) and value.get("/Type") in ("/ObjStm", "/XRef"):
                continue
            self.chunks[number] = _serialize(value, _same)
        next_number = max(self.chunks) + 1

        # Link annotations whose target holds a sentinel: the href they came from, and
        # the annotation with a gap where the customer's URI goes.
        hrefs = {
            version.sentinels[slot]: occurrence.element.get("href")
            for slot, occurrence in version.links.items()
        }
        self.links: dict[int, tuple[str, list[bytes]]] = {}
        for page in reader.pages:
            for ref in page.get("/Annots", []) or []:
                annot = ref.get_object()
                uri = str(annot.get("/A", {}).get("/URI", ""))
                for sentinel, href in hrefs.items():
                    if sentinel in uri:
                        entries = dict(annot)
                        entries["/A"] = {**annot["/A"], "/URI": _URI}
                        self.links[ref.idnum] = (href, _serialize(entries, _same).split(_URI))

        # Pages with personal blocks: the shared content bracketed by q/Q, then the
        # customer's stamp; link annotations inside the blocks come from the stamp.
        holes_by_page: dict[int, list[_HoleBlock]] = defaultdict(list)
        for hole in version.holes:
            holes_by_page[hole.page].append(hole)
        self.stamped: list[tuple[int, list[_HoleBlock], list[bytes]]] = []
        opening = next_number
        self.chunks[opening] = _serialize_stream({}, b"q\n")
        closing = next_number + 1
        self.chunks[closing] = _serialize_stream({}, b"\nQ\nq /EditionPersonal Do Q\n")
        next_number += 2
        for page_index, holes in sorted(holes_by_page.items()):
            page = reader.pages[page_index]
            entries = dict(page)
            contents = page.raw_get("/Contents")
            contents = list(contents) if isinstance(contents, list) else [contents]
            entries["/Contents"] = [b"%d 0 R" % opening, *contents, b"%d 0 R" % closing]
            resources = dict(page["/Resources"])
            resources["/XObject"] = {**resources.get("/XObject", {}), "/EditionPersonal": _STAMP}
            entries["/Resources"] = resources
            kept = [
                ref
                for ref in page.get("/Annots", []) or []
                if not any(_center_in(ref.get_object()["/Rect"], h.rect) for h in holes)
            ]
            entries["/Annots"] = [*kept, _ANNOTS]
            template = _serialize(entries, _same)
            pieces = [template[: template.index(_STAMP)]]
            pieces += template[template.index(_STAMP) + len(_STAMP) :].split(_ANNOTS)
            page_ref = page.indirect_reference.idnum
            self.stamped.append((page_ref, holes, pieces))
        self.first_free = next_number
        self.order = sorted(self.chunks)

    def stamp(self, mini: PdfReader | None) -> dict[int, bytes]:
        """The objects a customer's stamp adds or replaces: the same stamp, the same bytes."""
        chunks: dict[int, bytes] = {}
        if mini is None:
            return chunks
        next_number = self.first_free
        for index, (page_ref, holes, pieces) in enumerate(self.stamped):
            mini_page = mini.pages[index]
            resources = mini_page.get("/Resources", {})
            annots = [
                ref
                for ref in mini_page.get("/Annots", []) or []
                if any(_center_in(ref.get_object()["/Rect"], h.rect) for h in holes)
            ]
            # The stamp's objects are renumbered past the shared ones.
            remap: dict[int, int] = {}
            for old in _reachable([resources, *annots]):
                remap[old] = next_number
                next_number += 1
            for old, new in remap.items():
                chunks[new] = _serialize(_retagged(mini.get_object(old)), remap.__getitem__)
            stamp = next_number
            next_number += 1
            chunks[stamp] = _form_xobject(mini_page, resources, remap)
            stamp_annots = b" ".join(b"%d 0 R" % remap[ref.idnum] for ref in annots)
            chunks[page_ref] = b"%s%d 0 R%s%s%s" % (
                pieces[0], stamp, pieces[1], stamp_annots, pieces[2]
            )
        if self.info is not None and "/Info" in mini.trailer:
            chunks[self.info] = _serialize(mini.trailer["/Info"], _same)
        return chunks

    def assemble(self, stamp: Mapping[int, bytes], uris: Mapping[str, str]) -> bytes:
        """The customer's PDF: shared objects, their stamp, their links."""
        chunks = {**self.chunks, **stamp}
        for number, (href, (before, after)) in self.links.items():
            chunks[number] = before + _serialize(create_string_object(uris[href]), _same) + after
        order = [*self.order, *sorted(n for n in stamp if n not in self.chunks)]
        return _write_pdf(chunks, order, self.root, self.info)


def _serialize_stream(entries: Mapping[str, Any], data: bytes) -> bytes:
    return _serialize_dict(entries, _same)[:-2] + (
        b"/Length %d>>\nstream\n" % len(data) + data + b"\nendstream"
    )


def _form_xobject(page: Any, resources: Any, remap: dict[int, int]) -> bytes:
    """The personal page of the mini document as a form XObject to stamp."""
    contents = page.raw_get("/Contents")
    if isinstance(contents, IndirectObject):
        stream = contents.get_object()
        data, filters = stream._data, stream.get("/Filter")
    else:
        data = zlib.compress(page.get_contents().get_data())
        filters = NameObject("/FlateDecode")
    entries: dict[str, Any] = {
        "/Type": NameObject("/XObject"),
        "/Subtype": NameObject("/Form"),
        "/BBox": page["/MediaBox"],
        "/Resources": resources,
    }
    if filters is not None:
        entries["/Filter"] = filters
    if "/Group" in page:
        entries["/Group"] = page["/Group"]
    return _serialize_dict(entries, remap.__getitem__)[:-2] + (
        b"/Length %d>>\nstream\n" % len(data) + data + b"\nendstream"
    )


def _write_pdf(
    chunks: Mapping[int, bytes], order: Sequence[int], root: int, info: int | None
) -> bytes:
    """A PDF file of these numbered objects, with its cross-reference table."""
    out = [b"%PDF-1.7\n%\xf0\x9f\x96\xa4\n"]
    offset = len(out[0])
    offsets: dict[int, int] = {}
    for number in order:
        piece = b"%d 0 obj\n%s\nendobj\n" % (number, chunks[number])
        offsets[number] = offset
        offset += len(piece)
        out.append(piece)
    size = max(order) + 1
    xref = [b"xref\n0 %d\n0000000000 65535 f \n" % size]
    for number in range(1, size):
        if number in offsets:
            xref.append(b"%010d 00000 n \n" % offsets[number])
        else:
            xref.append(b"0000000000 00000 f \n")
    body = b"".join(out)
    identifier = hashlib.md5(body, usedforsecurity=False).hexdigest().encode()
    trailer = b"trailer\n<</Size %d/Root %d 0 R%s/ID [<%s> <%s>]>>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        root,
        b"/Info %d 0 R" % info if info is not None else b"",
        identifier,
        identifier,
        offset,
    )
    return body + b"".join(xref) + trailer


# --------------------------------------------------------------------------- the renderer


class PdfBatchRenderer:
    """Renders the customers of many versions to PDF, sharing what they have in common."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        page_size: str = "A4",
        campaign_name: str | None = None,
        templates_dir: str | Path | None = None,
        max_versions: int = 256,
    ) -> None:
        self.base_url = base_url
        self.css = print_stylesheet(
            page_size=page_size, campaign_name=campaign_name, templates_dir=templates_dir
        )
        self.font_config = FontConfiguration()
        self.mini_css = CSS(string=_MINI_CSS, font_config=self.font_config)
        self.cache: dict[str, Any] = {}  # images, across documents
        self.stats = PdfStats()
        # Versions edit their cut-down tree in place per customer: one render at a time.
        self._lock = threading.RLock()
        self._versions: OrderedDict[tuple[str, ...], _Version | str] = OrderedDict()
        self._seen: OrderedDict[tuple[str, ...], None] = OrderedDict()
        self._max_versions = max_versions

    def _render(
        self, document: HTML, stylesheets: list[CSS], version: _Version | None = None
    ) -> Any:
        # A version keeps its @counter-style and @color-profile state: its stylesheets
        # are parsed once and registered those there.
        return document.render(
            font_config=self.font_config,
            counter_style=version.counter_style if version else None,
            color_profiles=version.color_profiles if version else None,
            stylesheets=stylesheets,
            cache=self.cache,
        )

    def render_one(self, html: str) -> bytes:
        """The full render of one document (the fallback), same output as render_pdf."""
        document = HTML(string=with_print_css(html, self.css), base_url=self.base_url)
        with self._lock:
            return self._render(document, []).write_pdf()

    def render(self, doc: SharedDocument, customers: Iterable[Any]) -> list[bytes]:
        """Each customer's PDF, in order."""
        return self.render_filled(doc.parts, [doc.fill(customer) for customer in customers])

    def render_filled(
        self, parts: Sequence[str], htmls: Sequence[str], *, prepare: bool | None = None
    ) -> list[bytes]:
        """PDFs for documents that are fills of ``parts`` (the version's static HTML).

        A document that is not a fill of ``parts`` is rendered whole, so callers may
        pass whatever HTML each customer really gets. ``prepare``: lay the version out
        for sharing now (True), never (False), or once it has a second customer (None).
        """
        with self._lock:
            return self._render_filled(parts, htmls, prepare)

    def _render_filled(
        self, parts: Sequence[str], htmls: Sequence[str], prepare: bool | None
    ) -> list[bytes]:
        if not parts:  # the engine renders this version's page whole for everyone
            self.stats.customers += len(htmls)
            self.stats.full["the version's page is not shared"] += len(htmls)
            return [self.render_one(html) for html in htmls]
        slots = _Slots(parts)
        values = [slots.split(html) for html in htmls]
        sample = next((v for v in values if v is not None), None)
        version: _Version | str = "not a fill of the version"
        if sample is not None and slots.count and prepare is not False:
            version = self._version(parts, sample, len(htmls) if prepare is None else 2)
        elif prepare is False:
            version = "too few customers to share the layout"
        static: bytes | None = None
        results = []
        for html, customer_values in zip(htmls, values, strict=True):
            self.stats.customers += 1
            result: bytes | str
            if customer_values is None:
                result = "not a fill of the version"
            elif slots.count == 0:  # nothing personal: one PDF for all
                static = static or self.render_one(html)
                result = static
            elif isinstance(version, str):
                result = version
            else:
                try:
                    result = version.render(customer_values)
                except Exception as exc:  # correctness first: the whole render decides
                    result = f"fast path failed: {type(exc).__name__}"
            if isinstance(result, str):
                self.stats.full[result] += 1
                result = self.render_one(html)
            else:
                self.stats.fast += 1
            results.append(result)
        return results

    def _version(self, parts: Sequence[str], sample: list[str], customers: int) -> _Version | str:
        key = tuple(parts)
        if key in self._versions:
            self._versions.move_to_end(key)
            return self._versions[key]
        if customers == 1 and key not in self._seen:
            # Preparing costs about two full renders: not worth it for a version of one.
            self._seen[key] = None
            if len(self._seen) > 4 * self._max_versions:
                self._seen.popitem(last=False)
            return "first customer of the version"
        self._seen.pop(key, None)
        self.stats.versions += 1
        try:
            version: _Version | str = _Version(self, parts, sample)
        except _Unsupported as reason:
            version = str(reason)
            self.stats.versions_full[version] += 1
        self._versions[key] = version
        while len(self._versions) > self._max_versions:
            _, evicted = self._versions.popitem(last=False)
            if isinstance(evicted, _Version):
                evicted.close()
        return version


# --------------------------------------------------------------------------- process pool

_worker: PdfBatchRenderer | None = None


def _init_worker(options: dict[str, Any]) -> None:
    global _worker
    _worker = PdfBatchRenderer(**options)


def _work(parts: tuple[str, ...], htmls: list[str], prepare: bool) -> tuple[list[bytes], PdfStats]:
    assert _worker is not None
    before = _worker.stats
    _worker.stats = PdfStats()
    try:
        return _worker.render_filled(parts, htmls, prepare=prepare), _worker.stats
    finally:
        before.add(_worker.stats)
        _worker.stats = before


def render_versions(
    jobs: Iterable[tuple[SharedDocument, Sequence[Any]]],
    *,
    workers: int | None = None,
    chunk_size: int = 250,
    stats: PdfStats | None = None,
    **options: Any,
) -> Iterator[list[bytes]]:
    """For each (version document, customers) job, in order, the customers' PDFs.

    Runs on ``workers`` processes (default: one per CPU), each with one long-lived
    PdfBatchRenderer made from ``options``; a version's customers go out in chunks.
    """
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(options,)) as pool:
        queue: deque[tuple[int, bool, Future[tuple[list[bytes], PdfStats]]]] = deque()
        collected: list[bytes] = []

        def take() -> list[bytes] | None:
            _, last_chunk, future = queue.popleft()
            pdfs, chunk_stats = future.result()
            if stats is not None:
                stats.add(chunk_stats)
            collected.extend(pdfs)
            if not last_chunk:
                return None
            done = collected.copy()
            collected.clear()
            return done

        for job, (doc, customers) in enumerate(jobs):
            htmls = [doc.fill(customer) for customer in customers]
            starts = range(0, len(htmls), chunk_size) or [0]
            for start in starts:
                chunk = htmls[start : start + chunk_size]
                # Laying a version out for sharing costs about two whole renders: worth it
                # from three customers on, even when a chunk holds only one of them.
                future = pool.submit(_work, tuple(doc.parts), chunk, len(htmls) >= 3)
                queue.append((job, start == starts[-1], future))
                # A few chunks in flight per worker, not the whole campaign in memory.
                while len(queue) > 3 * workers:
                    if (done := take()) is not None:
                        yield done
        while queue:
            if (done := take()) is not None:
                yield done
