"""What changed between two runs of a campaign: versions, modules, customers, text.

Versions are content hashes, so any edit gives new version ids; `diff_runs` pairs each
new version with the old version most of its customers had, and says what differs: the
modules chosen per slot, the content of a module still chosen (versions.json records
each module's digest), or the rest of the version key (segments, locale, the templates
or the run date). Customers are matched by id and each changed edition is counted under
one reason: its status, its modules, a module's content, the rest of the version key,
or only its personal layer (same version, other html/text bytes). For one customer per
changed version the text editions are compared line by line (difflib).
"""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.errors import UsageError
from edition.review.approval import read_run

# why an edition changed, in the order they are looked for
REASONS = {
    "status": "status changed",
    "modules": "different modules",
    "learned": "different modules, ranked by what customers clicked (rank: learn), not edited",
    "content": "same modules, content edited",
    "version": "same modules, other segments, locale, templates or run date",
    "personal": "same version, personal layer only",
}
COMPARED = ("text", "html")   # eml carries the run's Date; pdf its creation time
DELIVERED = ("rendered", "sent")
SAMPLES = 20                  # text diffs kept (one customer per changed version)
LISTED = 50                   # versions listed by name in the text


@dataclass
class Side:
    """One run, as the diff reads it."""

    folder: Path
    campaign: str
    run_id: str
    rows: dict[str, dict[str, Any]]          # customer id -> manifest row
    order: list[str]                         # customer ids in input order
    versions: dict[str, dict[str, Any]]      # version id -> versions.json entry

    def customers(self, version: str) -> list[str]:
        return [c for c in self.order if self.rows[c].get("version") == version]


def read_side(folder: Path | str) -> Side:
    facts = read_run(folder)
    rows: dict[str, dict[str, Any]] = {}
    order = []
    for row in facts.rows:
        cid = row.get("customer_id")
        if cid is None or str(cid) in rows:
            continue
        rows[str(cid)] = row
        order.append(str(cid))
    versions = {str(v["id"]): v for v in facts.versions if v.get("id")}
    for row in rows.values():   # a version missing from versions.json: from the manifest
        vid = row.get("version")
        if vid and vid not in versions:
            versions[vid] = {"id": vid, "modules": row.get("modules") or {},
                             "segments": row.get("segments") or []}
    return Side(facts.folder, facts.campaign, facts.run_id, rows, order, versions)


@dataclass
class VersionChange:
    """A version of run B that run A did not have, and what it was before."""

    version: str
    customers: int
    was: str | None                       # the A version most of its customers had
    added: dict[str, list[str]] = field(default_factory=dict)     # slot -> module ids
    removed: dict[str, list[str]] = field(default_factory=dict)
    edited: dict[str, list[str]] = field(default_factory=dict)    # same id, other digest
    other: list[str] = field(default_factory=list)                # segments, locale, ...
    learned: bool = False        # the modules moved only in slots ranked by clicks

    def to_dict(self) -> dict[str, Any]:
        found = {"version": self.version, "customers": self.customers, "was": self.was,
                 "modules_added": self.added, "modules_removed": self.removed,
                 "modules_edited": self.edited, "other": self.other}
        # said only when true: the shape of every other change stays as it was
        return found | {"learned": True} if self.learned else found


@dataclass
class Sample:
    """One customer's text edition in both runs, as a unified diff."""

    customer_id: str
    version: str | None
    was: str | None
    reason: str
    diff: str

    def to_dict(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "version": self.version, "was": self.was,
                "reason": self.reason, "diff": self.diff}


