"""A version prepared for the fast path: its shared pages, written once, and per
customer a stamp of the blocks that hold personal text, drawn straight to PDF
(direct) where it can, else laid out in a cut-down document."""

from __future__ import annotations

import copy
import io
import re
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cssselect2
from pypdf import PdfReader
from weasyprint.css.counters import CounterStyle
from weasyprint.formatting_structure import boxes
from weasyprint.html import parse_url
from weasyprint.urls import get_link

from renderers.pdf.assembly import Rect, SharedPdf
from renderers.pdf.direct import REPERTOIRE, DirectStamper, plain_value
from renderers.pdf.engine import Engine
from renderers.pdf.fonts import more_glyphs
from renderers.pdf.layout import (
    StampHTML,
    band,
    cache_stylesheets,
    forget_stylesheets,
    geometry,
    html_from_tree,
    parse_stylesheets,
    principal_blocks,
    stamp_block,
    walk,
    without_margin_boxes,
)
from renderers.pdf.relayout import watching
from renderers.pdf.slots import Slots, sentinels, unescape
from renderers.pdf.stats import PdfStats
from renderers.pdf.tables import recording

_PT_PER_PX = 0.75  # WeasyPrint writes 72 PDF points per 96 CSS pixels
# Stamps kept per version, for customers with the same personal text: at most this
# many, holding at most this many bytes (a stamp with a font subset of its own is big).
_STAMPS_PER_VERSION = 256
_STAMP_BYTES_PER_VERSION = 1 << 20
# New stamps a version tries before it gives up, when every one of them reflowed.
_GIVE_UP_AFTER = 12

# User-origin !important rules win over any author rule, so templates cannot undo them.
_MINI_CSS = """
[data-edition-hide] { visibility: hidden !important; }
[data-edition-cut] { display: none !important; }
[data-edition-hole="show"] { visibility: visible !important; }
html, body { background: none !important; }
@page { background: none !important; border-color: transparent !important; }
"""


class _StampCache:
    """Stamps by personal text; the least recently used go first when over budget."""

    def __init__(self, entries: int, size: int) -> None:
        self._entries, self._budget = entries, size
        self._stamps: OrderedDict[tuple[str, ...], dict[int, bytes] | None] = OrderedDict()
        self.size = 0  # bytes held

    def __contains__(self, key: object) -> bool:
        return key in self._stamps

    def __len__(self) -> int:
        return len(self._stamps)

    def get(self, key: tuple[str, ...]) -> dict[int, bytes] | None:
        self._stamps.move_to_end(key)
        return self._stamps[key]

    def put(self, key: tuple[str, ...], stamp: dict[int, bytes] | None) -> None:
        self._stamps[key] = stamp
        self.size += _size(stamp)
        while len(self._stamps) > self._entries or (
            self.size > self._budget and len(self._stamps) > 1
        ):
            _, evicted = self._stamps.popitem(last=False)
            self.size -= _size(evicted)


def _size(stamp: dict[int, bytes] | None) -> int:
    return sum(map(len, stamp.values())) if stamp else 0


class Unsupported(Exception):
    """The version's personal layer cannot be stamped; render its customers whole."""


@dataclass
class _Occurrence:
    slot: int
    element: Any
    attribute: str | None  # None: element.text, "#tail": element.tail


@dataclass
class HoleBlock:
    key: str
    page: int
    geometry: tuple[float, ...]
    rect: Rect  # the band across the page that the block spans


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


_LINK_START = re.compile(r"""href\s*=\s*["']$""", re.IGNORECASE)
_ORIGIN = re.compile(r"https?://[a-z0-9.-]+/")


def _link_prefixes(slots: Slots, sample: list[str]) -> list[str]:
    """Per slot, the scheme and host its sentinel starts with: a value that is a whole
    link (an unsubscribe URL) is laid out as a link of the typical customer's origin, so
    that CSS selecting on it (a[href^="http"]::after) selects for the version as for them."""
    before = [slots.prefix, *slots.separators]
    prefixes = []
    for static, value in zip(before, sample, strict=True):
        origin = _ORIGIN.match(unescape(value) or "") if _LINK_START.search(static) else None
        prefixes.append(origin[0] if origin else "")
    return prefixes


