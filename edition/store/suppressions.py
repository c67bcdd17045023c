"""The suppression store: who unsubscribed (or bounced), written by the unsubscribe server.

One table, written with SQLAlchemy Core so the same class serves SQLite (the default, a
file under the content root) and PostgreSQL (where the team has one; psycopg 3).

Scopes. An unsubscribe names the campaign its link came from: one-click in a mail
program and the page's main button unsubscribe from that campaign (the "list" of RFC
2369/8058); the page's second button records scope `*`, all marketing. A marketing run
honours the rows of its own campaign and every `*` row; bounces and complaints are
always `*` and are honoured by transactional campaigns too. A row matches a customer by
id or by address hash, so one address under two customer ids is one person.

Where. `EDITION_SUPPRESSION_STORE` (a path or URL, may hold credentials), else the
campaign's `suppression.store`, else `out/suppression.sqlite` under the content root —
one store for every campaign of the root, so an "all marketing" unsubscribe reaches
all of them.

A run reads the store once (`snapshot`) and asks the snapshot per customer; the
unsubscribe server records one row per request (`record`, idempotent: the first
record of a person in a scope wins and keeps its date).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edition import private
from edition.databases import masked
from edition.errors import RunError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from edition.content.campaign import Campaign

STORE_ENV = "EDITION_SUPPRESSION_STORE"
DEFAULT_STORE = Path("out") / "suppression.sqlite"
ALL_MARKETING = "*"
KINDS = ("unsubscribed", "bounced", "complained")
TABLE = "suppressions"


class StoreError(RunError):
    """The suppression store cannot be opened, read or written (exit 1)."""


@dataclass(frozen=True)
class Entry:
    """One stored suppression, as a run sees it."""

    kind: str           # unsubscribed | bounced | complained
    scope: str          # a campaign name, or "*" (all marketing)
    customer_id: str
    source: str         # one-click | page | mailto | import | ...
    recorded_at: str    # ISO 8601, UTC

    @property
    def day(self) -> str:
        return self.recorded_at[:10]


@dataclass(frozen=True)
class Snapshot:
    """The store's rows for one campaign, read once: O(1) lookups by id and address hash."""

    campaign: str
    by_id: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    by_address: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_id.values())

    def find(self, customer_id: str | None, hashed: str) -> Iterator[Entry]:
        """Every entry that names this customer, by id first, then by address."""
        if customer_id is not None:
            yield from self.by_id.get(customer_id, ())
        if hashed:
            yield from self.by_address.get(hashed, ())


def _table() -> Any:
    from sqlalchemy import Column, Index, MetaData, String, Table

    metadata = MetaData()
    return Table(
        TABLE, metadata,
        Column("scope", String(255), primary_key=True),
        Column("customer_id", String(1024), primary_key=True),
        Column("kind", String(20), primary_key=True),
        Column("address_hash", String(64), nullable=False, server_default=""),
        Column("campaign", String(255), nullable=False),   # the link it came from
        Column("source", String(40), nullable=False),
        Column("recorded_at", String(32), nullable=False),
        Index("suppressions_by_address", "address_hash"),
    )


def database_url(location: str | os.PathLike[str], root: Path | None = None) -> str:
    """A SQLAlchemy URL for a path or URL (relative paths are under `root`)."""
    text = os.fspath(location)
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    if text.startswith("postgresql://"):
        return "postgresql+psycopg://" + text.removeprefix("postgresql://")
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    return f"sqlite:///{path}"


def store_location(campaign: Campaign, environ: Mapping[str, str] | None = None) -> str:
    """Where this campaign's store is: the environment, the campaign, else the default."""
    env = (os.environ if environ is None else environ).get(STORE_ENV, "").strip()
    if env:
        return database_url(env, campaign.root)
    return database_url(campaign.suppression.store or DEFAULT_STORE, campaign.root)


