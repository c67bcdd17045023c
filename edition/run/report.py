"""The run report (report.md) and versions.json: what a marketer reads after a run."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edition import private
from edition.audience.preferences import DECLINED
from edition.databases import masked
from edition.markdown_text import code, text
from edition.outcomes import STATUSES, ManifestRow
from edition.run.click_table import ClickTable
from edition.run.sender_health import MailingHealth, report_section

SAMPLES = 5


@dataclass(frozen=True)
class RunInfo:
    """What the report says about the run itself."""

    campaign: str
    segments: tuple[tuple[str, str], ...]   # (name, rule) in campaign order
    run_id: str
    mode: str                               # "dry run (nothing sent)" or "sent ... to X"
    as_of: dt.date
    formats: tuple[str, ...]
    customers: str
    mailing: str | None = None
    preflight: tuple[tuple[str, str], ...] = ()   # (level, message): Preflight.table()
    unsendable: tuple[str, ...] = ()   # why a send of this dry run would be refused
    sender_health: tuple[MailingHealth, ...] = ()   # the last mailings' rates, newest first
    clicks: ClickTable | None = None   # the previous mailing's clicks (run/click_table.py)

    def __post_init__(self) -> None:
        # the report is published (files, Prefect artifacts): a customers URL's password
        # never reaches it, whoever built this RunInfo from whatever run.json
        object.__setattr__(self, "customers", masked(self.customers))


class Tally:
    """Counts accumulated batch by batch (memory grows with versions, not customers)."""

    def __init__(self) -> None:
        self.rows = 0
        self.status: Counter[str] = Counter()
        self.codes: Counter[tuple[str, str]] = Counter()   # (status, reason code) -> rows
        self.by_segment: dict[str, Counter[str]] = defaultdict(Counter)
        self.versions: dict[str, dict[str, Any]] = {}
        self.problems: dict[tuple[str, str], list[Any]] = {}   # (status, reason) -> [n, ids]
        self.missing: Counter[tuple[str, str]] = Counter()   # (segment, field) -> customers
        self.short: Counter[str] = Counter()
        self.sharing: dict[str, dict[str, str]] = {}
        self.chosen = 0                       # rows the customer's own choices changed
        self.choices: Counter[str] = Counter()   # choice (topics, locale, ...) -> rows
        self.paths: Counter[tuple[str, str]] = Counter()   # (html|pdf, how) -> customers

    def add(self, rows: Iterable[ManifestRow], *, versions: Mapping[str, dict[str, Any]] = {},
            missing: Mapping[tuple[str, str], int] = {}, short: Mapping[str, int] = {},
            sharing: Mapping[str, dict[str, str]] = {},
            paths: Mapping[tuple[str, str], int] = {}) -> None:
        """Count a batch's rows, and what the batch learnt about versions and rules."""
        for row in rows:
            self.rows += 1
            status = row.status
            self.status[status] += 1
            for segment in row.segments or (["(none)"] if status != "rejected" else []):
                self.by_segment[segment][status] += 1
            if row.version and status != "rejected":
                # by the whole digest: two versions may share a short id (edition.versions)
                entry = self.versions.setdefault(row.version_digest or row.version,
                                                 {"id": row.version, "customers": 0})
                entry["customers"] += 1
            if row.reason is not None:
                self.codes[(status, getattr(row.reason, "code", "?"))] += 1
            choices = row.extra.get("choices")
            if choices:
                self.chosen += 1
                # the names audience/preferences.py applied (a list); anything else counts whole
                self.choices.update(choices if isinstance(choices, list) else [str(choices)])
            if status in PROBLEMS and row.reason:
                sample = self.problems.setdefault((status, row.reason.key), [0, []])
                sample[0] += 1
                if len(sample[1]) < SAMPLES:
                    sample[1].append(row.customer_id or f"line {row.line}")
        for vid, info in versions.items():
            if vid in self.versions:
                self.versions[vid].update({k: v for k, v in info.items() if k != "customers"})
        self.missing.update(missing)
        self.short.update(short)
        self.sharing.update(sharing)
        self.paths.update(paths)


PATHS = {"html": ("html, text and eml", "shared"), "pdf": ("PDF", "fast")}
TOP_REASONS = 5


def rendering(tally: Tally) -> dict[str, Any]:
    """How the customers' editions were made, per path (for run.json and the report):
    how many took the shared (html, text, eml) or fast (PDF) path, and why the others
    did not, commonest first."""
    out: dict[str, Any] = {}
    for path, (_, good) in PATHS.items():
        counts = Counter({how: n for (p, how), n in tally.paths.items() if p == path and n})
        total = sum(counts.values())
        if not total:  # no customer was rendered (every one failed): nothing to say
            continue
        out[path] = {"customers": total, good: counts.get(good, 0),
                     "other": total - counts.get(good, 0),
                     "fraction": round(counts.get(good, 0) / total, 4),
                     "reasons": [{"reason": how, "customers": n}
                                 for how, n in counts.most_common() if how != good]}
    if tally.sharing:  # a version is shared when every kind of it is rendered once
        shared = sum(1 for kinds in tally.sharing.values()
                     if kinds and set(kinds.values()) == {"shared"})
        out["versions"] = {"total": len(tally.sharing), "shared": shared,
                           "fraction": round(shared / len(tally.sharing), 4)}
    return out


