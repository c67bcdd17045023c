"""Delivery with `--send`: the send ledger first, then the target, then the ledger again.

Nothing here runs in a dry run. With `--send`, each customer's edition is claimed in the
ledger before it leaves and its outcome recorded right after. The ledger key is the
mailing (which issue of the campaign) and the channel (`email` for SMTP and SES whatever
the host; an archive to S3 or a folder is its own), so a customer is sent once per
mailing and channel — across crashes, reruns on another day and content fixed in
between. The main process holds the ledger's run lock (`run_lock`) and decides the
mailing (`choose_mailing`); workers share the ledger without the lock. A worker that
received the run's ledger from the main process (a Dask worker, which has no content
root) first checks that it is the run's: it holds the mailing this run opened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edition.content.campaign import Campaign
from edition.content.plugins import EMAIL
from edition.errors import DeliveryError, LedgerError, RunError
from edition.outcomes import Reason
from edition.send.bounces import SendBounces, SoftBounceRule
from edition.send.dkim import DkimSigner
from edition.send.dkim import applies_to as dkim_applies
from edition.send.ledger.location import (
    LEDGER_URL_ENV,
    Ledger,
    ledger_location,
    open_ledger,
    show_location,
)
from edition.send.ledger.sqlite import Claim, send_key
from edition.send.targets import Delivery, Outcome, channel_of, open_target
from edition.store.cap_slots import CapSlots, Claimant
from edition.store.suppressions import store_location

EMAIL_CHANNEL = EMAIL


@dataclass(frozen=True)
class CapGate:
    """The house's frequency cap at the moment of sending (edition.store.cap_slots): each
    message takes its customer's slot, atomically with the count across campaigns,
    right before its ledger claim; a refused one is `excluded` with the cap's reason."""

    location: str               # the house store
    claimant: Claimant
    max_sends: int
    days: int
    now: dt.datetime

    def open(self) -> CapSlots:
        return CapSlots(self.location)


def ledger_path(campaign: Campaign) -> str | Path:
    """`delivery.ledger` (a file or a postgresql:// URL), else EDITION_LEDGER_URL, else
    out/<campaign>/ledger.sqlite under the content root."""
    configured = campaign.delivery.ledger
    return ledger_location(str(configured) if configured else None, root=campaign.root,
                           campaign=campaign.name)


def run_lock(location: str | Path, campaign: str | None = None) -> Ledger:
    """The ledger opened with its run lock: a second run on it waits, then fails clearly."""
    return open_ledger(location, exclusive=True, wait=5.0, scope=campaign)


@dataclass(frozen=True)
class MailingChoice:
    """Which mailing a send belongs to, its run date, and what to tell the user."""

    mailing: str
    as_of: dt.date
    note: str = ""


def choose_mailing(ledger: Ledger, campaign: str, channel: str, *, mailing: str | None,
                   as_of: dt.date | None, new_mailing: bool,
                   today: dt.date | None = None) -> MailingChoice:
    """The mailing of a send (design.md, "Sending").

    `--mailing`, else `--as-of` (its ISO date), else an unfinished mailing of the
    campaign is resumed with its own run date, else today. Naming another mailing while
    one is unfinished is refused unless `new_mailing`.
    """
    today = today or dt.date.today()
    known = {m.mailing: m for m in ledger.mailings(campaign, channel)}
    unfinished = [m for m in known.values() if m.status == "open"]
    note = ""
    if mailing is None and as_of is None and unfinished:
        last = unfinished[-1]
        return MailingChoice(last.mailing, dt.date.fromisoformat(last.as_of), (
            f"resuming the unfinished mailing {last.mailing} (run date {last.as_of}); "
            f"about {last.owed:,} customer(s) not yet sent"))
    wanted = mailing or (as_of or today).isoformat()
    others = [m for m in unfinished if m.mailing != wanted]
    if others and not new_mailing:
        other = others[-1]
        raise RunError(
            f"mailing {other.mailing} of {campaign} is unfinished (about {other.owed:,} "
            f"customer(s) not yet sent); rerun without --mailing/--as-of to finish it, or "
            f"pass --new-mailing to start mailing {wanted} anyway")
    if wanted in known and as_of is None:
        as_of = dt.date.fromisoformat(known[wanted].as_of)  # the mailing keeps its run date
        if known[wanted].status == "open":
            note = f"resuming the unfinished mailing {wanted} (run date {as_of.isoformat()})"
    return MailingChoice(wanted, as_of or today, note)


