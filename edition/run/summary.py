"""What a run or a send did, in one object: the CLI prints it, a flow returns it, and it
crosses Prefect unchanged (a flow run's result, or a Failed state's data)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Self

from edition.run.report import Tally, sent_words


@dataclass
class RunSummary:
    """What the CLI prints and the flow returns."""

    run_id: str
    out_dir: str
    counts: dict[str, int]
    customers: int
    versions: int
    seconds: float
    report: str
    campaign: str = ""
    target: str = ""
    resumed: int = 0        # rows kept from an interrupted run of the same folder
    mailing: str | None = None
    notes: list[str] = field(default_factory=list)
    already_sent: int = 0   # `sent` rows that an earlier run of the mailing sent
    failed: int = 0         # failed + unknown
    failure_limit: int = 0  # the campaign's max_failed for this many rows
    preflight: list[tuple[str, str]] = field(default_factory=list)   # (level, message)
    rejected: int = 0
    rejection_limit: int | None = None   # the campaign's max_rejected (None: any number)
    rejections: list[tuple[str, int]] = field(default_factory=list)  # the commonest whys
    wrong_encoding: str | None = None    # the file is not in the encoding it was read in
    suppressed: int = 0

    @property
    def exit_code(self) -> int:
        """0, or 3 when more customers failed (or are unknown) than the campaign allows,
        or more rows were rejected."""
        return 3 if self.over_limits() else 0

    def over_limits(self) -> list[str]:
        """Why the run exits 3, in words (empty: it does not)."""
        found = []
        if self.failed > self.failure_limit:
            found.append(f"{self.failed:,} customer(s) failed or are unknown, more than the "
                         f"campaign allows (max_failed: {self.failure_limit:,})")
        if self.wrong_encoding:
            found.append(self.wrong_encoding)
        if self.rejection_limit is not None and self.rejected > self.rejection_limit:
            why = "; ".join(f"{n:,} × {reason}" for reason, n in self.rejections[:3])
            found.append(f"{self.rejected:,} of {self.customers:,} row(s) were rejected, more "
                         f"than the campaign allows (max_rejected: {self.rejection_limit:,})"
                         + (f": {why}" if why else ""))
        return found

    def sent_line(self) -> str:
        """`0 sent now, 20 already sent in mailing M`: what a send did, truthfully."""
        return sent_words(self.counts.get("sent", 0), self.already_sent, self.mailing)

    def __getitem__(self, name: str) -> Any:
        """A flow's result read as a mapping (`state.result()["counts"]`), as Prefect's
        API callers and older code read it."""
        if name in self.keys() or name == "exit_code":
            return getattr(self, name)
        raise KeyError(name)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    @classmethod
    def of(cls, tally: Tally, **given: Any) -> Self:
        """The summary of a tally (counts, failures, rejections); `given` the rest, and
        what it says instead of the tally."""
        # Any: mixed field types, each checked where the summary type declares it
        counted: dict[str, Any] = {"counts": dict(tally.status), "customers": tally.rows,
                   "versions": len(tally.versions),
                   "already_sent": tally.codes.get(("sent", "already_sent"), 0),
                   "failed": tally.status.get("failed", 0) + tally.status.get("unknown", 0),
                   "rejected": tally.status.get("rejected", 0),
                   "suppressed": tally.status.get("suppressed", 0),
                   "rejections": rejections(tally)}
        return cls(**(counted | given))


def rejections(tally: Tally) -> list[tuple[str, int]]:
    """The reasons rows were rejected, commonest first."""
    return sorted(((reason, entry[0]) for (status, reason), entry in tally.problems.items()
                   if status == "rejected"), key=lambda item: -item[1])


__all__ = ["RunSummary", "rejections"]
