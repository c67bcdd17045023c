"""Database URLs: which strings name a database, how edition connects, and never the password.

A team's PostgreSQL is named by a URL (`postgresql://user@host:5432/db?sslmode=require`;
`postgres://` and `postgresql+psycopg://` too). edition always connects with psycopg 3
through SQLAlchemy, whatever driver the URL names. Passwords belong in the environment
(`PGPASSWORD`, `~/.pgpass`, `PGSERVICE`: libpq reads them) or in an environment
variable holding the whole URL; whenever a URL or a driver's message is shown, the
password is masked, so it never reaches a log, a report or an exception.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:  # SQLAlchemy is imported only by the code that connects
    from sqlalchemy.engine import URL, Engine

__all__ = ["DATABASE_SCHEMES", "create_engine_for", "has_password", "is_database_url",
           "masked", "scrub", "sqlalchemy_url"]

DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_SCHEME = re.compile(r"^(postgresql|postgres|postgresql\+psycopg)://", re.IGNORECASE)
MASK = "***"


def is_database_url(location: object) -> bool:
    """True for `postgresql://…` (and its spellings); False for paths and other URLs."""
    return isinstance(location, str) and bool(_SCHEME.match(location.strip()))


def sqlalchemy_url(location: str, *, drop: tuple[str, ...] = ()) -> URL:
    """The URL for SQLAlchemy with the psycopg 3 driver; `drop` removes edition's own
    query parameters (e.g. `table`) before they could reach the server."""
    from sqlalchemy.engine import make_url

    url = make_url(location.strip())
    url = url.set(drivername="postgresql+psycopg")
    if drop:
        url = url.difference_update_query(drop)
    return url


def has_password(location: str) -> bool:
    """True when the URL itself carries a password (refused in campaign files)."""
    try:
        return bool(sqlalchemy_url(location).password)
    except Exception:  # an unparsable URL is reported elsewhere, by the code that uses it
        return ":" in location.partition("://")[2].partition("@")[0] and "@" in location


def masked(location: str) -> str:
    """The URL as it may be shown: the password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(location.strip()).render_as_string(hide_password=True)
    except Exception:
        # not even parsable: keep the scheme and host part only, never what looks secret
        scheme, _, rest = location.partition("://")
        credentials, at, host = rest.rpartition("@")
        user = credentials.partition(":")[0]
        return f"{scheme}://{user}:{MASK}@{host}" if at else f"{scheme}://{rest}"


def scrub(message: str, location: str | URL) -> str:
    """A driver's message with every spelling of the URL's password masked."""
    try:
        password = (sqlalchemy_url(location) if isinstance(location, str)
                    else location).password
    except Exception:
        password = None
    if password:
        for spelling in {password, quote(password, safe=""), quote_plus(password)}:
            message = message.replace(spelling, MASK)
    return message


def create_engine_for(url: URL, *, application_name: str, connect_timeout: float = 30.0,
                      **options: Any) -> Engine:
    """An engine without a pool: edition holds its few connections for a run's length,
    so a pool would only keep dead ones. TCP keepalives make a vanished peer an error
    within a minute or two instead of a hang."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    connect_args = {
        "application_name": application_name[:63],
        "connect_timeout": max(1, int(connect_timeout)),
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
        "keepalives_count": 6,
    }
    return create_engine(url, poolclass=NullPool, connect_args=connect_args, **options)
