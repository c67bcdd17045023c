"""Approval: a person's sign-off on one finished dry run, bound to the bytes it wrote.

`approval.json` in the run folder says who approved the run, when (UTC), why (the note),
for which campaign, run and mailing, and holds the sha256 of manifest.jsonl, of run.json
(`edition send` reads it to choose the campaign file) and of every file the run wrote:
each file the manifest names, versions.json and report.md. `edition send` delivers a run
only while every digest still matches and no file was added to its format folders: what
leaves is what was approved, byte for byte.

What is approved is what the approver was shown: a `Review` holds the run folder's lock
from the summary to the record (a re-render of the folder meanwhile is refused), hashes
the files before the question is asked, and records the approval only if run.json and
the manifest still hold the run id and the bytes the summary was made from.

Only a finished run can be approved; a run with `failed` or `unknown` rows, or with
preflight errors recorded, only with `allow_failed`. A run that sent its editions itself
(`run --send`) has nothing left to approve, and a run whose marketing messages carry no
working unsubscribe link (edition/review/sendable.py) cannot be approved at all.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.errors import ApprovalError, FolderBusy
from edition.naming import EXTENSIONS
from edition.review.sendable import MessageCheck
from edition.run.folder import (
    RUN_FILE,
    FolderLock,
    customer_files,
    read_json,
    read_run_file,
    write_json,
)
from edition.run.index import indexed_folders
from edition.run.index import record as index_run
from edition.run.manifest import MANIFEST_NAME

APPROVAL_FILE = "approval.json"
SCHEMA = 1
RUN_DOCUMENTS = ("versions.json", "report.md")   # written by the run beside the manifest
BLOCKING = ("failed", "unknown")                  # statuses an approval must be told about
# report.md sections a reviewer should read before approving (edition/run/report.py)
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


# -- may this run be approved ---------------------------------------------------------


def problems(facts: RunFacts, *, allow_failed: bool = False,
             messages: MessageCheck | None = None) -> list[str]:
    """Why this run cannot be approved (empty: it can).

    `messages` is what the run's .eml files say (`digest_files`): a run whose marketing
    messages have no working unsubscribe link cannot be approved, allow_failed or not.
    """
    found = []
    status = facts.info.get("status")
    if status != "finished":
        found.append(f"the run is not finished (run.json status {status!r}); finish it by "
                     f"running the campaign again on this folder")
    if facts.sent_by_run:
        found.append("this run sent its editions itself (run --send); approve a dry run")
    if messages is not None:
        found += [f"it cannot be sent as it is: {p}" for p in messages.problems()]
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


def check_approvable(facts: RunFacts, *, allow_failed: bool = False,
                     messages: MessageCheck | None = None) -> None:
    found = problems(facts, allow_failed=allow_failed, messages=messages)
    if found:
        raise ApprovalError(f"cannot approve run {facts.run_id or facts.folder}: "
                            + "; ".join(found), facts.folder)


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


# -- the approval document -------------------------------------------------------------


def default_approver() -> str:
    """The OS user, when the approver does not give a name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def approval_document(facts: RunFacts, *, by: str, note: str = "",
                      allow_failed: bool = False, when: dt.datetime | None = None,
                      digests: Digests | None = None) -> dict[str, Any]:
    """approval.json's content for this run, digests included (checks it first)."""
    if digests is None:
        check_approvable(facts, allow_failed=allow_failed)  # before hashing every file
        digests = digest_files(facts)
    check_approvable(facts, allow_failed=allow_failed, messages=digests.messages)
    by = " ".join(str(by).split())
    if not by:
        raise ApprovalError("the approver's name is empty")
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
        # send reads run.json (the campaign file, the mailing): it is approved too
        "run": {"path": RUN_FILE, "sha256": sha256(facts.run_bytes)},
        "files": dict(digests.files),
    }
    if previous and previous.get("approved_by"):
        document["replaces"] = {"approved_by": previous.get("approved_by"),
                                "approved_at": previous.get("approved_at")}
    return document


