"""Where returned mail and notifications are read from: a Maildir, an mbox file, single
.eml files, JSON files of SES/SNS notifications (one document, a list, or one per line),
or a folder of such files. Read with the stdlib `mailbox` package; nothing is deleted or
marked (run it again: the store keeps each event once).
"""

from __future__ import annotations

import datetime as dt
import json
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edition.errors import UsageError

MAX_ITEM_BYTES = 10 * 1024 * 1024   # a bounce returns the original: large, not this large


@dataclass(frozen=True)
class Item:
    """One returned message (`mail`) or one JSON document (`ses`), and where it is."""

    kind: str           # mail | ses
    data: bytes | Any   # the message's bytes, or the parsed JSON document
    where: str          # file (and message number) for messages
    received: dt.datetime | None = None


def read(source: str) -> Iterator[Item]:
    """Every item in a source path (UsageError if it is none of the forms above)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if all((path / sub).is_dir() for sub in ("cur", "new")):
            yield from _maildir(path)
            return
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        for file in files:
            yield from _file(file)
        return
    if not path.is_file():
        raise UsageError(f"no such file or folder: {source}")
    yield from _file(path)


def _file(path: Path) -> Iterator[Item]:
    try:
        with path.open("rb") as handle:
            head = handle.read(5)
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() in {".json", ".jsonl"} or head[:1] in (b"{", b"["):
        yield from _json(path)
    elif head == b"From ":
        yield from _mbox(path)
    elif size > MAX_ITEM_BYTES:
        raise UsageError(f"{path}: larger than {MAX_ITEM_BYTES // 1024 // 1024} MB, not a "
                         f"returned message")
    else:
        yield Item("mail", path.read_bytes(), str(path), _mtime(path))


def _mtime(path: Path) -> dt.datetime:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)


def _maildir(path: Path) -> Iterator[Item]:
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.keys()):
        data = box.get_bytes(key)
        if len(data) <= MAX_ITEM_BYTES:
            yield Item("mail", data, f"{path}/{key}")


def _mbox(path: Path) -> Iterator[Item]:
    box = mailbox.mbox(path, factory=None, create=False)
    try:
        for number, key in enumerate(box.keys(), start=1):
            data = box.get_bytes(key)
            if len(data) <= MAX_ITEM_BYTES:
                yield Item("mail", data, f"{path} (message {number})")
    finally:
        box.close()


def _json(path: Path) -> Iterator[Item]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        document = None
    if document is not None:
        for number, item in enumerate(document if isinstance(document, list) else [document],
                                      start=1):
            yield Item("ses", item, f"{path} (document {number})")
        return
    for number, line in enumerate(text.splitlines(), start=1):   # one document per line
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except (ValueError, RecursionError):
            raise UsageError("not JSON", path, number) from None
        yield Item("ses", document, f"{path}:{number}")


__all__ = ["MAX_ITEM_BYTES", "Item", "read"]
