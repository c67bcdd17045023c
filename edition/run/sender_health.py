"""Sender health: each recent mailing's bounce and complaint rates, against the lines the
big mailbox providers draw.

Gmail's and Yahoo's bulk-sender rules: keep the complaint rate under 0.1 %, never reach
0.3 %. So a mailing at or over 0.1 % is a warning, and at or over 0.3 % a send of the
campaign is refused by preflight (exit 2) until someone looks (`edition run --send
--force` sends anyway). A mailing of fewer than `suppression.complaints_min_sent`
messages (default 1,000) only warns: one complaint in 40 sent is 2.5 % and proves little.
Bounce rates are shown beside them; they refuse nothing (no
provider publishes a line for them, and a hard bounce already suppresses its address).

The rates are the store's events of a mailing (edition.store.events: bounces and
complaints that came back, send-time SMTP refusals) over the messages the send ledger
says it sent in that mailing (e-mail channel). Read once per run; nothing is created
where there is no ledger or store yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edition.render.list_headers import feedback_field

if TYPE_CHECKING:
    from edition.content.campaign import Campaign
    from edition.store.events import MailingCounts

COMPLAINT_WARN = 0.001     # 0.1 %: Gmail's and Yahoo's "keep under"
COMPLAINT_REFUSE = 0.003   # 0.3 %: "never reach"; preflight refuses a send
LAST = 5                   # mailings the report shows
MIN_SENT = 1000            # below it a rate refuses nothing (suppression.complaints_min_sent)


@dataclass(frozen=True)
class MailingHealth:
    """One mailing's sends and what came back."""

    mailing: str
    sent: int
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0

    @classmethod
    def of(cls, sent: int, counts: MailingCounts) -> MailingHealth:
        """A mailing's health from the store's counts of what came back for it."""
        return cls(counts.mailing, sent, counts.hard_bounces, counts.soft_bounces,
                   counts.complaints)

    @property
    def bounce_rate(self) -> float:
        return (self.hard_bounces + self.soft_bounces) / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    @property
    def level(self) -> str:
        """`refuse`, `warn` or `ok`, by the complaint rate."""
        if self.complaint_rate >= COMPLAINT_REFUSE:
            return "refuse"
        return "warn" if self.complaint_rate >= COMPLAINT_WARN else "ok"

    def words(self) -> str:
        return (f"mailing {self.mailing}: {self.complaints:,} complaint(s) in {self.sent:,} "
                f"sent ({percent(self.complaint_rate)}), "
                f"{self.hard_bounces + self.soft_bounces:,} bounce(s) "
                f"({percent(self.bounce_rate)})")


def percent(rate: float) -> str:
    return f"{rate * 100:.2f} %"


def sender_health(campaign: Campaign, *, last: int = LAST,
                  environ: Mapping[str, str] | None = None) -> tuple[MailingHealth, ...]:
    """The campaign's last `last` e-mail mailings that sent something, newest first."""
    from edition.send.delivery import ledger_path
    from edition.send.ledger.location import open_ledger
    from edition.store.events import EventStore, MailingCounts
    from edition.store.suppressions import store_location

    location = ledger_path(campaign)
    if isinstance(location, Path) and not location.is_file():
        return ()
    ledger = open_ledger(location, exclusive=False)
    try:
        mailings = [m for m in ledger.mailings(campaign.name, "email") if m.sent]
    finally:
        ledger.close()
    mailings = mailings[::-1][:last]
    if not mailings:
        return ()
    names = {m.mailing for m in mailings} | {feedback_field(m.mailing) for m in mailings}
    with EventStore(store_location(campaign, environ), campaign.root) as events:
        counts = events.mailing_counts(campaign.name, names)
    found = []
    for m in mailings:
        # an event names the mailing as sent, or as its Feedback-ID field spells it
        total = MailingCounts(campaign.name, m.mailing)
        for spelling in {m.mailing, feedback_field(m.mailing)}:
            if spelling in counts:
                total += counts[spelling]
        found.append(MailingHealth.of(m.sent, total))
    return tuple(found)


def health_or_nothing(campaign: Campaign) -> tuple[MailingHealth, ...]:
    """sender_health for the report: a ledger or store that cannot be read leaves the
    section out instead of failing the run's report."""
    from edition.errors import RunError

    try:
        return sender_health(campaign)
    except (RunError, OSError):
        return ()


def check_send(campaign: Campaign, *, force: bool) -> tuple[list[str], list[str]]:
    """Preflight's question before a send: (errors, warnings) from the last mailing."""
    return preflight_findings(sender_health(campaign), force=force,
                              min_sent=campaign.suppression.complaints_min_sent)


def preflight_findings(health: tuple[MailingHealth, ...], *, force: bool,
                       min_sent: int = MIN_SENT) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a send: the last mailing at or over 0.3 % refuses (a
    warning with --force, or when it sent fewer than `min_sent`); at or over 0.1 %
    warns."""
    if not health:
        return [], []
    latest = health[0]
    if latest.level == "refuse" and latest.sent < min_sent:
        return [], [f"sender health: {latest.words()}, at or over the "
                    f"{percent(COMPLAINT_REFUSE)} complaint rate, but from fewer than "
                    f"{min_sent:,} sent (suppression.complaints_min_sent): not refused"]
    if latest.level == "refuse":
        message = (f"sender health: {latest.words()}, at or over the "
                   f"{percent(COMPLAINT_REFUSE)} complaint rate mailbox providers block "
                   f"senders at")
        if force:
            return [], [f"{message}; sending anyway (--force)"]
        return [f"{message}; find out why before sending again (--force sends anyway)"], []
    if latest.level == "warn":
        return [], [f"sender health: {latest.words()}, over the {percent(COMPLAINT_WARN)} "
                    f"complaint rate to stay under"]
    return [], []


def report_section(health: tuple[MailingHealth, ...]) -> list[str]:
    """The report's `## Sender health` lines ([] when nothing was sent yet)."""
    if not health:
        return []
    out = ["", "## Sender health", "",
           f"Complaint rate lines: under {percent(COMPLAINT_WARN)}, never "
           f"{percent(COMPLAINT_REFUSE)} (a send is refused at or over it).", ""]
    header = ["mailing", "sent", "hard bounces", "soft bounces", "bounce rate", "complaints",
              "complaint rate", "health"]
    shown = {"refuse": "at or over 0.3 %: sends refused", "warn": "over 0.1 %", "ok": "ok"}
    out += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for h in health:
        cells = [f"`{h.mailing}`", f"{h.sent:,}", f"{h.hard_bounces:,}", f"{h.soft_bounces:,}",
                 percent(h.bounce_rate), f"{h.complaints:,}", percent(h.complaint_rate),
                 shown[h.level]]
        out.append("| " + " | ".join(cells) + " |")
    return out


__all__ = ["COMPLAINT_REFUSE", "COMPLAINT_WARN", "MIN_SENT", "MailingHealth", "check_send",
           "health_or_nothing", "preflight_findings", "report_section", "sender_health"]
