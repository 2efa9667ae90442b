"""The group-commit writer against real SQLite files."""

import asyncio
import sqlite3

import pytest

from state.db import Database, DatabaseClosed, Migration, WriteConflict

SCHEMA = [Migration(1, "t", "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")]


@pytest.fixture
async def db(tmp_path):
    groups = []
    database = Database(tmp_path / "x.db", SCHEMA, on_commit=lambda n, s: groups.append(n))
    database.groups = groups
    await database.open()
    yield database
    await database.close()


async def test_concurrent_writes_share_commits_and_all_land(db, tmp_path):
    await asyncio.gather(*(db.write([("INSERT INTO t VALUES (?, ?)", (f"k{i}", i))]) for i in range(200)))
    assert sum(db.groups) == 200
    assert len(db.groups) < 200  # grouped, not one commit per write
    rows = sqlite3.connect(tmp_path / "x.db").execute("SELECT count(*) FROM t").fetchone()
    assert rows == (200,)


async def test_one_failing_caller_does_not_sink_its_group(db):
    await db.write([("INSERT INTO t VALUES ('dup', 1)", ())])
    results = await asyncio.gather(
        db.write([("INSERT INTO t VALUES ('a', 1)", ())]),
        db.write([("INSERT INTO t VALUES ('b', 1)", ()), ("INSERT INTO t VALUES ('dup', 2)", ())]),
        db.write([("INSERT INTO t VALUES ('c', 1)", ())]),
        return_exceptions=True)
    assert isinstance(results[1], sqlite3.IntegrityError)
    keys = {r[0] for r in await db.fetchall("SELECT k FROM t")}
    assert keys == {"dup", "a", "c"}  # 'b' rolled back with its failing sibling statement


async def test_guarded_statement_raises_conflict_and_rolls_back(db):
    await db.write([("INSERT INTO t VALUES ('x', 1)", ())])
    with pytest.raises(WriteConflict):
        await db.write([("UPDATE t SET v = 2 WHERE k = 'x'", ()),
                        ("UPDATE t SET v = 3 WHERE k = 'x' AND v = 99", (), 1)])
    assert await db.fetchone("SELECT v FROM t WHERE k='x'") == (1,)


async def test_close_drains_queued_writes_then_refuses(tmp_path):
    database = Database(tmp_path / "y.db", SCHEMA)
    await database.open()
    pending = [asyncio.ensure_future(database.write([("INSERT INTO t VALUES (?, 1)", (f"k{i}",))]))
               for i in range(50)]
    await asyncio.sleep(0)
    await database.close()
    await asyncio.gather(*pending)
    with pytest.raises(DatabaseClosed):
        await database.write([("INSERT INTO t VALUES ('late', 1)", ())])
    assert sqlite3.connect(tmp_path / "y.db").execute("SELECT count(*) FROM t").fetchone() == (50,)


async def test_migrations_are_numbered_recorded_and_applied_once(tmp_path):
    more = SCHEMA + [Migration(2, "idx", "CREATE INDEX t_v ON t(v)")]
    first = Database(tmp_path / "m.db", SCHEMA)
    assert await first.open() == [1]
    await first.close()
    second = Database(tmp_path / "m.db", more)
    assert await second.open() == [2]
    rows = await second.fetchall("SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == [(1, "t"), (2, "idx")]
    mode = await second.fetchone("PRAGMA journal_mode")
    assert mode == ("wal",)
    await second.close()


async def test_write_many_is_atomic(db):
    with pytest.raises(sqlite3.IntegrityError):
        await db.write_many("INSERT INTO t VALUES (?, ?)", [("m1", 1), ("m1", 2)])
    assert await db.fetchall("SELECT k FROM t WHERE k = 'm1'") == []
    assert await db.write_many("INSERT INTO t VALUES (?, ?)", [("m1", 1), ("m2", 2)]) == 2
