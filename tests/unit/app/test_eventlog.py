"""The analytics event log against a real SQLite file, and the hub."""

import asyncio

import msgspec

from adapters.sqlite import migrations
from adapters.sqlite.db import Database
from adapters.sqlite.eventlog import SqliteEventLogStore
from app.eventlog import EventLog
from app.hub import Hub
from app.runtime.clock import ManualClock
from app.runtime.metrics import Metrics


async def _event_log(tmp_path, **kw):
    db = Database(tmp_path / "events.db", migrations.EVENTS, synchronous="NORMAL")
    await db.open()
    hub = Hub(10)
    log = EventLog(SqliteEventLogStore(db), hub, ManualClock(), Metrics(), **kw)
    return db, hub, log


async def test_log_event_never_blocks_and_drops_when_full(tmp_path):
    db, _, log = await _event_log(tmp_path, capacity=5, flush_rows=100, flush_interval_ms=1000)
    accepted = [log.log_event("Thing", {"i": i}) for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert log.dropped == 3 and log.pending == 5
    assert await log.flush() == 5
    rows = await db.fetchall("SELECT type, payload FROM events ORDER BY id")
    assert rows[0] == ("Thing", '{"i":0}') and len(rows) == 5
    await db.close()


async def test_a_kept_event_is_written_before_it_returns_and_queued_if_the_store_fails(tmp_path):
    db, hub, log = await _event_log(tmp_path, capacity=2, flush_rows=100, flush_interval_ms=1000)
    live = hub.subscribe("events", ["Click"])
    log.log_event("Bid", {"i": 0})
    await log.log_kept("Click", {"bid_id": "b1"})
    assert await db.fetchall("SELECT type, payload FROM events") == [("Click", '{"bid_id":"b1"}')]
    assert log.pending == 1 and log.written == 1 and '"b1"' in live.queue[0]  # published live as well

    async def failing(rows):
        raise OSError("disk full")
    log._store.append_batch = failing  # type: ignore[method-assign]
    await log.log_kept("Click", {"bid_id": "b2"})  # as log_event would: queued for the writer
    await log.log_kept("Click", {"bid_id": "b3"})  # the queue is full: dropped and counted
    assert log.pending == 2 and log.dropped == 1
    await db.close()


async def test_a_flush_writes_what_was_queued_when_it_began(tmp_path):
    """Events logged while a flush is writing wait for the next one: under steady traffic a flush
    that took them too would never end, writing small batches back to back."""
    db, _, log = await _event_log(tmp_path, capacity=100, flush_rows=2, flush_interval_ms=1000)
    for i in range(5):
        log.log_event("Early", {"i": i})
    flushing = asyncio.create_task(log.flush())
    await asyncio.sleep(0)  # the flush has sent its first batch of two and waits for the commit
    for i in range(3):
        log.log_event("Late", {"i": i})
    assert await flushing == 5
    assert log.pending == 3
    assert await db.fetchall("SELECT type, count(*) FROM events GROUP BY type") == [("Early", 5)]
    assert await log.flush() == 3
    await db.close()


async def test_event_queries_read_only_what_they_return(tmp_path):
    """Every read of the event log is an index range scan: none reads all events of a type to sort them."""
    import sqlite3
    db, _, log = await _event_log(tmp_path, capacity=10_000, flush_rows=10_000, flush_interval_ms=1000)
    for i in range(3_000):
        log.log_event("Bid" if i % 3 else "OfferGenerated", {"i": i})
    await log.flush()
    reads: list[tuple[str, tuple]] = []
    fetchall = db.fetchall

    async def recorded(sql, params=()):
        reads.append((sql, tuple(params)))
        return await fetchall(sql, params)
    db.fetchall = recorded
    newest = await log.recent_payloads("OfferGenerated", 5)
    assert [int(p.split(":")[1].rstrip("}")) for p in newest] == [2985, 2988, 2991, 2994, 2997]
    assert [page async for page in log.payload_pages("OfferGenerated", 5, page=2)] == [
        newest[3:], newest[1:3], newest[:1]]
    assert len(await log.query("Bid", None, 100, 10)) == 10
    assert len(await log.query("Bid", 0.0, 100, 10)) == 10
    assert len(await log.query(None, 0.0, 100, 10)) == 10
    conn = sqlite3.connect(tmp_path / "events.db")
    for sql, params in reads:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        reads_events = [step for step in plan if "events" in step]
        assert reads_events and all(step.startswith("SEARCH events USING") for step in reads_events), (sql, plan)
        # A sort is fine only over what a subquery already limited (the newest N, put back in order).
        assert not any("TEMP B-TREE" in step for step in plan) or any(
            step.startswith("CO-ROUTINE") for step in plan), (sql, plan)
    conn.close()
    await db.close()


async def test_events_logged_together_are_stored_each_as_itself(tmp_path):
    """Several events logged in one call (encoded as JSON lines in one pass) come back one by one, in
    order, each its own payload, whatever their strings hold; past the queue's room the rest are dropped."""
    db, _, log = await _event_log(tmp_path, capacity=4, flush_rows=100, flush_interval_ms=60_000)
    payloads = [{"i": 0, "text": "line\nbreak"}, {"i": 1, "text": "quote \" and \\ backslash"},
                {"i": 2, "text": "caf\u00e9 \u2708", "list": [1.5, None, {"nested": "\r\n"}]}, {"i": 3}, {"i": 4}]
    assert log.log_events("Mixed", payloads[:3]) == 3
    assert log.log_events("Mixed", payloads[3:]) == 1  # room for one more
    assert log.dropped == 1
    await log.flush()
    stored = await log.query("Mixed", None, 0, 10)
    assert [msgspec.json.decode(e.payload) for e in stored] == payloads[:4]
    await db.close()


async def test_writer_flushes_at_row_count_before_the_interval(tmp_path):
    db, _, log = await _event_log(tmp_path, capacity=1000, flush_rows=10, flush_interval_ms=60_000)
    task = asyncio.create_task(log.run())
    for i in range(10):
        log.log_event("Tick", {"i": i})
    for _ in range(100):
        if log.written >= 10:
            break
        await asyncio.sleep(0.01)
    assert log.written == 10  # flushed at 10 rows, long before the 60 s interval
    for i in range(5):
        log.log_event("Tick", {"i": i})
    await asyncio.sleep(0.05)
    assert log.pending == 5  # fewer than flush_rows: waits for the timer
    task.cancel()
    await db.close()


async def test_writer_flushes_on_the_interval(tmp_path):
    db, _, log = await _event_log(tmp_path, capacity=1000, flush_rows=10_000, flush_interval_ms=20)
    task = asyncio.create_task(log.run())
    log.log_event("Tick", {})
    for _ in range(100):
        if log.written:
            break
        await asyncio.sleep(0.01)
    assert log.written == 1
    task.cancel()
    await db.close()


async def test_hub_drops_oldest_for_a_slow_subscriber():
    drops = []
    hub = Hub(3, on_drop=drops.append)
    sub = hub.subscribe("events", ["A"])
    for i in range(5):
        hub.publish("A", {"i": i})
    hub.publish("B", {"ignored": True})
    batch = await sub.next_batch(0.1)
    assert [b.split('"i":')[1][0] for b in batch] == ["2", "3", "4"]
    assert sub.dropped == 2 and drops == ["events", "events"]


async def test_pages_of_payloads_hold_the_newest_limit_as_one_read_does(tmp_path):
    db, _, log = await _event_log(tmp_path, capacity=10_000, flush_rows=10_000, flush_interval_ms=1000)
    for i in range(1_000):
        log.log_event("OfferGenerated" if i % 4 else "Other", {"i": i})
    await log.flush()
    for limit, page in ((1_000, 64), (700, 100), (5, 1_000), (751, 750)):
        pages = [p async for p in log.payload_pages("OfferGenerated", limit, page=page)]
        assert all(0 < len(p) <= page for p in pages)
        assert [payload for p in reversed(pages) for payload in p] == await log.recent_payloads("OfferGenerated",
                                                                                                limit)
    await db.close()


async def test_a_flush_returns_once_a_batch_another_flush_took_is_written_too(tmp_path):
    """A reader that flushes and then reads (a retrain) finds every event logged before its flush, including those
    the periodic flush had taken and not yet committed."""
    db, _, log = await _event_log(tmp_path, capacity=100, flush_rows=4, flush_interval_ms=1000)
    for i in range(6):
        log.log_event("Early", {"i": i})
    periodic = asyncio.create_task(log.flush())
    await asyncio.sleep(0)  # it has taken its first batch of four and waits for the commit
    assert log.pending == 2
    await log.flush()
    assert await db.fetchall("SELECT count(*) FROM events") == [(6,)]
    assert await periodic == 6
    await db.close()
