"""The click store: every tracked click, one row each, in the house store.

`edition web` records a row per GET of `<base_url>/c/<token>` (web/clicks.py): the
campaign, mailing, version, module and link the token names, the version's segments,
the customer only at `tracking.level: customer`, and when. The client is kept only as a
short keyed hash of (address, user agent), enough to see one client open every link of
a message in a burst, never to find the person.

Machine clicks are counted apart (`machine` true, with the reason): a known link
scanner's user agent, a HEAD request, or a burst — one client opening
`BURST_LINKS` or more different links of one version within `BURST_SECONDS`, the way
mail security gateways fetch every link of a message on delivery. A burst marks all
its clicks, the ones before too.

A run reads counts once (`counts`): clicks by (mailing, version, module, segment),
people's clicks only.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edition.store.database import RecordStore, StoreError, first_line

TABLE = "clicks"
BURST_LINKS = 3         # different links of one version ...
BURST_SECONDS = 10      # ... opened by one client within this many seconds: a machine
NO_SEGMENT = "(none)"
# user agents of link scanners and previewers (lower case substrings)
SCANNERS = ("barracuda", "mimecast", "proofpoint", "safelinks", "bingpreview",
            "symantec", "forcepoint", "trendmicro", "sophos", "fireeye", "cisco-ironport",
            "googleimageproxy", "yahoomailproxy", "slackbot", "facebookexternalhit",
            "twitterbot", "linkedinbot", "whatsapp", "skypeuripreview", "python-requests",
            "curl/", "wget/", "go-http-client", "headlesschrome", "phantomjs", "bot",
            "spider", "crawler", "scanner", "preview")
_SEPARATOR = "\n"


@dataclass(frozen=True)
class StoredClick:
    """One recorded click, as reports read it."""

    campaign: str
    mailing: str
    version: str
    module: str
    url: str
    segments: tuple[str, ...]
    customer_id: str | None
    clicked_at: str
    machine: bool
    why: str


def scanner_reason(user_agent: str, method: str = "GET") -> str:
    """Why this request is a machine's by its look alone ("" when it looks human)."""
    if method.upper() == "HEAD":
        return "HEAD request"
    agent = (user_agent or "").strip().lower()
    if not agent:
        return "no user agent"
    found = next((s for s in SCANNERS if s in agent), None)
    return f"scanner user agent ({found})" if found else ""


def _declare_table() -> Any:
    from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text

    metadata = MetaData()
    return Table(
        TABLE, metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("campaign", String(255), nullable=False),
        Column("mailing", String(255), nullable=False),
        Column("version", String(64), nullable=False),
        Column("module", String(255), nullable=False),
        Column("url", Text, nullable=False),
        Column("segments", Text, nullable=False),       # newline-separated
        Column("customer_id", String(1024), nullable=True),
        Column("client", String(32), nullable=False),   # keyed hash, never the address
        Column("clicked_at", String(32), nullable=False),
        Column("machine", Boolean, nullable=False),
        Column("why", String(255), nullable=False),
        Index("clicks_by_mailing", "campaign", "mailing"),
        Index("clicks_by_client", "client", "clicked_at"),
    )


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ClickStore(RecordStore):
    """The clicks of the house store at one location (thread-safe)."""

    declare = staticmethod(_declare_table)

    def record(self, *, campaign: str, mailing: str, version: str, module: str, url: str,
               segments: Sequence[str], customer_id: str | None, client: str,
               machine_reason: str = "", at: dt.datetime | None = None) -> bool:
        """Record one click; True when it counts as a person's (not a machine's)."""
        from sqlalchemy import and_, select, update
        from sqlalchemy.exc import SQLAlchemyError

        when = at or dt.datetime.now(dt.UTC)
        t = self.table
        row = {"campaign": campaign[:255], "mailing": mailing[:255], "version": version[:64],
               "module": module[:255], "url": url, "segments": _SEPARATOR.join(segments),
               "customer_id": customer_id, "client": client[:32], "clicked_at": _iso(when),
               "machine": bool(machine_reason), "why": machine_reason[:255]}
        try:
            with self.database.engine().begin() as connection:
                connection.execute(t.insert().values(**row))
                if machine_reason:
                    return False
                since = _iso(when - dt.timedelta(seconds=BURST_SECONDS))
                recent = and_(t.c.client == row["client"], t.c.campaign == row["campaign"],
                              t.c.mailing == row["mailing"], t.c.version == row["version"],
                              t.c.clicked_at >= since, t.c.clicked_at <= row["clicked_at"])
                links = {u for (u,) in connection.execute(select(t.c.url).where(recent))}
                if len(links) < BURST_LINKS:
                    return True
                why = f"burst: {len(links)} links within {BURST_SECONDS} s"
                connection.execute(update(t).where(recent).values(machine=True, why=why))
                return False
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record a click in the store {self.database.shown}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None

    def clicks(self, campaign: str, mailing: str | None = None) -> list[StoredClick]:
        """Every click of a campaign (one mailing's with `mailing`), oldest first."""
        if not self.database.exists():
            return []
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        t = self.table
        query = select(t.c.campaign, t.c.mailing, t.c.version, t.c.module, t.c.url,
                       t.c.segments, t.c.customer_id, t.c.clicked_at, t.c.machine,
                       t.c.why).where(t.c.campaign == campaign)
        if mailing is not None:
            query = query.where(t.c.mailing == mailing)
        try:
            with self.database.engine().connect() as connection:
                return [StoredClick(c, m, v, mod, u, tuple(s.split(_SEPARATOR)) if s else (),
                                    who, at, bool(machine), why)
                        for c, m, v, mod, u, s, who, at, machine, why in connection.execute(
                            query.order_by(t.c.id))]
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read clicks from the store {self.database.shown}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None

    def counts(self, campaign: str, mailing: str | None = None) -> ClickCounts:
        """People's clicks per (mailing, version, module, segment), and machine clicks."""
        counts = ClickCounts()
        for click in self.clicks(campaign, mailing):
            if click.machine:
                counts.machine += 1
                continue
            for segment in click.segments or (NO_SEGMENT,):
                counts.people[(click.mailing, click.version, click.module, segment)] += 1
            counts.total += 1
        return counts


class ClickCounts:
    """A snapshot of click counts (read once per run)."""

    def __init__(self) -> None:
        self.people: Counter[tuple[str, str, str, str]] = Counter()
        self.machine = 0
        self.total = 0


__all__ = ["BURST_LINKS", "BURST_SECONDS", "NO_SEGMENT", "SCANNERS", "ClickCounts",
           "ClickStore", "StoredClick", "scanner_reason"]