def store_location_by_name(root: Path, campaign: str,
                           environ: Mapping[str, str] | None = None) -> str:
    """The store of the campaign called `campaign` under `root`, for the unsubscribe server.

    Only the campaign file's `name` and `suppression.store` are read (not its templates or
    modules): an unsubscribe must be recorded even while a campaign's content is broken,
    or after the campaign was renamed or deleted (then the root's default store).
    """
    env = (os.environ if environ is None else environ).get(STORE_ENV, "").strip()
    if env:
        return database_url(env, root)
    for file in sorted((root / "campaigns").glob("*.y*ml")):
        data = _read_yaml(file)
        if (data.get("name") or file.stem) != campaign:
            continue
        configured = data.get("suppression")
        if isinstance(configured, dict) and isinstance(configured.get("store"), str):
            return database_url(configured["store"], root)
        break
    return database_url(DEFAULT_STORE, root)


def _read_yaml(file: Path) -> dict[str, Any]:
    from edition.content.yamlfile import load_yaml
    from edition.errors import ContentError

    try:
        data = load_yaml(file.read_text(encoding="utf-8"), str(file))
    except (OSError, UnicodeDecodeError, ContentError):
        return {}
    return data if isinstance(data, dict) else {}


def redacted(url: str) -> str:
    """A store URL fit for messages: edition.databases.masked (the one masking function)."""
    return masked(url)


