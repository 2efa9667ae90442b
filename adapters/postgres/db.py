"""PostgreSQL persistence core for several Contrail nodes sharing one system of record (asyncpg).

The same contract as the SQLite writer (adapters/sqlite/db.py), so a store's writes mean the same on both:
- `write(statements)` runs one caller's statements as one transaction: all of them or none. A guarded
  statement `(sql, params, expected_rowcount)` that changes another number of rows fails the whole
  transaction with `WriteConflict`: that is how a check-and-hold holds across nodes (a conditional UPDATE
  that two nodes cannot both pass), never a read followed by a write.
- `Insert` rows go as one multi-row INSERT per statement.
- Reads run on the pool, outside any write's transaction.

The stores' SQL is written once, in the dialect both engines share, with SQLite's `?` placeholders; `pg_sql`
numbers them `$1, $2, ...` and turns SQLite's `INSERT OR IGNORE` into `ON CONFLICT DO NOTHING` (upserts are
`ON CONFLICT ... DO UPDATE` in both; tables read in insertion order have a `rowid` column here; the few
statements that read JSON inside a column ask `dialect`: adapters/sqlite/statements.py's json_field). The schema
is per engine (adapters/postgres/migrations.py). The statement shapes and `Migration` are the SQLite adapter's,
the errors the ports' (state/ports.py), so a store's contract is one.

Unlike SQLite's single writer, transactions from different callers run concurrently on different
connections; PostgreSQL's row locks order them. A transaction that loses a serialisation race (deadlock or
serialisation failure) is retried a few times before the caller hears of it.

Durability: `synchronous_commit` stays on for acknowledged writes; `power_safe=False` (a search's offers)
commits with `synchronous_commit=off`, which survives a node's kill -9 (the server has the WAL in memory and
writes it within 3 x wal_writer_delay) but may lose the last moments in a crash of the database server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer

from adapters.postgres.migrate import Conn, apply_migrations
from adapters.sqlite.migrate import Migration
from adapters.sqlite.statements import Insert, Statement
from state.ports import StorageUnavailable, UnstorableValue, WriteConflict

log = logging.getLogger("contrail.state")

_RETRIED = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
# A value PostgreSQL's text cannot hold (SQLite can): a NUL character.
_UNSTORABLE = (asyncpg.exceptions.CharacterNotInRepertoireError, asyncpg.exceptions.UntranslatableCharacterError)
_NUL = "text with a NUL character (\\u0000) cannot be stored"
# The server is down or the network cut (a connection refused or lost, the pool's wait timed out).
_UNREACHABLE = (OSError, TimeoutError, asyncpg.exceptions.ConnectionDoesNotExistError,
                asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.InterfaceError,
                asyncpg.exceptions.AdminShutdownError)
_RETRIES = 3
MAX_PARAMETERS = 32_767  # PostgreSQL's limit of bind parameters in one statement


class DatabaseClosed(Exception):
    """The database is shutting down and accepts no more writes."""


class PgDatabase:
    dialect = "postgres"

    def __init__(self, dsn: str, migrations: Sequence[Migration], *, min_size: int = 2, max_size: int = 10,
                 command_timeout_s: float = 10.0, ledger: str = "schema_migrations",
                 tracer: Tracer | None = None) -> None:
        self.dsn = dsn
        self._migrations = migrations
        self._ledger = ledger
        self._min_size, self._max_size = min_size, max_size
        self._timeout = command_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._tracer = tracer
        self.commits = 0

    async def open(self) -> list[int]:
        """Connect and apply the migrations not applied yet (one node at a time); the versions applied."""
        self._pool = await asyncpg.create_pool(self.dsn, min_size=self._min_size, max_size=self._max_size,
                                               command_timeout=self._timeout)
        async with self._pool.acquire() as conn:
            return await apply_migrations(conn, self._migrations, self._ledger)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Close the pool gracefully, within `timeout_s`: asyncpg's close waits for every connection to be released,
        for ever if one never is (its docs advise bounding it). Past the bound, the pool is terminated."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout_s)
        except TimeoutError:
            log.warning("PostgreSQL pool not closed gracefully: a connection was never released; terminated",
                        extra={"database": self.path, "waited_s": timeout_s})
            pool.terminate()

    @property
    def path(self) -> str:
        """Where it is, for people (no password)."""
        scheme, _, rest = self.dsn.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DatabaseClosed("database is closed")
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection, given back after; the server unreachable (before or during the work) is
        StorageUnavailable, a value it cannot store UnstorableValue."""
        pool = self._open_pool()
        try:
            conn = await pool.acquire(timeout=self._timeout)
        except _UNREACHABLE as exc:
            raise StorageUnavailable(f"PostgreSQL at {self.path}: {type(exc).__name__}") from None
        try:
            yield conn
        except _UNSTORABLE:
            raise UnstorableValue(_NUL) from None
        except _UNREACHABLE as exc:
            # Cut off mid-transaction: PostgreSQL rolled it back unless the COMMIT itself was lost on the way,
            # which only the database can tell; the caller was not told it succeeded either way.
            raise StorageUnavailable(f"PostgreSQL at {self.path}: {type(exc).__name__}") from None
        finally:
            await pool.release(conn)

    # ---- writes ----
    async def write(self, statements: Sequence[Statement], *, power_safe: bool = True) -> list[int]:
        """Run the statements as one transaction; each statement's row count."""
        if self._tracer is not None and trace.get_current_span().is_recording():
            with self._tracer.start_as_current_span(
                    "commit postgresql", kind=SpanKind.CLIENT,
                    attributes={"db.system.name": "postgresql", "contrail.statements": len(statements)}):
                return await self._write(statements, power_safe)
        return await self._write(statements, power_safe)

    async def _write(self, statements: Sequence[Statement], power_safe: bool) -> list[int]:
        for attempt in range(_RETRIES + 1):
            try:
                async with self._connection() as conn, conn.transaction():
                    if not power_safe:
                        await conn.execute("SET LOCAL synchronous_commit = off")
                    counts = [await _run(conn, stmt) for stmt in statements]
                self.commits += 1
                return counts
            except _RETRIED:
                if attempt == _RETRIES:
                    raise
                await asyncio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    def submit(self, statements: Sequence[Statement], *, power_safe: bool = True) -> asyncio.Future[list[int]]:
        """write() as a future, as the SQLite writer offers it to the unit of work."""
        return asyncio.ensure_future(self.write(statements, power_safe=power_safe))

    # ---- reads ----
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            return [tuple(r) for r in await conn.fetch(pg_sql(sql), *params)]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


