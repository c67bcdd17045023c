"""Approval: a person's sign-off on one finished dry run, bound to the bytes it wrote.

`approval.json` in the run folder says who approved the run, when (UTC), why (the note),
for which campaign, run and mailing, and holds the sha256 of manifest.jsonl and of every
file the run wrote: each file the manifest names, versions.json and report.md.
`edition send` delivers a run only while every digest still matches and no file was
added to its format folders: what leaves is what was approved, byte for byte.

Only a finished run can be approved; a run with `failed` or `unknown` rows, or with
preflight errors recorded, only with `allow_failed`. A run that sent its editions itself
(`run --send`) has nothing left to approve.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.errors import ApprovalError
from edition.manifest import MANIFEST_NAME
from edition.naming import EXTENSIONS
from edition.runfolder import customer_files, read_json, read_run_file, write_json

APPROVAL_FILE = "approval.json"
SCHEMA = 1
RUN_DOCUMENTS = ("versions.json", "report.md")   # written by the run beside the manifest
BLOCKING = ("failed", "unknown")                  # statuses an approval must be told about
# report.md sections a reviewer should read before approving (edition/report.py)
WARNING_SECTIONS = ("Preflight", "Warnings", "Slots not filled", "Rejected rows",
                    "Failed customers", "Delivery outcome unknown", "Excluded customers",
                    "Suppressed customers")
SHOWN = 20   # file names listed in a refusal before "and N more"
_CHUNK = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


# -- what a run folder says about itself ----------------------------------------------


@dataclass
class RunFacts:
    """A finished run folder, as a reviewer needs to see it."""

    folder: Path
    info: dict[str, Any]                        # run.json
    manifest_bytes: bytes
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
    info = read_run_file(folder)
    manifest = folder / MANIFEST_NAME
    if info is None or not manifest.is_file():
        raise ApprovalError(f"{folder} is not a run folder (no run.json or manifest.jsonl)",
                            folder)
    data = read_plain(manifest)
    rows = parse_manifest(data, manifest)
    versions_doc = read_json(folder / "versions.json") or {}
    report_path = folder / "report.md"
    report = report_path.read_text(encoding="utf-8") if report_path.is_file() else ""
    return RunFacts(folder=folder, info=info, manifest_bytes=data, rows=rows,
                    versions=list(versions_doc.get("versions") or []), report=report,
                    counts=Counter(str(r.get("status")) for r in rows))


def parse_manifest(data: bytes, where: Path) -> list[dict[str, Any]]:
    import json

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


# -- may this run be approved ---------------------------------------------------------


def problems(facts: RunFacts, *, allow_failed: bool = False) -> list[str]:
    """Why this run cannot be approved (empty: it can)."""
    found = []
    status = facts.info.get("status")
    if status != "finished":
        found.append(f"the run is not finished (run.json status {status!r}); finish it by "
                     f"running the campaign again on this folder")
    if facts.sent_by_run:
        found.append("this run sent its editions itself (run --send); approve a dry run")
    if not allow_failed:
        bad = {s: facts.counts[s] for s in BLOCKING if facts.counts.get(s)}
        if bad:
            found.append(", ".join(f"{n:,} customer(s) {s}" for s, n in bad.items())
                         + " (see report.md); fix and run again, or pass --allow-failed")
        errors = facts.preflight_errors()
        if errors:
            found.append(f"{len(errors)} preflight error(s): {'; '.join(errors[:3])}; fix "
                         f"and run again, or pass --allow-failed")
    return found


def check_approvable(facts: RunFacts, *, allow_failed: bool = False) -> None:
    found = problems(facts, allow_failed=allow_failed)
    if found:
        raise ApprovalError(f"cannot approve run {facts.run_id or facts.folder}: "
                            + "; ".join(found), facts.folder)


def refuse_direct_send(campaign: str) -> ApprovalError:
    """`run --send` of an `approval: required` campaign: what to do instead."""
    return ApprovalError(
        f"campaign {campaign} needs an approved run to send (approval: required): make a "
        f"dry run (edition run without --send), approve it (edition approve RUN_DIR), "
        f"then send it (edition send RUN_DIR)")


# -- digests ---------------------------------------------------------------------------


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


def file_digest(path: Path) -> str | None:
    """sha256 of a regular file, or None when it is missing, a link or unreadable."""
    try:
        return sha256(read_plain(path))
    except ApprovalError:
        return None


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


# -- the approval document -------------------------------------------------------------


def default_approver() -> str:
    """The OS user, when the approver does not give a name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def approval_document(facts: RunFacts, *, by: str, note: str = "",
                      allow_failed: bool = False, when: dt.datetime | None = None
                      ) -> dict[str, Any]:
    """approval.json's content for this run, digests included (checks it first)."""
    check_approvable(facts, allow_failed=allow_failed)
    by = " ".join(str(by).split())
    if not by:
        raise ApprovalError("the approver's name is empty")
    files: dict[str, str] = {}
    unreadable = []
    for rel in run_files(facts):
        digest = file_digest(facts.folder / rel)
        if digest is None:
            unreadable.append(rel)
        else:
            files[rel] = digest
    if unreadable:
        raise ApprovalError(f"cannot approve run {facts.run_id}: {len(unreadable):,} file(s) "
                            f"the run wrote are missing or unreadable: "
                            f"{names_shown(unreadable)}", facts.folder)
    when = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    previous = read_json(facts.folder / APPROVAL_FILE)
    document: dict[str, Any] = {
        "approval": SCHEMA,
        "approved_by": by,
        "approved_at": when.isoformat(timespec="seconds"),
        "note": note or "",
        "campaign": facts.campaign,
        "run_id": facts.run_id,
        "mailing": facts.mailing,
        "as_of": facts.as_of,
        "campaign_file": facts.options.get("campaign"),
        "formats": facts.formats,
        "counts": dict(sorted(facts.counts.items())),
        "allowed_failed": bool(allow_failed and facts.blocking),
        "manifest": {"path": MANIFEST_NAME, "sha256": sha256(facts.manifest_bytes),
                     "rows": len(facts.rows)},
        "files": files,
    }
    if previous and previous.get("approved_by"):
        document["replaces"] = {"approved_by": previous.get("approved_by"),
                                "approved_at": previous.get("approved_at")}
    return document


