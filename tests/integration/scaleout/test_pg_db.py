"""The PostgreSQL core (adapters/postgres/db.py) keeps the SQLite writer's contract: one caller's statements are
one transaction, a guarded statement that finds the rows not as expected undoes all of them, migrations run once
however many nodes start together, and a conditional hold cannot be passed by two nodes at once."""

from __future__ import annotations

import asyncio

import pytest

from adapters.postgres.db import PgDatabase
from adapters.sqlite.db import WriteConflict
from adapters.sqlite.migrate import Migration
from adapters.sqlite.statements import Insert

SCHEMA = [
    Migration(1, "inventory", "CREATE TABLE inventory (resource TEXT PRIMARY KEY, capacity INTEGER NOT NULL, "
                              "held INTEGER NOT NULL DEFAULT 0); CREATE TABLE orders (id TEXT PRIMARY KEY, "
                              "resource TEXT NOT NULL)"),
    Migration(2, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"),
]
HOLD = "UPDATE inventory SET held = held + ? WHERE resource = ? AND held + ? <= capacity"


async def test_two_nodes_starting_together_apply_each_migration_once(pg_dsn):
    nodes = [PgDatabase(pg_dsn, SCHEMA) for _ in range(2)]
    applied = await asyncio.gather(*(db.open() for db in nodes))
    assert sorted(applied) == [[], [1, 2]]
    assert await nodes[0].fetchall("SELECT version FROM schema_migrations ORDER BY version") == [(1,), (2,)]
    later = PgDatabase(pg_dsn, [*SCHEMA, Migration(3, "more", "ALTER TABLE notes ADD COLUMN at DOUBLE PRECISION")])
    assert await later.open() == [3]
    for db in (*nodes, later):
        await db.close()


async def test_a_guard_that_fails_undoes_every_statement_of_the_write(pg_dsn):
    db = PgDatabase(pg_dsn, SCHEMA)
    await db.open()
    await db.write([("INSERT INTO inventory(resource, capacity) VALUES (?, ?)", ("CT1/economy", 1))])
    assert await db.write([("INSERT INTO orders(id, resource) VALUES (?, ?)", ("o1", "CT1/economy")),
                           (HOLD, (1, "CT1/economy", 1), 1)]) == [1, 1]
    with pytest.raises(WriteConflict) as failed:
        await db.write([("INSERT INTO orders(id, resource) VALUES (?, ?)", ("o2", "CT1/economy")),
                        (HOLD, (1, "CT1/economy", 1), 1)])
    assert (failed.value.expected, failed.value.actual) == (1, 0)
    assert await db.fetchall("SELECT id FROM orders") == [("o1",)]  # o2's insert went with its failed hold
    assert await db.fetchone("SELECT held FROM inventory") == (1,)
    await db.close()


async def test_inserts_go_as_multi_row_statements_however_many_rows(pg_dsn):
    db = PgDatabase(pg_dsn, SCHEMA)
    await db.open()
    rows = [(i, f"note {i}") for i in range(40_000)]  # past the 32,767 parameters of one statement
    assert await db.write([Insert("notes", ("id", "body"), rows)], power_safe=False) == [40_000]
    assert await db.fetchone("SELECT count(*), max(body) FROM notes") == (40_000, "note 9999")
    with pytest.raises(ValueError, match="do not fill its 2 columns"):
        await db.write([Insert("notes", ("id", "body"), [(1,)])])
    await db.close()


async def test_two_nodes_holding_the_last_ten_seats_at_once_sell_exactly_ten(pg_dsn):
    nodes = [PgDatabase(pg_dsn, SCHEMA, max_size=20) for _ in range(2)]
    for db in nodes:
        await db.open()
    await nodes[0].write([("INSERT INTO inventory(resource, capacity, held) VALUES (?, ?, ?)",
                           ("CT2/economy", 150, 140))])

    async def accept(n: int) -> bool:
        try:
            await nodes[n % 2].write([("INSERT INTO orders(id, resource) VALUES (?, ?)", (f"o{n}", "CT2/economy")),
                                      (HOLD, (1, "CT2/economy", 1), 1)])
            return True
        except WriteConflict:
            return False
    results = await asyncio.gather(*(accept(n) for n in range(200)))
    assert results.count(True) == 10
    assert await nodes[1].fetchone("SELECT held, capacity FROM inventory") == (150, 150)
    assert await nodes[1].fetchone("SELECT count(*) FROM orders") == (10,)
    for db in nodes:
        await db.close()


async def test_a_closed_database_refuses_clearly(pg_dsn):
    from adapters.postgres.db import DatabaseClosed
    db = PgDatabase(pg_dsn, SCHEMA)
    with pytest.raises(DatabaseClosed):
        await db.write([("SELECT 1", ())])
    with pytest.raises(DatabaseClosed):
        await db.fetchall("SELECT 1")


async def test_closing_ends_within_its_bound_though_a_connection_is_never_released(pg_dsn, caplog):
    """A stop must end: asyncpg's graceful close waits for every connection for ever; ours gives up and terminates."""
    db = PgDatabase(pg_dsn, SCHEMA)
    await db.open()
    assert db._pool is not None
    await db._pool.acquire()  # a task that never gives its connection back
    started = asyncio.get_running_loop().time()
    await db.close(timeout_s=0.5)
    assert asyncio.get_running_loop().time() - started < 3
    assert not db.is_open
    assert "PostgreSQL pool not closed gracefully" in caplog.text


def test_the_shared_dialect_becomes_postgresql():
    from adapters.postgres.db import pg_sql
    assert pg_sql("SELECT a FROM t WHERE b=? AND c IN (?,?) AND d='?'") == \
        "SELECT a FROM t WHERE b=$1 AND c IN ($2,$3) AND d='?'"
    assert pg_sql("INSERT OR IGNORE INTO t(a, b) VALUES (?,?)") == \
        "INSERT INTO t(a, b) VALUES ($1,$2) ON CONFLICT DO NOTHING"