class Review:
    """A run folder held for its review: what is approved is what the approver was shown.

    Entering takes the run folder's lock (a run or send on the folder meanwhile is
    refused, a re-render with --overwrite too) and reads the run; `digests` hashes every
    file before the question is asked; `record` writes approval.json only if run.json,
    the manifest, versions.json and report.md still hold the bytes the summary was made
    from. `run_id`, when given, is the run the reviewer expects (the one a flow rendered).
    """

    def __init__(self, folder: Path | str, *, run_id: str | None = None,
                 kind: str = "marketing"):
        self.folder = Path(folder)
        self.expected = run_id
        self.kind = kind
        self.lock = FolderLock(self.folder)
        self.facts: RunFacts
        self._digests: Digests | None = None

    def __enter__(self) -> Review:
        if not self.folder.is_dir():
            raise ApprovalError(f"{self.folder} is not a run folder (no such folder)",
                                self.folder)
        try:
            self.lock.acquire()
        except FolderBusy as exc:
            holder = exc.message.split(";")[0]
            raise FolderBusy(f"{holder}; approve it when that has finished",
                             self.folder) from None
        try:
            self.facts = read_run(self.folder)
            if self.expected and self.facts.run_id != self.expected:
                raise ApprovalError(
                    f"{self.folder} now holds run {self.facts.run_id}, not run "
                    f"{self.expected} that was rendered for this review; nothing was "
                    f"approved", self.folder)
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    @property
    def digests(self) -> Digests:
        """Every file's sha256 (and what the messages say), computed once, under the lock."""
        if self._digests is None:
            self._digests = digest_files(self.facts, self.kind)
        return self._digests

    def problems(self, *, allow_failed: bool = False) -> list[str]:
        return problems(self.facts, allow_failed=allow_failed,
                        messages=self.digests.messages)

    def unsendable(self) -> list[str]:
        """Why the run can never be sent as it is (allow_failed or not)."""
        return self.digests.messages.problems()

    def record(self, *, by: str, note: str = "", allow_failed: bool = False,
               when: dt.datetime | None = None) -> dict[str, Any]:
        """Write approval.json for the run shown, or refuse (ApprovalError) if it changed."""
        document = approval_document(self.facts, by=by, note=note, allow_failed=allow_failed,
                                     when=when, digests=self.digests)
        changed = self._changed_since_shown()
        if changed:
            raise ApprovalError(
                f"run {self.facts.run_id} changed since its summary was shown "
                f"({', '.join(changed)}); nothing was approved: review it again", self.folder)
        write_json(self.folder / APPROVAL_FILE, document)
        root = self.facts.root
        if root is not None:
            # where to find this run later (approve and diff of the next one): a hint only
            index_run(root, self.facts.campaign, run_id=self.facts.run_id,
                      folder=self.folder, event="approved")
        return document

    def _changed_since_shown(self) -> list[str]:
        facts = self.facts
        shown = {RUN_FILE: sha256(facts.run_bytes), MANIFEST_NAME: sha256(facts.manifest_bytes),
                 **{name: self.digests.files.get(name) for name in RUN_DOCUMENTS}}
        changed = [name for name, digest in shown.items()
                   if file_digest(self.folder / name) != digest]
        info = read_run_file(self.folder) or {}
        if str(info.get("run_id") or "") != facts.run_id:
            changed.insert(0, f"run.json now names run {info.get('run_id')}")
        return changed


