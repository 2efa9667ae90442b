"""The group-commit writer against real SQLite files."""

import asyncio
import sqlite3

import pytest

from adapters.pii import PiiCipher
from adapters.sqlite import migrations
from adapters.sqlite.db import Database, DatabaseClosed, WriteConflict
from adapters.sqlite.idempotency import SqliteIdempotencyStore
from adapters.sqlite.migrate import Migration
from adapters.sqlite.statements import Insert, render
from state.idempotency import StoredResponse

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


async def test_a_groups_inserts_into_one_table_go_together_and_a_bad_one_still_fails_alone(db):
    """Callers' Inserts into one table run as one shared multi-row statement; each caller still gets its
    own rowcounts, and a duplicate key or a row of the wrong width fails only the caller that sent it."""
    await db.write([("INSERT INTO t(k, v) VALUES (?,?)", ("dup", 0))])
    statements: list[str] = []
    db._conn.set_trace_callback(statements.append)

    def rows(prefix: str, n: int) -> Insert:
        return Insert("t", ("k", "v"), [(f"{prefix}{i}", i) for i in range(n)])
    merged = await asyncio.gather(*(db.write([rows(f"m{i}-", 1 + i % 3)]) for i in range(30)))
    assert merged == [[1 + i % 3] for i in range(30)]
    assert sum(s.startswith("INSERT") for s in statements) < 30  # shared statements, not one per caller
    # A group that comes down to one statement is a transaction of its own: no BEGIN or COMMIT around it.
    assert not any(s.startswith(("BEGIN", "COMMIT")) for s in statements)

    # One caller's duplicate in such a group: the shared statement undoes itself, the group runs again
    # with a savepoint per caller, and only that caller fails.
    statements.clear()
    again = await asyncio.gather(*(db.write([rows(f"a{i}-", 2)]) for i in range(10)),
                                 db.write([Insert("t", ("k", "v"), [("dup", 9)])]),
                                 return_exceptions=True)
    assert again[:10] == [[2]] * 10 and isinstance(again[10], sqlite3.IntegrityError)
    assert await db.fetchall("SELECT count(*) FROM t WHERE k LIKE 'a%'") == [(20,)]
    assert any(s.startswith("BEGIN") for s in statements)

    good = [db.write([rows(f"g{i}-", 1 + i % 3), ("UPDATE t SET v = v + 1 WHERE k = 'dup'", ()),
                      rows(f"h{i}-", 2)]) for i in range(30)]
    duplicate = db.write([rows("d", 2), Insert("t", ("k", "v"), [("dup", 1)])])
    short = db.write([Insert("t", ("k", "v"), [("s0", 0), ("s1",)])])
    results = await asyncio.gather(*good, duplicate, short, return_exceptions=True)
    assert results[:30] == [[1 + i % 3, 1, 2] for i in range(30)]
    assert isinstance(results[30], sqlite3.IntegrityError) and isinstance(results[31], ValueError)
    assert await db.fetchall("SELECT count(*) FROM t WHERE k LIKE 'm%' OR k LIKE 'g%' OR k LIKE 'h%'") == [(2 * sum(
        1 + i % 3 for i in range(30)) + 60,)]
    assert await db.fetchall("SELECT count(*) FROM t WHERE k LIKE 'd_' OR k LIKE 's_'") == [(0,)]
    assert await db.fetchone("SELECT v FROM t WHERE k = 'dup'") == (30,)


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


async def test_an_insert_of_many_rows_is_atomic_and_lands_whole(db):
    with pytest.raises(sqlite3.IntegrityError):
        await db.write([Insert("t", ("k", "v"), [("m1", 1), ("m1", 2)])])
    assert await db.fetchall("SELECT k FROM t WHERE k = 'm1'") == []
    assert await db.write([Insert("t", ("k", "v"), [("m1", 1), ("m2", 2)])]) == [2]
    rows = [(f"r{i}", i) for i in range(4_500)]  # more than one multi-row INSERT's worth
    assert await db.write([Insert("t", ("k", "v"), rows)]) == [4_500]
    assert await db.fetchall("SELECT count(*), sum(v), min(k), max(v) FROM t WHERE k LIKE 'r%'") == [
        (4_500, sum(range(4_500)), "r0", 4_499)]
    with pytest.raises(sqlite3.IntegrityError):  # one bad row anywhere fails them all
        await db.write([Insert("t", ("k", "v"), [(f"n{i}", i) for i in range(3_000)] + [("r5", 0)])])
    assert await db.fetchall("SELECT count(*) FROM t WHERE k LIKE 'n%'") == [(0,)]


def test_render_covers_every_row_once_in_few_statement_shapes():
    """The explicit multi-row insert against a plain reference: one INSERT per row."""
    shape = ("t", ("k", "v"))
    for rows in (1, 7, 256, 257, 2_048, 4_500):
        params = [x for i in range(rows) for x in (f"k{i}", i)]
        statements = render(shape, params, rows, 32_766)
        flat = [p for _, ps in statements for p in ps]
        assert flat == params
        assert all(sql.count("(?,?)") * 2 == len(ps) for sql, ps in statements)
        assert len(statements) <= 1 + rows.bit_length()
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k TEXT, v INTEGER)")
    reference = sqlite3.connect(":memory:")
    reference.execute("CREATE TABLE t (k TEXT, v INTEGER)")
    params = [x for i in range(3_001) for x in (f"k{i}", i)]
    for sql, ps in render(shape, params, 3_001, 999):  # an old SQLite's variable limit
        conn.execute(sql, ps)
    for i in range(3_001):
        reference.execute("INSERT INTO t(k, v) VALUES (?, ?)", (f"k{i}", i))
    assert conn.execute("SELECT k, v FROM t").fetchall() == reference.execute("SELECT k, v FROM t").fetchall()


