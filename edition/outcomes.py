"""What happened to a customer row, and why: the vocabulary every stage reports in.

A reason is a code plus a readable detail: the manifest keeps both (`reason_code`,
`reason`), the report counts alike reasons together by `Reason.group`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

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

    def __reduce__(self) -> tuple[type[Reason], tuple[str, str, str]]:
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
    extra: dict[str, object] = field(default_factory=dict)   # provider_id, mailing, ...
    version_digest: str | None = None   # the version's whole sha256: what counts key by

    def to_dict(self) -> dict[str, object]:
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
    def from_dict(cls, data: dict[str, Any]) -> ManifestRow:   # a line as json.loads gives it
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
