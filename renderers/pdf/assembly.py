"""PDF object surgery: a version's PDF parsed once, and per customer the same objects
with their stamp (a form XObject) and their link annotations, written as a new file."""

from __future__ import annotations

import hashlib
import io
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydyf
from pypdf import PdfReader
from pypdf.generic import IndirectObject, NameObject, StreamObject, create_string_object
from weasyprint import VERSION
from weasyprint.pdf import _w3c_date_to_pdf

Rect = tuple[float, float, float, float]  # PDF points: x0, y0, x1, y1


@dataclass(frozen=True)
class SharedFont:
    """A font object of the version's PDF: its number, and its glyphs' /W widths."""

    number: int
    widths: Mapping[int, int]

    @property
    def glyphs(self) -> frozenset[int]:
        return frozenset(self.widths)


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
    """A stamp's font with its own subset tag."""
    # WeasyPrint derives the tag (the ABCDEF+ in ABCDEF+DejaVu-Serif) from the font
    # alone, so the stamp's subset would share it with the page's, and viewers that
    # look fonts up by name could draw the wrong glyphs.
    if not isinstance(value, dict) or isinstance(value, StreamObject):
        return value
    key = "/BaseFont" if "/BaseFont" in value else "/FontName" if "/FontName" in value else None
    if key is None or not (match := _SUBSET_TAG.match(str(value[key]))):
        return value
    tag = "".join(chr(65 + (ord(letter) - 65 + 13) % 26) for letter in match[1])
    renamed = dict(value)
    renamed[key] = NameObject(f"/{tag}+{str(value[key])[8:]}")
    return renamed


def _center_in(rect: Sequence[Any], box: Rect) -> bool:
    x0, y0, x1, y1 = (float(v) for v in rect)
    x, y = (x0 + x1) / 2, (y0 + y1) / 2
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


_STAMP = b"\x00stamp\x00"
_ANNOTS = b"\x00annots\x00"
_URI = b"\x00uri\x00"