def approve(folder: Path | str, *, by: str, note: str = "", allow_failed: bool = False,
            when: dt.datetime | None = None) -> dict[str, Any]:
    """Check the run, write approval.json (atomically) and return it."""
    facts = read_run(folder)
    document = approval_document(facts, by=by, note=note, allow_failed=allow_failed,
                                 when=when)
    write_json(facts.folder / APPROVAL_FILE, document)
    return document


def read_approval(folder: Path | str) -> dict[str, Any]:
    """The run's approval.json, or ApprovalError saying how to get one."""
    folder = Path(folder)
    path = folder / APPROVAL_FILE
    if not path.exists() and not path.is_symlink():
        raise ApprovalError(f"run {folder} is not approved (no {APPROVAL_FILE}); review it "
                            f"and approve it first: edition approve {folder}", folder)
    if path.is_symlink():
        raise ApprovalError(f"{path} is a symbolic link; an approval must be a file", path)
    document = read_json(path)
    if (not document or document.get("approval") != SCHEMA
            or not isinstance(document.get("files"), dict)
            or not isinstance(document.get("manifest"), dict)):
        raise ApprovalError(f"{path} is not an approval edition can read; approve the run "
                            f"again", path)
    return document


# -- does the folder still hold what was approved --------------------------------------


@dataclass
class Verification:
    """What differs between a run folder and its approval."""

    manifest_changed: bool = False
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not (self.manifest_changed or self.changed or self.missing or self.added)

    def describe(self) -> str:
        parts = []
        if self.manifest_changed:
            parts.append(f"{MANIFEST_NAME} changed")
        for what, names in (("changed", self.changed), ("missing", self.missing),
                            ("added", self.added)):
            if names:
                parts.append(f"{len(names):,} file(s) {what}: {names_shown(names)}")
        return "; ".join(parts) or "every file matches"