class SuppressionStore:
    """The store at one location; `with SuppressionStore(url) as store: ...`.

    Thread-safe (SQLAlchemy's pool). SQLite files use WAL so a run can read while the
    unsubscribe server writes.
    """

    def __init__(self, location: str | os.PathLike[str], root: Path | None = None):
        self.url = database_url(location, root)
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @functools.cached_property
    def _table(self) -> Any:
        # built on first use: a dry run without a store never imports SQLAlchemy (~0.2 s)
        return _table()

    def __repr__(self) -> str:
        return f"SuppressionStore({redacted(self.url)!r})"

    def __enter__(self) -> SuppressionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sqlite_path(self) -> Path | None:
        if not self.url.startswith("sqlite:///"):
            return None
        return Path(self.url.removeprefix("sqlite:///"))

    def exists(self) -> bool:
        """False for a SQLite file nobody has written yet (a run then reads nothing)."""
        path = self.sqlite_path
        return path is None or path.is_file()

    def engine(self) -> Engine:
        with self._lock:  # threads of the unsubscribe server share one engine
            if self._engine is None:
                self._engine = self._connect()
            return self._engine

    def _connect(self) -> Engine:
        from sqlalchemy import create_engine, event
        from sqlalchemy.exc import SQLAlchemyError

        try:
            path = self.sqlite_path
            if path is not None:
                # who unsubscribed: the owner's only (SQLite's -wal/-shm take this mode)
                private.make_folder(path.parent)
                private.create_file(path)
                private.tighten(path)
                engine = create_engine(self.url, connect_args={"timeout": 30})

                @event.listens_for(engine, "connect")
                def _pragmas(connection: Any, _record: Any) -> None:
                    cursor = connection.cursor()
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA busy_timeout=30000")
                    cursor.close()
            else:
                engine = create_engine(self.url, pool_pre_ping=True)
            self._create_table(engine)
        except (SQLAlchemyError, OSError, ImportError) as exc:
            raise StoreError(f"cannot open the suppression store {redacted(self.url)}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None
        return engine

    def _create_table(self, engine: Engine) -> None:
        """Create the table unless it exists; another process may be creating it as well
        (the server and a run), so a lost race is checked again, not reported."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._table.metadata.create_all(engine, checkfirst=True)
        except SQLAlchemyError:
            time.sleep(0.2)
            self._table.metadata.create_all(engine, checkfirst=True)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # -- writing ----------------------------------------------------------------------

    def record(self, campaign: str, customer_id: str, address_hash: str, source: str, *,
               scope: str | None = None, kind: str = "unsubscribed",
               at: dt.datetime | None = None) -> bool:
        """Remember that this customer must not get `campaign` (or, with
        `scope=ALL_MARKETING`, any marketing); True if new, False if already recorded.

        Idempotent: a repeated request (a mail program retrying the one-click POST, a
        double click) changes nothing, and the first date is kept.
        """
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        scope = ALL_MARKETING if kind != "unsubscribed" else (scope or campaign)
        when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
        row = {"scope": scope, "customer_id": customer_id, "kind": kind,
               "address_hash": address_hash or "", "campaign": campaign,
               "source": source[:40], "recorded_at": when.isoformat().replace("+00:00", "Z")}
        engine = self.engine()
        try:
            with engine.begin() as connection:
                statement = self._insert_ignoring_duplicates(engine.dialect, row)
                if statement is not None:
                    # a row comes back only when it was inserted (rowcount is -1 here
                    # with psycopg)
                    return connection.execute(statement).first() is not None
                connection.execute(self._table.insert().values(**row))
                return True
        except IntegrityError:
            return False     # another dialect: the duplicate raised instead of being ignored
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to the suppression store {redacted(self.url)}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None

    def _insert_ignoring_duplicates(self, dialect: Any, row: dict[str, str]) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING, where the database has both."""
        if dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            return None
        if not getattr(dialect, "insert_returning", False):
            return None
        t = self._table
        return insert(t).values(**row).on_conflict_do_nothing().returning(t.c.scope)

    # -- reading ----------------------------------------------------------------------

    def snapshot(self, campaign: str) -> Snapshot:
        """Every row that applies to `campaign` (its own scope and `*`), read once."""
        if not self.exists():
            return Snapshot(campaign)
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        t = self._table
        query = select(t.c.scope, t.c.customer_id, t.c.kind, t.c.address_hash, t.c.source,
                       t.c.recorded_at).where(t.c.scope.in_([campaign, ALL_MARKETING]))
        by_id: dict[str, list[Entry]] = {}
        by_address: dict[str, list[Entry]] = {}
        try:
            with self.engine().connect() as connection:
                for scope, customer_id, kind, hashed, source, at in connection.execute(query):
                    # scope, kind and source repeat on every row: share one string each
                    entry = Entry(sys.intern(kind), sys.intern(scope), customer_id,
                                  sys.intern(source), at)
                    by_id.setdefault(customer_id, []).append(entry)
                    if hashed:
                        by_address.setdefault(hashed, []).append(entry)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the suppression store {redacted(self.url)}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None
        order = _earliest_first
        return Snapshot(campaign, {k: tuple(sorted(v, key=order)) for k, v in by_id.items()},
                        {k: tuple(sorted(v, key=order)) for k, v in by_address.items()})

    def lookup(self, campaign: str, customer_id: str) -> list[Entry]:
        """This customer's rows that apply to `campaign`, oldest first (one small query)."""
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        if not self.exists():
            return []
        t = self._table
        query = select(t.c.kind, t.c.scope, t.c.customer_id, t.c.source, t.c.recorded_at).where(
            t.c.customer_id == customer_id, t.c.scope.in_([campaign, ALL_MARKETING]))
        try:
            with self.engine().connect() as connection:
                return sorted((Entry(*row) for row in connection.execute(query)),
                              key=_earliest_first)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the suppression store {redacted(self.url)}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None

    def entries(self) -> list[Entry]:
        """Every row (for tests and exports), oldest first."""
        from sqlalchemy import select

        if not self.exists():
            return []
        t = self._table
        with self.engine().connect() as connection:
            rows = connection.execute(select(t.c.kind, t.c.scope, t.c.customer_id,
                                             t.c.source, t.c.recorded_at))
            return sorted((Entry(*row) for row in rows), key=_earliest_first)


def _earliest_first(entry: Entry) -> tuple[str, str]:
    return (entry.recorded_at, entry.scope)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


__all__ = ["ALL_MARKETING", "DEFAULT_STORE", "STORE_ENV", "Entry", "Snapshot", "StoreError",
           "SuppressionStore", "database_url", "store_location", "store_location_by_name"]
