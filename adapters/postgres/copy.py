"""Moving a one-node deployment's system of record from SQLite to PostgreSQL (`python -m app migrate-to-postgres`).

The two schemas have the same tables and columns (adapters/postgres/migrations.py), so every row is copied as it
is, in its table's insertion order, with COPY. PostgreSQL's own additions are filled after: identity columns
continue after the highest id copied, and the shared inventory table is computed from the live orders (one node
kept it in memory only). The target must be empty and the source migrated to the same version; the source is
opened read-only and never changed, so a failed copy leaves the deployment as it was.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import asyncpg

from adapters.postgres import migrations
from adapters.postgres.db import PgDatabase
from state.offers import held_by
from state.orders import HOLDING, _decode, held_items


class CannotCopy(Exception):
    """The copy was refused before anything was written; the message says why."""


async def copy_sqlite_to_postgres(source: Path, dsn: str) -> dict[str, int]:
    """Every table of the SQLite system of record at `source` into the database at `dsn`: rows copied per table."""
    if not source.exists():
        raise CannotCopy(f"no SQLite database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        version = src.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        latest = migrations.RECORDS[-1].version
        if version != latest:
            raise CannotCopy(f"{source} is at migration {version}, this Contrail at {latest}: "
                             "run `python -m app migrate` on it first")
        db = PgDatabase(dsn, migrations.RECORDS, min_size=1, max_size=2)
        await db.open()
        await db.close()
        conn = await asyncpg.connect(dsn)
        try:
            return await _copy(src, conn)
        finally:
            await conn.close()
    finally:
        src.close()


async def _copy(src: sqlite3.Connection, conn: asyncpg.Connection) -> dict[str, int]:
    tables = [name for (name,) in src.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name != 'schema_migrations' ORDER BY name")]
    for table in tables:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
            raise CannotCopy(f"the PostgreSQL database is not empty ({table} has rows): copy into a new one")
    copied: dict[str, int] = {}
    async with conn.transaction():
        for table in tables:
            copied[table] = await _copy_table(src, conn, table)
        await _continue_identities(conn)
        await conn.execute("SELECT setval('loyalty_entry_ids', (SELECT coalesce(max(id), 0) + 1 FROM loyalty_ledger), "
                           "false)")  # new entries' ids continue after the copied ones
        held = _held_by_live_orders(src)
        if held:
            await conn.copy_records_to_table("inventory", records=sorted(held.items()), columns=["resource", "held"])
        copied["inventory"] = len(held)
    return copied


async def _copy_table(src: sqlite3.Connection, conn: asyncpg.Connection, table: str) -> int:
    columns = [row[1] for row in src.execute(f"PRAGMA table_info({table})")]
    types = {r["column_name"]: r["data_type"] for r in await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1", table)}
    missing = [c for c in columns if c not in types]
    if missing:
        raise CannotCopy(f"{table} has columns PostgreSQL's schema does not: {missing}")
    floats = [i for i, c in enumerate(columns) if types[c] == "double precision"]
    with_rowid = src.execute("SELECT 1 FROM pragma_table_list WHERE name = ? AND wr = 0", (table,)).fetchone()
    order = "rowid" if with_rowid else ", ".join(str(i + 1) for i in range(len(columns)))
    cursor = src.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
    count = 0
    while rows := cursor.fetchmany(5_000):
        if floats:  # SQLite keeps 3.0 as 3 in a REAL column; PostgreSQL's COPY wants a float
            rows = [tuple(float(v) if i in floats and v is not None else v for i, v in enumerate(row))
                    for row in rows]
        await conn.copy_records_to_table(table, records=rows, columns=columns)
        count += len(rows)
    return count


async def _continue_identities(conn: asyncpg.Connection) -> None:
    """Each identity column that rows were copied into goes on after the highest value copied."""
    for r in await conn.fetch("SELECT table_name, column_name FROM information_schema.columns "
                              "WHERE is_identity = 'YES' AND identity_generation = 'BY DEFAULT' "
                              "AND table_schema = current_schema()"):
        table, column = r["table_name"], r["column_name"]
        top = await conn.fetchval(f"SELECT max({column}) FROM {table}")
        if top is not None:
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), $1)", top)


def _held_by_live_orders(src: sqlite3.Connection) -> Counter[str]:
    held: Counter[str] = Counter()
    for (body,) in src.execute("SELECT body FROM orders"):
        order = _decode(body)
        if order.state in HOLDING:
            held += held_by(held_items(order))
    return held