@dataclass(frozen=True)
class Message:
    """One customer's edition, ready to send (what `deliver` takes, as one value)."""

    customer_id: str
    recipient: str | None
    digest: str
    message_id: str
    files: Mapping[str, tuple[str, bytes, str]]
    subject: str | None = None


@dataclass(frozen=True)
class Sent:
    """What delivery made of one customer: manifest status, reason, extra fields."""

    status: str
    reason: Reason | None
    extra: dict[str, object]


class Deliverer:
    """One target connection and one ledger handle, per process."""

    def __init__(self, *, target: str, options: Mapping[str, object], ledger: str | Path,
                 campaign: str, mailing: str, run_id: str, out_dir: Path,
                 resend_unknown: bool = False,
                 sign: Callable[[bytes], bytes] | None = None, joining: bool = False,
                 bounces: SendBounces | None = None, in_flight: int = 1):
        self.sign = sign  # DKIM, for SMTP (SES signs itself)
        self.in_flight = max(1, in_flight)   # above 1: deliver_many (docs/scale.md)
        self.bounces = bounces  # refusals (550 5.1.1) into the house store
        self._pool: ThreadPoolExecutor | None = None  # deliver_many's senders
        self._pool_size = 0
        self.campaign = campaign
        self.mailing = mailing
        self.channel = channel_of(target)
        self.key = send_key(mailing, self.channel)
        self.run_id = run_id
        self.resend_unknown = resend_unknown
        self.gate: CapGate | None = None   # set by the run when a cap applies (cap_gate)
        self._slots: CapSlots | None = None
        self.publisher = open_target(target, out_dir=out_dir, options=options)
        self.publisher.__enter__()
        try:
            self.ledger = open_ledger(ledger, exclusive=False)
        except BaseException:
            self.publisher.__exit__(None, None, None)
            raise
        if joining:
            try:
                self._check_joined(ledger)
            except BaseException:
                self.close()
                raise

    def _check_joined(self, location: str | Path) -> None:
        """A worker's proof that it claims in the run's ledger: the main process opened
        this run's mailing there before any batch left (a ledger of the worker's own
        would not know it, and would let the next send mail everyone again)."""
        if not any(m.mailing == self.mailing and m.run_id == self.run_id
                   and m.status == "open"
                   for m in self.ledger.mailings(self.campaign, self.channel)):
            raise LedgerError(
                f"the send ledger {show_location(location)} does not hold mailing "
                f"{self.mailing} of run {self.run_id}: it is not the run's ledger; workers "
                f"on other machines need one they all reach ({LEDGER_URL_ENV}=postgresql://…)",
                show_location(location))

    @classmethod
    def for_campaign(cls, campaign: Campaign, *, target: str, mailing: str, run_id: str,
                     out_dir: Path, resend_unknown: bool = False,
                     ledger: str | Path | None = None) -> Deliverer:
        """The campaign's delivery options, ledger and DKIM key: one way to build it, for
        `edition run --send` and for `edition send` of an approved run alike.

        `ledger`: the run's ledger as its main process named it, for a worker that has
        no content root of its own (checked to be the run's before anything is sent)."""
        signer = None
        if campaign.dkim is not None and dkim_applies(target):
            signer = DkimSigner.load(campaign.dkim, root=campaign.root)
        return cls(target=target,
                   options=campaign.delivery.given_options(),
                   ledger=ledger if ledger is not None else ledger_path(campaign),
                   campaign=campaign.name, mailing=mailing, run_id=run_id, out_dir=out_dir,
                   resend_unknown=resend_unknown,
                   sign=signer.sign if signer is not None else None,
                   joining=ledger is not None, in_flight=campaign.delivery.in_flight,
                   bounces=SendBounces(store_location(campaign), campaign.name, mailing,
                                       SoftBounceRule(campaign.suppression.soft_bounces.count,
                                                      campaign.suppression.soft_bounces.days)))

    def deliver(self, *, customer_id: str, recipient: str | None, digest: str,
                message_id: str, files: Mapping[str, tuple[str, bytes, str]],
                subject: str | None = None) -> Sent:
        """Claim, publish, record."""
        message = Message(customer_id=customer_id, recipient=recipient, digest=digest,
                          message_id=message_id, files=files, subject=subject)
        capped = self._take_slots([customer_id])
        if customer_id in capped:
            return Sent("excluded", capped[customer_id], {"mailing": self.mailing})
        claim = self.ledger.claim(self.campaign, customer_id, self.key, self.run_id,
                                  content_hash=digest, resend_unknown=self.resend_unknown)
        if not claim.may_send:
            return self._not_sent(claim, message)
        try:
            outcome = self._publish(message)
        except DeliveryError as exc:
            # the target is unusable: this edition did not leave; say so, then stop the run
            self.ledger.record(self.campaign, customer_id, self.key,
                               Outcome("failed", reason=str(exc)), self.run_id)
            self._give_back([customer_id])
            raise
        if outcome.status == "failed":
            self._give_back([customer_id])
        # deferred: committed with the next claim, still before the next send; a crash
        # in between only widens the `unknown` window, it never causes a second send
        self.ledger.record(self.campaign, customer_id, self.key, outcome, self.run_id,
                           defer=True)
        self._bounced(message, outcome)
        return self._sent(outcome)

    def deliver_many(self, messages: Sequence[Message], *,
                     in_flight: int = 16) -> list[Sent]:
        """`deliver` for many customers, `in_flight` messages at a time (their transport
        waits overlap on the target's threads and connections), results in order.

        Each window of `in_flight` keys is claimed in ONE commit, which also commits the
        previous window's outcomes; then the window is published concurrently and its
        outcomes are deferred to the next commit. So at any moment at most `in_flight`
        keys of this deliverer are claimed without a committed outcome: a crash leaves at
        most that many `unknown`, and never a duplicate (docs/scale.md).
        """
        window = max(1, in_flight)
        results: list[Sent] = []
        for start in range(0, len(messages), window):
            results.extend(self._window(messages[start:start + window], window))
        return results

    def _window(self, messages: Sequence[Message], threads: int) -> list[Sent]:
        campaign, key = self.campaign, self.key
        capped = self._take_slots([m.customer_id for m in messages])
        results: list[Sent | None] = [None] * len(messages)
        for i, message in enumerate(messages):
            if message.customer_id in capped:
                results[i] = Sent("excluded", capped[message.customer_id],
                                  {"mailing": self.mailing})
        wanted = [(m.customer_id, key, m.digest)
                  for m, r in zip(messages, results, strict=True) if r is None]
        claims = iter(self.ledger.claim_many(campaign, wanted, self.run_id,
                                             resend_unknown=self.resend_unknown)
                      if wanted else [])
        chosen = []
        for i, message in enumerate(messages):
            if results[i] is not None:
                continue
            claim = next(claims)
            if claim.may_send:
                chosen.append(i)
            else:
                results[i] = self._not_sent(claim, message)
        if self._pool is None or self._pool_size < threads:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(max_workers=threads,
                                            thread_name_prefix="edition-send")
            self._pool_size = threads
        futures = [(i, self._pool.submit(self._publish, messages[i])) for i in chosen]
        recorded: list[tuple[str, str, Outcome]] = []
        broken: list[tuple[str, str, Outcome]] = []
        first_error: BaseException | None = None
        for i, future in futures:  # every message in flight comes back before deciding
            try:
                outcome = future.result()
            except DeliveryError as exc:
                broken.append((messages[i].customer_id, key,
                               Outcome("failed", reason=str(exc))))
                first_error = first_error or exc
                continue
            except BaseException as exc:  # left `sending`: a rerun says unknown
                first_error = first_error or exc
                continue
            recorded.append((messages[i].customer_id, key, outcome))
            results[i] = self._sent(outcome)
            self._bounced(messages[i], outcome)
        self._give_back([c for c, _, o in recorded + broken if o.status == "failed"])
        if broken:  # the target is unusable: these did not leave; then stop the run
            self.ledger.record_many(campaign, recorded + broken, self.run_id)
        elif recorded:
            self.ledger.record_many(campaign, recorded, self.run_id, defer=True)
        if first_error is not None:
            raise first_error
        return [r for r in results if r is not None]

    def _take_slots(self, customer_ids: list[str]) -> dict[str, Reason]:
        """The cap's slots for these customers (none without a gate); the refused ones."""
        if self.gate is None:
            return {}
        if self._slots is None:
            self._slots = self.gate.open()
        return self._slots.take(customer_ids, self.gate.claimant,
                                max_sends=self.gate.max_sends, days=self.gate.days,
                                now=self.gate.now)

    def _give_back(self, customer_ids: list[str]) -> None:
        if self.gate is not None and self._slots is not None and customer_ids:
            self._slots.give_back(customer_ids, self.gate.claimant)

    def _bounced(self, message: Message, outcome: Outcome) -> None:
        """A refusal at send time (550 5.1.1, a full mailbox) is a bounce: into the store."""
        if outcome.bounce and self.bounces is not None:
            self.bounces.record(customer_id=message.customer_id, recipient=message.recipient,
                                level=outcome.bounce, reply=outcome.reason or "")

    def _not_sent(self, claim: Claim, message: Message) -> Sent:
        """What a claim that may not send means for the manifest."""
        if claim is Claim.ALREADY_SENT:
            previous = self.ledger.lookup(self.campaign, message.customer_id, self.key)
            changed = previous is not None and previous.content_hash not in ("",
                                                                              message.digest)
            when = previous.updated_at if previous is not None else "?"
            detail = (f"already sent in mailing {self.mailing} at {when}; not sent again"
                      + ("; the content has changed since" if changed else ""))
            return Sent("sent", Reason("already_sent", detail,
                                       f"already sent in mailing {self.mailing}"),
                        {"provider_id": getattr(previous, "provider_id", None),
                         "mailing": self.mailing, "content_changed": changed})
        return Sent("unknown", Reason("outcome_unknown", (
            "an earlier run stopped while sending this edition; not sent again (use "
            "--resend-unknown to send it)"), "outcome unknown"), {"mailing": self.mailing})

    def _publish(self, message: Message) -> Outcome:
        eml = message.files.get("eml")
        body = eml[1] if eml else None
        if body is not None and self.sign is not None:
            body = self.sign(body)
        delivery = Delivery(campaign=self.campaign, customer_id=message.customer_id,
                            recipient=message.recipient, content_hash=message.digest,
                            message_id=message.message_id, eml=body, files=message.files,
                            mailing=self.mailing, subject=message.subject)
        return self.publisher.publish(delivery)

    def _sent(self, outcome: Outcome) -> Sent:
        reason = None
        if outcome.reason:
            reason = Reason("delivery_failed" if outcome.status == "failed"
                            else "outcome_unknown", outcome.reason)
        return Sent(outcome.status, reason, {"provider_id": outcome.provider_id,
                                             "mailing": self.mailing})

    def flush(self) -> None:
        """Commit deferred outcomes now (a batch is done only when its outcomes are)."""
        self.ledger.flush()

    def close(self) -> None:
        try:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
            self.publisher.__exit__(None, None, None)
        finally:
            self.ledger.close()
            if self.bounces is not None:
                self.bounces.close()
            if self._slots is not None:
                self._slots.close()
                self._slots = None
