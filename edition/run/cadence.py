"""A run's cadence: who is held back from this mailing by what spans campaigns.

The house settings (edition.yaml, overridden by the campaign) and one snapshot of the
send history are read once when the run's pipeline is made; `hold(customer_id, fields)`
then answers per customer, in memory:

1. the global holdout (marketing only) -> `excluded`, "holdout (global, …)";
2. the customer's weekly/monthly choice, when a preference snapshot is given, and the
   frequency cap (marketing only) -> `excluded`, "frequency: monthly, last sent D" /
   "frequency cap: …";
3. the send window (when sending) -> `excluded`, "deferred until T (…)": not sent now;
   a later run of the same mailing sends them once their window is open, exactly once
   through the send ledger.

Dry runs apply 1 and 2, so preflight and the report show what the cap takes; a dry run
is not a send, so it defers nobody.

Under a cap, 2 also reads the house store's cap slots (edition.store.cap_slots) once:
a slot another campaign took since the ledgers were read, or one an approved run of
higher priority holds for today, excludes the customer with a reason naming that
campaign ("frequency cap: taken by news-a" in the report's counts: how many customers
the cap takes from this campaign, and for whom). At the moment of sending, `gate()`
takes each slot atomically across campaigns (edition.send.delivery.CapGate).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from edition.audience.frequency import PREFERENCE_DAYS, cap_reason, preference_reason
from edition.audience.global_holdout import holdout_reason
from edition.audience.preferences import PreferenceSnapshot
from edition.audience.preferred_time import DAY_FIELD, HOUR_FIELD, preferred_time_deferral
from edition.audience.windows import TIMEZONE_FIELD, deferral
from edition.content.campaign import Campaign
from edition.content.house import FrequencyCap, GlobalHoldout, House, SendWindow, load_house
from edition.outcomes import Reason
from edition.send.history import SendHistory, read_history
from edition.store.cap_slots import CapSlots, Claimant, Slot, house_store_location, taken_by

Held = tuple[str, Reason]   # (manifest status, reason), as Pipeline's `skipped`


@dataclass(frozen=True)
class Cadence:
    """The run's settings and snapshots; `hold` is pure and cheap per customer."""

    now: dt.datetime
    campaign: str = ""
    mailing: str | None = None   # the mailing being sent: its sends do not count
    cap: FrequencyCap | None = None
    window: SendWindow | None = None
    holdout: GlobalHoldout | None = None
    history: SendHistory | None = None
    preferences: Mapping[str, str] = field(default_factory=dict)   # id -> weekly|monthly…
    priority: int = 0                 # the campaign's, on a crowded day
    slots_at: str | None = None       # the house store holding the cap's slots
    slots: Mapping[str, tuple[Slot, ...]] = field(default_factory=dict)

    def gate(self) -> Any:
        """The cap at the moment of sending (a CapGate), or None without a cap."""
        if self.cap is None or self.slots_at is None:
            return None
        from edition.send.delivery import CapGate

        return CapGate(self.slots_at, Claimant(self.campaign, str(self.mailing or ""),
                                               self.priority),
                       self.cap.max, self.cap.days, self.now)

    def _slot_reason(self, cid: str) -> Reason | None:
        """The cap's slots other campaigns took or hold (with priority) for today."""
        found = self.slots.get(cid)
        if not found or self.cap is None:
            return None
        mine = next((s for s in found if s.campaign == self.campaign
                     and (self.mailing is None or s.mailing == self.mailing)), None)
        mailing = self.mailing if self.mailing is not None else (
            mine.mailing if mine is not None else "")
        return taken_by(found, Claimant(self.campaign, mailing, self.priority),
                        max_sends=self.cap.max, days=self.cap.days, now=self.now)

    def hold(self, customer_id: Any, fields: Mapping[str, Any]) -> Held | None:
        cid = str(customer_id)
        if self.holdout is not None:
            reason = holdout_reason(self.holdout.percent, self.holdout.salt, cid)
            if reason is not None:
                return "excluded", reason
        if self.history is not None:
            # this mailing's own messages are the ledger's business ("already sent")
            counted = [s for s in self.history.of(cid)
                       if (s.campaign, s.mailing) != (self.campaign, self.mailing)]
            sends = [s.at for s in counted]
            reason = (preference_reason(self.preferences.get(cid), sends, self.now)
                      or cap_reason(self.cap, sends, self.now,
                                    by=counted[0].campaign if counted else None)
                      or self._slot_reason(cid))
            if reason is not None:
                return "excluded", reason
        deferred = deferral(self.window, fields, self.now)
        if deferred is not None:
            return "excluded", deferred[1]
        return None

    def facts(self) -> dict[str, Any]:
        """What run.json records of it."""
        return {"now": self.now.isoformat(),
                "frequency_cap": self.cap.model_dump() if self.cap else None,
                "send_window": self.window.model_dump(mode="json") if self.window else None,
                "global_holdout": ({"percent": self.holdout.percent}
                                   if self.holdout else None),
                "priority": self.priority,
                "cap_slots": sum(len(v) for v in self.slots.values()),
                "history": ({"since": self.history.since.isoformat(),
                             "sends": len(self.history), "ledgers": list(self.history.ledgers)}
                            if self.history is not None else None)}


