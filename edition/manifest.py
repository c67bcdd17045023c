"""The manifest: one row per customer row read, in input order, with its status and reason.

A reason is a code plus a readable detail: the manifest keeps both (`reason_code`,
`reason`), the report counts alike reasons together by `Reason.group`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition import private

MANIFEST_NAME = "manifest.jsonl"
_LINE_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
STATUSES = ("rendered", "sent", "unknown", "rejected", "failed", "excluded", "suppressed")


class Reason(str):
    """Why a row is not simply rendered: the words for a person, plus a stable `code`.

    A str, so it reads and compares as the manifest's `reason` text; `group` is the
    text without row-specific parts (a line number, a value), for counting alike reasons.
    """

    code: str
    group: str

    def __new__(cls, code: str, detail: str, group: str = "") -> Reason:
        self = super().__new__(cls, detail)
        self.code = code
        self.group = group or detail
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Reason, (self.code, str(self), self.group))

    @property
    def detail(self) -> str:
        return str.__str__(self)

    @property
    def key(self) -> str:
        return self.group


@dataclass
class ManifestRow:
    """One line of manifest.jsonl."""

    customer_id: str | None
    status: str
    line: int
    version: str | None = None
    segments: list[str] = field(default_factory=list)
    modules: dict[str, list[str]] = field(default_factory=dict)
    reason: Reason | None = None
    files: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)   # provider_id, mailing, ...
    version_digest: str | None = None   # the version's whole sha256: what counts key by

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id, "version": self.version,
            "segments": list(self.segments), "modules": self.modules, "status": self.status,
            "reason": self.reason.detail if self.reason else None,
            "reason_code": self.reason.code if self.reason else None,
            "files": self.files, "line": self.line, **self.extra,
        } | ({"version_digest": self.version_digest} if self.version_digest else {})

    def to_json(self) -> str:
        text = json.dumps(self.to_dict(), ensure_ascii=False, default=str)
        # one row per line for every reader: str.splitlines() also breaks at these
        return _LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestRow:
        known = {"customer_id", "version", "segments", "modules", "status", "reason",
                 "reason_code", "files", "line", "version_digest"}
        reason = None
        if data.get("reason") is not None or data.get("reason_code") is not None:
            reason = Reason(str(data.get("reason_code") or "unknown"), str(data.get("reason")))
        return cls(customer_id=data.get("customer_id"), status=str(data.get("status")),
                   line=int(data.get("line") or 0), version=data.get("version"),
                   segments=list(data.get("segments") or []),
                   modules=dict(data.get("modules") or {}), reason=reason,
                   files=dict(data.get("files") or {}),
                   extra={k: v for k, v in data.items() if k not in known},
                   version_digest=data.get("version_digest"))


class ManifestWriter:
    """Appends rows to manifest.jsonl, flushed per batch (a killed run loses no whole row)."""

    def __init__(self, path: Path, *, append: bool = False):
        self.path = path
        # private.open_file: customer data, readable by its owner only
        self.handle = open(  # noqa: SIM115 (kept open across batches; close() closes it)
            private.open_file(path, append=append), "w", encoding="utf-8")

    def write(self, rows: Iterable[ManifestRow]) -> None:
        try:
            self.handle.write("".join(row.to_json() + "\n" for row in rows))
            self.handle.flush()
        except OSError as exc:  # a full disk: name the file (the write does not)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def close(self) -> None:
        if self.handle.closed:
            return
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        finally:
            with contextlib.suppress(OSError):  # what could not be flushed is lost anyway
                self.handle.close()


def read_rows(path: Path, *, cut_torn: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """The complete rows of a manifest and whether its last line was torn.

    A run killed mid-write can leave half a line at the end; with `cut_torn` it is cut
    off the file so the next writer appends after the last whole row.
    """
    if not path.exists():
        return [], False
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    good = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
        good += len(line)
    torn = good != len(data)
    if torn and cut_torn:
        with path.open("r+b") as handle:
            handle.truncate(good)
    return rows, torn


def truncate_rows(path: Path, keep: int) -> None:
    """Keep the first `keep` lines of a manifest, drop the rest."""
    data = path.read_bytes()
    end = 0
    for _ in range(keep):
        end = data.index(b"\n", end) + 1
    with path.open("r+b") as handle:
        handle.truncate(end)


def iter_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Stream a manifest's rows (for reports and approvals of large runs)."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