def names_shown(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN:,} more" if len(names) > SHOWN else "")


def verify(folder: Path | str, approval: Mapping[str, Any],
           manifest_bytes: bytes | None = None) -> Verification:
    """Compare every approved digest with the folder, and look for files added since."""
    folder = Path(folder)
    result = Verification()
    if manifest_bytes is None:
        manifest_bytes = (read_plain(folder / MANIFEST_NAME)
                          if (folder / MANIFEST_NAME).exists() else b"")
    result.manifest_changed = sha256(manifest_bytes) != approval["manifest"].get("sha256")
    approved: dict[str, str] = dict(approval["files"])
    for rel, digest in sorted(approved.items()):
        found = file_digest(folder / rel)
        result.checked += 1
        if found is None:
            result.missing.append(rel)
        elif found != digest:
            result.changed.append(rel)
    result.added = sorted(rel for rel, _ in customer_files(folder) if rel not in approved)
    return result


def require_approved(folder: Path | str) -> tuple[dict[str, Any], RunFacts]:
    """The approval and the run, or ApprovalError naming every file that differs."""
    folder = Path(folder)
    approval = read_approval(folder)
    facts = read_run(folder)
    check = verify(folder, approval, facts.manifest_bytes)
    if not check.ok:
        raise ApprovalError(
            f"run {facts.run_id} no longer matches its approval by "
            f"{approval.get('approved_by')} at {approval.get('approved_at')}: "
            f"{check.describe()}; nothing was sent. Restore the files, or review the run "
            f"and approve it again", folder)
    if approval.get("run_id") != facts.run_id or approval.get("campaign") != facts.campaign:
        raise ApprovalError(f"{APPROVAL_FILE} is for run {approval.get('run_id')} of "
                            f"{approval.get('campaign')}, not for this folder's run "
                            f"{facts.run_id}; nothing was sent", folder)
    return approval, facts


# -- the campaign's last reviewed run ---------------------------------------------------


def approved_or_sent_at(folder: Path) -> str | None:
    """When a run folder was last approved or sent (ISO time), or None if never."""
    times: list[str] = []
    approval = read_json(folder / APPROVAL_FILE)
    if approval and approval.get("approved_at"):
        times.append(str(approval["approved_at"]))
    info = read_run_file(folder) or {}
    if info.get("status") == "finished" and (info.get("options") or {}).get("send"):
        times.append(str(info.get("finished") or info.get("started") or ""))
    sends = folder / "sends"
    if sends.is_dir():
        for send in sends.glob("*/send.json"):
            document = read_json(send) or {}
            if document.get("status") == "finished":
                times.append(str(document.get("finished") or ""))
    times = [t for t in times if t]
    return max(times) if times else None


def last_reviewed_run(folder: Path | str, campaign: str,
                      places: Iterable[Path] = ()) -> Path | None:
    """The campaign's most recently approved or sent run other than `folder`.

    Looked for beside `folder` and in `places` (the campaign's out/<campaign>/).
    """
    folder = Path(folder).resolve()
    best: tuple[str, Path] | None = None
    seen: set[Path] = set()
    for parent in {folder.parent, *(Path(p).resolve() for p in places)}:
        if not parent.is_dir():
            continue
        for candidate in parent.iterdir():
            candidate = candidate.resolve()
            if candidate == folder or candidate in seen or not candidate.is_dir():
                continue
            seen.add(candidate)
            info = read_run_file(candidate) or {}
            if info.get("campaign") != campaign:
                continue
            when = approved_or_sent_at(candidate)
            if when and (best is None or when > best[0]):
                best = (when, candidate)
    return best[1] if best else None


__all__ = ["APPROVAL_FILE", "RunFacts", "Verification", "approval_document", "approve",
           "check_approvable", "default_approver", "last_reviewed_run", "problems",
           "read_approval", "read_run", "refuse_direct_send", "report_sections",
           "require_approved", "summary_lines", "table_rows", "verify"]