async def _steady_writes(db: Database, rows: int, max_seconds: float = 30.0) -> int:
    """Writers that never pause (so a background checkpoint never finds the WAL idle) until `rows` rows
    of about a page each are in; returns the WAL's largest size in pages."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + max_seconds
    wal = db.path.with_name(db.path.name + "-wal")
    largest = written = 0

    async def writer(n: int) -> None:
        nonlocal largest, written
        i = 0
        while written < rows and loop.time() < stop:
            await db.write([("INSERT INTO t VALUES (?, ?)", (f"{n}-{i}-{'x' * 3000}", i))])
            written += 1
            largest = max(largest, wal.stat().st_size // 4096)
            i += 1
    await asyncio.gather(*(writer(n) for n in range(16)))
    return largest


async def test_under_steady_writes_the_wal_starts_over_once_past_its_limit(tmp_path):
    db = Database(tmp_path / "w.db", SCHEMA, checkpoint_interval_ms=20, wal_restart_frames=300)
    await db.open()
    try:
        largest = await _steady_writes(db, rows=8_000)
        rows = (await db.fetchall("SELECT count(*) FROM t"))[0][0]
        assert rows >= 8_000 and db.checkpoints > 0
        # Every row took at least two pages of WAL (the row, and its 3 KB key in the primary key's
        # index): the WAL started over rather than holding them all.
        assert largest * 4 < rows * 2, (largest, rows)
    finally:
        await db.close()


async def test_a_commit_never_checkpoints_on_its_own(tmp_path):
    """With the background checkpoint far away, the WAL only grows: no commit copied it into the database."""
    db = Database(tmp_path / "n.db", SCHEMA, checkpoint_interval_ms=60_000)
    await db.open()
    try:
        await asyncio.gather(*(db.write([("INSERT INTO t VALUES (?, ?)", (f"b{i}-{'y' * 3000}", i))])
                               for i in range(1200)))
        pages = (tmp_path / "n.db-wal").stat().st_size // 4096
        assert pages > 1000  # SQLite's own automatic checkpoint would have restarted it at 1,000 pages
        assert db.checkpoint_sync() > 1000 and db.checkpoints == 1
    finally:
        await db.close()


async def test_idempotency_purge_forgets_exactly_the_expired_responses(tmp_path):
    db = Database(tmp_path / "r.db", migrations.RECORDS)
    await db.open()
    try:
        pii = PiiCipher.generate()
        store = SqliteIdempotencyStore(db, pii)

        def response(key: str, expires_at: float) -> StoredResponse:
            return StoredResponse("user:1", key, "hash", 201, "application/json", b"{}", 0.0, expires_at)
        await store.put(response("a", 100.0))
        await store.put(response("b", 200.0))
        await store.put(response("c", 100.0))
        await store.put(response("c", 300.0))  # the same key answered again later: kept until 300
        assert await store.purge_expired(150.0) == 1
        assert store.get("user:1", "a", 0.0) is None and store.get("user:1", "c", 150.0) is not None
        assert await store.purge_expired(150.0) == 0
        assert await store.purge_expired(250.0) == 1
        assert [r[0] for r in await db.fetchall("SELECT key FROM idempotency ORDER BY key")] == ["c"]
        reloaded = SqliteIdempotencyStore(db, pii)
        await reloaded.load(250.0)
        assert await reloaded.purge_expired(400.0) == 1
    finally:
        await db.close()


async def test_idempotent_replies_beyond_memory_are_replayed_from_the_store(tmp_path):
    from app.idempotency import IdempotencyService
    from app.runtime.clock import ManualClock
    db = Database(tmp_path / "r.db", migrations.RECORDS)
    await db.open()
    try:
        pii, clock = PiiCipher.generate(), ManualClock(1_000.0)
        store = SqliteIdempotencyStore(db, pii, max_in_memory=2)
        service = IdempotencyService(store, clock, 3_600, "s" * 32)
        prints = {}
        for k in range(5):
            prints[k] = service.fingerprint("POST", "/v1/orders", f"body {k}".encode())
            assert await service.begin("user:1", f"key-{k}", prints[k]) == "new"
            await service.finish("user:1", f"key-{k}", prints[k], 201, "application/json", f'{{"n":{k}}}'.encode())
            clock.advance(1)
        assert len(store.records) == 2 and not store.complete  # the oldest three are in the store only
        for k in range(5):  # every one still replays its first answer, held or not
            replay = await service.begin("user:1", f"key-{k}", prints[k])
            assert replay != "new" and replay.body == f'{{"n":{k}}}'.encode()
        # A start holds the newest, and knows it does not hold them all.
        reloaded = SqliteIdempotencyStore(db, pii, max_in_memory=3)
        await reloaded.load(clock.now())
        assert sorted(key for _, key in (k for k, _ in reloaded.records.items())) == ["key-2", "key-3", "key-4"]
        assert not reloaded.complete
        roomy = SqliteIdempotencyStore(db, pii, max_in_memory=10)
        await roomy.load(clock.now())
        assert len(roomy.records) == 5 and roomy.complete
    finally:
        await db.close()