@dataclass
class RunDiff:
    a: Side
    b: Side
    added: list[str] = field(default_factory=list)        # version ids only in B
    removed: list[str] = field(default_factory=list)      # version ids only in A
    kept: list[str] = field(default_factory=list)
    changes: list[VersionChange] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)   # reason -> customers
    unchanged: int = 0
    only_a: list[str] = field(default_factory=list)       # customer ids
    only_b: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    digests_known: bool = True

    @property
    def changed(self) -> int:
        return sum(self.reasons.values())

    def to_dict(self) -> dict[str, Any]:
        def side(s: Side) -> dict[str, Any]:
            return {"folder": str(s.folder), "run_id": s.run_id, "customers": len(s.order),
                    "versions": len(s.versions)}

        return {
            "campaign": self.b.campaign, "a": side(self.a), "b": side(self.b),
            "versions": {"added": self.added, "removed": self.removed, "kept": len(self.kept),
                         "changed": [c.to_dict() for c in self.changes]},
            "customers": {"changed": self.changed, "unchanged": self.unchanged,
                          # "learned" only when some are: older readers' shape is kept
                          "why": {k: self.reasons.get(k, 0) for k in REASONS
                                  if k != "learned" or self.reasons.get(k)},
                          "only_in_a": len(self.only_a), "only_in_b": len(self.only_b)},
            "module_digests_recorded": self.digests_known,
            "samples": [s.to_dict() for s in self.samples],
        }

    def moved(self, version: str) -> Counter[str]:
        """Where the customers of a version of run A are in run B (version -> customers)."""
        return Counter(str(self.b.rows[c].get("version")) for c in self.a.customers(version)
                       if c in self.b.rows and self.b.rows[c].get("version"))

    def summary_lines(self, limit: int = LISTED) -> list[str]:
        """The diff in words, without the text diffs (at most `limit` versions listed)."""
        a, b = self.a, self.b
        lines = [f"{b.campaign}: run {a.run_id} ({a.folder}) -> run {b.run_id} ({b.folder})",
                 f"versions: {len(a.versions):,} -> {len(b.versions):,} ({len(self.added):,} "
                 f"added, {len(self.removed):,} removed, {len(self.kept):,} unchanged)"]
        for change in self.changes[:limit]:
            was = f" (was {change.was})" if change.was else " (new)"
            lines.append(f"  + {change.version}{was}: {change.customers:,} customer(s)")
            for slot, ids in change.added.items():
                lines.append(f"      {slot}: + {', '.join(ids)}")
            for slot, ids in change.removed.items():
                lines.append(f"      {slot}: - {', '.join(ids)}")
            for slot, ids in change.edited.items():
                lines.append(f"      {slot}: edited {', '.join(ids)}")
            if change.learned:
                lines.append("      learned: ranked by clicks (rank: learn), no module edited")
            if change.other:
                lines.append(f"      also: {', '.join(change.other)}")
        if len(self.changes) > limit:
            lines.append(f"  ... and {len(self.changes) - limit:,} more new versions "
                         f"(--json lists them all)")
        paired = {c.was for c in self.changes}
        unpaired = [v for v in self.removed if v not in paired]
        for vid in unpaired[:limit]:
            now = self.moved(vid)
            where = ", ".join(v for v, _ in now.most_common(3)) + (
                ", ..." if len(now) > 3 else "")
            lines.append(f"  - {vid}: {sum(now.values()):,} customer(s), now in {where}"
                         if now else f"  - {vid}: none of its customers is in run B")
        if len(unpaired) > limit:
            lines.append(f"  ... and {len(unpaired) - limit:,} more versions gone")
        lines.append(f"customers: {len(a.order):,} -> {len(b.order):,}; {self.changed:,} "
                     f"edition(s) changed, {self.unchanged:,} unchanged"
                     + (f", {len(self.only_b):,} new" if self.only_b else "")
                     + (f", {len(self.only_a):,} gone" if self.only_a else ""))
        for key, words in REASONS.items():
            if self.reasons.get(key):
                lines.append(f"  {self.reasons[key]:>7,}  {words}")
        if not self.digests_known:
            lines.append("  (versions.json of one run has no module digests: edited content "
                         "shows as 'other segments, locale, templates or run date')")
        return lines

    def to_text(self, limit: int = LISTED) -> str:
        out = self.summary_lines(limit)
        for sample in self.samples:
            out += ["", f"customer {sample.customer_id} ({sample.reason}; version "
                        f"{sample.was or '-'} -> {sample.version or '-'}):"]
            out.append(sample.diff.rstrip("\n") if sample.diff else "  (text identical)")
        return "\n".join(out) + "\n"


def _slot_ids(entry: Mapping[str, Any]) -> dict[str, list[str]]:
    return {str(k): list(v) for k, v in (entry.get("modules") or {}).items()}


def _digests(entry: Mapping[str, Any]) -> dict[str, dict[str, str]] | None:
    digests = entry.get("digests")
    return digests if isinstance(digests, dict) and digests else None


def compare_versions(old: Mapping[str, Any], new: Mapping[str, Any],
                     change: VersionChange) -> str:
    """Fill in what differs between two versions; the reason key for their customers."""
    before, after = _slot_ids(old), _slot_ids(new)
    for slot in dict.fromkeys([*before, *after]):
        plus = [m for m in after.get(slot, []) if m not in before.get(slot, [])]
        minus = [m for m in before.get(slot, []) if m not in after.get(slot, [])]
        if plus:
            change.added[slot] = plus
        if minus:
            change.removed[slot] = minus
    old_d, new_d = _digests(old), _digests(new)
    if old_d is not None and new_d is not None:
        for slot, ids in after.items():
            edited = [m for m in ids if m in before.get(slot, [])
                      and (old_d.get(slot) or {}).get(m) != (new_d.get(slot) or {}).get(m)]
            if edited:
                change.edited[slot] = edited
    if sorted(old.get("segments") or []) != sorted(new.get("segments") or []):
        change.other.append("segments")
    if old.get("locale") != new.get("locale"):
        change.other.append("locale")
    if change.added or change.removed:
        # only slots that rank by clicks moved, and no module was edited: learned
        learned = set(new.get("learned") or []) & set(old.get("learned") or [])
        if learned and not change.edited and not change.other and \
                set(change.added) | set(change.removed) <= learned:
            change.learned = True
            return "learned"
        return "modules"
    if change.edited:
        return "content"
    return "version"


