"""Which send ledger a campaign uses: SQLite in a file (the default) or PostgreSQL.

A path opens ledger.py's SendLedger (embedded, one machine); a `postgresql://…` URL
opens ledger_sql.py's PostgresLedger (shared by workers on several machines). Both
keep the same protocol (`Ledger`), so delivery and the run lifecycle do not care.

Where the ledger lives: `delivery.ledger` in the campaign (a path relative to the
content root, or a URL without a password), else EDITION_LEDGER_URL (a URL that may
carry the password: it comes from the environment), else
out/<campaign>/ledger.sqlite under the content root.

Workers (a process pool, Dask) claim in the run's ledger, never in one of their own: the
main process decides where it is and hands that on (`for_workers`); a worker opens it
as named (`in_worker`). A SQLite file is shared by processes of one machine only (its
locks and the WAL's shared memory are the kernel's), so a worker elsewhere is refused
rather than handed an empty file of its own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edition.databases import has_password, is_database_url, masked
from edition.errors import ContentError, LedgerError
from edition.send.ledger.records import Claim, HistoryEvent, LedgerEntry, Mailing
from edition.send.ledger.sqlite import SendLedger

if TYPE_CHECKING:
    from edition.send.targets import Outcome

__all__ = ["LEDGER_URL_ENV", "Ledger", "for_workers", "in_worker", "ledger_location",
           "open_ledger", "show_location", "this_machine"]

LEDGER_URL_ENV = "EDITION_LEDGER_URL"


class Ledger(Protocol):
    """The send ledger's protocol (ledger.py documents the guarantees)."""

    @property
    def path(self) -> Path | str: ...   # a file, or a URL with its password masked
    exclusive: bool
    readonly: bool

    def open(self) -> Ledger: ...
    def close(self) -> None: ...
    def __enter__(self) -> Ledger: ...
    def __exit__(self, *exc: object) -> None: ...

    def claim(self, campaign: str, customer_id: str, send_key: str, run_id: str, *,
              content_hash: str = "", resend_unknown: bool = False,
              once_per_customer: bool = False) -> Claim: ...

    def claim_many(self, campaign: str, items: Sequence[tuple[str, str, str]], run_id: str,
                   *, resend_unknown: bool = False,
                   once_per_customer: bool = False) -> list[Claim]: ...

    def record(self, campaign: str, customer_id: str, send_key: str, outcome: Outcome,
               run_id: str, *, defer: bool = False) -> None: ...

    def record_many(self, campaign: str, outcomes: Iterable[tuple[str, str, Outcome]],
                    run_id: str, *, defer: bool = False) -> None: ...

    def flush(self) -> None: ...
    def lookup(self, campaign: str, customer_id: str, send_key: str) -> LedgerEntry | None: ...
    def lookup_customer(self, campaign: str, customer_id: str) -> list[LedgerEntry]: ...

    def entries(self, campaign: str,
                states: Iterable[str] | None = None) -> list[LedgerEntry]: ...

    def counts(self, campaign: str) -> dict[str, int]: ...
    def history(self, campaign: str, customer_id: str) -> list[HistoryEvent]: ...

    def open_mailing(self, campaign: str, mailing: str, channel: str, *, as_of: str,
                     run_id: str, expected: int) -> None: ...

    def finish_mailing(self, campaign: str, mailing: str, channel: str) -> None: ...
    def mailings(self, campaign: str, channel: str | None = None) -> list[Mailing]: ...


def open_ledger(location: str | Path, *, exclusive: bool, wait: float = 0.0,
                readonly: bool = False, scope: str | None = None) -> Ledger:
    """The ledger at `location`, opened: PostgreSQL for a `postgresql://` URL, else SQLite.

    `exclusive` takes the run lock (a second run waits `wait` seconds, then LedgerBusy).
    `scope` narrows PostgreSQL's run lock (e.g. to the campaign's name, so campaigns
    sharing one database do not wait for each other); a SQLite file is its own scope.
    """
    if is_database_url(location):
        from edition.send.ledger.postgres import PostgresLedger  # SQLAlchemy only when it is used

        return PostgresLedger(str(location), exclusive=exclusive, wait=wait,
                              readonly=readonly, scope=scope).open()
    return SendLedger(Path(location), exclusive=exclusive, wait=wait,
                      readonly=readonly).open()


def ledger_location(configured: str | None, *, root: Path, campaign: str,
                    environ: Mapping[str, str] | None = None) -> str | Path:
    """Where a campaign's ledger is (see the module's docstring).

    A URL in the campaign file may not carry a password (credentials come from the
    environment: PGPASSWORD, ~/.pgpass, PGSERVICE, or EDITION_LEDGER_URL).
    """
    environ = os.environ if environ is None else environ
    if configured:
        text = str(configured).strip()
        if is_database_url(text):
            if has_password(text):
                raise ContentError(
                    f"delivery.ledger {masked(text)} holds a password: campaign files must "
                    f"not; use PGPASSWORD, ~/.pgpass or {LEDGER_URL_ENV} instead")
            return text
        path = Path(text)
        return path if path.is_absolute() else root / path
    from_env = environ.get(LEDGER_URL_ENV, "").strip()
    if from_env:
        return from_env if is_database_url(from_env) else Path(from_env)
    return root / "out" / campaign / "ledger.sqlite"


def show_location(location: str | Path) -> str:
    """The ledger's location as it may be printed (a URL's password masked)."""
    return masked(str(location)) if is_database_url(location) else str(location)


# -- the run's ledger in its workers ----------------------------------------------------


def this_machine() -> str:
    """Which kernel this process runs on: Linux's boot id (mount namespaces and
    containers of one host share it, and with it SQLite's file locks and the WAL's shared
    memory), else the host name."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return socket.gethostname()


def for_workers(location: str | Path) -> str:
    """The ledger's location as the main process hands it to its workers: an absolute
    path, or a URL without its password (credentials travel in no task: a worker takes
    the password from its own environment, see `in_worker`)."""
    if is_database_url(location):
        return _without_password(str(location))
    return str(Path(location).resolve())


def in_worker(location: str, machine: str, *,
              environ: Mapping[str, str] | None = None) -> str | Path:
    """In a worker: the run's ledger, as the main process (on `machine`) named it.

    A PostgreSQL URL gets its password from this worker's EDITION_LEDGER_URL when that
    names the same database (else PGPASSWORD, ~/.pgpass). A SQLite file is the run's
    ledger only on the machine that holds it: elsewhere SQLite would create an empty
    ledger that knows no claim of the run's (every customer sent again on the next send),
    or share a network copy without its locks. So a file ledger seen from another
    machine, or not there at all, is refused, naming EDITION_LEDGER_URL; nothing is
    created.
    """
    environ = os.environ if environ is None else environ
    if is_database_url(location):
        own = environ.get(LEDGER_URL_ENV, "").strip()
        if own and is_database_url(own) and _without_password(own) == location:
            return own
        return location
    path = Path(location)
    advice = (f"a send whose workers may run elsewhere needs a ledger they all reach: set "
              f"{LEDGER_URL_ENV}=postgresql://… (or the campaign's delivery.ledger)")
    if machine != this_machine():
        raise LedgerError(f"the run's send ledger is the SQLite file {path} on another "
                          f"machine than this worker's; {advice}", str(path))
    if not path.is_file():
        raise LedgerError(f"the run's send ledger {path} is not visible to this worker "
                          f"(another container or mount namespace?); {advice}", str(path))
    return path


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url.strip()).set(password=None).render_as_string(hide_password=False)
