"""Where a campaign's runs were written: an index kept under the content root.

`--out` puts a run folder anywhere (`out/nov-30`, a shared drive), yet `edition approve`,
the approval flow and `edition diff` compare a run with the campaign's last approved or
sent run, so they must find that run wherever it is. Every approval and every send
(`edition send`, `run --send`) therefore appends one line to
`out/<campaign>/runs.jsonl` under the content root, beside the default send ledger:
`{"event", "run_id", "folder" (absolute), "at"}`.

The index only says where to look. Whether and when a run was approved or sent is read
from the run folder itself (approval.json, sends/, run.json), so a line about a folder
that was moved, deleted or re-rendered since is harmless: it is skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edition.run.folder import now

INDEX_NAME = "runs.jsonl"
EVENTS = ("approved", "sent")
_MODE = 0o600   # the index names folders that hold customer data: its owner's only


def index_path(root: Path, campaign: str) -> Path:
    """`<content root>/out/<campaign>/runs.jsonl`."""
    return Path(root) / "out" / campaign / INDEX_NAME


def record(root: Path, campaign: str, *, run_id: str, folder: Path | str,
           event: str) -> str | None:
    """Append one line to the campaign's index; the problem, if it could not be written.

    One `write` of one short line to a file opened with O_APPEND: lines written by
    processes side by side do not interleave (local file systems append atomically).
    """
    if event not in EVENTS:
        raise ValueError(f"unknown run index event {event!r}")
    line = json.dumps({"event": event, "run_id": run_id,
                       "folder": str(Path(folder).resolve()), "at": now()},
                      ensure_ascii=False) + "\n"
    path = index_path(root, campaign)
    try:
        if path.parent.is_symlink() or path.is_symlink():
            return f"{path} is (in) a symbolic link; the run index was not updated"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                     | getattr(os, "O_NOFOLLOW", 0), _MODE)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:
        return f"the run index {path} was not updated: {exc.strerror or exc}"
    return None


def indexed_folders(root: Path, campaign: str) -> list[Path]:
    """The run folders the campaign's index names, most recent line last, each once."""
    path = index_path(root, campaign)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    folders: dict[Path, None] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            folder = Path(str(entry["folder"]))
        except (ValueError, KeyError, TypeError):
            continue   # a torn or foreign line: the others still count
        if folder.is_absolute():
            folders.pop(folder, None)
            folders[folder] = None
    return list(folders)


__all__ = ["INDEX_NAME", "index_path", "indexed_folders", "record"]