class SelectorCheck:
    """Whether a customer's values in class and href attributes select the CSS rules the
    version's sentinels selected: then they style nothing differently."""

    def __init__(self, template: Any, occurrences: list[_Occurrence], font_config: Any,
                 counter_style: Any, color_profiles: dict[str, Any]) -> None:
        self.template = template
        self.fields = list({(id(o.element), o.attribute): (o.element, o.attribute)
                            for o in occurrences}.values())
        self.matchers: list[Any] = []
        if self.fields:
            sheets = [*parse_stylesheets(template, font_config, counter_style, color_profiles),
                      *template._ua_stylesheets()]
            self.matchers = [sheet.matcher for sheet in sheets]
            self.reference = self._signature()
        self._known: OrderedDict[tuple[str, ...], bool] = OrderedDict()

    def _signature(self) -> tuple[Any, ...]:
        """The rules matching each element a personal attribute can restyle: the element,
        what is inside it and its following siblings (descendant and sibling
        combinators), with their pseudo-elements."""
        wanted = {id(element) for element, _ in self.fields}
        scope: dict[int, None] = {}
        # Fresh wrappers: cssselect2 caches an element's classes on its wrapper.
        root = cssselect2.ElementWrapper.from_html_root(self.template.etree_element)
        signature = []
        for wrapper in root.iter_subtree():
            element = wrapper.etree_element
            if id(element) in wanted:
                for sibling in [wrapper, *wrapper.iter_next_siblings()]:
                    for inner in sibling.iter_subtree():
                        scope[id(inner.etree_element)] = None
            if id(element) in scope:
                signature.append(tuple(
                    tuple(sorted((order, str(pseudo)) for _, order, pseudo, _ in
                                 matcher.match(wrapper)))
                    for matcher in self.matchers))
        return tuple(signature)

    def same(self, substitute: Any) -> bool:
        if not self.fields:
            return True
        values = []
        for element, attribute in self.fields:
            values.append(element.get(attribute))
        key = tuple(substitute(value) for value in values)
        if key not in self._known:
            for (element, attribute), value in zip(self.fields, key, strict=True):
                element.set(attribute, value)
            try:
                self._known[key] = self._signature() == self.reference
            finally:
                for (element, attribute), value in zip(self.fields, values, strict=True):
                    element.set(attribute, value)
            while len(self._known) > _STAMPS_PER_VERSION:
                self._known.popitem(last=False)
        return self._known[key]


