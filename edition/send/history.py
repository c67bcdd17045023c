"""Who was sent marketing lately, across every campaign of the house: one read per run.

The frequency cap and the preference center's weekly/monthly count messages a customer
got from any campaign, not only this one. Each campaign may keep its own send ledger
(out/<campaign>/ledger.sqlite by default), or share one (`delivery.ledger`,
EDITION_LEDGER_URL, a PostgreSQL database): this module finds every ledger of the
content root, reads the `sent` (and `unknown`: the provider may have it) rows of the
last days from each once, and hands the run a plain snapshot, customer id -> send
times. Transactional campaigns' messages do not count; the mailing being sent now does
not count either (edition.run.cadence leaves it out: the ledger keeps each customer at
one message in it).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from edition.databases import has_password, is_database_url, masked, scrub, sqlalchemy_url
from edition.errors import ContentError, LedgerError
from edition.send.ledger.location import LEDGER_URL_ENV, ledger_location
from edition.send.ledger.records import KEY_JOIN

COUNTED_STATES = ("sent", "unknown")
CAMPAIGN_SUFFIXES = (".yaml", ".yml")


class Send(NamedTuple):
    """One marketing message a customer got (a tuple: a run may read 100,000s)."""

    at: dt.datetime
    campaign: str
    mailing: str


@dataclass(frozen=True)
class SendHistory:
    """The snapshot: customer id -> the marketing messages sent to them since `since`,
    newest first."""

    since: dt.datetime
    sends: Mapping[str, tuple[Send, ...]] = field(default_factory=dict)
    ledgers: tuple[str, ...] = ()     # where it was read (URLs masked), for run.json

    def of(self, customer_id: str) -> tuple[Send, ...]:
        return self.sends.get(str(customer_id), ())

    def count_since(self, customer_id: str, since: dt.datetime) -> int:
        return sum(1 for s in self.of(customer_id) if s.at >= since)

    def last(self, customer_id: str) -> Send | None:
        sends = self.of(customer_id)
        return sends[0] if sends else None

    def __len__(self) -> int:
        return sum(len(v) for v in self.sends.values())


@dataclass(frozen=True)
class HouseCampaign:
    """What the history needs of a campaign file: its name, kind and ledger."""

    name: str
    kind: str
    ledger: str | None


def house_campaigns(root: Path) -> list[HouseCampaign]:
    """Every campaign file under campaigns/, read lightly (a broken one is its own run's
    problem: here its name, kind and ledger are taken when they can be)."""
    folder = Path(root) / "campaigns"
    found: list[HouseCampaign] = []
    if not folder.is_dir():
        return found
    for path in sorted(p for p in folder.iterdir() if p.suffix in CAMPAIGN_SUFFIXES):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeError, yaml.YAMLError):
            continue
        if not isinstance(data, dict):
            continue
        delivery = data.get("delivery")
        if not isinstance(delivery, dict):
            delivery = {}
        ledger = delivery.get("ledger")
        found.append(HouseCampaign(str(data.get("name") or path.stem),
                                   str(data.get("kind") or "marketing"),
                                   str(ledger) if ledger else None))
    return found


def house_ledgers(root: Path, campaigns: Iterable[HouseCampaign],
                  environ: Mapping[str, str] | None = None) -> list[str | Path]:
    """Every send ledger of the content root: each campaign's, the default ledgers under
    out/ (also of campaigns since removed), EDITION_LEDGER_URL's."""
    environ = os.environ if environ is None else environ
    locations: dict[str, str | Path] = {}

    def add(location: str | Path) -> None:
        # one database named with and without its password (the campaign's URL may not
        # carry one, EDITION_LEDGER_URL may) is one ledger: read once, counted once
        if is_database_url(location):
            url = sqlalchemy_url(str(location))
            key = repr((url.username, url.host, url.port, url.database))
        else:
            key = str(Path(location).resolve())
        if key not in locations or (is_database_url(location)
                                    and has_password(str(location))):
            locations[key] = location   # the spelling that can log in

    for campaign in campaigns:
        try:
            add(ledger_location(campaign.ledger, root=root, campaign=campaign.name,
                                environ=environ))
        except ContentError:  # a password in a campaign file: its own run refuses it
            continue
    out = Path(root) / "out"
    if out.is_dir():
        for path in sorted(out.glob("*/ledger.sqlite")):
            add(path)
    from_env = environ.get(LEDGER_URL_ENV, "").strip()
    if from_env:
        add(from_env if is_database_url(from_env) else Path(from_env))
    return list(locations.values())