PROBLEMS = {"rejected", "failed", "unknown", "excluded", "suppressed"}


def sent_line(tally: Tally, mailing: str | None) -> str:
    """`0 sent now, 20 already sent in mailing M`: what a send did, truthfully."""
    return sent_words(tally.status.get("sent", 0),
                      tally.codes.get(("sent", "already_sent"), 0), mailing)


def sent_words(sent: int, already: int, mailing: str | None) -> str:
    """The same sentence from the counts (`sent` rows, of which `already` were sent by an
    earlier run of the mailing): for the report, the run's and the send's summaries."""
    line = f"{sent - already:,} sent now"
    if already:
        line += f", {already:,} already sent in mailing {mailing}"
    return line


def versions_document(tally: Tally, campaign: str) -> dict[str, Any]:
    return {
        "campaign": campaign,
        "versions": [
            {"id": info.get("id") or key, "digest": key, "customers": info.get("customers", 0),
             "locale": info.get("locale"),
             "segments": info.get("segments", []), "modules": info.get("modules", {}),
             "digests": info.get("digests", {}), "learned": info.get("learned", []),
             "rendering": tally.sharing.get(key, {})}
            for key, info in sorted(tally.versions.items(),
                                    key=lambda item: (-item[1].get("customers", 0),
                                                      item[1].get("id") or item[0], item[0]))
        ],
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _cell(message: str) -> str:
    """One table cell of prose: a line break would end the row."""
    return text(" ".join(message.split()))


def render_report(tally: Tally, info: RunInfo, seconds: float, note: str = "") -> str:
    """The Markdown report."""
    out = _heading(tally, info, seconds, note)
    out += _table(["status", "customers"],
                  [[s, f"{tally.status.get(s, 0):,}"] for s in STATUSES if tally.status.get(s)]
                  or [["(no customers)", 0]])
    declined = sum(n for (status, reason), n in tally.codes.items()
                   if status == "suppressed" and reason in DECLINED)
    if tally.chosen or declined:
        out += ["", "## Customers' choices", ""]
        if tally.chosen:
            out.append(f"{tally.chosen:,} customer(s) get an edition changed by their own "
                       f"choices in the preference center: " + ", ".join(
                           f"{text(name)} {n:,}" for name, n in sorted(tally.choices.items()))
                       + ".")
        out.append(f"{declined:,} customer(s) get nothing by their own choice (paused, or "
                   f"every topic switched off): they are under Suppressed customers.")
    if info.preflight:
        # errors stop a run before its folder exists, so a report shows warnings and facts
        out += ["", "## Preflight", ""]
        out += _table(["level", "finding"], [[level, _cell(message)]
                                             for level, message in info.preflight])
    out += report_section(info.sender_health)
    out += _segments(tally, info) + _versions(tally, info)
    if tally.short:
        out += ["", "## Slots not filled", ""]
        out += [f"- {code(slot)}: fewer eligible modules than it takes for {n:,} customer(s)"
                for slot, n in sorted(tally.short.items())]
    out += _problems(tally)
    out += _clicks_section(info.clicks)
    out += ["", "Every row is listed with its status and reason in `manifest.jsonl`.", ""]
    return "\n".join(out)


def _heading(tally: Tally, info: RunInfo, seconds: float, note: str) -> list[str]:
    """The title, what cannot be sent, the run's facts, and the status section's title."""
    rate = f"{tally.rows / seconds:,.0f} customers/s" if seconds > 0 and tally.rows else "-"
    cannot = ([f"> **Cannot be sent as it is.** {'; '.join(info.unsendable)}. Fix that and "
               f"run again before approving: `edition approve` and `edition send` refuse "
               f"this run.", ""] if info.unsendable else [])
    return [
        f"# Run report: {info.campaign}",
        "",
        *cannot,
        *([note, ""] if note else []),
        f"- run: {code(info.run_id)} — {text(info.mode)}",
        f"- as of: {info.as_of.isoformat()}; formats: {', '.join(info.formats)}",
        f"- customers file: {code(info.customers)}",
        *([f"- mailing: {code(info.mailing)} — {text(sent_line(tally, info.mailing))}"]
          if info.mailing else []),
        f"- {tally.rows:,} customer rows in {seconds:.1f} s ({rate}); "
        f"{len(tally.versions):,} versions",
        "",
        "## Status",
        "",
    ]


def _segments(tally: Tally, info: RunInfo) -> list[str]:
    """Customers per segment and status, and the rules a missing field made false."""
    out = ["", "## Segments", ""]
    rules = dict(info.segments)
    segment_names = [*rules, "(none)"]
    shown = [s for s in STATUSES if tally.status.get(s) and s != "rejected"]
    rows = []
    for name in segment_names:
        counts = tally.by_segment.get(name, Counter())
        rule = rules.get(name, "no segment")
        rows.append([code(name), code(rule), f"{sum(counts.values()):,}"]
                    + [f"{counts.get(s, 0):,}" for s in shown])
    out += _table(["segment", "rule", "customers", *shown], rows)
    if tally.missing:
        out += ["", "Rules that were false because a field was missing:", ""]
        out += [f"- {code(seg)}: field {code(field)} missing for {n:,} customer(s)"
                for (seg, field), n in sorted(tally.missing.items())]
    return out


def _versions(tally: Tally, info: RunInfo) -> list[str]:
    """The first 50 versions, and why some were rendered whole per customer."""
    out = ["", "## Versions", ""]
    doc = versions_document(tally, info.campaign)["versions"]
    vrows = []
    for v in doc[:50]:
        modules = "; ".join(f"{text(slot)}: {', '.join(map(code, ids)) or '—'}"
                            for slot, ids in v["modules"].items())
        vrows.append([code(v["id"]), f"{v['customers']:,}", code(v["locale"] or ""),
                      ", ".join(map(code, v["segments"])) or "—", modules])
    out += _table(["version", "customers", "locale", "segments", "modules"], vrows)
    if len(doc) > 50:
        out.append(f"\n… and {len(doc) - 50} more in versions.json")
    out += _rendering_lines(tally)
    whole = Counter(reason for kinds in tally.sharing.values() for reason in kinds.values()
                    if reason != "shared")
    if whole:
        out += ["", "Rendered whole per customer (correct, slower):", ""]
        out += [f"- {text(reason)} ({n} version/format pair(s))"
                for reason, n in whole.most_common()]
    return out


def _problems(tally: Tally) -> list[str]:
    """Rejected, failed, unknown, excluded and suppressed rows: reasons, counts, examples."""
    out: list[str] = []
    for status, title in (("rejected", "Rejected rows"), ("failed", "Failed customers"),
                          ("unknown", "Delivery outcome unknown"),
                          ("excluded", "Excluded customers"),
                          ("suppressed", "Suppressed customers")):
        items = [(reason, n, ids) for (s, reason), (n, ids) in tally.problems.items()
                 if s == status]
        if items:
            out += ["", f"## {title}", ""]
            out += _table(["reason", "count", "examples"],
                          [[_cell(r), f"{n:,}", ", ".join(_example(i) for i in ids)]
                           for r, n, ids in sorted(items, key=lambda x: -x[1])])
    return out


def _clicks_section(table: ClickTable | None) -> list[str]:
    """Clicks per module and segment in the mailing before (people's clicks only)."""
    if table is None:
        return []
    out = ["", f"## Clicks in the previous mailing ({text(table.mailing)})", ""]
    out += _table(["module", "segment", "sends", "clicks", "rate"],
                  [[code(module), code(segment), f"{sends:,}", f"{clicks:,}",
                    f"{clicks / sends:.1%}" if sends else "-"]
                   for module, segment, sends, clicks in table.rows]
                  or [["(no sends)", "", 0, 0, "-"]])
    if table.machine:
        out += ["", f"{table.machine:,} machine click(s) (link scanners, bursts) are not "
                    f"counted."]
    return out
def _rendering_lines(tally: Tally) -> list[str]:
    """`html, text and eml: 2,990 of 3,000 customers (99.7%) from their version's shared
    rendering`, and the commonest reasons for the others, each with its template line."""
    facts = rendering(tally)
    lines: list[str] = []
    for path, info in facts.items():
        if path not in PATHS:
            continue
        words, good = PATHS[path]
        where = ("from their version's shared rendering" if good == "shared"
                 else "on the fast path (the version laid out once)")
        share = 100 * info[good] / info["customers"]
        lines.append(f"- {words}: {info[good]:,} of {info['customers']:,} customers "
                     f"({share:.1f}%) {where}")
        for item in info["reasons"][:TOP_REASONS]:
            lines.append(f"  - {item['customers']:,} × {_cell(item['reason'])}")
        if len(info["reasons"]) > TOP_REASONS:
            rest = sum(i["customers"] for i in info["reasons"][TOP_REASONS:])
            lines.append(f"  - {rest:,} × other reasons (run.json lists them all)")
    versions = facts.get("versions")
    if lines and versions:
        lines.insert(0, f"- versions: {versions['shared']:,} of {versions['total']:,} "
                        "rendered once for all their customers")
    return ["", "How the editions were made (rendered whole: correct, slower):", "", *lines] \
        if lines else []


def _example(customer: str) -> str:
    """A customer id as an example (`line N` for a row without a readable id)."""
    return customer if customer.startswith("line ") and customer[5:].isdigit() else code(
        customer)


def write_report(tally: Tally, info: RunInfo, out_dir: Path, seconds: float,
                 note: str = "") -> str:
    """Write versions.json and report.md; return the report text."""
    _write(out_dir / "versions.json",
           json.dumps(versions_document(tally, info.campaign), indent=2, ensure_ascii=False))
    text = render_report(tally, info, seconds, note)
    _write(out_dir / "report.md", text)
    return text


def _write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    private.write_file(temp, text.encode("utf-8"))
    temp.replace(path)
