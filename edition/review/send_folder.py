"""A send's folder under the approved run (sends/<send id>/): the approved rows on their
way to a worker, and the repair of a send that stopped (its manifest completed from the
send ledger, its send.json `interrupted`), for edition/review/sending.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edition.addresses import AddressError, normalize
from edition.outcomes import ManifestRow, Reason
from edition.review.send_plan import SendPlan
from edition.run.folder import read_json, write_json
from edition.run.manifest import MANIFEST_NAME, ManifestWriter, read_rows
from edition.send.ledger.records import send_key

if TYPE_CHECKING:
    from edition.send.ledger.location import Ledger

SENDS_FOLDER = "sends"
SEND_FILE = "send.json"


@dataclass
class Approved:
    """One approved row on its way to a worker: its files as read and verified, or the
    row it ends as without being sent (`outcome`)."""

    row: dict[str, Any]
    carried: bool = False     # not `rendered`: not sent, as the approved manifest says
    outcome: tuple[str, Reason] | None = None   # not sent now, and why
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)
    recipient: str | None = None
    message_id: str = ""
    digest: str = ""

    def manifest(self, status: str, reason: Reason | None, send_id: str | None,
                 **extra: Any) -> ManifestRow:
        base = ManifestRow.from_dict(self.row)
        more = {"send_id": send_id} if send_id else {}
        return ManifestRow(customer_id=base.customer_id, status=status, line=base.line,
                           version=base.version, segments=base.segments, modules=base.modules,
                           reason=reason, files=base.files, extra={**base.extra, **extra,
                                                                   **more})


def message_headers(eml: bytes) -> tuple[str | None, str]:
    """(the To address, the Message-ID) of an approved message."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(eml)
    message_id = str(headers.get("Message-ID") or "").strip()
    try:
        to = headers["To"] if headers.get("To") is not None else None
        found: tuple[Address, ...] = to.addresses if to is not None else ()
    except (AttributeError, ValueError, IndexError):
        return None, message_id
    if len(found) != 1:
        return None, message_id
    # a UTF-8 address (RFC 6532) comes out of the parser with its bytes escaped
    address = found[0].addr_spec.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        return normalize(address), message_id
    except AddressError:
        return None, message_id


# -- a send that stopped -------------------------------------------------------------------


def complete_send(send_dir: Path, plan: SendPlan, ledger: Ledger | None, reason: str) -> int:
    """A row for every approved row the send's manifest lacks, as the ledger recorded it
    for this send (sent, failed, unknown while claimed), else `failed` (not sent).
    Returns how many rows were added."""
    path = send_dir / MANIFEST_NAME
    rows, _ = read_rows(path, cut_torn=True)
    done = {str(r.get("customer_id")) for r in rows}
    send_id = send_dir.name
    key = send_key(plan.mailing, plan.channel)
    added = []
    for row in plan.facts.rows:
        if str(row.get("customer_id")) in done:
            continue
        item = Approved(row)
        if row.get("status") != "rendered":
            added.append(ManifestRow.from_dict(row))
            continue
        entry = (ledger.lookup(plan.campaign.name, str(row.get("customer_id")), key)
                 if ledger is not None else None)
        added.append(_outcome_row(item, entry if entry and entry.run_id == send_id else None,
                                  reason, send_id))
    with ManifestWriter(path, append=True) as writer:
        writer.write(added)
    return len(added)


def _outcome_row(item: Approved, entry: Any, why: str, send_id: str) -> ManifestRow:
    if entry is None:
        return item.manifest("failed", Reason("send_stopped", f"{why}; not sent",
                                              "send stopped"), send_id)
    if entry.state == "sent":
        return item.manifest("sent", None, send_id, provider_id=entry.provider_id)
    if entry.state == "failed":
        return item.manifest("failed", Reason("delivery_failed", entry.reason or why),
                             send_id)
    return item.manifest("unknown", Reason(
        "outcome_unknown", f"{why} while this edition was being sent; it may have left "
                           f"(the ledger decides on the next send)", "outcome unknown"), send_id)


def recover_sends(run_dir: Path, plan: SendPlan, ledger: Ledger | None) -> list[str]:
    """Repair the sends of this run whose process died (kill -9): their manifests
    completed from the ledger, send.json `interrupted`. Under the run folder's lock;
    `plan` is the run's verified plan (a send of another run or mailing that died is
    only marked, its rows left as they were)."""
    sends = run_dir / SENDS_FOLDER
    repaired: list[str] = []
    if not sends.is_dir() or sends.is_symlink():
        return repaired
    for folder in sorted(p for p in sends.iterdir() if p.is_dir() and not p.is_symlink()):
        document = read_json(folder / SEND_FILE) or {}
        if document.get("status") != "running":
            continue
        same = (document.get("run_id") == plan.facts.run_id
                and document.get("mailing") == plan.mailing
                and document.get("channel") == plan.channel)
        added = complete_send(folder, plan, ledger, "send interrupted") if same else 0
        write_json(folder / SEND_FILE, document | {
            "status": "interrupted", "reason": "send interrupted (its process is gone)",
            "repaired": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        repaired.append(f"{folder}: {added:,} row(s) added from the send ledger")
    return repaired


__all__ = ["SENDS_FOLDER", "SEND_FILE", "Approved", "complete_send", "message_headers",
           "recover_sends"]
