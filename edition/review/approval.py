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
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.errors import ApprovalError, FolderBusy
from edition.review.digests import (
    RUN_DOCUMENTS,
    Digests,
    digest_files,
    file_digest,
    listed_files,
    names_shown,
    read_plain,
    run_files,
    sha256,
)
from edition.review.run_facts import (
    APPROVAL_FILE,
    BLOCKING,
    RunFacts,
    parse_manifest,
    read_run,
    report_sections,
    summary_lines,
    table_rows,
)
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

SCHEMA = 1


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
        plan_cap_slots(self.facts, dt.datetime.now(dt.UTC))   # first come: to the µs
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


def plan_cap_slots(facts: RunFacts, when: dt.datetime) -> int:
    """An approved run holds its customers' frequency cap slots for the day
    (edition.store.cap_slots): a campaign of lower priority sending meanwhile leaves
    them to it. Nothing without a cap, or when the campaign no longer loads (its send
    refuses it anyway)."""
    from edition.content.campaign import load_campaign
    from edition.errors import EditionError
    from edition.run.cadence import cap_gate

    campaign_file = facts.options.get("campaign")
    if not campaign_file:
        return 0
    # the mailing its send is recorded as (send_plan.approved_mailing)
    mailing = str(facts.mailing or facts.as_of or when.date().isoformat())
    try:
        campaign = load_campaign(str(campaign_file))
        gate = cap_gate(campaign, mailing=mailing, now=when)
        if gate is None:
            return 0
        with gate.open() as store:
            return int(store.plan([str(r.get("customer_id")) for r in facts.rows
                                   if r.get("status") == "rendered"], gate.claimant,
                                  now=when))
    except (EditionError, OSError):
        # the approval stands: its send still takes each slot, atomically, as it leaves;
        # only the hold against lower priorities is missing
        return 0


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


# read_run, summary_lines, digests and the rest live in run_facts.py and digests.py; they
# are named here too so that callers import the approval's whole vocabulary from one place
__all__ = ["APPROVAL_FILE", "RUN_DOCUMENTS", "Digests", "Review", "RunFacts", "Verification",
           "approval_document", "approve", "approved_or_sent_at", "check_approvable",
           "default_approver", "digest_files", "earlier_run", "file_digest",
           "last_reviewed_run", "listed_files", "names_shown", "parse_manifest", "problems",
           "read_approval", "read_plain", "read_run", "report_sections", "require_approved",
           "run_files", "sha256", "summary_lines", "table_rows", "verify"]
