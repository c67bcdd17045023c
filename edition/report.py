"""The run report (report.md) and versions.json: what a marketer reads after a run."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edition.run import BatchResult, Plan

STATUSES = ("rendered", "sent", "unknown", "rejected", "failed")
SAMPLES = 5


class Tally:
    """Counts accumulated batch by batch (memory grows with versions, not customers)."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.rows = 0
        self.status: Counter[str] = Counter()
        self.by_segment: dict[str, Counter[str]] = defaultdict(Counter)
        self.versions: dict[str, dict[str, Any]] = {}
        self.problems: dict[tuple[str, str], list[Any]] = {}   # (status, reason) -> [n, ids]
        self.missing: Counter = Counter()
        self.short: Counter = Counter()
        self.sharing: dict[str, dict[str, str]] = {}

    def add(self, result: BatchResult) -> None:
        for row in result.rows:
            self.rows += 1
            status = row["status"]
            self.status[status] += 1
            for segment in row["segments"] or (["(none)"] if status != "rejected" else []):
                self.by_segment[segment][status] += 1
            if row["version"] and status != "rejected":
                entry = self.versions.setdefault(row["version"], {"customers": 0})
                entry["customers"] += 1
            if status in {"rejected", "failed", "unknown"} and row.get("reason"):
                entry = self.problems.setdefault((status, reason_group(row["reason"])), [0, []])
                entry[0] += 1
                if len(entry[1]) < SAMPLES:
                    entry[1].append(row["customer_id"] or f"line {row.get('line')}")
        for vid, info in result.versions.items():
            if vid in self.versions:
                self.versions[vid].update({k: v for k, v in info.items() if k != "customers"})
        self.missing.update(result.missing)
        self.short.update(result.short)
        self.sharing.update(result.sharing)


def reason_group(reason: str) -> str:
    """The reason without row-specific detail, for counting alike rejections together."""
    # group "repeated id (first on line 12)" and "(first on line 40)" together
    return reason.split(" (first on line")[0]


def versions_document(tally: Tally) -> dict[str, Any]:
    return {
        "campaign": tally.plan.campaign.name,
        "versions": [
            {"id": vid, "customers": info.get("customers", 0), "locale": info.get("locale"),
             "segments": info.get("segments", []), "modules": info.get("modules", {}),
             "rendering": tally.sharing.get(vid, {})}
            for vid, info in sorted(tally.versions.items(),
                                    key=lambda item: (-item[1].get("customers", 0), item[0]))
        ],
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def render_report(tally: Tally, seconds: float) -> str:
    """The Markdown report."""
    plan = tally.plan
    campaign = plan.campaign
    mode = "sent (--send) to " + plan.target if plan.options.send else "dry run (nothing sent)"
    rate = f"{tally.rows / seconds:,.0f} customers/s" if seconds > 0 and tally.rows else "-"
    out = [
        f"# Run report: {campaign.name}",
        "",
        f"- run: `{plan.options.run_id}` — {mode}",
        f"- as of: {plan.as_of.isoformat()}; formats: {', '.join(plan.formats)}",
        f"- customers file: `{plan.customers_path}`",
        f"- {tally.rows:,} customer rows in {seconds:.1f} s ({rate}); "
        f"{len(tally.versions):,} versions",
        "",
        "## Status",
        "",
    ]
    out += _table(["status", "customers"],
                  [[s, f"{tally.status.get(s, 0):,}"] for s in STATUSES if tally.status.get(s)]
                  or [["(no customers)", 0]])
    out += ["", "## Segments", ""]
    segment_names = [s.name for s in campaign.segments] + ["(none)"]
    shown = [s for s in STATUSES if tally.status.get(s) and s != "rejected"]
    rows = []
    for name in segment_names:
        counts = tally.by_segment.get(name, Counter())
        rule = next((s.expression for s in campaign.segments if s.name == name), "no segment")
        rows.append([f"`{name}`", f"`{rule}`", f"{sum(counts.values()):,}"]
                    + [f"{counts.get(s, 0):,}" for s in shown])
    out += _table(["segment", "rule", "customers", *shown], rows)
    if tally.missing:
        out += ["", "Rules that were false because a field was missing:", ""]
        out += [f"- `{seg}`: field `{field}` missing for {n:,} customer(s)"
                for (seg, field), n in sorted(tally.missing.items())]
    out += ["", "## Versions", ""]
    doc = versions_document(tally)["versions"]
    vrows = []
    for v in doc[:50]:
        modules = "; ".join(f"{slot}: {', '.join(ids) or '—'}"
                            for slot, ids in v["modules"].items())
        vrows.append([f"`{v['id']}`", f"{v['customers']:,}", v["locale"],
                      ", ".join(v["segments"]) or "—", modules])
    out += _table(["version", "customers", "locale", "segments", "modules"], vrows)
    if len(doc) > 50:
        out.append(f"\n… and {len(doc) - 50} more in versions.json")
    whole = Counter(reason for kinds in tally.sharing.values() for reason in kinds.values()
                    if reason != "shared")
    if whole:
        out += ["", "Rendered whole per customer (correct, slower):", ""]
        out += [f"- {reason} ({n} version/format pair(s))" for reason, n in whole.most_common()]
    if tally.short:
        out += ["", "## Slots not filled", ""]
        out += [f"- `{slot}`: fewer eligible modules than it takes for {n:,} customer(s)"
                for slot, n in sorted(tally.short.items())]
    for status, title in (("rejected", "Rejected rows"), ("failed", "Failed customers"),
                          ("unknown", "Delivery outcome unknown")):
        items = [(reason, n, ids) for (s, reason), (n, ids) in tally.problems.items()
                 if s == status]
        if items:
            out += ["", f"## {title}", ""]
            out += _table(["reason", "count", "examples"],
                          [[r, f"{n:,}", ", ".join(f"`{i}`" for i in ids)]
                           for r, n, ids in sorted(items, key=lambda x: -x[1])])
    out += ["", "Every row is listed with its status and reason in `manifest.jsonl`.", ""]
    return "\n".join(out)


def write_report(plan: Plan, tally: Tally, out_dir: Path, seconds: float) -> str:
    """Write versions.json and report.md; return the report text."""
    (out_dir / "versions.json").write_text(
        json.dumps(versions_document(tally), indent=2, ensure_ascii=False), encoding="utf-8")
    text = render_report(tally, seconds)
    (out_dir / "report.md").write_text(text, encoding="utf-8")
    return text
