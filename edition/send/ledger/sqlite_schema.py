"""The SQLite ledger's tables, created (or carried over from version 1) on open.

`PRAGMA user_version` holds the schema version; a version-1 file keyed a send by its
content, and its tables are kept beside the new ones for audits.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "create_schema"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (
    campaign     TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    send_key     TEXT NOT NULL,
    content_hash TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'failed', 'unknown')),
    run_id       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 1,
    provider_id  TEXT,
    reason       TEXT,
    claimed_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (campaign, customer_id, send_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign     TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    send_key     TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    state        TEXT NOT NULL,
    provider_id  TEXT,
    reason       TEXT,
    at           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mailings (
    campaign     TEXT NOT NULL,
    mailing      TEXT NOT NULL,
    channel      TEXT NOT NULL,
    as_of        TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'finished')),
    run_id       TEXT NOT NULL,
    expected     INTEGER NOT NULL DEFAULT 0,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    PRIMARY KEY (campaign, mailing, channel)
) WITHOUT ROWID;
"""
SCHEMA_VERSION = 2


def create_schema(db: sqlite3.Connection) -> None:
    """Create what is missing, inside the caller's write transaction."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 1:
        # v1 keyed a send by its content: kept for audits, no longer consulted
        db.execute("ALTER TABLE sends RENAME TO sends_v1")
        db.execute("ALTER TABLE events RENAME TO events_v1")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    if version < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