def _file_digest(folder: Path, rel: str | None) -> str | None:
    if not rel:
        return None
    try:
        return hashlib.sha256((folder / rel).read_bytes()).hexdigest()
    except OSError:
        return None


def _same_files(a: Side, b: Side, row_a: Mapping[str, Any], row_b: Mapping[str, Any]) -> bool:
    files_a, files_b = row_a.get("files") or {}, row_b.get("files") or {}
    for fmt in COMPARED:
        if fmt in files_a and fmt in files_b and (
                _file_digest(a.folder, files_a[fmt]) != _file_digest(b.folder, files_b[fmt])):
            return False
    return True


def _text_of(side: Side, row: Mapping[str, Any]) -> tuple[list[str], str]:
    rel = (row.get("files") or {}).get("text")
    if not rel:
        return [], "(no text file)"
    try:
        text = (side.folder / rel).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [], f"{rel} (missing)"
    return text.splitlines(keepends=True), rel


def text_diff(a: Side, b: Side, customer_id: str, context: int = 3) -> str:
    """Unified diff of one customer's text edition in run A and run B."""
    old, old_name = _text_of(a, a.rows.get(customer_id) or {})
    new, new_name = _text_of(b, b.rows.get(customer_id) or {})
    lines = difflib.unified_diff(old, new, fromfile=f"a/{old_name}", tofile=f"b/{new_name}",
                                 n=context)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def diff_runs(folder_a: Path | str, folder_b: Path | str, *, samples: int = SAMPLES,
              context: int = 3) -> RunDiff:
    """Compare run A (before) with run B (after)."""
    a, b = read_side(folder_a), read_side(folder_b)
    if a.campaign and b.campaign and a.campaign != b.campaign:
        raise UsageError(f"the runs are of different campaigns ({a.campaign}, {b.campaign})")
    result = RunDiff(a, b)
    result.digests_known = all(_digests(v) is not None
                               for side in (a, b) for v in side.versions.values()) or not (
        a.versions or b.versions)
    result.added = [v for v in b.versions if v not in a.versions]
    result.removed = [v for v in a.versions if v not in b.versions]
    result.kept = [v for v in b.versions if v in a.versions]

    # each new version, paired with the old version most of its customers had
    changes: dict[str, VersionChange] = {}
    for vid in result.added:
        customers = b.customers(vid)
        before = Counter(a.rows[c].get("version") for c in customers
                         if c in a.rows and a.rows[c].get("version"))
        was = before.most_common(1)[0][0] if before else None
        change = VersionChange(vid, len(customers), was)
        if was:
            compare_versions(a.versions[was], b.versions[vid], change)
        changes[vid] = change
    result.changes = sorted(changes.values(), key=lambda c: (-c.customers, c.version))

    representative: dict[str, tuple[str, str]] = {}   # B version -> (customer, reason)
    for cid in b.order:
        row_b = b.rows[cid]
        row_a = a.rows.get(cid)
        if row_a is None:
            result.only_b.append(cid)
            continue
        reason = _why(a, b, row_a, row_b)
        if reason is None:
            result.unchanged += 1
            continue
        result.reasons[reason] += 1
        key = str(row_b.get("version") or row_a.get("version") or "")
        if key not in representative and (row_b.get("files") or {}).get("text"):
            representative[key] = (cid, reason)
    result.only_a = [c for c in a.order if c not in b.rows]
    for cid, reason in list(representative.values())[:samples]:
        result.samples.append(Sample(cid, b.rows[cid].get("version"),
                                     a.rows[cid].get("version"), REASONS[reason],
                                     text_diff(a, b, cid, context)))
    return result


def _why(a: Side, b: Side, row_a: Mapping[str, Any], row_b: Mapping[str, Any]
         ) -> str | None:
    """Why one customer's edition differs between the runs (None: it does not)."""
    status_a, status_b = row_a.get("status"), row_b.get("status")
    if (status_a in DELIVERED) != (status_b in DELIVERED) or (
            status_a not in DELIVERED and status_a != status_b):
        return "status"
    if status_a not in DELIVERED:
        return None   # rejected/excluded/... in both, for the same reason class
    va, vb = row_a.get("version"), row_b.get("version")
    if va != vb:
        old, new = a.versions.get(str(va)), b.versions.get(str(vb))
        if old is None or new is None:
            return "modules"
        return compare_versions(old, new, VersionChange(str(vb), 0, va))
    return None if _same_files(a, b, row_a, row_b) else "personal"


__all__ = ["REASONS", "RunDiff", "Sample", "VersionChange", "diff_runs", "text_diff"]