def priority_of(campaign: Campaign, house: House) -> int:
    """The campaign's priority on a crowded day: its own, else edition.yaml's."""
    return campaign.priority if campaign.priority is not None else house.priority


def settings(campaign: Campaign, house: House) -> tuple[FrequencyCap | None,
                                                         SendWindow | None,
                                                         GlobalHoldout | None]:
    """The cap, window and holdout this campaign runs under: its own block, else the
    house's; `off` turns one off. Transactional mail is never capped nor held out, and
    waits for a window only when its campaign sets one."""
    marketing = campaign.kind != "transactional"
    cap = campaign.frequency_cap if campaign.frequency_cap is not None else (
        house.frequency_cap if marketing else None)
    window = campaign.send_window if campaign.send_window is not None else (
        house.send_window if marketing else None)
    return ((cap if cap is not None and not cap.off and marketing else None),
            (window if window is not None and not window.off else None),
            (house.global_holdout if marketing and house.global_holdout
             and house.global_holdout.percent > 0 else None))


def cadence_for(campaign: Campaign, *, now: dt.datetime | None, sending: bool,
                mailing: str | None, preferences: Mapping[str, str] | None = None
                ) -> Cadence | None:
    """The run's cadence, or None when nothing spans campaigns for it (no house settings,
    a transactional campaign): the run then reads no history at all."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    house = load_house(campaign.root)
    cap, window, holdout = settings(campaign, house)
    preferences = {k: v for k, v in (preferences or {}).items() if v in PREFERENCE_DAYS}
    if campaign.kind == "transactional":
        preferences = {}
    if not sending:
        window = None
    if cap is None and window is None and holdout is None and not preferences:
        return None
    history = None
    if cap is not None or preferences:
        days = max([cap.days if cap is not None else 0,
                    *(PREFERENCE_DAYS[v] for v in set(preferences.values()))])
        history = _history(campaign.root, now, days)
    slots_at, slots = None, {}
    if cap is not None:
        slots_at = house_store_location(campaign.root)
        slots = _slots(slots_at, now, cap.days)
    return Cadence(now, campaign.name, mailing, cap, window, holdout, history, preferences,
                   priority_of(campaign, house), slots_at, slots)


def cap_gate(campaign: Campaign, *, mailing: str, now: dt.datetime) -> Any:
    """The cap at the moment of sending for this campaign's mailing (a CapGate), or None
    (no cap: transactional, off): edition.yaml read, no history."""
    house = load_house(campaign.root)
    cap = settings(campaign, house)[0]
    if cap is None:
        return None
    return Cadence(now.astimezone(dt.UTC), campaign.name, mailing, cap,
                   priority=priority_of(campaign, house),
                   slots_at=house_store_location(campaign.root)).gate()


def _slots(location: str, now: dt.datetime, days: int) -> dict[str, tuple[Slot, ...]]:
    with CapSlots(location) as store:
        return store.snapshot(now=now, days=days)


# A run reads the history once: its preflight (a dry pipeline), its sending pipeline and
# run.json's record ask for the same snapshot (same root, clock, days and mailing).
_HISTORIES: LRUCache[tuple[Any, ...], SendHistory] = LRUCache(4)
_HISTORIES_LOCK = threading.Lock()


def _history(root: Path, now: dt.datetime, days: int) -> SendHistory:
    key = (str(Path(root).resolve()), now, days)
    with _HISTORIES_LOCK:
        found = _HISTORIES.get(key)
        if found is None:
            found = _HISTORIES[key] = read_history(root, now=now, days=days)
    return found


def cadence_of_run(options: Any, plan: Any, work: Any = None,
                   preferences: PreferenceSnapshot | None = None) -> Cadence | None:
    """The run lifecycle's one call: this run's cadence (RunOptions, Plan). A worker with
    the run's Work takes the snapshot the main process read (a worker elsewhere has
    neither the ledgers nor edition.yaml), for the mailing its options name now.

    A run asks several times in one process (its preflight's dry pipeline, its sending
    pipeline, run.json's record): edition.yaml, the preference snapshot and the history
    are read once per run (`_RUNS`) and the dry run's cadence is the sending one without
    its window. `preferences` is the snapshot the caller loaded already (the pipeline's).
    """
    if work is not None:
        found = getattr(work, "cadence", None)
        return dataclasses.replace(found, mailing=options.mailing) if found else None
    if options.started is None or options.run_id is None:   # not a run: nothing to share
        return cadence_for(plan.campaign, now=options.started, sending=bool(options.send),
                           mailing=options.mailing,
                           preferences=_frequencies(plan, preferences))
    key = (str(Path(plan.campaign.root).resolve()), plan.campaign.name, options.run_id,
           options.started, options.mailing, getattr(plan, "as_of", None))
    with _RUNS_LOCK:
        if key in _RUNS:
            sending = _RUNS[key]
        else:
            sending = _RUNS[key] = cadence_for(
                plan.campaign, now=options.started, sending=True, mailing=options.mailing,
                preferences=_frequencies(plan, preferences))
    return sending if options.send or sending is None else _dry(sending)


# A run's cadence (as sent) by (root, campaign, run id, clock, mailing, run date).
_RUNS: LRUCache[tuple[Any, ...], Cadence | None] = LRUCache(4)
_RUNS_LOCK = threading.Lock()


def _dry(sending: Cadence) -> Cadence | None:
    """What `cadence_for(sending=False)` gives for the same run: a dry run defers nobody."""
    if sending.cap is None and sending.holdout is None and not sending.preferences:
        return None
    return dataclasses.replace(sending, window=None)


def cap_in_force(campaign: Campaign) -> bool:
    """Whether the house's frequency cap applies to the campaign's sends (its slots are
    taken in the house store as each message leaves)."""
    return campaign.kind != "transactional" and \
        settings(campaign, load_house(campaign.root))[0] is not None


def cadence_at_send(campaign: Campaign, *, now: dt.datetime, mailing: str | None,
                    as_of: Any = None) -> Cadence | None:
    """An approved run's cadence when it is sent (edition/review/sending.py): the
    holdout, the weekly/monthly choices and the cap over the send history as it is now,
    so a customer capped since the dry run (another campaign went out in between) is not
    mailed. The send window is not here: the approved rows do not carry the customer's
    time zone, so `windows_at_send` reads it from the customer file (a wrong zone would
    send at 3 a.m. or hold back the wrong people)."""
    from types import SimpleNamespace

    preferences = _frequencies(SimpleNamespace(campaign=campaign, as_of=as_of), None)
    return cadence_for(campaign, now=now, sending=False, mailing=mailing,
                       preferences=preferences)


# the customer fields a send window and a preferred time read: all a send of an approved
# run needs of the customer file (its rows do not carry them)
WINDOW_FIELDS = (TIMEZONE_FIELD, DAY_FIELD, HOUR_FIELD)


@dataclass(frozen=True)
class SendTimeWindows:
    """An approved run's send windows at the moment it is sent (review/sending.py): the
    house's or campaign's window and the customers' preferred day and hour, in each
    customer's `timezone`, as the customer file and the preference center say now."""

    now: dt.datetime
    window: SendWindow | None
    fields: Mapping[str, Mapping[str, Any]]   # customer id -> WINDOW_FIELDS
    note: str = ""                            # the customer file could not be read: why

    def deferred(self, customer_id: str) -> Reason | None:
        """Why this customer's message waits now ("deferred until T …"), or None."""
        fields = {"id": customer_id, **self.fields.get(str(customer_id), {})}
        found = deferral(self.window, fields, self.now)
        if found is not None:
            return found[1]
        return preferred_time_deferral(fields, self.now)


def windows_at_send(campaign: Campaign, *, now: dt.datetime, customers: Any,
                    as_of: dt.date | None = None) -> SendTimeWindows | None:
    """The windows an approved send of `campaign` re-checks, or None (no window, no
    preferred times). `customers`: the run's customer source (edition.run.context.
    customers_file); each customer's time zone and preferred time are read from it now,
    and a customer no longer in it gets the window's own zone."""
    from edition.audience.customers import read_customers

    window = settings(campaign, load_house(campaign.root))[1]
    preferences = PreferenceSnapshot.load(campaign, as_of)
    timed = bool(getattr(campaign.preferences, "time", False)) and bool(preferences.by_id)
    fields: dict[str, dict[str, Any]] = {}
    note = ""
    try:
        for row in read_customers(customers, need_email=False, declared=campaign.fields):
            if row.fields is None:
                continue
            found = dict(row.fields)
            if timed:
                preferences.apply(found)
            kept = {k: found[k] for k in WINDOW_FIELDS if found.get(k) not in (None, "")}
            if kept:
                fields[str(row.customer_id)] = kept
    except Exception as exc:  # an unreadable file: the window's own zone for everyone
        note = f"the customer file could not be read for time zones ({exc})"
    if window is None and not any(DAY_FIELD in f or HOUR_FIELD in f for f in fields.values()):
        return None
    return SendTimeWindows(now.astimezone(dt.UTC), window, fields, note)


def _frequencies(plan: Any, snapshot: PreferenceSnapshot | None) -> dict[str, str]:
    """customer id -> the frequency chosen in the preference center (weekly, monthly, …),
    from the campaign's stored choices (`snapshot` when the caller loaded them already);
    {} when the campaign has no preference center."""
    if getattr(plan.campaign, "preferences", None) is None:
        return {}
    if snapshot is None:
        snapshot = PreferenceSnapshot.load(plan.campaign, getattr(plan, "as_of", None))
    return {cid: stored.choices.frequency for cid, stored in snapshot.by_id.items()
            if stored.choices.frequency}


def recorded(options: Any, plan: Any) -> dict[str, Any]:
    """run.json's record of the run's cadence (settings, the history snapshot's size)."""
    found = cadence_of_run(options, plan)
    return {"cadence": found.facts() if found is not None else None}