class SharedPdf:
    """The version's PDF, parsed once, reassembled per customer by object surgery."""

    def __init__(
        self, data: bytes, bands: Mapping[int, Sequence[Rect]], hrefs: Mapping[str, str],
        titles: Iterable[str] = (),
    ) -> None:
        """``bands``: page index -> where personal blocks go; ``hrefs``: sentinel -> the
        href template of each personal link; ``titles``: outline titles (bookmarks)
        holding sentinels."""
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
        self.fonts = _shared_fonts(reader)

        # Outline entries whose title holds a sentinel: the title, and the entry with a
        # gap where the customer's title goes.
        self.titles: dict[int, tuple[str, list[bytes]]] = {}
        wanted = set(titles)
        for number in self.chunks if wanted else ():
            value = reader.get_object(number)
            if isinstance(value, dict) and "/Title" in value and "/Dest" in value:
                title = str(value["/Title"])
                if title in wanted:
                    entries = {**value, "/Title": _URI}
                    self.titles[number] = (title, _serialize(entries, _same).split(_URI))

        # Link annotations whose target holds a sentinel: the href they came from, and
        # the annotation with a gap where the customer's URI goes.
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
        self.stamped: list[tuple[int, Sequence[Rect], list[bytes]]] = []
        self.media_boxes: dict[int, bytes] = {}
        opening = next_number
        self.chunks[opening] = _serialize_stream({}, b"q\n")
        closing = next_number + 1
        self.chunks[closing] = _serialize_stream({}, b"\nQ\nq /EditionPersonal Do Q\n")
        next_number += 2
        for page_index, rects in sorted(bands.items()):
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
                if not any(_center_in(ref.get_object()["/Rect"], rect) for rect in rects)
            ]
            entries["/Annots"] = [*kept, _ANNOTS]
            template = _serialize(entries, _same)
            pieces = [template[: template.index(_STAMP)]]
            pieces += template[template.index(_STAMP) + len(_STAMP) :].split(_ANNOTS)
            page_ref = page.indirect_reference.idnum
            self.stamped.append((page_ref, rects, pieces))
            self.media_boxes[page_ref] = _serialize(page["/MediaBox"], _same)
        self.first_free = next_number
        self.order = sorted(self.chunks)
        self.stamped_pages = sorted(bands)

    def stamp(self, mini: PdfReader | None) -> dict[int, bytes]:
        """The objects a customer's stamp adds or replaces: the same stamp, the same bytes."""
        chunks: dict[int, bytes] = {}
        if mini is None:
            return chunks
        next_number = self.first_free
        for index, (page_ref, rects, pieces) in enumerate(self.stamped):
            mini_page = mini.pages[index]
            resources = mini_page.get("/Resources", {})
            annots = [
                ref
                for ref in mini_page.get("/Annots", []) or []
                if any(_center_in(ref.get_object()["/Rect"], rect) for rect in rects)
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

    def stamp_pages(
        self, forms: Sequence[tuple[bytes, bytes]], first_number: int
    ) -> dict[int, bytes]:
        """The objects that draw these stamps, each a content stream with its resources
        (PDF syntax), on the stamped pages in order; new ones numbered from first_number."""
        chunks: dict[int, bytes] = {}
        for number, ((page_ref, _, pieces), (content, resources)) in enumerate(
            zip(self.stamped, forms, strict=True), first_number
        ):
            data = zlib.compress(content)
            chunks[number] = b"".join((
                b"<</Type/XObject/Subtype/Form/BBox", self.media_boxes[page_ref],
                b"/Resources", resources, b"/Filter/FlateDecode/Length %d>>" % len(data),
                b"\nstream\n", data, b"\nendstream",
            ))
            chunks[page_ref] = b"%s%d 0 R%s%s" % (pieces[0], number, pieces[1], pieces[2])
        return chunks

    def assemble(self, stamp: Mapping[int, bytes], uris: Mapping[str, str],
                 titles: Mapping[str, str] | None = None) -> bytes:
        """The customer's PDF: shared objects, their stamp, their links and outline."""
        chunks = {**self.chunks, **stamp}
        for number, (title, (before, after)) in self.titles.items():
            text = create_string_object((titles or {}).get(title, title))
            chunks[number] = before + _serialize(text, _same) + after
        for number, (href, (before, after)) in self.links.items():
            chunks[number] = before + _serialize(create_string_object(uris[href]), _same) + after
        order = [*self.order, *sorted(n for n in stamp if n not in self.chunks)]
        return _write_pdf(chunks, order, self.root, self.info)


def _shared_fonts(reader: PdfReader) -> dict[str, SharedFont]:
    """The CID fonts of a WeasyPrint PDF, by resource name (WeasyPrint's font hash)."""
    fonts: dict[str, SharedFont] = {}
    for page in reader.pages:
        for name, ref in (page.get("/Resources", {}).get("/Font", {}) or {}).items():
            font = ref.get_object() if isinstance(ref, IndirectObject) else None
            if font is None or font.get("/Subtype") != "/Type0":
                continue
            (descendant,) = font["/DescendantFonts"]
            entries = list(descendant.get_object().get("/W", []))
            widths: dict[int, int] = {}
            # WeasyPrint writes runs as "first [w1 w2 ...]".
            for first, run in zip(entries[::2], entries[1::2], strict=True):
                for offset, width in enumerate(run):
                    widths[int(first) + offset] = width
            fonts[name[1:]] = SharedFont(ref.idnum, widths)
    return fonts


def info_dictionary(metadata: Any) -> bytes:
    """The document information a WeasyPrint PDF has for this metadata."""
    info = pydyf.Dictionary({"Producer": pydyf.String(f"WeasyPrint {VERSION}")})
    if metadata.title:
        info["Title"] = pydyf.String(metadata.title)
    if metadata.authors:
        info["Author"] = pydyf.String(", ".join(metadata.authors))
    if metadata.description:
        info["Subject"] = pydyf.String(metadata.description)
    if metadata.keywords:
        info["Keywords"] = pydyf.String(", ".join(metadata.keywords))
    if metadata.generator:
        info["Creator"] = pydyf.String(metadata.generator)
    if metadata.created:
        info["CreationDate"] = pydyf.String(_w3c_date_to_pdf(metadata.created, "created"))
    if metadata.modified:
        info["ModDate"] = pydyf.String(_w3c_date_to_pdf(metadata.modified, "modified"))
    return bytes(info.data)


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
