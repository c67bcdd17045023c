"""The PostgreSQL ledger's statements, built once (SQLAlchemy caches their compiled
form; `Precompiled` those it will not): claims, outcomes, mailings, and the columns of a row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from edition.send.ledger.postgres_schema import events, mailings, sends
from edition.send.ledger.records import LedgerEntry

if TYPE_CHECKING:
    from sqlalchemy import CursorResult
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.dml import Insert, ReturningInsert
    from sqlalchemy.sql.elements import ClauseElement


# (UPDATE … SET reserves the column names for its own parameters, hence k_…)
KEY = and_(sends.c.campaign == bindparam("k_campaign"),
            sends.c.customer_id == bindparam("k_customer_id"),
            sends.c.send_key == bindparam("k_send_key"))


def key_params(campaign: str, customer_id: str, send_key: str) -> dict[str, str]:
    return {"campaign": campaign, "customer_id": customer_id, "send_key": send_key,
            "k_campaign": campaign, "k_customer_id": customer_id, "k_send_key": send_key}


def _event_values(state: object, provider_id: object = None,
                  reason: object = None) -> dict[str, object]:
    return {"campaign": bindparam("campaign"), "customer_id": bindparam("customer_id"),
            "send_key": bindparam("send_key"), "run_id": bindparam("run_id"),
            "state": state, "provider_id": provider_id, "reason": reason,
            "at": bindparam("now")}


def _claim_statement() -> ReturningInsert[tuple[int]]:
    """The new row and its `sending` event, or nothing when the key exists: one statement."""
    claimed = (
        insert(sends)
        .values(campaign=bindparam("campaign"), customer_id=bindparam("customer_id"),
                send_key=bindparam("send_key"), content_hash=bindparam("content_hash"),
                state="sending", run_id=bindparam("run_id"), attempts=1,
                claimed_at=bindparam("now"), updated_at=bindparam("now"))
        .on_conflict_do_nothing(index_elements=["campaign", "customer_id", "send_key"])
        .returning(sends.c.campaign, sends.c.customer_id, sends.c.send_key, sends.c.run_id,
                   sends.c.claimed_at)
        .cte("claimed")
    )
    row = select(claimed.c.campaign, claimed.c.customer_id, claimed.c.send_key,
                 claimed.c.run_id, literal("sending"), claimed.c.claimed_at)
    return (insert(events)
            .from_select(["campaign", "customer_id", "send_key", "run_id", "state", "at"], row)
            .add_cte(claimed)
            .returning(events.c.seq))


class Precompiled:
    """A statement SQLAlchemy will not cache (the PostgreSQL dialect's INSERT … ON
    CONFLICT is built afresh on every execute, about a millisecond of Python): compiled
    once per dialect, then sent as its SQL string with the bound values merged in."""

    def __init__(self, statement: ClauseElement):
        self.statement = statement
        self._compiled: dict[type[Dialect], tuple[str, dict[str, object]]] = {}

    def __call__(self, db: Connection,
                 params: dict[str, object] | list[dict[str, object]]
                 ) -> CursorResult[tuple[int]]:
        kind = type(db.dialect)
        if kind not in self._compiled:
            compiled = self.statement.compile(dialect=db.dialect)
            self._compiled[kind] = (compiled.string, dict(compiled.params))
        sql, defaults = self._compiled[kind]
        if isinstance(params, list):
            return db.exec_driver_sql(sql, [defaults | p for p in params])
        return db.exec_driver_sql(sql, defaults | params)


CLAIM = Precompiled(_claim_statement())
# Many fresh keys in one statement (claim_many): the rows and their `sending` events,
# nothing for keys that exist (those are decided one by one, as `claim` does).
CLAIM_MANY = text(
    "WITH claimed AS ("
    " INSERT INTO edition_sends (campaign, customer_id, send_key, content_hash, state,"
    " run_id, attempts, claimed_at, updated_at)"
    " SELECT :campaign, t.c, t.k, t.h, 'sending', :run_id, 1, :now, :now"
    " FROM unnest(CAST(:cids AS text[]), CAST(:keys AS text[]), CAST(:hashes AS text[]))"
    " AS t(c, k, h)"
    " ON CONFLICT (campaign, customer_id, send_key) DO NOTHING"
    " RETURNING campaign, customer_id, send_key, run_id, claimed_at),"
    " logged AS ("
    " INSERT INTO edition_events (campaign, customer_id, send_key, run_id, state, at)"
    " SELECT campaign, customer_id, send_key, run_id, 'sending', claimed_at FROM claimed)"
    " SELECT customer_id, send_key FROM claimed")
# Many outcomes in one statement: what `RECORD` does row after row, over arrays (one
# round trip for a whole window of outcomes); of one key's rows, a `sent` wins, else the last.
RECORD_MANY = text(
    "WITH rows AS ("
    " SELECT * FROM unnest(CAST(:campaigns AS text[]), CAST(:cids AS text[]),"
    " CAST(:keys AS text[]), CAST(:states AS text[]), CAST(:providers AS text[]),"
    " CAST(:reasons AS text[]), CAST(:runs AS text[]), CAST(:ats AS timestamptz[]))"
    " WITH ORDINALITY AS t(campaign, customer_id, send_key, state, provider_id, reason,"
    " run_id, at, n)),"
    " recorded AS ("
    " INSERT INTO edition_sends AS s (campaign, customer_id, send_key, state, run_id,"
    " attempts, provider_id, reason, claimed_at, updated_at)"
    " SELECT DISTINCT ON (campaign, customer_id, send_key) campaign, customer_id, send_key,"
    " state, run_id, 1, provider_id, reason, at, at FROM rows"
    " ORDER BY campaign, customer_id, send_key, (state = 'sent') DESC, n DESC"
    " ON CONFLICT (campaign, customer_id, send_key) DO UPDATE SET"
    " state = excluded.state, run_id = excluded.run_id, provider_id = excluded.provider_id,"
    " reason = excluded.reason, updated_at = excluded.updated_at"
    " WHERE s.state != 'sent')"
    " INSERT INTO edition_events (campaign, customer_id, send_key, run_id, state,"
    " provider_id, reason, at)"
    " SELECT campaign, customer_id, send_key, run_id, state, provider_id, reason, at FROM rows"
    " ORDER BY n")
LOCK_ROW = select(sends.c.state, sends.c.run_id).where(KEY).with_for_update()
SENT_TO_CUSTOMER: Select[tuple[int]] = (select(literal_column("1", Integer)).select_from(sends)
                     .where(sends.c.campaign == bindparam("campaign"),
                            sends.c.customer_id == bindparam("customer_id"),
                            sends.c.state == "sent").limit(1))
MARK_UNKNOWN = (update(sends).where(KEY)
                 .values(state="unknown", reason=bindparam("reason"),
                         updated_at=bindparam("now")))
RECLAIM = (update(sends).where(KEY)
            .values(state="sending", run_id=bindparam("run_id"),
                    attempts=sends.c.attempts + 1, provider_id=None,
                    content_hash=bindparam("content_hash"), reason=None,
                    claimed_at=bindparam("now"), updated_at=bindparam("now")))
EVENT = sa_insert(events).values(**_event_values(bindparam("state"), bindparam("provider_id"),
                                                  bindparam("reason")))


def _record_statement() -> Insert:
    """An outcome and its event: one statement, so a group of records is one round trip."""
    upsert = insert(sends).values(
        campaign=bindparam("campaign"), customer_id=bindparam("customer_id"),
        send_key=bindparam("send_key"), state=bindparam("state"), run_id=bindparam("run_id"),
        attempts=1, provider_id=bindparam("provider_id"), reason=bindparam("reason"),
        claimed_at=bindparam("now"), updated_at=bindparam("now"))
    # Never let a later failure overwrite an acknowledged send: a `failed` row may be
    # claimed again, and that would send it twice. (The event is kept either way.)
    recorded = upsert.on_conflict_do_update(
        index_elements=["campaign", "customer_id", "send_key"],
        set_={"state": upsert.excluded.state, "run_id": upsert.excluded.run_id,
              "provider_id": upsert.excluded.provider_id, "reason": upsert.excluded.reason,
              "updated_at": upsert.excluded.updated_at},
        where=sends.c.state != "sent").cte("recorded")
    return sa_insert(events).values(**_event_values(
        bindparam("state"), bindparam("provider_id"), bindparam("reason"))).add_cte(recorded)


RECORD = Precompiled(_record_statement())
_open = insert(mailings).values(
    campaign=bindparam("campaign"), mailing=bindparam("mailing"),
    channel=bindparam("channel"), as_of=bindparam("as_of"), status="open",
    run_id=bindparam("run_id"), expected=bindparam("expected"),
    started_at=bindparam("now"))
OPEN_MAILING = Precompiled(_open.on_conflict_do_update(
    index_elements=["campaign", "mailing", "channel"],
    set_={"status": "open", "run_id": _open.excluded.run_id,
          "expected": func.greatest(mailings.c.expected, _open.excluded.expected),
          "finished_at": None}))
FINISH_MAILING = (update(mailings)
                   .where(mailings.c.campaign == bindparam("m_campaign"),
                          mailings.c.mailing == bindparam("m_mailing"),
                          mailings.c.channel == bindparam("m_channel"))
                   .values(status="finished", finished_at=bindparam("now")))
ENTRY_COLUMNS = [sends.c[name] for name in LedgerEntry.__dataclass_fields__]
