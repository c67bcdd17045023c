"""How the customers of a batch were rendered: the fast path, or a whole render and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class PdfStats:
    """How the customers of a batch were rendered."""

    customers: int = 0
    fast: int = 0
    full: Counter[str] = field(default_factory=Counter)  # reason -> customers
    versions: int = 0
    versions_full: Counter[str] = field(default_factory=Counter)  # reason -> versions
    stamps_reused: int = 0  # fast customers whose personal text an earlier one had
    direct: int = 0  # fast customers whose stamp was drawn straight to PDF, not laid out
    # reason -> versions whose stamps are laid out whole (a small document each)
    versions_laid_out: Counter[str] = field(default_factory=Counter)

    def add(self, other: PdfStats) -> None:
        """Count ``other``'s customers and versions in this one too."""
        self.customers += other.customers
        self.fast += other.fast
        self.full.update(other.full)
        self.versions += other.versions
        self.versions_full.update(other.versions_full)
        self.stamps_reused += other.stamps_reused
        self.direct += other.direct
        self.versions_laid_out.update(other.versions_laid_out)

    def summary(self) -> str:
        """One line for a report."""
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.full.most_common())
        return (
            f"{self.customers} customers, {self.fast} on the fast path"
            f" ({self.direct} stamps drawn straight to PDF,"
            f" {self.stamps_reused} reusing an earlier customer's personal blocks)"
            + (f"; full render: {reasons}" if reasons else "")
        )