@functools.lru_cache(maxsize=2048)
def pg_sql(sql: str) -> str:
    """A statement in the shared dialect as PostgreSQL takes it (see the module doc). Bounded: the stores' SQL
    is a fixed set of shapes (an `IN (?,?,...)` list has one per length, up to a chunk's)."""
    ignore = sql.lstrip().upper().startswith("INSERT OR IGNORE")
    if ignore:
        sql = sql.replace("INSERT OR IGNORE", "INSERT", 1).replace("insert or ignore", "insert", 1)
    out, n, quoted = [], 0, False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        elif ch == "?" and not quoted:
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out) + (" ON CONFLICT DO NOTHING" if ignore else "")


async def _run(conn: Conn, stmt: Statement) -> int:
    if isinstance(stmt, Insert):
        if not stmt.well_formed():
            raise ValueError(f"an insert into {stmt.table} has rows that do not fill its {len(stmt.columns)} columns")
        width = len(stmt.columns)
        per = max(1, MAX_PARAMETERS // width)
        for start in range(0, len(stmt.rows), per):
            rows = stmt.rows[start:start + per]
            groups = ",".join("(" + ",".join(f"${i * width + j + 1}" for j in range(width)) + ")"
                              for i in range(len(rows)))
            await conn.execute(f"INSERT INTO {stmt.table}({', '.join(stmt.columns)}) VALUES {groups}",
                               *(v for row in rows for v in row))
        return len(stmt.rows)
    sql, params = stmt[0], stmt[1]
    status = await conn.execute(pg_sql(sql), *params)
    count = _rowcount(status)
    if len(stmt) > 2 and stmt[2] is not None and count != stmt[2]:
        raise WriteConflict(sql, stmt[2], count, stmt[3] if len(stmt) > 3 else "")
    return count


def _rowcount(status: str) -> int:
    """The row count of a command tag: 'UPDATE 3', 'DELETE 0', 'INSERT 0 1'."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