def read_history(root: Path, *, now: dt.datetime, days: int,
                 current: tuple[str, str] | None = None,
                 environ: Mapping[str, str] | None = None) -> SendHistory:
    """The marketing sends of the last `days` days before `now`, from every ledger of the
    house; `current` (campaign, mailing) is left out."""
    since = now - dt.timedelta(days=days)
    campaigns = house_campaigns(root)
    transactional = {c.name for c in campaigns if c.kind == "transactional"}
    sends: dict[str, list[Send]] = {}
    names: dict[str, str] = {}
    read: list[str] = []
    for location in house_ledgers(root, campaigns, environ):
        rows = (_postgres_rows(str(location), since) if is_database_url(location)
                else _sqlite_rows(Path(location), since))
        read.append(masked(str(location)))
        for campaign, customer, mailing, at in rows:
            if campaign in transactional or (campaign, mailing) == current:
                continue
            found = sends.get(customer)
            if found is None:
                found = sends[customer] = []
            # a few campaigns and mailings, each name once in memory (not once per row)
            found.append(Send(at, names.setdefault(campaign, campaign),
                              names.setdefault(mailing, mailing)))
    return SendHistory(since, {cid: tuple(sorted(v, key=lambda s: s.at, reverse=True))
                               for cid, v in sends.items()}, tuple(read))


def _when(value: Any) -> dt.datetime:
    at = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _sqlite_rows(path: Path, since: dt.datetime) -> Iterator[tuple[str, str, str, dt.datetime]]:
    if not path.is_file():
        return
    try:
        # read-only: a history read never creates a ledger nor takes its run lock
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read the send history: {exc}", str(path)) from None
    try:
        marks = ",".join("?" for _ in COUNTED_STATES)
        # the ledger writes UTC ISO times (…+00:00), so text order is time order
        cursor = db.execute(
            f"SELECT campaign, customer_id, substr(send_key, 1, instr(send_key || ?, ?) - 1), "
            f"updated_at FROM sends WHERE state IN ({marks}) AND updated_at >= ?",
            (KEY_JOIN, KEY_JOIN, *COUNTED_STATES,
             since.astimezone(dt.UTC).isoformat(timespec="milliseconds")))
        parse = dt.datetime.fromisoformat
        for campaign, customer, mailing, at in cursor:
            when = parse(at)   # the ledger writes UTC with its offset; older rows may not
            yield campaign, customer, mailing, (when if when.tzinfo else
                                                when.replace(tzinfo=dt.UTC))
    except sqlite3.Error as exc:   # not a database, locked past the timeout, …
        if "no such table" in str(exc):
            return
        raise LedgerError(f"cannot read the send history (the frequency cap counts every "
                          f"campaign's sends): {exc}", str(path)) from None
    finally:
        db.close()


def _postgres_rows(url: str, since: dt.datetime
                   ) -> Iterator[tuple[str, str, str, dt.datetime]]:
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from edition.databases import create_engine_for
    from edition.send.ledger.postgres_schema import sends

    engine = create_engine_for(sqlalchemy_url(url), application_name="edition-history")
    try:
        with engine.connect() as db:
            if db.execute(select(func.to_regclass(sends.name))).scalar() is None:
                return
            mailing = func.split_part(sends.c.send_key, KEY_JOIN, 1)
            query = select(sends.c.campaign, sends.c.customer_id, mailing,
                           sends.c.updated_at).where(sends.c.state.in_(COUNTED_STATES),
                                                     sends.c.updated_at >= since)
            for campaign, customer, mailed, at in db.execute(query):
                yield str(campaign), str(customer), str(mailed), _when(at)
    except SQLAlchemyError as exc:
        raise LedgerError(f"cannot read the send history: {scrub(str(exc), url)}",
                          masked(url)) from None
    finally:
        engine.dispose()
