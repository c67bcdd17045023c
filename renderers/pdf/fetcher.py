"""What a PDF render may fetch (design.md, Safety): files under the content root, the
fonts edition ships, data: URIs, and https from hosts the campaign allows; nothing else.

WeasyPrint's own fetcher opens any URL a template or module names: a module image made
the render host request 127.0.0.1, and ``../../…`` put a file from outside the content
root into every customer's PDF. Refusals and failures are kept (``problems``) so that
preflight can name them; WeasyPrint itself only logs them.
"""

from __future__ import annotations

import mimetypes
import os
import ssl
import stat
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from weasyprint.urls import URLFetcher, URLFetcherResponse

FONTS_DIR = Path(__file__).resolve().parents[1] / "fonts"
# What a render reads from disk: images, stylesheets and fonts. Not, say, the customer
# file under the content root, which <a rel=attachment> would embed in every PDF.
FILE_TYPES = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".bmp", ".ico", ".tif", ".tiff",
    ".css", ".ttf", ".otf", ".woff", ".woff2",
})
MAX_FILE_BYTES = 32 << 20   # a larger "image" is not one
_PROBLEMS_KEPT = 200


class FetchRefused(ValueError):
    """A URL the render may not fetch, with the reason."""


def normalise_host(entry: str) -> tuple[str, int]:
    """``cdn.acme.example`` or ``cdn.acme.example:8443`` as (host, port)."""
    parts = urlsplit(f"//{entry.strip()}")
    if not parts.hostname or parts.path or parts.query or parts.username:
        raise ValueError(f"{entry!r} is not a host name (e.g. cdn.acme.example)")
    return parts.hostname.lower(), parts.port or 443


class ContentFetcher(URLFetcher):
    """A WeasyPrint URL fetcher confined to the content root and the allowed hosts."""

    def __init__(self, root: str | Path, *, allow_hosts: Iterable[str] = (),
                 timeout: float = 10, ssl_context: ssl.SSLContext | None = None) -> None:
        # No redirects: an allowed host could send the render anywhere.
        super().__init__(timeout=timeout, ssl_context=ssl_context, allow_redirects=False)
        self.root = Path(root).resolve()
        self.hosts = frozenset(normalise_host(host) for host in allow_hosts)
        self.problems: dict[str, str] = {}   # URL -> why it was refused or failed

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> URLFetcherResponse:
        try:
            return self._fetch(url, headers)
        except Exception as exc:
            if len(self.problems) < _PROBLEMS_KEPT:
                self.problems.setdefault(url, describe(exc))
            raise

    def _fetch(self, url: str, headers: dict[str, str] | None) -> URLFetcherResponse:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "data":
            return super().fetch(url, headers)
        if scheme == "file":
            return self._file(url)
        host = (parts.hostname or "").lower()
        if scheme == "https":
            if host and (host, parts.port or 443) in self.hosts:
                return super().fetch(url, headers)
            raise FetchRefused(f"{host or 'that host'} is not in the campaign's "
                               f"pdf.allow_hosts")
        if scheme == "http":
            raise FetchRefused("plain http is never fetched (https from pdf.allow_hosts only)")
        raise FetchRefused(f"{scheme or 'relative'} URLs are not fetched")

    def _file(self, url: str) -> URLFetcherResponse:
        parts = urlsplit(url)
        if parts.netloc not in {"", "localhost"}:
            raise FetchRefused("a file on another host")
        path = Path(url2pathname(parts.path))
        try:
            # resolve(): a symlink or ../ that leads out of the root is judged by where it leads
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError, ValueError) as exc:
            if not _inside(path.resolve(), self.root):
                raise FetchRefused("a file outside the content root") from None
            raise FileNotFoundError(f"no such file under the content root: {exc}") from None
        if resolved.is_relative_to(FONTS_DIR):
            pass  # the fonts edition ships
        elif not _inside(resolved, self.root):
            raise FetchRefused("a file outside the content root")
        elif any(part.startswith(".") for part in resolved.relative_to(self.root).parts):
            raise FetchRefused("a hidden file (.git, .env, …)")
        if resolved.suffix.lower() not in FILE_TYPES:
            raise FetchRefused("not an image, stylesheet or font file ("
                               + ", ".join(sorted(FILE_TYPES)) + ")")
        fd = os.open(resolved, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FetchRefused("not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise FetchRefused(f"a file over {MAX_FILE_BYTES >> 20} MB")
            with os.fdopen(fd, "rb") as handle:
                fd = -1
                data = handle.read(MAX_FILE_BYTES + 1)
        finally:
            if fd >= 0:
                os.close(fd)
        content_type = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
        return URLFetcherResponse(url, data, {"Content-Type": content_type})


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def describe(exc: BaseException) -> str:
    """A refusal's reason, or what went wrong with an allowed fetch."""
    if isinstance(exc, FetchRefused):
        return f"refused: {exc}"
    reason = getattr(exc, "reason", None) or exc
    return f"failed: {type(exc).__name__}: {reason}"