def approve(folder: Path | str, *, by: str, note: str = "", allow_failed: bool = False,
            when: dt.datetime | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Check the run, write approval.json (atomically) and return it (under the folder's
    lock; `run_id`: refuse unless the folder holds that run)."""
    with Review(folder, run_id=run_id) as review:
        return review.record(by=by, note=note, allow_failed=allow_failed, when=when)


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
    run_changed: bool = False
    run_uncovered: bool = False     # an approval made before run.json was covered
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not (self.manifest_changed or self.run_changed or self.run_uncovered
                    or self.changed or self.missing or self.added)

    def describe(self) -> str:
        parts = []
        if self.manifest_changed:
            parts.append(f"{MANIFEST_NAME} changed")
        if self.run_changed:
            parts.append(f"{RUN_FILE} changed")
        if self.run_uncovered:
            parts.append(f"the approval does not cover {RUN_FILE} (an older edition made "
                         f"it)")
        for what, names in (("changed", self.changed), ("missing", self.missing),
                            ("added", self.added)):
            if names:
                parts.append(f"{len(names):,} file(s) {what}: {names_shown(names)}")
        return "; ".join(parts) or "every file matches"


def names_shown(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN:,} more" if len(names) > SHOWN else "")


def verify(folder: Path | str, approval: Mapping[str, Any],
           manifest_bytes: bytes | None = None,
           messages: MessageCheck | None = None) -> Verification:
    """Compare every approved digest with the folder, and look for files added since
    (`messages`, when given, reads each approved .eml on the way)."""
    folder = Path(folder)
    result = Verification()
    if manifest_bytes is None:
        manifest_bytes = (read_plain(folder / MANIFEST_NAME)
                          if (folder / MANIFEST_NAME).exists() else b"")
    result.manifest_changed = sha256(manifest_bytes) != approval["manifest"].get("sha256")
    run = approval.get("run")
    if not isinstance(run, Mapping) or not run.get("sha256"):
        result.run_uncovered = True
    else:
        result.run_changed = file_digest(folder / RUN_FILE) != run.get("sha256")
    approved: dict[str, str] = dict(approval["files"])
    for rel, digest in sorted(approved.items()):
        found = file_digest(folder / rel, messages, rel)
        result.checked += 1
        if found is None:
            result.missing.append(rel)
        elif found != digest:
            result.changed.append(rel)
    result.added = sorted(rel for rel, _ in customer_files(folder) if rel not in approved)
    return result


def require_approved(folder: Path | str, *, run_id: str | None = None,
                     approval_sha256: str | None = None,
                     messages: MessageCheck | None = None
                     ) -> tuple[dict[str, Any], RunFacts]:
    """The approval and the run, or ApprovalError naming every file that differs.

    `run_id` and `approval_sha256`, when given, are the run and the approval a person
    was shown before saying "send": a folder re-rendered or re-approved since is refused.
    """
    folder = Path(folder)
    if approval_sha256 is not None:
        found = file_digest(folder / APPROVAL_FILE)
        if found != approval_sha256:
            raise ApprovalError(f"{APPROVAL_FILE} changed since the send was confirmed (the "
                                f"run was approved again, or the approval removed); nothing "
                                f"was sent: check the run and send again", folder)
    approval = read_approval(folder)
    facts = read_run(folder)
    if run_id is not None and facts.run_id != run_id:
        raise ApprovalError(f"{folder} now holds run {facts.run_id}, not run {run_id} that "
                            f"was to be sent; nothing was sent", folder)
    if approval.get("run_id") != facts.run_id or approval.get("campaign") != facts.campaign:
        raise ApprovalError(f"{APPROVAL_FILE} is for run {approval.get('run_id')} of "
                            f"{approval.get('campaign')}, not for this folder's run "
                            f"{facts.run_id}; nothing was sent", folder)
    check = verify(folder, approval, facts.manifest_bytes, messages)
    if not check.ok:
        raise ApprovalError(
            f"run {facts.run_id} no longer matches its approval by "
            f"{approval.get('approved_by')} at {approval.get('approved_at')}: "
            f"{check.describe()}; nothing was sent. Restore the files, or review the run "
            f"and approve it again", folder)
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


def last_reviewed_run(folder: Path | str, campaign: str, places: Iterable[Path] = (),
                      runs: Iterable[Path] = (), before: str | None = None) -> Path | None:
    """The campaign's most recently approved or sent run other than `folder`.

    Looked for beside `folder`, in `places` (the campaign's out/<campaign>/), and among
    `runs` (run folders the campaign's run index names, wherever they are); with
    `before` (an ISO time), only runs started before it.
    """
    folder = Path(folder).resolve()
    candidates: list[Path] = []
    for parent in {folder.parent, *(Path(p).resolve() for p in places)}:
        if parent.is_dir():
            candidates += list(parent.iterdir())
    candidates += [Path(r) for r in runs]
    best: tuple[str, Path] | None = None
    seen: set[Path] = set()
    for candidate in candidates:
        candidate = candidate.resolve()
        if candidate == folder or candidate in seen or not candidate.is_dir():
            continue
        seen.add(candidate)
        info = read_run_file(candidate) or {}
        if info.get("campaign") != campaign:
            continue
        if before and not str(info.get("started") or "") < before:
            continue
        when = approved_or_sent_at(candidate)
        if when and (best is None or when > best[0]):
            best = (when, candidate)
    return best[1] if best else None


def earlier_run(facts: RunFacts) -> Path | None:
    """The last approved or sent run of this run's campaign that started before it,
    wherever it was written: beside this run, in out/<campaign>/ under the content root,
    or in the campaign's run index."""
    root = facts.root
    places = [root / "out" / facts.campaign] if root is not None else []
    runs = indexed_folders(root, facts.campaign) if root is not None else []
    started = str(facts.info.get("started") or "") or None
    return last_reviewed_run(facts.folder, facts.campaign, places, runs, before=started)


__all__ = ["APPROVAL_FILE", "Digests", "Review", "RunFacts", "Verification",
           "approval_document", "approve", "check_approvable", "default_approver",
           "digest_files", "earlier_run", "last_reviewed_run", "problems", "read_approval",
           "read_run", "report_sections", "require_approved",
           "summary_lines", "table_rows", "verify"]
