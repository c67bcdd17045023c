"""The run folder: customer files that stay inside it, and the manifest beside them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from edition.errors import RunError

EXTENSIONS = {"html": "html", "text": "txt", "eml": "eml", "pdf": "pdf"}
_CLEAN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.I)
_LOWER = re.compile(r"[a-z]")


def safe_name(customer_id: str) -> str:
    """A file name for a customer id that cannot leave the folder or collide.

    Plain ids without lowercase letters (`C000042`) are used as they are; any other id is
    slugged and gets a hash of the real id, so `A` and `a`, or `a/b` and `a_b`, never
    share a file — also on case-insensitive file systems (macOS, Windows), where a plain
    `a` next to a plain `A` would overwrite it.
    """
    if (_CLEAN.match(customer_id) and not _LOWER.search(customer_id)
            and not _RESERVED.match(customer_id) and ".." not in customer_id):
        return customer_id
    ascii_id = unicodedata.normalize("NFKD", customer_id).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_id.lower()).strip("-")[:48] or "customer"
    digest = hashlib.sha256(customer_id.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def relative_path(fmt: str, customer_id: str) -> str:
    """Where a customer's file of one format goes, relative to the run folder."""
    return f"{fmt}/{safe_name(customer_id)}.{EXTENSIONS[fmt]}"


class RunFolder:
    """Writes files under one folder only, each path at most once."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.written: set[str] = set()
        self.folders: set[str] = set()

    def path(self, relative: str) -> str:
        """The absolute path; anything that could climb out of the folder is refused."""
        parts = relative.split("/")
        if (relative.startswith("/") or "\\" in relative or "\0" in relative
                or any(p in {"", ".", ".."} for p in parts)):
            raise RunError(f"refusing to write outside the run folder: {relative!r}")
        return os.path.join(self.root, *parts)

    def write(self, relative: str, data: bytes) -> None:
        """Write atomically (temp file + rename): a crash never leaves half a file."""
        if relative in self.written:
            raise RunError(f"two customers would write the same file: {relative}")
        target = self.path(relative)
        folder = os.path.dirname(target)
        if folder not in self.folders:
            os.makedirs(folder, exist_ok=True)
            self.folders.add(folder)
        temp = f"{folder}/.{os.path.basename(target)}.{os.getpid()}.tmp"
        # os-level calls: a buffered file object costs more than the write itself here
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(temp, target)
        self.written.add(relative)


class Manifest:
    """manifest.jsonl: one line per customer row, in input order, flushed per batch."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = path.open("w", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.handle.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                  for r in rows))
        self.handle.flush()

    def close(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
