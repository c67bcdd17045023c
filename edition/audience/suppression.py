"""Suppression: who must not be mailed, and why, asked once per customer.

Three sources, read once per run (lists once per process), then asked in O(1):

- lists: CSV or plain-text files of addresses or customer ids, named in the campaign
  (`suppression: [data/unsubscribed.csv]`, relative to the content root) or for a run
  (`--suppression`). A CRM export with a header row uses its `email` and/or `id` /
  `customer_id` columns; a file without a header has one value per line (a value with
  an `@` is an address, anything else an id). Addresses match whatever their case.
- the suppression store (edition.suppression_store): unsubscribes recorded by the
  unsubscribe server, for this campaign or for all marketing, and bounces/complaints.
- customer columns: `unsubscribed` true (yes, 1, x, a date...) and `email_status`
  bounced or complained (column names configurable: `suppression.columns`).

`kind: marketing` (the default) honours all of them. `kind: transactional` (invoices)
ignores marketing unsubscribes — the store's unsubscribes and the `unsubscribed`
column — but honours bounces and complaints, and the lists it names itself (a list in
a campaign or on the command line is an explicit choice for that campaign; do not name
a marketing opt-out list in a transactional campaign).

`reason_for(fields)` gives None (mail them) or the reason in words, e.g.
`suppressed: on data/unsubscribed.csv (line 12)` or
`suppressed: unsubscribed via the unsubscribe link on 2026-11-30`. A `Suppression` is
plain data: it pickles for pool workers (or rebuild it per process with `load`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edition.addresses import address_hash, match_address
from edition.errors import ContentError
from edition.outcomes import Reason
from edition.store.resubscriptions import Resubscribed
from edition.store.suppressions import (
    ALL_MARKETING,
    Entry,
    Snapshot,
    SuppressionStore,
    store_location,
)

if TYPE_CHECKING:
    from edition.content.campaign import Campaign

EMAIL_HEADERS = frozenset({"email", "e_mail", "email_address", "emailaddress", "mail",
                           "address"})
ID_HEADERS = frozenset({"id", "customer_id", "customerid", "customer", "contact_id"})
SUPPRESSING_STATUSES = frozenset({"bounced", "complained"})
# what an `unsubscribed` cell says when the customer did NOT unsubscribe; anything else
# (yes, 1, x, a date) suppresses: when in doubt, do not mail
NOT_UNSUBSCRIBED = frozenset({"", "0", "false", "f", "no", "n", "off", "none", "null"})
_SOURCES = {"one-click": "one-click unsubscribe in their mail program",
            "page": "the unsubscribe link", "mailto": "the unsubscribe e-mail address"}
_BACK = {"web": "preference center", "crm": "CRM import", "api": "API"}
# bounces and complaints recorded from events (edition.feedback.events): the source
# column holds "event:<detail>|<channel>", the reason's words
_EVENT = "event:"
_CHANNELS = {"ses": "SES", "smtp": "the SMTP reply", "dsn": "a bounce message",
             "arf": "the feedback loop"}


def event_source(detail: str, channel: str) -> str:
    """The store's source for a suppression from an event (`hard, 5.1.1` + `smtp`)."""
    return f"{_EVENT}{detail}|{channel}"[:40]


def _event_words(entry: Entry) -> str | None:
    """`bounced (hard, 5.1.1) on 2026-11-30 via the SMTP reply`, for an event's row."""
    if not entry.source.startswith(_EVENT):
        return None
    detail, _, channel = entry.source.removeprefix(_EVENT).partition("|")
    words = f"{entry.kind} ({detail})" if detail else entry.kind
    return f"{words} on {entry.day} via {_CHANNELS.get(channel, channel or 'an event')}"


# -- lists ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SuppressionList:
    """One list file: its values, each with the line it is on."""

    name: str                               # as the campaign or the command line wrote it
    ids: Mapping[str, int]
    addresses: Mapping[str, int]            # match_address() form

    def __len__(self) -> int:
        return len(self.ids) + len(self.addresses)


_LIST_CACHE: dict[tuple[str, int, int], SuppressionList] = {}


def _header_name(cell: str) -> str:
    return cell.strip().strip('"').strip().lower().replace(" ", "_").replace("-", "_")


