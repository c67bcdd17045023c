"""What a finished run folder says about itself, as a reviewer needs to see it.

`read_run` reads run.json, manifest.jsonl, versions.json and report.md (never through a
symlink: edition/review/digests.py), `RunFacts` answers from them (campaign, run id,
mailing, counts, the report's warning sections, recorded preflight errors), and
`summary_lines` puts the run in the few lines `edition approve` shows before asking.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.errors import ApprovalError
from edition.naming import EXTENSIONS
from edition.review.digests import read_plain
from edition.run.folder import RUN_FILE, read_json
from edition.run.manifest import MANIFEST_NAME

APPROVAL_FILE = "approval.json"   # a run's sign-off, beside it (edition/review/approval.py)
BLOCKING = ("failed", "unknown")                  # statuses an approval must be told about
# report.md sections a reviewer should read before approving (edition/run/report.py)
WARNING_SECTIONS = ("Preflight", "Warnings", "Slots not filled", "Rejected rows",
                    "Failed customers", "Delivery outcome unknown", "Excluded customers",
                    "Suppressed customers")


@dataclass
class RunFacts:
    """A finished run folder, as a reviewer needs to see it."""

    folder: Path
    info: dict[str, Any]                        # run.json
    manifest_bytes: bytes
    run_bytes: bytes                            # run.json as read
    rows: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    report: str
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def campaign(self) -> str:
        return str(self.info.get("campaign") or "")

    @property
    def run_id(self) -> str:
        return str(self.info.get("run_id") or "")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.info.get("options") or {})

    @property
    def mailing(self) -> str | None:
        return self.options.get("mailing") or None

    @property
    def as_of(self) -> str | None:
        return self.options.get("as_of") or None

    @property
    def formats(self) -> list[str]:
        """The formats the run made (run.json's, else those its files have)."""
        made = {fmt for r in self.rows for fmt in (r.get("files") or {})}
        return list(self.options.get("formats") or [f for f in EXTENSIONS if f in made])

    @property
    def root(self) -> Path | None:
        """The content root of the run's campaign (None when run.json does not say)."""
        from edition.content.campaign import find_root

        campaign_file = self.options.get("campaign")
        return find_root(Path(str(campaign_file))) if campaign_file else None

    @property
    def sent_by_run(self) -> bool:
        return bool(self.options.get("send"))

    @property
    def rendered(self) -> int:
        return self.counts.get("rendered", 0)

    @property
    def blocking(self) -> int:
        return sum(self.counts.get(s, 0) for s in BLOCKING)

    def warnings(self) -> dict[str, list[str]]:
        """The report's sections a reviewer should read (title -> Markdown lines)."""
        return {title: lines for title, lines in report_sections(self.report).items()
                if title.startswith(WARNING_SECTIONS)}

    def preflight_errors(self) -> list[str]:
        """Preflight errors the run recorded: run.json `preflight.errors`, or a report
        section titled "Preflight errors"."""
        found: list[str] = []
        recorded = self.info.get("preflight")
        if isinstance(recorded, Mapping):
            found += [str(e) for e in recorded.get("errors") or []]
        for title, lines in report_sections(self.report).items():
            if title.lower().startswith("preflight error"):
                found += [line.lstrip("-* ").strip() for line in lines
                          if line.strip() and not line.startswith("|")]
        return found


def summary_lines(facts: RunFacts) -> list[str]:
    """The run in a few Markdown lines: what a reviewer reads before approving."""
    segments: Counter[str] = Counter()
    for row in facts.rows:
        if row.get("status") == "rendered":
            segments.update(row.get("segments") or ["(none)"])
    statuses = ", ".join(f"{n:,} {s}" for s, n in sorted(facts.counts.items())) or "none"
    largest = max(facts.versions, key=lambda v: v.get("customers", 0), default=None)
    mailing = facts.mailing or (f"{facts.as_of} (the run date)" if facts.as_of else "-")
    files = sum(len(r.get("files") or {}) for r in facts.rows)
    formats = facts.formats
    lines = [
        f"Run {facts.run_id} of {facts.campaign}: {facts.info.get('status')} "
        f"{facts.info.get('finished') or ''}".rstrip(),
        "",
        f"- as of {facts.as_of or '-'}; formats {', '.join(formats) or '-'}; mailing "
        f"{mailing}",
        f"- customers: {len(facts.rows):,} ({statuses})",
        "- segments (rendered customers): "
        + (", ".join(f"{s} {n:,}" for s, n in segments.most_common()) or "-"),
        f"- versions: {len(facts.versions):,}"
        + (f" (largest {largest.get('id')}, {largest.get('customers', 0):,} customers)"
           if largest else ""),
        f"- files: {files:,} editions, plus manifest.jsonl, versions.json and report.md",
    ]
    approval = read_json(facts.folder / APPROVAL_FILE)
    if approval and approval.get("approved_by"):
        lines.append(f"- already approved by {approval['approved_by']} at "
                     f"{approval.get('approved_at')}")
    return lines


def read_run(folder: Path | str) -> RunFacts:
    """Read a run folder (run.json, manifest, versions.json, report.md) or say why not."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ApprovalError(f"{folder} is not a run folder (no such folder)", folder)
    manifest = folder / MANIFEST_NAME
    if not (folder / RUN_FILE).is_file() or not manifest.is_file():
        raise ApprovalError(f"{folder} is not a run folder (no run.json or manifest.jsonl)",
                            folder)
    run_bytes = read_plain(folder / RUN_FILE)
    info = _json_object(run_bytes)
    if info is None:
        raise ApprovalError(f"{folder / RUN_FILE} is damaged (not a JSON object)",
                            folder / RUN_FILE)
    data = read_plain(manifest)
    rows = parse_manifest(data, manifest)
    versions_doc = read_json(folder / "versions.json") or {}
    report_path = folder / "report.md"
    report = report_path.read_text(encoding="utf-8") if report_path.is_file() else ""
    return RunFacts(folder=folder, info=info, manifest_bytes=data, run_bytes=run_bytes,
                    rows=rows, versions=list(versions_doc.get("versions") or []),
                    report=report, counts=Counter(str(r.get("status")) for r in rows))


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_manifest(data: bytes, where: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ApprovalError(f"line {number} is not JSON: the manifest is damaged",
                                where, number) from None
        if not isinstance(row, dict):
            raise ApprovalError(f"line {number} is not a manifest row", where, number)
        rows.append(row)
    return rows


def report_sections(text: str) -> dict[str, list[str]]:
    """`## Title` sections of a Markdown report: title -> its lines (blank ones dropped)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif line.startswith("# "):
            current = None
        elif current is not None and line.strip():
            current.append(line)
    for lines in sections.values():  # the report's closing line belongs to no section
        while lines and lines[-1].startswith("Every row is listed"):
            lines.pop()
    return sections


def table_rows(lines: Iterable[str]) -> list[dict[str, str]]:
    """The rows of the first Markdown table in `lines`, as dicts by column name."""
    header: list[str] | None = None
    rows = []
    for line in lines:
        if not line.startswith("|"):
            if header is not None:
                break
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if header is None:
            header = cells
        elif not all(set(c) <= {"-", " ", ":"} for c in cells):
            rows.append(dict(zip(header, cells, strict=False)))
    return rows


__all__ = ["APPROVAL_FILE", "BLOCKING", "WARNING_SECTIONS", "RunFacts", "parse_manifest",
           "read_run", "report_sections", "summary_lines", "table_rows"]
