"""The house store's database: one SQLite file or PostgreSQL database for everything the
house remembers about its customers across runs (suppressions, and what the feedback
stage records: preferences, consent, events, clicks).

SQLAlchemy Core, so the same code serves SQLite (the default: a file under the content
root, created 0600, in WAL mode so a run reads while `edition web` writes) and
PostgreSQL (psycopg 3). Each record kind declares its own table in its own module and
asks `Database.table(...)` for it: the table is created on first use, by whichever
process gets there first (a lost race is checked again, not reported).

Where. `EDITION_STORE` (a path or URL, may hold credentials; `EDITION_SUPPRESSION_STORE`
is its older name), else the campaign's `suppression.store`, else
`out/suppression.sqlite` under the content root: one store for every campaign of the
root, so what a customer told one campaign reaches all of them.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from edition import private
from edition.databases import masked
from edition.errors import RunError

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy import ColumnElement, Table
    from sqlalchemy.engine import Dialect, Engine
    from sqlalchemy.sql.dml import ReturningInsert

    from edition.content.campaign import Campaign

STORE_ENVS = ("EDITION_STORE", "EDITION_SUPPRESSION_STORE")   # the first one set wins
DEFAULT_STORE = Path("out") / "suppression.sqlite"


class StoreError(RunError):
    """The store cannot be opened, read or written (exit 1)."""


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


def _from_env(environ: Mapping[str, str] | None) -> str:
    env = os.environ if environ is None else environ
    return next((env[name].strip() for name in STORE_ENVS if env.get(name, "").strip()), "")


def store_location(campaign: Campaign, environ: Mapping[str, str] | None = None) -> str:
    """Where this campaign's store is: the environment, the campaign, else the default."""
    env = _from_env(environ)
    if env:
        return database_url(env, campaign.root)
    return database_url(campaign.suppression.store or DEFAULT_STORE, campaign.root)


def store_location_by_name(root: Path, campaign: str,
                           environ: Mapping[str, str] | None = None) -> str:
    """The store of the campaign called `campaign` under `root`, for `edition web`.

    Only the campaign file's `name` and `suppression.store` are read (not its templates or
    modules): a customer's answer must be recorded even while a campaign's content is
    broken, or after the campaign was renamed or deleted (then the root's default store).
    """
    env = _from_env(environ)
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


def _read_yaml(file: Path) -> dict[str, object]:
    from edition.content.yamlfile import load_yaml
    from edition.errors import ContentError

    try:
        data = load_yaml(file.read_text(encoding="utf-8"), str(file))
    except (OSError, UnicodeDecodeError, ContentError):
        return {}
    return data if isinstance(data, dict) else {}


def first_line(exc: BaseException) -> str:
    """A database error in one line (SQLAlchemy's own message spans several)."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


class Database:
    """The store at one location; thread-safe (SQLAlchemy's pool), opened on first use.

    `with Database(url) as db: ...`; SQLAlchemy is imported only when a store is used (a
    dry run without one never pays its ~0.2 s).
    """

    def __init__(self, location: str | os.PathLike[str], root: Path | None = None):
        self.url = database_url(location, root)
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._made: set[str] = set()

    def __repr__(self) -> str:
        return f"Database({masked(self.url)!r})"

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def shown(self) -> str:
        """The location fit for messages (a password masked)."""
        return masked(self.url)

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
        with self._lock:  # threads of edition web share one engine
            if self._engine is None:
                self._engine = self._connect()
            return self._engine

    def table(self, make: Callable[[], Table]) -> Table:
        """The table `make` declares, created in this database unless it exists."""
        table = _declared(make)
        if table.name not in self._made:
            self._create(table)
            self._made.add(table.name)
        return table

    def _connect(self) -> Engine:
        from sqlalchemy import create_engine, event
        from sqlalchemy.exc import SQLAlchemyError

        try:
            path = self.sqlite_path
            if path is None:
                return create_engine(self.url, pool_pre_ping=True)
            # what customers told us: the owner's only (SQLite's -wal/-shm take this mode)
            private.make_folder(path.parent)
            private.create_file(path)
            private.tighten(path)
            engine = create_engine(self.url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _pragmas(connection: sqlite3.Connection, _record: object) -> None:
                cursor = connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()

            return engine
        except (SQLAlchemyError, OSError, ImportError) as exc:
            raise StoreError(f"cannot open the store {self.shown}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None

    def _create(self, table: Table) -> None:
        """Create a table unless it exists; another process may be creating it as well
        (the server and a run), so a lost race is checked again, not reported."""
        from sqlalchemy.exc import SQLAlchemyError

        engine = self.engine()
        try:
            try:
                table.create(engine, checkfirst=True)
            except SQLAlchemyError:
                time.sleep(0.2)
                table.create(engine, checkfirst=True)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store {self.shown}: "
                             f"{type(exc).__name__}: {first_line(exc)}") from None

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
                self._made.clear()


@functools.cache
def _declared(make: Callable[[], Table]) -> Table:
    """Each table is declared once per process (its own MetaData)."""
    return make()


def insert_ignoring_duplicates(dialect: Dialect, table: Table, row: Mapping[str, object],
                               returning: ColumnElement[str]
                               ) -> ReturningInsert[tuple[str]] | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING, where the database has both (None
    elsewhere: then insert and catch IntegrityError)."""
    if dialect.name not in ("sqlite", "postgresql") \
            or not getattr(dialect, "insert_returning", False):
        return None
    if dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).values(**row).on_conflict_do_nothing().returning(returning)
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert

    return postgresql_insert(table).values(**row).on_conflict_do_nothing().returning(returning)


class RecordStore:
    """One record kind's table in the house store at one location (thread-safe): the
    store classes (suppressions, preferences, consent, events, clicks) declare their table
    with `declare` and share the rest. `location` may be an open Database to share it."""

    declare: ClassVar[Callable[[], Table]]

    def __init__(self, location: str | os.PathLike[str] | Database,
                 root: Path | None = None):
        self.database = location if isinstance(location, Database) else Database(location,
                                                                                   root)

    @property
    def url(self) -> str:
        return self.database.url

    @property
    def table(self) -> Table:
        """The kind's table, created on first use."""
        return self.database.table(type(self).declare)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.database.close()


__all__ = ["DEFAULT_STORE", "STORE_ENVS", "Database", "RecordStore", "StoreError",
           "database_url", "first_line", "insert_ignoring_duplicates", "store_location",
           "store_location_by_name"]