class Version:
    """Everything shared by the customers of one version, prepared once."""

    def __init__(self, engine: Engine, parts: Sequence[str], sample: list[str],
                 locale: str | None = None) -> None:
        self.engine = engine
        self.counter_style = CounterStyle()
        self.color_profiles: dict[str, Any] = {}
        self.slots = Slots(parts)
        widths = [len(unescape(value) or value) for value in sample]
        prefixes = _link_prefixes(self.slots, sample)
        widths = [width - len(prefix) for width, prefix in zip(widths, prefixes, strict=True)]
        self.sentinels = [prefix + sentinel for prefix, sentinel in
                          zip(prefixes, sentinels(widths, "".join(parts)), strict=True)]
        self.template = engine.html(self.slots.join(self.sentinels), locale)
        root = self.template.etree_element
        self.parent = {child: parent for parent in root.iter() for child in parent}
        self.links: dict[int, _Occurrence] = {}  # slot -> <a href> occurrence
        self.hole_keys: dict[int, str] = {}  # id(element) -> key, for personal blocks
        self.hole_visible: dict[str, bool] = {}
        # Personal class and href values: fine as long as they select the CSS rules the
        # version's did (checked per customer by SelectorCheck).
        self.styled: list[_Occurrence] = []
        self.bookmarks: dict[str, str] = {}  # outline titles holding sentinels
        text, meta = self._classify(_find_occurrences(root, self.sentinels))
        self.selectors = SelectorCheck(self.template, self.styled, self.engine.font_config,
                                       self.counter_style, self.color_profiles)
        reference = self._render(self.template)
        self.holes = self._hole_blocks(reference, text)
        self.pages = len(reference.pages)
        self.needs_mini = bool(self.holes) or bool(meta)
        self.direct: DirectStamper | str = "nothing personal to stamp"
        glyphs: dict[Any, Any] = {}
        if self.needs_mini:
            self._prepare_mini(root, meta)
            if isinstance(self.direct, DirectStamper):
                try:
                    glyphs = self._likely_glyphs(self.direct)
                except Exception as exc:
                    self.direct = f"drawing stamps straight failed: {type(exc).__name__}"
        self.shared = self._shared_pdf(reference, glyphs)
        if isinstance(self.direct, DirectStamper):
            try:
                reason = self.direct.attach(self.shared)
            except Exception as exc:
                reason = f"drawing stamps straight failed: {type(exc).__name__}"
            if reason is not None:
                self.direct = reason

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
                    raise Unsupported("personal value in a stylesheet or the head")
                else:
                    text.append(occurrence)
            elif tag == "meta" and attribute == "content":
                meta = True
            elif tag == "a" and attribute == "href" and self._inside(owner, "body"):
                self.links[occurrence.slot] = occurrence
                self.styled.append(occurrence)  # CSS may select on it: a[href^="http"]
            elif attribute == "class" and self._inside(owner, "body"):
                self.styled.append(occurrence)
            else:
                raise Unsupported(f"personal value in the {attribute} attribute of <{tag}>")
        return text, meta

    def _hole_blocks(self, reference: Any, text: list[_Occurrence]) -> list[HoleBlock]:
        """Find the blocks that show personal values and check they can be stamped."""
        # Link targets count too: CSS may print them, as in a[href]::after.
        shown = {o.slot for o in text} | set(self.links)
        markers = {slot: self.sentinels[slot] for slot in shown}
        rendered: set[int] = set()
        blocks: dict[int, Any] = {}  # id -> element of the block to stamp
        with_boxes: set[int] = set()
        for page in reference.pages:
            for box, ancestors in walk(page._page_box):
                if box.element is not None:
                    with_boxes.add(id(box.element))
                label = box.bookmark_label
                if label and any(s in label.lower() for s in self.sentinels):
                    self._bookmark(label)
                if not isinstance(box, boxes.TextBox):
                    continue
                lowered = box.text.lower()  # text-transform may change the case
                hits = [slot for slot, marker in markers.items() if marker in lowered]
                if not hits:
                    continue
                if any(isinstance(a, boxes.MarginBox) for a in ancestors):
                    raise Unsupported("personal value in a running header or footer")
                block = stamp_block(ancestors)
                if block is None or block.element is None:
                    raise Unsupported("personal text outside any block")
                rendered.update(hits)
                blocks[id(block.element)] = block.element
        for occurrence in text:
            owner = occurrence.element
            if occurrence.attribute == "#tail":
                owner = self.parent.get(owner)
            if occurrence.slot not in rendered and id(owner) in with_boxes:
                raise Unsupported("personal text not found in the layout")
            # Not rendered and no box: it sits in something not displayed.

        # A block inside another stamped block is drawn with it.
        elements = list(blocks.values())
        ancestors_of = {id(e): self._ancestors(e) for e in elements}
        outer = [e for e in elements if not any(id(o) in ancestors_of[id(e)] for o in elements)]
        order = {id(e): i for i, e in enumerate(self.template.etree_element.iter())}
        outer.sort(key=lambda e: order[id(e)])
        self.hole_keys = {id(e): str(i) for i, e in enumerate(outer)}

        found = principal_blocks(reference, lambda e: self.hole_keys.get(id(e)))
        holes = []
        for element in outer:
            key = self.hole_keys[id(element)]
            fragments = found.get(key, [])
            if len(fragments) != 1:
                raise Unsupported("personal text in a block split across pages")
            page_index, box, box_ancestors = fragments[0]
            page = reference.pages[page_index]
            top, bottom = box.position_y, box.position_y + box.margin_height()
            # The band the block spans, across the page: flow blocks have nothing beside.
            # A block in a table cell has other cells beside it: only its own box (its
            # cell for a table stamped whole).
            left, right = band(box, box_ancestors) or (0.0, page.width)
            rect = (left * _PT_PER_PX, (page.height - bottom) * _PT_PER_PX,
                    right * _PT_PER_PX, (page.height - top) * _PT_PER_PX)
            self._check_nothing_on_top(page, box, top, bottom, left, right)
            self.hole_visible[key] = box.style["visibility"] == "visible"
            holes.append(HoleBlock(key, page_index, geometry(box, box_ancestors), rect))
        return holes

    def _bookmark(self, label: str) -> None:
        """A heading's outline entry holds personal text: remade per customer."""
        # WeasyPrint's label is the heading's text with its white space collapsed (a
        # customer's value is checked to need no collapsing); a text-transform other
        # than uppercase would need its rules, so that version renders whole.
        for sentinel in self.sentinels:
            for found in re.finditer(re.escape(sentinel), label, re.IGNORECASE):
                if found[0] not in (sentinel, sentinel.upper()):
                    raise Unsupported("personal value in a transformed bookmark")
        self.bookmarks[label] = label

    def bookmark_titles(self, plain: list[str]) -> dict[str, str] | None:
        """The customer's outline titles by the version's, or None if a value would
        have its white space collapsed there."""
        titles = {}
        for label in self.bookmarks:
            title = label
            for slot, sentinel in enumerate(self.sentinels):
                if sentinel.lower() not in title.lower():
                    continue
                value = plain[slot]
                if not plain_value(value) or "  " in value:
                    return None
                title = title.replace(sentinel, value).replace(sentinel.upper(), value.upper())
            titles[label] = title
        return titles

    def _ancestors(self, element: Any) -> set[int]:
        found = set()
        element = self.parent.get(element)
        while element is not None:
            found.add(id(element))
            element = self.parent.get(element)
        return found

    def _check_nothing_on_top(self, page: Any, block: boxes.Box, top: float, bottom: float,
                              left: float, right: float) -> None:
        """Stamping draws the block last: nothing floated or positioned may share its band
        (across the page in the flow; in a table, its own box or cell: a float in
        another cell beside it is drawn by the shared page and moves none of its lines)."""
        for box, ancestors in walk(page._page_box):
            if not (box.is_floated() or box.is_absolutely_positioned()):
                continue
            if box is block or any(a is block for a in ancestors):
                continue
            y, x = box.border_box_y(), box.border_box_x()
            if (y < bottom and y + box.border_height() > top
                    and x < right and x + box.border_width() > left):
                raise Unsupported("a float or positioned box sits beside personal text")

    # -- the shared pages ----------------------------------------------------------

    def _render(self, document: Any, stylesheets: list[Any] | None = None) -> Any:
        return self.engine.render(
            document,
            stylesheets,
            counter_style=self.counter_style,
            color_profiles=self.color_profiles,
        )

    def _likely_glyphs(self, stamper: DirectStamper) -> dict[Any, Any]:
        """The fonts of the personal paragraphs, with the glyphs of their own text and
        of the characters customers' values are likely to hold."""
        fonts = stamper.font_table()
        stamper.draw_into(fonts)
        own = {font.hash for font in fonts.values() if font.to_unicode}
        for element, attribute, template in self.mini_fields:
            likely = template
            for sentinel in self.sentinels:
                likely = likely.replace(sentinel, REPERTOIRE)
            _write_field(element, attribute, likely)
        try:
            stamper.draw_into(fonts, exact=False)
        finally:
            for element, attribute, template in self.mini_fields:
                _write_field(element, attribute, template)
        return {key: font for key, font in fonts.items() if font.hash in own}

    def _shared_pdf(self, reference: Any, glyphs: dict[Any, Any]) -> SharedPdf:
        """Write the version's pages once, with the personal blocks left blank."""
        # Hiding them in the laid-out boxes saves a second layout. Styles are shared
        # between boxes, so each box in a block gets its own hidden copy.
        found = principal_blocks(reference, lambda e: self.hole_keys.get(id(e)))
        for hole in self.holes:
            (_, block, _), = found[hole.key]
            for box, _ in walk(block):
                box.style = box.style.copy()
                box.style["visibility"] = "hidden"
                box.background = None
        bands: dict[int, list[Rect]] = defaultdict(list)
        for hole in self.holes:
            bands[hole.page].append(hole.rect)
        hrefs = {
            self.sentinels[slot]: occurrence.element.get("href")
            for slot, occurrence in self.links.items()
        }
        with more_glyphs(reference, glyphs):
            data = reference.write_pdf()
        shared = SharedPdf(data, bands, hrefs, self.bookmarks)
        if len({title for title, _ in shared.titles.values()}) != len(self.bookmarks):
            raise Unsupported("personal bookmark not found in the outline")
        return shared

    # -- the per-customer document -------------------------------------------------

    def _prepare_mini(self, root: Any, meta: bool) -> None:
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
        # In a table around a personal block, what comes after it still sizes the
        # columns and rows: it is hidden, not cut.
        in_tables = {
            id(e) for table in elements if table.tag == "table" and id(table) in ancestors
            for e in table.iter() if e is not table
        }
        position = {id(e): i for i, e in enumerate(elements)}
        last = max((position[id(e)] for h, _ in holes for e in h.iter()), default=-1)
        if body is not None:
            for element in elements[position[id(body)] :]:
                if id(element) in inside or not isinstance(element.tag, str):
                    continue
                if (id(element) in ancestors or position[id(element)] < last
                        or id(element) in in_tables):
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
                if id(node) not in in_tables:
                    node.tail = None
                node = parent.get(node)
        self.mini_tree = tree
        self.mini_html = html_from_tree(tree, self.template)
        sheets = parse_stylesheets(
            self.mini_html, self.engine.font_config, self.counter_style, self.color_profiles
        )
        # The stamp must not repeat the running header and footer (its "Page 1 of 1"
        # would cover the shared "Page 1 of 4"); margin boxes never move page content.
        sheets = [without_margin_boxes(sheet) for sheet in sheets]
        cache_stylesheets(tree, sheets)
        unique = {(id(o.element), o.attribute): o for o in _find_occurrences(tree, self.sentinels)}
        self.mini_fields = [
            (o.element, o.attribute, _read_field(o.element, o.attribute) or "")
            for o in unique.values()
        ]
        self.mini_slots = sorted({o.slot for o in unique.values()})
        self.stamps = _StampCache(_STAMPS_PER_VERSION, _STAMP_BYTES_PER_VERSION)
        self.stamps_made = self.stamps_reflowed = 0  # new stamps tried, and failed
        self.overlay_pages = sorted({hole.page for hole in self.holes})
        # With the version's own (sentinel) values the stamp must match the reference;
        # if cutting the document moved anything, no customer could use it.
        with watching(hole for hole, _ in holes) as calls, recording() as tables:
            document = self._stamp_document()
        if document is None:
            raise Unsupported("the cut-down document lays out differently")
        try:
            self.direct = DirectStamper.create(
                document,
                calls,
                [hole.key for hole in self.holes],
                self.mini_html if meta else None,
                self.template.base_url,
                self.counter_style,
                self.engine.stamp_fonts,
                tables,
            )
        except Exception as exc:  # WeasyPrint internals: stamps are laid out instead
            self.direct = f"drawing stamps straight failed: {type(exc).__name__}"

    def _stamp_document(self) -> Any | None:
        """Lay out the mini tree as it stands; None if a personal block moved or resized."""
        document = self._render(
            html_from_tree(self.mini_tree, self.template, StampHTML),
            [self.engine.stylesheet(_MINI_CSS)],
        )
        found = principal_blocks(document, lambda e: e.get("data-edition-key"))
        for hole in self.holes:
            fragments = found.get(hole.key, [])
            if [(p, geometry(b, a)) for p, b, a in fragments] != [(hole.page, hole.geometry)]:
                return None
        return document

    def close(self) -> None:
        """Forget the version's parsed stylesheets."""
        if hasattr(self, "mini_tree"):
            forget_stylesheets(self.mini_tree)

    def _new_stamp(self, key: tuple[str, ...], stats: PdfStats) -> dict[int, bytes] | None:
        """The stamp of the personal text now in the mini tree; None if it reflows."""
        if isinstance(self.direct, DirectStamper) and all(map(plain_value, key)):
            try:
                drawn = self.direct.stamp()
            except Exception:  # WeasyPrint internals: the laid-out stamp decides
                drawn = None
            if drawn is not None:
                stats.direct += 1
                return drawn
        # Laid out whole: the cut-down document, written and read back.
        document = self._stamp_document()
        if document is None:
            return None
        pages = [document.pages[i] for i in self.overlay_pages] or document.pages[:1]
        return self.shared.stamp(PdfReader(io.BytesIO(document.copy(pages).write_pdf())))

    def render(self, values: list[str], stats: PdfStats) -> bytes | str:
        """One customer's PDF, or the reason it needs a full render."""
        texts = [unescape(value) for value in values]
        if any(text is None for text in texts):
            return "value needs the HTML parser"
        plain: list[str] = texts  # type: ignore[assignment]

        def substitute(template: str) -> str:
            for slot, sentinel in enumerate(self.sentinels):
                if sentinel in template:
                    template = template.replace(sentinel, plain[slot])
            return template

        if not self.selectors.same(substitute):
            return "personal class or link selects other CSS rules"
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
                cached = self.stamps.get(key)
                if cached is None:
                    return "personal text changes the layout"
                stats.stamps_reused += 1
                stamp = cached
            elif self.stamps_made >= _GIVE_UP_AFTER and self.stamps_reflowed == self.stamps_made:
                # Every text so far reflowed (the version's lines are not its
                # customers'): a stamp costs about a render, then the render decides.
                return "personal text changed the layout of every customer tried"
            else:
                for element, attribute, template in self.mini_fields:
                    _write_field(element, attribute, substitute(template))
                made = self._new_stamp(key, stats)
                self.stamps.put(key, made)
                self.stamps_made += 1
                if made is None:
                    self.stamps_reflowed += 1
                    return "personal text changes the layout"
                stamp = made
        titles = self.bookmark_titles(plain)
        if titles is None:
            return "personal bookmark needs its white space collapsed"
        return self.shared.assemble(stamp, uris, titles)
