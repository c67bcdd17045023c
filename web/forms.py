"""What a recipient's browser or mail program POSTs: read bounded, parsed off the event loop.

Anyone holding one valid link can send the server any body, so a body is read only up
to `MAX_BODY` bytes (a larger Content-Length is refused before reading), and only the
forms the pages need are parsed: `application/x-www-form-urlencoded`, a small
`multipart/form-data` (at most `MAX_FIELDS` parts, no files, no part over `MAX_VALUE`
bytes; RFC 8058 allows both for the one-click body), and a bare `List-Unsubscribe=One-Click`
body without a content type, as some mail programs send it. The parse runs in a worker
thread and is linear in the body: python-multipart treats a part's content as bytes, so
a nested multipart is one opaque value, not a recursion (the stdlib `email` parser
recursed into 64 KB of nested parts for a second of CPU on the event loop, then failed
with RecursionError). Anything else is a `BadForm`, which the pages answer with 400.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

MAX_BODY = 64 * 1024       # bytes; the pages' forms are a few hundred
MAX_FIELDS = 32            # fields (or parts) in one form; the preference center's topics fit
MAX_VALUE = 1024           # bytes in one field's value

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"

Fields = list[tuple[str, str]]


class BadForm(ValueError):
    """A body the pages do not take (malformed, too many fields, a file, another type)."""


class TooLarge(BadForm):
    """A body over MAX_BODY bytes (answered with 413)."""


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused (TooLarge) past `limit` bytes without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadForm("a Content-Length that is not a number")
        if int(declared) > limit:
            raise TooLarge(f"a body of {int(declared):,} bytes (at most {limit:,})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"a body over {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request) -> Fields:
    """The POSTed fields in order (a name may repeat), parsed in a worker thread."""
    body = await read_body(request)
    return await run_in_threadpool(parse_form, request.headers.get("content-type", ""), body)


def parse_form(content_type: str, body: bytes) -> Fields:
    """The fields of a body of the given content type; BadForm for anything else."""
    kind, params = parse_options_header(content_type)
    kind_text = kind.decode("latin-1").lower()
    if kind_text == FORM:
        return _urlencoded(body)
    if kind_text == MULTIPART:
        boundary = params.get(b"boundary")
        if not boundary:
            raise BadForm("multipart/form-data without a boundary")
        return _multipart(boundary, body)
    if kind_text in {"", "text/plain"} and b"=" in body and b"&" not in body:
        return _urlencoded(body.strip())   # the one-click body alone, typed or not
    raise BadForm(f"content type {kind_text or 'none'!r} is not a form")


def _text(value: bytes) -> str:
    if len(value) > MAX_VALUE:
        raise BadForm(f"a field value over {MAX_VALUE} bytes")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadForm("a field that is not UTF-8 text") from None


def _urlencoded(body: bytes) -> Fields:
    try:
        text = body.decode("ascii")  # percent-encoded: anything else is not this form
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                          max_num_fields=MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm(f"a malformed form body ({exc})") from None
    for name, value in pairs:
        _text(name.encode("utf-8"))
        _text(value.encode("utf-8"))
    return [(name, value.strip()) for name, value in pairs]


class _Parts:
    """MultipartParser's callbacks: the named text parts, counted and bounded."""

    def __init__(self) -> None:
        self.fields: Fields = []
        self.parts = 0
        self.ended = False
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_part_data": self.part_data, "on_part_end": self.part_end,
                "on_end": self.end}

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_FIELDS:
            raise BadForm(f"more than {MAX_FIELDS} parts")
        self._headers, self._data = {}, bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if len(self._data) > MAX_VALUE:
            raise BadForm(f"a part over {MAX_VALUE} bytes")

    def part_end(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition.lower() != b"form-data" or b"name" not in params:
            raise BadForm("a part without a form-data name")
        if b"filename" in params:
            raise BadForm("a file upload")
        self.fields.append((_text(params[b"name"]), _text(bytes(self._data)).strip()))

    def end(self) -> None:
        self.ended = True


def _multipart(boundary: bytes, body: bytes) -> Fields:
    parts = _Parts()
    parser = MultipartParser(boundary, parts.callbacks(), max_size=MAX_BODY)
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise BadForm(f"a malformed multipart body ({exc})") from None
    if not parts.ended:
        raise BadForm("a multipart body without its closing boundary")
    return parts.fields


__all__ = ["MAX_BODY", "MAX_FIELDS", "BadForm", "Fields", "TooLarge", "parse_form",
           "read_body", "read_form"]
