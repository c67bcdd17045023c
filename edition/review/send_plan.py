"""What a send of an approved run would be: the run verified against its approval, the
target, the channel and the mailing it goes out as, and what the send ledger already
knows of that mailing (`edition approve` and `edition send` say it before they ask).

The send itself is edition/review/sending.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edition.content.campaign import Campaign, load_campaign
from edition.content.plugins import has_credentials, target_problem
from edition.errors import ApprovalError, EditionError, UsageError
from edition.review.approval import (
    APPROVAL_FILE,
    RunFacts,
    read_approval,
    read_plain,
    require_approved,
    sha256,
)
from edition.review.sendable import MessageCheck
from edition.run.options import MAILING
from edition.send.delivery import ledger_path
from edition.send.ledger.location import open_ledger
from edition.send.ledger.records import Mailing
from edition.send.targets import channel_of

# -- what a send will do ---------------------------------------------------------------


@dataclass
class SendPlan:
    """An approved, verified run and where and as which mailing it would go."""

    folder: Path
    approval: dict[str, Any]
    facts: RunFacts
    campaign: Campaign
    target: str
    channel: str
    mailing: str
    as_of: dt.date
    approval_sha256: str = ""   # approval.json as verified: a send confirmed sends that one
    campaign_file: str = ""     # the campaign's file, as run.json names it

    @property
    def editions(self) -> int:
        return self.facts.rendered

    def describe(self) -> str:
        return (f"{self.editions:,} approved edition(s) of {self.campaign.name} (run "
                f"{self.facts.run_id}, approved by {self.approval.get('approved_by')} at "
                f"{self.approval.get('approved_at')}) to {self.target}, mailing "
                f"{self.mailing}")


def plan_send(run_dir: Path | str, *, to: str | None = None, mailing: str | None = None,
              run_id: str | None = None, approval_sha256: str | None = None) -> SendPlan:
    """Verify the run against its approval; the target, channel and mailing it would use.

    Raises ApprovalError (exit 2) naming every file that differs from the approval, when
    the approved messages cannot be sent as they are (no working unsubscribe link), or
    when the mailing is not the one they name. `run_id` and `approval_sha256`: the run
    and approval someone confirmed; refused if the folder holds others now.
    """
    folder = Path(run_dir)
    messages = MessageCheck.here(str(read_approval(folder).get("campaign") or ""))
    approval_bytes = read_plain(folder / APPROVAL_FILE)
    approval, facts = require_approved(folder, run_id=run_id,
                                       approval_sha256=approval_sha256, messages=messages)
    if sha256(approval_bytes) != sha256(read_plain(folder / APPROVAL_FILE)):
        raise ApprovalError(f"{folder / APPROVAL_FILE} changed while it was being checked; "
                            f"nothing was sent", folder)
    unsendable = messages.problems()
    if unsendable:
        raise ApprovalError(f"run {facts.run_id} cannot be sent as it is: "
                            + "; ".join(unsendable) + "; nothing was sent", folder)
    campaign_file = facts.options.get("campaign") or approval.get("campaign_file")
    if not campaign_file:
        raise ApprovalError(f"{folder}/run.json does not name its campaign file", folder)
    campaign = load_campaign(campaign_file)
    if campaign.name != facts.campaign:
        raise ApprovalError(f"the run is of campaign {facts.campaign}, but {campaign_file} "
                            f"is now campaign {campaign.name}; nothing was sent", folder)
    target = to or campaign.target
    if has_credentials(target):
        raise UsageError("--to must not hold credentials; set them in the environment "
                         "(EDITION_SMTP_USERNAME/PASSWORD, AWS profiles)")
    problem = target_problem(target)
    if problem:
        raise UsageError(f"delivery target {target!r} {problem}")
    wanted = mailing or approved_mailing(facts, approval)
    if not MAILING.match(str(wanted)):
        raise UsageError(f"mailing {wanted!r}: use letters, digits, '.', '_', ':' and '-'")
    other = messages.mailing_problem(str(wanted))
    if other:   # the ledger must record the mailing the messages carry
        raise ApprovalError(f"{other}; nothing was sent", folder)
    as_of = dt.date.fromisoformat(facts.as_of) if facts.as_of else dt.date.today()
    return SendPlan(folder=folder, approval=approval, facts=facts, campaign=campaign,
                    target=target, channel=channel_of(target), mailing=str(wanted),
                    as_of=as_of, approval_sha256=sha256(approval_bytes),
                    campaign_file=str(Path(str(campaign_file)).resolve()))


def approved_mailing(facts: RunFacts, approval: Mapping[str, Any] | None = None) -> str:
    """The mailing a send of this run is recorded as: the one its dry run rendered for
    (its messages name it in their Feedback-ID), else its run date."""
    return str((approval or {}).get("mailing") or facts.mailing or facts.as_of
               or dt.date.today().isoformat())


# -- what a send of a run would be, as the ledger knows it now ---------------------------


def ledger_mailings(campaign: Campaign, channel: str) -> list[Mailing] | str:
    """The campaign's mailings on a channel (read-only), or why they cannot be read."""
    location = ledger_path(campaign)
    is_url = isinstance(location, str) and "://" in location
    if not is_url and not Path(location).exists():
        return []   # nothing was ever sent with this ledger
    try:
        with contextlib.closing(open_ledger(location, exclusive=False,
                                            readonly=True)) as ledger:
            return ledger.mailings(campaign.name, channel)
    except (EditionError, OSError) as exc:
        return f"cannot read the send ledger: {exc}"
    except Exception as exc:  # a database driver's own error: a line, not a traceback
        return f"cannot read the send ledger: {type(exc).__name__}: {exc}"


