"""SQLite persistence core: one writer with group commit, separate readers, migrations.

Writes go through a queue to one writer connection. The writer takes everything that is
waiting in the queue when it starts a transaction, runs every caller's statements, then
COMMITs once. If any caller's statement fails, the group is rolled back and run again
with each caller inside its own SAVEPOINT, so that one caller's failure never sinks its
neighbours. Then every caller's future is resolved: a caller that was told "done" is on
disk. A group that comes down to one statement (a group of searches' offers, a batch of
events) runs without BEGIN and COMMIT: SQLite makes a lone statement its own transaction.

The writer is a thread of its own owning a plain sqlite3 connection: it runs each whole
transaction, rather than one thread hop per statement as aiosqlite would (per-statement
hops dominate the cost of small transactions). It takes its next group from a thread-safe
queue as soon as it has committed one, and hands the results back to the event loop with
call_soon_threadsafe; the loop is not a step in the commit cycle. (When the loop handed
each group to an executor and took the results back itself, a commit under search load
waited about 1 ms to start and 1.3 ms to be seen, on a loop busy with requests; groups
were further apart and every search waited longer for its offers to be written.)
Readers use aiosqlite connections of their own.

Checkpoints: SQLite's automatic checkpoint runs inside whichever COMMIT fills the WAL past
1,000 pages, so every few megabytes one group of callers waited for a copy of the WAL into
the database file and its fsync (10-50 ms). Here the writer never checkpoints on its own
(wal_autocheckpoint=0): a second connection on a thread of its own runs PASSIVE checkpoints
every `checkpoint_interval_ms`, which never block the writer. Under a steady stream of
writes such a checkpoint never quite catches up, and SQLite only starts the WAL file over
when everything in it has been copied; so once the WAL holds more than
`wal_restart_frames` pages, the writer itself checkpoints the few pages the background
checkpoint has not copied yet, before its next group, and the WAL starts over.

Durability: journal_mode=WAL with synchronous=FULL by default: every COMMIT is fsynced
before callers are answered, so an acknowledged write survives kill -9 *and* a power
cut. synchronous=NORMAL (used for the telemetry file) survives kill -9 but may lose the
last transactions on power loss; it never corrupts the database.

A write may ask for less: `power_safe=False` means "must survive kill -9, may be lost
in a power cut" (a search's offers: quotes valid for minutes that a customer can ask for
again). A group made only of such writes commits without the fsync; a group holding any
power-safe write is fsynced, and with WAL that fsync also covers every earlier commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiosqlite
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from adapters.sqlite.checkpoints import Checkpointer
from adapters.sqlite.migrate import Migration, apply_migrations
from adapters.sqlite.statements import CACHED_STATEMENTS, ROWS_PER_MERGE, Insert, Sql, Statement, flat, render
from state.ports import WriteConflict

log = logging.getLogger("contrail.state")


class DatabaseClosed(Exception):
    """The database is shutting down and accepts no more writes."""


@dataclass
class _Write:
    statements: Sequence[Statement]
    future: asyncio.Future[list[int]]
    power_safe: bool = True
    traced: tuple[otel_context.Context, int] | None = None  # the caller's traced context and when it asked


_STOP = object()
_WRITE_ERRORS = (sqlite3.Error, WriteConflict, ValueError, TypeError)
_SYNC_LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
CommitObserver = Callable[[int, float], None]


def _resolve(done: asyncio.Future[None]) -> None:
    """Mark the writer finished, unless that is known already (run on the loop)."""
    if not done.done():
        done.set_result(None)


class Database:
    """One SQLite file: a group-committing writer and a reader connection."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        migrations: Sequence[Migration],
        *,
        synchronous: str = "FULL",
        max_group_size: int = 512,
        busy_timeout_ms: int = 5000,
        on_commit: CommitObserver | None = None,
        checkpoint_interval_ms: int = 1000,
        wal_restart_frames: int = 4096,
        tracer: Tracer | None = None,
    ) -> None:
        self.path = Path(path)
        self._migrations = sorted(migrations, key=lambda m: m.version)
        self._synchronous = synchronous
        self._synchronous_now = synchronous  # the writer connection's setting (it may relax it per group)
        self._max_group = max_group_size
        self._busy_timeout_ms = busy_timeout_ms
        self._on_commit = on_commit
        self._tracer = tracer  # None: no tracing, and submit() checks nothing else
        self._checkpoints = Checkpointer(self.path, busy_timeout_ms, checkpoint_interval_ms / 1000, wal_restart_frames,
                                         lambda: self.commits)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Opens and closes the writer connection; the writer thread uses it in between.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-open-{self.path.name}")
        self._conn: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._writer_task: asyncio.Future[None] | None = None
        self._closing = False
        self.commits = 0

    # ---- lifecycle -------------------------------------------------------------------

    async def open(self) -> list[int]:
        """Open the file, apply pending migrations, start the writer; return versions applied."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        applied = await loop.run_in_executor(self._executor, self._open_sync)
        self._reader = await aiosqlite.connect(self.path)
        await self._reader.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        self._writer_task = loop.create_future()
        # A daemon: a process that exits without close() loses only the writes nobody was answered for,
        # as kill -9 would, instead of waiting for ever on a queue nobody will stop.
        threading.Thread(target=self._writer, args=(loop, self._writer_task), name=f"sqlite-writer-{self.path.name}",
                         daemon=True).start()
        await self._checkpoints.start()
        return applied

    def _open_sync(self) -> list[int]:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               cached_statements=CACHED_STATEMENTS)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run beside the writer (see the module doc)
        conn.execute("PRAGMA journal_size_limit=67108864")  # a WAL that grew in a burst shrinks when it starts over
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        conn.execute("PRAGMA foreign_keys=ON")
        applied = apply_migrations(conn, self._migrations)
        self._conn = conn
        return applied

    async def close(self) -> None:
        """Finish every queued write, then close all connections."""
        if self._closing:
            return
        self._closing = True
        await self._checkpoints.stop()
        if self._writer_task is not None:
            self._queue.put(_STOP)
            await self._writer_task
        if self._reader is not None:
            await self._reader.close()
        if self._conn is not None:
            conn = self._conn
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def is_open(self) -> bool:
        return self._writer_task is not None and not self._writer_task.done() and not self._closing

    # ---- checkpoints (adapters/sqlite/checkpoints.py) --------------------------------

    @property
    def wal_frames(self) -> int:
        """Pages in the WAL at the last checkpoint."""
        return self._checkpoints.wal_frames

    @property
    def checkpoints(self) -> int:
        return self._checkpoints.checkpoints

    def checkpoint_sync(self) -> int:
        return self._checkpoints.checkpoint_sync()

    # ---- writes ----------------------------------------------------------------------

    async def write(self, statements: Sequence[Statement], *, power_safe: bool = True) -> list[int]:
        """Run statements atomically in the next group commit; return each statement's rowcount.

        power_safe=False: the write survives kill -9 but not necessarily a power cut (no fsync
        of its own when the database is synchronous=FULL or EXTRA)."""
        return await self.submit(statements, power_safe=power_safe)

    def submit(self, statements: Sequence[Statement], *, power_safe: bool = True) -> asyncio.Future[list[int]]:
        """write() as a future, with no coroutine around it: the hot paths hand it straight to
        commit_or_undo. A closed database gives a future that fails with DatabaseClosed."""
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        if self._closing or self._writer_task is None:
            future.set_exception(DatabaseClosed("database is closed"))
        elif self._tracer is not None and trace.get_current_span().is_recording():
            self._queue.put(_Write(statements, future, power_safe, (otel_context.get_current(), time.time_ns())))
        else:
            self._queue.put(_Write(statements, future, power_safe))
        return future

    def _writer(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        """The writer thread: everything waiting when a group starts (up to max_group_size) is one
        group, and one commit; the results go back to the loop. Ends after close()'s stop mark, once
        everything queued before it is written and answered, and then resolves `done`."""
        try:
            self._write_until_stopped(loop)
        finally:
            loop.call_soon_threadsafe(_resolve, done)

    def _write_until_stopped(self, loop: asyncio.AbstractEventLoop) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            batch: list[_Write] = []
            if item is _STOP:
                stopping = True
            else:
                batch.append(item)
            while len(batch) < self._max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    continue
                batch.append(nxt)
            if not batch:
                continue
            started = time.perf_counter()
            try:
                results = self._commit_group(batch)
            except BaseException as exc:  # the whole group failed (disk full, I/O error)
                log.error("group commit failed", extra={"error": repr(exc), "group": len(batch)})
                results = [exc] * len(batch)
            loop.call_soon_threadsafe(self._answer, batch, results, time.perf_counter() - started)

    def _answer(self, batch: list[_Write], results: list[Any], elapsed: float) -> None:
        """On the loop: resolve a committed group's futures."""
        self.commits += 1
        if self._on_commit is not None:
            self._on_commit(len(batch), elapsed)
        for write, result in zip(batch, results, strict=True):
            if write.traced is not None:
                self._trace(write.traced, result, len(batch))
            if write.future.done():
                continue
            if isinstance(result, BaseException):
                write.future.set_exception(result)
            else:
                write.future.set_result(result)

    def _trace(self, traced: tuple[otel_context.Context, int], result: Any, group: int) -> None:
        """A span under the caller's, from its write being queued to its group committed."""
        assert self._tracer is not None
        parent, started = traced
        span = self._tracer.start_span(f"commit {self.path.name}", context=parent, kind=SpanKind.CLIENT,
                                       start_time=started,
                                       attributes={"db.system.name": "sqlite", "db.namespace": self.path.name,
                                                   "contrail.commit_group": self.commits,
                                                   "contrail.group_size": group})
        if isinstance(result, BaseException):
            span.set_status(Status(StatusCode.ERROR, type(result).__name__))
        span.end()

    def _commit_group(self, batch: list[_Write]) -> list[Any]:
        conn = self._conn
        assert conn is not None
        synchronous = self._synchronous
        if not any(w.power_safe for w in batch) and _SYNC_LEVELS.get(synchronous, 0) > _SYNC_LEVELS["NORMAL"]:
            synchronous = "NORMAL"
        if synchronous != self._synchronous_now:
            conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous_now = synchronous
        if self._checkpoints.catch_up:
            # Copies only what the background checkpoint has not; this group's transaction then restarts the WAL.
            self._checkpoints.catch_up = False
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # the group's own writes do not depend on it
                log.warning("writer checkpoint failed", extra={"db": self.path.name, "error": repr(exc)})
        steps = self._merge(batch)
        if len(steps) == 1:
            if self._one_unguarded_statement(conn, steps[0]):
                # One statement with no row count to check (a group of searches' offers, a batch of
                # events): SQLite runs it as a transaction of its own, as atomic and as durable as
                # BEGIN ... COMMIT around it, and without the two statements that would each hand the GIL
                # back and forth.
                try:
                    return self._run_steps(conn, batch, steps)
                except _WRITE_ERRORS:
                    pass  # it undid itself; run the group as below, which finds the caller at fault
        conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                # Optimistic pass: no savepoints (each is a statement of its own, and every
                # statement hands the GIL back and forth). Writes rarely fail; when one does,
                # the group is rolled back and run again with a savepoint per caller.
                results: list[Any] = self._run_steps(conn, batch, steps)
            except _WRITE_ERRORS as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if len(batch) == 1:
                    return [exc]
                conn.execute("BEGIN IMMEDIATE")
                results = [self._run_isolated(conn, write) for write in batch]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    @staticmethod
    def _merge(batch: list[_Write]) -> list[tuple[Any, ...]]:
        """Every write's statements in order, except that consecutive Inserts into one table's columns, from
        one caller or several (a search's offers, from every search in the group), go as multi-row
        INSERTs. sqlite3 hands the GIL back around every statement, and taking it again waits for the
        busy loop to let go of it (docs/performance.md, the offer writer).

        Each step is ("merged", (table, columns), params, [(write, rows), ...]) or ("alone", statement, write)."""
        steps: list[tuple[Any, ...]] = []
        shape: tuple[str, tuple[str, ...]] | None = None
        params: list[Any] = []
        owners: list[tuple[int, int]] = []
        for index, write in enumerate(batch):
            for stmt in write.statements:
                if isinstance(stmt, Insert) and stmt.well_formed():
                    if stmt.shape == shape:
                        params.extend(flat(stmt))
                        owners.append((index, len(stmt.rows)))
                        continue
                    shape = stmt.shape
                    params, owners = flat(stmt), [(index, len(stmt.rows))]
                    steps.append(("merged", shape, params, owners))
                else:
                    shape = None
                    steps.append(("alone", stmt, index))
        return steps

    @staticmethod
    def _one_unguarded_statement(conn: sqlite3.Connection, step: tuple[Any, ...]) -> bool:
        """The step runs as one statement with no row count to check."""
        if step[0] == "merged":
            return (sum(rows for _, rows in step[3]) <= ROWS_PER_MERGE
                    and len(step[2]) <= conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        stmt = step[1]
        return not isinstance(stmt, Insert) and (len(stmt) < 3 or stmt[2] is None)

    @staticmethod
    def _statements(conn: sqlite3.Connection, step: tuple[Any, ...]) -> list[Sql]:
        """The INSERT statements of a merged step."""
        _, shape, params, owners = step
        return render(shape, params, sum(rows for _, rows in owners),
                      conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))

    @classmethod
    def _run_steps(cls, conn: sqlite3.Connection, batch: list[_Write], steps: list[tuple[Any, ...]]) -> list[list[int]]:
        """Run _merge's steps; each write's row counts, statement by statement. If anything fails, the caller
        runs the group again per write, unmerged."""
        counts: list[list[int]] = [[] for _ in batch]
        for step in steps:
            if step[0] == "alone":
                counts[step[2]].extend(cls._run(conn, [step[1]]))
                continue
            for sql, params in cls._statements(conn, step):
                conn.execute(sql, params)
            for index, rows in step[3]:
                counts[index].append(rows)
        return counts

    @staticmethod
    def _run(conn: sqlite3.Connection, statements: Sequence[Statement]) -> list[int]:
        counts = []
        for stmt in statements:
            if isinstance(stmt, Insert):
                if not stmt.well_formed():
                    raise ValueError(f"an insert into {stmt.table} has rows that do not fill its "
                                     f"{len(stmt.columns)} columns")
                limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
                for sql, params in render(stmt.shape, flat(stmt), len(stmt.rows), limit):
                    conn.execute(sql, params)
                counts.append(len(stmt.rows))
                continue
            sql, params = stmt[0], stmt[1]
            cur = conn.execute(sql, params)
            if len(stmt) > 2 and stmt[2] is not None and cur.rowcount != stmt[2]:
                raise WriteConflict(sql, stmt[2], cur.rowcount, stmt[3] if len(stmt) > 3 else "")
            counts.append(cur.rowcount)
        return counts

    def _run_isolated(self, conn: sqlite3.Connection, write: _Write) -> list[int] | BaseException:
        """One caller's statements inside a savepoint: its failure never sinks its neighbours."""
        conn.execute("SAVEPOINT caller")
        try:
            counts = self._run(conn, write.statements)
        except _WRITE_ERRORS as exc:
            conn.execute("ROLLBACK TO caller")
            conn.execute("RELEASE caller")
            return exc
        conn.execute("RELEASE caller")
        return counts

    # ---- reads -----------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read on the reader connection."""
        if self._reader is None:
            raise DatabaseClosed("database is closed")
        async with self._reader.execute(sql, params) as cur:
            # aiosqlite types rows as sqlite3.Row whatever the row factory; the reader keeps the
            # default one, so each row is a plain tuple.
            return cast("list[tuple[Any, ...]]", list(await cur.fetchall()))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None
