#!/usr/bin/env bash
# Notes for .ci/run (not called by it yet): what the PostgreSQL tests need on a fresh
# Debian machine.
#
# tests/fixtures_postgres.py starts its own throwaway cluster (initdb + pg_ctl in /tmp,
# a free port on 127.0.0.1) for the PostgreSQL send ledger and the SQL customer source.
# It needs only Debian's server binaries, /usr/lib/postgresql/<version>/bin/{initdb,pg_ctl}
# (or EDITION_PG_BIN pointing at them); without them those tests FAIL, naming the
# package. The client side needs nothing from apt: psycopg[binary] bundles libpq.
#
# In .ci/run, next to the other checks that fill `need`:
#
#     ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
#
# `postgresql` pulls the current server (postgresql-15 on bookworm) and creates the
# `postgres` system user; as root, the fixture runs initdb/pg_ctl as that user (else as
# `nobody`). The package's own cluster on port 5432 is not used; where services cannot
# start (containers without an init), its failed start is harmless.
#
# Sourcing this file does exactly that line, for a .ci/run that prefers to `source` it
# after declaring `need=()`.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
