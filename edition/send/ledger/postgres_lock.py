"""The PostgreSQL ledger's run lock: a session advisory lock on a connection of its own.

The server releases it when that connection ends, also when the holder is killed with
SIGKILL (its socket closes). A second run waits up to `wait` seconds, then is told
which process (and host) holds it.
"""

from __future__ import annotations

import hashlib
import socket
import time

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, Engine

from edition.errors import LedgerBusy

__all__ = ["SCHEMA_LOCK", "holder", "lock_key", "take_run_lock"]

# who holds a bigint advisory lock: pg_locks splits the key into classid (high 32 bits)
# and objid (low 32 bits); the holder's application_name carries its pid and host
_HOLDER = text(
    "SELECT coalesce(a.application_name, '') FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
    "AND l.granted AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.objsubid = 1")
_NO_IDLE_TIMEOUTS = text(
    "SELECT set_config(name, '0', false) FROM pg_settings WHERE name IN "
    "('idle_session_timeout', 'idle_in_transaction_session_timeout')")


def lock_key(scope: str) -> int:
    """The advisory lock's 64-bit key: one per ledger scope."""
    digest = hashlib.blake2b(f"edition-ledger\x1f{scope}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


SCHEMA_LOCK = lock_key("\x00schema")


def take_run_lock(engine: Engine, scope: str, wait: float, path: str) -> Connection:
    """A session advisory lock on a connection of its own, waiting up to `wait`."""
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        # the lock lives as long as this idle session: the server must not end it
        # (only settings this server has: idle_session_timeout is PostgreSQL 14+)
        conn.execute(_NO_IDLE_TIMEOUTS)
        key = lock_key(scope)
        deadline = time.monotonic() + max(0.0, wait)
        while not conn.execute(select(func.pg_try_advisory_lock(key))).scalar():
            left = deadline - time.monotonic()
            if left <= 0:
                raise LedgerBusy(
                    f"another run is using this send ledger ({holder(conn, key)}); wait "
                    "for it to finish, then rerun: already-sent customers are skipped",
                    path)
            time.sleep(min(0.1, left))
    except BaseException:
        conn.close()
        raise
    return conn


def holder(conn: Connection, key: int) -> str:
    """`pid N` of the process holding the lock (`on HOST` when it is another host)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(_HOLDER, {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).first()
    name = row[0] if row else ""
    fields = dict(part.split("=", 1) for part in name.split()[1:] if "=" in part)
    pid = fields.get("pid", "?")
    host = fields.get("host")
    return f"pid {pid}" if host in (None, socket.gethostname()) else f"pid {pid} on {host}"
