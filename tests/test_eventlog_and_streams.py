"""The analytics event log, the hub and GET /v1/stream/events."""

import asyncio
import socket

import aiohttp
import msgspec

from adapters.sqlite import migrations
from adapters.sqlite.db import Database
from adapters.sqlite.eventlog import SqliteEventLogStore
from app.eventlog import EventLog
from app.hub import Hub
from app.main import PLATFORM, create_app
from app.runtime.clock import ManualClock
from app.runtime.metrics import Metrics
from tests.conftest import make_config


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
    assert len(await log.query("Bid", None, 100, 10)) == 10
    assert len(await log.query("Bid", 0.0, 100, 10)) == 10
    assert len(await log.query(None, 0.0, 100, 10)) == 10
    conn = sqlite3.connect(tmp_path / "events.db")
    for sql, params in reads:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        reads_events = [step for step in plan if "events" in step]
        assert reads_events and all(step.startswith("SEARCH events USING") for step in reads_events), (sql, plan)
        # A sort is fine only over what a subquery already limited (the newest N, put back in order).
        assert not any("TEMP B-TREE" in step for step in plan) or "subquery" in " ".join(plan), (sql, plan)
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


async def test_events_api_filters_by_type_and_since(client, admin_headers, clock):
    log = client.app[PLATFORM].event_log
    log.log_event("A", {"n": 1})
    clock.advance(10)
    since = clock.now()
    log.log_event("B", {"n": 2})
    log.log_event("A", {"n": 3})
    await log.flush()
    all_a = await (await client.get("/v1/analytics/events", params={"type": "A"}, headers=admin_headers)).json()
    assert [e["payload"]["n"] for e in all_a["items"]] == [1, 3]
    recent = await (await client.get("/v1/analytics/events", params={"since": str(since)},
                                     headers=admin_headers)).json()
    assert [e["type"] for e in recent["items"]] == ["B", "A"]
    page = await (await client.get("/v1/analytics/events", params={"limit": "1"}, headers=admin_headers)).json()
    nxt = await (await client.get("/v1/analytics/events", params={"limit": "1", "after": page["next_cursor"]},
                                  headers=admin_headers)).json()
    assert page["items"][0]["id"] < nxt["items"][0]["id"]
    bad = await client.get("/v1/analytics/events", params={"since": "yesterday"}, headers=admin_headers)
    assert bad.status == 400


async def test_events_api_is_admin_only(client, customer_headers):
    assert (await client.get("/v1/analytics/events", headers=customer_headers)).status == 403


async def test_stream_delivers_subscribed_events(client, admin_headers):
    token = admin_headers["Authorization"].split()[1]
    async with client.ws_connect(f"/v1/stream/events?token={token}") as ws:
        await ws.send_json({"type": "subscribe", "events": ["OrderPaid"]})
        assert (await ws.receive_json(timeout=2))["type"] == "subscribed"
        log = client.app[PLATFORM].event_log
        log.log_event("Ignored", {})
        log.log_event("OrderPaid", {"order_id": "o1"})
        msg = await ws.receive_json(timeout=2)
        assert msg["type"] == "OrderPaid" and msg["data"] == {"order_id": "o1"}
        await ws.send_str("not json")
        assert (await ws.receive_json(timeout=2))["type"] == "error"
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=2))["type"] == "pong"


async def test_stream_needs_admin(client, customer_headers):
    token = customer_headers["Authorization"].split()[1]
    try:
        async with client.ws_connect(f"/v1/stream/events?token={token}"):
            raise AssertionError("customer was allowed in")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 403


async def test_stream_disconnects_a_client_that_stops_reading(aiohttp_client, tmp_path):
    config = make_config(tmp_path, websocket__client_queue="4", websocket__max_lag_s="0.3")
    client = await aiohttp_client(create_app(config))
    platform = client.app[PLATFORM]
    await platform.accounts.create_user("a@b.c", "password-123", "admin")
    token, _, _ = await platform.accounts.login("a@b.c", "password-123")
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write((f"GET /v1/stream/events?token={token}&types=Flood HTTP/1.1\r\nHost: x\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b"101" in await reader.readuntil(b"\r\n\r\n")
    reader._transport.pause_reading()  # the client stops reading from here on
    blob = "x" * 65536
    for i in range(400):  # far more than socket buffers hold
        platform.hub.publish("Flood", {"i": i, "blob": blob})
        await asyncio.sleep(0.005)
        if platform.hub.count("events") == 0:
            break
    assert platform.hub.count("events") == 0, "slow client was never disconnected"
    writer.close()
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_ws_lag_disconnects_total{stream="events"} 1.0' in metrics
    dropped = [line for line in metrics.splitlines()
               if line.startswith('contrail_ws_dropped_messages_total{stream="events"}')]
    assert dropped and float(dropped[0].split()[-1]) > 0


async def test_events_past_their_retention_are_deleted_a_chunk_at_a_time(aiohttp_client, tmp_path):
    clock = ManualClock(1_000_000.0)
    client = await aiohttp_client(create_app(make_config(tmp_path, analytics__retention_days=1), clock=clock))
    platform = client.app[PLATFORM]
    log = platform.event_log
    for i in range(7):
        log.log_event("Bid", {"i": i})
    await log.flush()
    clock.advance(86_400 + 1)  # those seven are a day and a second old
    log.log_event("Bid", {"i": "new"})
    await log.flush()
    deleted = await platform.purge_retained_once(chunk=3)  # three commits of up to three, then one that finds none
    assert deleted == {"offers": 0, "drafts": 0, "events": 7, "impressions": 0}
    left = await log.query(None, None, 0, 100)
    assert [bytes(e.payload) for e in left] == [b'{"i":"new"}']
    assert (await platform.purge_retained_once())["events"] == 0
