"""The send ledger: one claim per (campaign, mailing, customer, channel), in SQLite
or PostgreSQL."""
