"""The sha256 of the files a run wrote: what an approval binds, and a send checks.

Files are read without following symlinks (a link could lead anywhere), and only the
files the manifest names inside the run's format folders, plus versions.json and
report.md, are covered; each .eml is also read for its links and mailing on the way
(edition/review/sendable.py).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edition.errors import ApprovalError
from edition.naming import EXTENSIONS
from edition.review.sendable import MessageCheck

if TYPE_CHECKING:   # run_facts reads its files with read_plain: no import at run time
    from edition.review.run_facts import RunFacts

RUN_DOCUMENTS = ("versions.json", "report.md")   # written by the run beside the manifest
SHOWN = 20   # file names listed in a refusal before "and N more"
_CHUNK = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def read_plain(path: Path) -> bytes:
    """A regular file's bytes, never through a symlink (it could lead anywhere)."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError as exc:
        raise ApprovalError(f"cannot read {path}: {exc.strerror}", path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ApprovalError(f"{path} is not a regular file", path)
        chunks = []
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path, messages: MessageCheck | None = None,
                name: str = "") -> str | None:
    """sha256 of a regular file, or None when it is missing, a link or unreadable; an
    .eml (`name` under eml/) is also read by `messages`."""
    try:
        data = read_plain(path)
    except ApprovalError:
        return None
    if messages is not None and name.startswith("eml/"):
        messages.add(name, data)
    return sha256(data)


def listed_files(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every file the manifest names (relative paths), checked to stay in the folder."""
    names: set[str] = set()
    for row in rows:
        for fmt, rel in (row.get("files") or {}).items():
            rel = str(rel)
            folder, _, name = rel.partition("/")
            if (folder not in EXTENSIONS or not name or "/" in name or "\\" in rel
                    or name.startswith(".") or "\0" in rel or folder != fmt):
                raise ApprovalError(f"the manifest names a file outside the run's format "
                                    f"folders: {rel!r} (customer {row.get('customer_id')})")
            names.add(rel)
    return sorted(names)


def run_files(facts: RunFacts) -> list[str]:
    """What the approval covers besides the manifest: its files, versions.json, report.md."""
    return [*listed_files(facts.rows), *RUN_DOCUMENTS]


@dataclass
class Digests:
    """The sha256 of every file a run wrote, and what its messages say."""

    files: dict[str, str]
    messages: MessageCheck


def digest_files(facts: RunFacts, kind: str = "marketing") -> Digests:
    """Hash every file the approval covers, reading each .eml's links and mailing on the
    way; ApprovalError when one is missing or unreadable."""
    messages = MessageCheck.here(facts.campaign, kind)
    files: dict[str, str] = {}
    unreadable = []
    for rel in run_files(facts):
        digest = file_digest(facts.folder / rel, messages, rel)
        if digest is None:
            unreadable.append(rel)
        else:
            files[rel] = digest
    if unreadable:
        raise ApprovalError(f"cannot approve run {facts.run_id}: {len(unreadable):,} file(s) "
                            f"the run wrote are missing or unreadable: "
                            f"{names_shown(unreadable)}", facts.folder)
    return Digests(files, messages)


def names_shown(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN:,} more" if len(names) > SHOWN else "")


__all__ = ["RUN_DOCUMENTS", "Digests", "digest_files", "file_digest", "listed_files",
           "names_shown", "read_plain", "run_files", "sha256"]