def _delimiter(line: str) -> str | None:
    counts = {d: line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else None


def parse_list(text: str, name: str) -> SuppressionList:
    """A list's values from its text (see the module docstring for the two forms)."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines)
                  if line.strip() and not line.lstrip().startswith("#")), None)
    ids: dict[str, int] = {}
    addresses: dict[str, int] = {}
    if first is None:
        return SuppressionList(name, ids, addresses)
    delimiter = _delimiter(lines[first])
    header = next(csv.reader([lines[first]], delimiter=delimiter or ","))
    names = [_header_name(cell) for cell in header]
    email_cols = [i for i, n in enumerate(names) if n in EMAIL_HEADERS]
    id_cols = [i for i, n in enumerate(names) if n in ID_HEADERS]
    if email_cols or id_cols:
        reader = csv.reader(io.StringIO("\n".join(lines[first + 1:])),
                            delimiter=delimiter or ",")
        try:
            for row in reader:
                line = first + 1 + reader.line_num
                for i in email_cols:
                    if i < len(row) and row[i].strip():
                        addresses.setdefault(match_address(row[i]), line)
                for i in id_cols:
                    if i < len(row) and row[i].strip():
                        ids.setdefault(row[i].strip(), line)
        except csv.Error as exc:
            raise ContentError(f"suppression list is not valid CSV: {exc}", name,
                               first + 1 + reader.line_num) from None
        return SuppressionList(name, ids, addresses)
    if delimiter is not None:
        shown = ", ".join(cell.strip() for cell in header) or "(empty)"
        raise ContentError(f"suppression list has several columns but none is named email, "
                           f"id or customer_id (found: {shown})", name, first + 1)
    for number, raw in enumerate(lines[first:], start=first + 1):
        value = raw.strip().strip('"').strip()
        if not value or value.startswith("#"):
            continue
        if "@" in value:
            addresses.setdefault(match_address(value), number)
        else:
            ids.setdefault(value, number)
    return SuppressionList(name, ids, addresses)


def read_list(path: Path, name: str | None = None) -> SuppressionList:
    """A list file, read once per process while it stays unchanged."""
    name = name or str(path)
    try:
        stat = path.stat()
    except OSError:
        raise ContentError(f"suppression list not found: {path}", name) from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    cached = _LIST_CACHE.get(key)
    if cached is not None and cached.name == name:
        return cached
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ContentError(f"cannot read suppression list: {exc.strerror}", name) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ContentError(f"suppression list is not UTF-8 text (byte 0x{data[exc.start]:02x})",
                           name, line) from None
    result = _LIST_CACHE[key] = parse_list(text, name)
    return result


# -- the answer per customer ---------------------------------------------------------


def _truthy(value: object) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, dt.date):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return bool(value)
    return str(value).strip().casefold() not in NOT_UNSUBSCRIBED


def _via(entry: Entry) -> str:
    return _SOURCES.get(entry.source, entry.source)


@dataclass(frozen=True)
class Suppression:
    """Who must not get this campaign; `reason_for(fields)` per customer."""

    campaign: str
    kind: str = "marketing"
    lists: tuple[SuppressionList, ...] = ()
    store: Snapshot | None = None
    unsubscribed_column: str | None = "unsubscribed"
    status_column: str | None = "email_status"
    store_name: str = ""
    # merged over the lists (first list wins): value -> (list index, line)
    _ids: dict[str, tuple[int, int]] = field(init=False, repr=False, compare=False)
    _addresses: dict[str, tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids: dict[str, tuple[int, int]] = {}
        addresses: dict[str, tuple[int, int]] = {}
        for index, item in enumerate(self.lists):
            for value, line in item.ids.items():
                ids.setdefault(value, (index, line))
            for value, line in item.addresses.items():
                addresses.setdefault(value, (index, line))
        object.__setattr__(self, "_ids", ids)
        object.__setattr__(self, "_addresses", addresses)

    @property
    def marketing(self) -> bool:
        return self.kind != "transactional"

    @classmethod
    def load(cls, campaign: Campaign, *, extra_lists: Sequence[str | os.PathLike[str]] = (),
             store: SuppressionStore | str | None = None,
             environ: Mapping[str, str] | None = None) -> Suppression:
        """Everything that suppresses for one run of `campaign`: its lists (relative to
        the content root), `extra_lists` (e.g. `--suppression`, relative to the current
        folder), and one snapshot of the store (`store`, else where the campaign says)."""
        lists = []
        for name in campaign.suppression.lists:
            path = Path(name) if Path(name).is_absolute() else campaign.root / name
            lists.append(read_list(path, name))
        for extra in extra_lists:
            lists.append(read_list(Path(extra), os.fspath(extra)))
        owned = not isinstance(store, SuppressionStore)
        handle = (store if isinstance(store, SuppressionStore) else
                  SuppressionStore(store or store_location(campaign, environ), campaign.root))
        try:
            snapshot = handle.snapshot(campaign.name)
        finally:
            if owned:
                handle.close()
        columns = campaign.suppression.columns
        return cls(campaign=campaign.name, kind=campaign.kind, lists=tuple(lists),
                   store=snapshot, unsubscribed_column=columns.unsubscribed,
                   status_column=columns.email_status, store_name=_store_name(handle))

    def reason_for(self, fields: Mapping[str, object]) -> Reason | None:
        """None if this customer may be mailed, else why not (a Reason: a str with a code).

        `fields` are the customer's fields (`id`, `email`, columns).
        """
        customer_id = fields.get("id")
        customer_id = None if customer_id is None else str(customer_id)
        email = fields.get("email")
        matched = match_address(str(email)) if email else ""

        status_col = self.status_column
        if status_col and fields.get(status_col) is not None:
            status = str(fields[status_col]).strip().casefold()
            if status in SUPPRESSING_STATUSES:
                return Reason(f"suppressed_{status}", f"suppressed: {status_col} {status}")

        entries: list[Entry] = []
        if self.store is not None and (self.store.by_id or self.store.by_address):
            hashed = address_hash(str(email)) if self.store.by_address and email else ""
            entries = list(self.store.find(customer_id, hashed))
        for entry in entries:
            if entry.kind != "unsubscribed":
                said = _event_words(entry)
                if said is not None:
                    return Reason(f"suppressed_{entry.kind}", f"suppressed: {said}"
                                  f"{self._as_other(entry, customer_id)}",
                                  f"suppressed: {entry.kind}")
                return Reason(f"suppressed_{entry.kind}", (
                    f"suppressed: {entry.kind} (recorded {entry.day}"
                    f"{self._as_other(entry, customer_id)})"), f"suppressed: {entry.kind}")

        hit = self._ids.get(customer_id) if customer_id is not None else None
        if hit is None and matched:
            hit = self._addresses.get(matched)
        if hit is not None:
            name = self.lists[hit[0]].name
            return Reason("suppressed_list", f"suppressed: on {name} (line {hit[1]})",
                          f"suppressed: on {name}")

        if not self.marketing:
            return None
        for entry in entries:
            scope = " from all marketing" if entry.scope == ALL_MARKETING else ""
            return Reason("suppressed_unsubscribed", (
                f"suppressed: unsubscribed{scope} via {_via(entry)} on {entry.day}"
                f"{self._as_other(entry, customer_id)}"), f"suppressed: unsubscribed{scope}")

        column = self.unsubscribed_column
        if column and _truthy(fields.get(column)):
            value = fields[column]
            shown = value.isoformat() if isinstance(value, dt.date) else str(value).strip()
            # the column is the CRM's word and wins over a resubscribe in the store (we
            # never write the customer file): say so, or the customer's "yes" looks lost
            back = self._lifted(fields)
            if back is not None:
                return Reason("suppressed_column", (
                    f"suppressed: {column} is {shown[:40]} in the customer file "
                    f"(resubscribed in the {_BACK.get(back.source, back.source)} on "
                    f"{back.day}: update the CRM)"), f"suppressed: {column} column")
            return Reason("suppressed_column", f"suppressed: {column} is {shown[:40]}",
                          f"suppressed: {column} column")
        return None

    def resubscribed(self, fields: Mapping[str, object]) -> str | None:
        """For a customer this campaign may mail: the words when they are in only because
        they subscribed again after an unsubscribe (store/resubscriptions.py), else None."""
        found = self._lifted(fields)
        if found is None:
            return None
        scope = " from all marketing" if found.unsubscribed_scope == ALL_MARKETING else ""
        since = f" on {found.unsubscribed_at[:10]}" if found.unsubscribed_at else ""
        return (f"subscribed again by the customer on {found.day} "
                f"({_BACK.get(found.source, found.source)}), after unsubscribing{scope}"
                f"{since}")

    def _lifted(self, fields: Mapping[str, object]) -> Resubscribed | None:
        """The customer's resubscription to this (marketing) campaign, if any."""
        if self.store is None or not self.marketing or not (
                self.store.lifted_by_id or self.store.lifted_by_address):
            return None
        customer_id = fields.get("id")
        email = fields.get("email")
        hashed = address_hash(str(email)) if self.store.lifted_by_address and email else ""
        return self.store.lifted(None if customer_id is None else str(customer_id), hashed)

    @staticmethod
    def _as_other(entry: Entry, customer_id: str | None) -> str:
        """Matched by address under another id: say so, or it looks like a wrong match."""
        if entry.customer_id.startswith("@"):   # known by address only (a bounce)
            return ""
        if customer_id is not None and entry.customer_id != customer_id:
            return f"; same address as customer {entry.customer_id}"
        return ""

    def describe(self) -> str:
        """One line for the report: what this run's suppression consists of."""
        parts = []
        for item in self.lists:
            parts.append(f"{item.name} ({len(item.addresses):,} addresses, "
                         f"{len(item.ids):,} ids)")
        if self.store is not None:
            ignored = "" if self.marketing else "; unsubscribes ignored: transactional"
            parts.append(f"store {self.store_name or '(given)'} ({len(self.store):,} "
                         f"entries for this campaign{ignored})")
        columns = [c for c in (self.status_column,
                               self.unsubscribed_column if self.marketing else None) if c]
        if columns:
            parts.append("columns " + ", ".join(columns))
        return "; ".join(parts) if parts else "nothing"


def _store_name(store: SuppressionStore) -> str:
    from edition.store.suppressions import redacted

    path = store.sqlite_path
    return str(path) if path is not None else redacted(store.url)


def no_suppression(campaign: str, kind: str = "marketing") -> Suppression:
    """A Suppression that suppresses nothing (previews, tests)."""
    return Suppression(campaign=campaign, kind=kind, unsubscribed_column=None,
                       status_column=None)


__all__ = ["Suppression", "SuppressionList", "event_source", "no_suppression", "parse_list",
           "read_list"]
