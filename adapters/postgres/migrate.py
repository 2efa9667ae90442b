"""Numbered migrations on PostgreSQL: each applied once, in its own transaction, recorded in schema_migrations;
nodes starting together take turns (an advisory lock), so each migration runs exactly once."""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from adapters.sqlite.migrate import Migration

# A connection of its own or one lent by the pool.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

_LOCK = 0x436F6E7472  # any constant every Contrail node agrees on: pg_advisory_lock's key


async def apply_migrations(conn: Conn, migrations: Sequence[Migration], ledger: str = "schema_migrations") -> list[int]:
    """Apply every migration not applied yet; return their versions. `ledger` is the table that records them (the
    event log's migrations are numbered apart from the system of record's, and may share its database)."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
    try:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {ledger} ("
                           " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
        done = {row[0] for row in await conn.fetch(f"SELECT version FROM {ledger}")}
        applied = []
        for migration in migrations:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)  # a script: PostgreSQL runs its statements in order
                await conn.execute(f"INSERT INTO {ledger}(version, name, applied_at) VALUES ($1, $2, $3)",
                                   migration.version, migration.name, time.time())
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