def mailing_lines(facts: RunFacts, campaign: Campaign | None = None,
                  to: str | None = None) -> list[str]:
    """What a send of this run would be: the mailing it is recorded as, and whether that
    mailing was already sent (customers it reached are not sent again in it)."""
    mailing = approved_mailing(facts)
    why = " (the run date)" if not facts.mailing or facts.mailing == facts.as_of else ""
    if campaign is None:
        try:
            campaign = load_campaign(str(facts.options.get("campaign") or ""))
        except EditionError as exc:
            return [f"- a send goes out as mailing {mailing}{why}; cannot read the campaign "
                    f"to look it up in the send ledger: {exc}"]
    target = to or campaign.target
    lines = [f"- a send to {target} goes out as mailing {mailing}{why}: one message per "
             f"customer per mailing"]
    known = ledger_mailings(campaign, channel_of(target))
    if isinstance(known, str):
        return [*lines, f"- {known}"]
    this = next((m for m in known if m.mailing == mailing), None)
    if this is not None and this.status == "finished":
        lines.append(f"- mailing {mailing} was already sent: {this.sent:,} customer(s), "
                     f"finished {this.finished_at}. A send of this run mails only the "
                     f"customers it did not reach; to send this run as a new issue, make "
                     f"its dry run with --mailing KEY")
    elif this is not None:
        lines.append(f"- mailing {mailing} is unfinished ({this.sent:,} customer(s) sent, "
                     f"started {this.started_at}): a send of this run finishes it")
    for other in known:
        if other.mailing != mailing and other.status == "open":
            lines.append(f"- mailing {other.mailing} is unfinished (about {other.owed:,} "
                         f"customer(s) not yet sent): a send of this run is refused until "
                         f"it is finished, unless with --new-mailing")
    return lines


def customers_of(facts: RunFacts) -> str:
    """The customer file the approved run read, as its own report names it."""
    for line in facts.report.splitlines():
        if line.startswith("- customers file: `") and line.endswith("`"):
            named = line[len("- customers file: `"):-1]
            if named:
                return named
    given = facts.options.get("customers")
    return str(given) if given else "the campaign's customers file"


__all__ = ["SendPlan", "approved_mailing", "customers_of", "ledger_mailings",
           "mailing_lines", "plan_send"]
