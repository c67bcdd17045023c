"""Database URLs: which strings name a database, how edition connects, and never the password.

A team's PostgreSQL is named by a URL (`postgresql://user@host:5432/db?sslmode=require`;
`postgres://` and `postgresql+psycopg://` too). edition always connects with psycopg 3
through SQLAlchemy, whatever driver the URL names. Passwords belong in the environment
(`PGPASSWORD`, `~/.pgpass`, `PGSERVICE`: libpq reads them) or in an environment
variable holding the whole URL; whenever a URL or a driver's message is written or
shown, the password is masked (`masked`, the one function for every URL edition writes:
run.json, reports, manifests, logs, artifacts), so it never reaches a file or a reader.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus, unquote_plus

if TYPE_CHECKING:  # SQLAlchemy is imported only by the code that connects
    from sqlalchemy.engine import URL, Engine

__all__ = ["DATABASE_SCHEMES", "create_engine_for", "has_password", "held", "is_database_url",
           "masked", "scrub", "sqlalchemy_url"]

DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_SCHEME = re.compile(r"^(postgresql|postgres|postgresql\+psycopg)://", re.IGNORECASE)
MASK = "***"


def is_database_url(location: object) -> bool:
    """True for `postgresql://…` (and its spellings); False for paths and other URLs."""
    return isinstance(location, str) and bool(_SCHEME.match(location.strip()))


# masked URL -> the URL as given, in this process only (see `held`)
_HELD: dict[str, str] = {}


def held(location: str) -> str:
    """`location` masked, to hand to something that stores what it is given (a Prefect
    flow run's parameters); this process keeps the password, so `sqlalchemy_url` of the
    masked URL connects with it here."""
    shown = masked(location)
    if shown != location:
        _HELD[shown] = location
    return shown


def sqlalchemy_url(location: str, *, drop: tuple[str, ...] = ()) -> URL:
    """The URL for SQLAlchemy with the psycopg 3 driver; `drop` removes edition's own
    query parameters (e.g. `table`) before they could reach the server."""
    from sqlalchemy.engine import make_url

    location = _HELD.get(location.strip(), location)
    url = make_url(location.strip())
    url = url.set(drivername="postgresql+psycopg")
    if url.password == MASK:
        # a URL read back from run.json, masked when written: libpq takes the password
        # from the environment (PGPASSWORD, ~/.pgpass, PGSERVICE), as it does without one
        url = url._replace(password=None)  # URL.set ignores None
    if drop:
        url = url.difference_update_query(drop)
    return url


def has_password(location: str) -> bool:
    """True when the URL itself carries a password (refused in campaign files)."""
    try:
        url = sqlalchemy_url(location)
        return bool(url.password) or any(k.lower() in {"password", "sslpassword"}
                                         for k in url.query)
    except Exception:  # an unparsable URL is reported elsewhere, by the code that uses it
        return ":" in location.partition("://")[2].partition("@")[0] and "@" in location


# query parameters that carry a secret (libpq reads `password` and `sslpassword` from a
# URL's query as well as from its user part)
_SECRET_KEYS = {"password", "pass", "passwd", "pwd", "sslpassword", "secret", "token",
                "key", "access_key", "secret_key", "api_key", "auth"}
_SECRET_QUERY = re.compile(r"(?P<key>[^&=;?]+)=(?P<value>[^&;#]*)")


def masked(location: object) -> str:
    """`location` as it may be written or shown anywhere (run.json, reports, manifests,
    logs, artifacts, messages): a URL's password, and query values that look secret,
    replaced by ***. Text that is not a URL comes back unchanged.

    The one place edition hides credentials in URLs; every writer goes through it. It
    errs towards hiding: the user part ends at the last "@" before the query (SQLAlchemy
    and libpq read a password holding "/" or "#" unencoded), else at the last "@" at all.
    """
    text = str(location)
    if "://" not in text:
        return text
    scheme, _, rest = text.partition("://")
    at = rest.partition("?")[0].rfind("@")
    if at < 0:
        at = rest.rfind("@")
    credentials, after = (rest[:at], rest[at + 1:]) if at >= 0 else ("", rest)
    if at >= 0:
        user, colon, _password = credentials.partition(":")
        credentials = f"{user}:{MASK}@" if colon else f"{user}@"
    where, question, query = after.partition("?")
    if question:
        query = _SECRET_QUERY.sub(_mask_value, query)
    return f"{scheme}://{credentials}{where}{question}{query}"


def _mask_value(match: re.Match[str]) -> str:
    key = match.group("key")
    if unquote_plus(key).strip().lower() in _SECRET_KEYS and match.group("value"):
        return f"{key}={MASK}"
    return match.group(0)


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
                      **options: object) -> Engine:
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
