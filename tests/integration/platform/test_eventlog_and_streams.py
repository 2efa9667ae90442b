"""The events API and GET /v1/stream/events through the real app, and the event log's retention."""

import asyncio
import socket
from collections import Counter

import aiohttp
import msgspec
import pytest

from adapters.sqlite import migrations
from adapters.sqlite.db import Database
from adapters.sqlite.eventlog import SqliteEventLogStore
from app.eventlog import EventLog
from app.hub import Hub
from app.main import PLATFORM, create_app
from app.runtime.clock import ManualClock
from app.runtime.metrics import Metrics
from tests.conftest import make_config


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


async def test_the_stream_starts_with_the_types_asked_for_comma_separated_or_repeated(client, admin_headers):
    token = admin_headers["Authorization"].split()[1]
    log = client.app[PLATFORM].event_log
    for query in ("types=OrderPaid,Refund", "types=OrderPaid&types=Refund"):
        async with client.ws_connect(f"/v1/stream/events?token={token}&{query}") as ws:
            log.log_event("Ignored", {})
            log.log_event("Refund", {"order_id": "o2"})
            log.log_event("OrderPaid", {"order_id": "o1"})
            got = [(await ws.receive_json(timeout=2))["type"] for _ in range(2)]
            assert got == ["Refund", "OrderPaid"], query


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
        log.log_event("OrderPaid", {"i": i})
    await log.flush()
    clock.advance(86_400 + 1)  # those seven are a day and a second old
    log.log_event("OrderPaid", {"i": "new"})
    await log.flush()
    deleted = await platform.purge_retained_once(chunk=3)  # three commits of up to three, then one that finds none
    assert deleted == {"offers": 0, "drafts": 0, "change_offers": 0, "events": 7, "impressions": 0, "profiles": 0,
                       "notices": 0, "events_over_budget": 0, "offers_over_budget": 0}
    left = await log.query(None, None, 0, 100)
    assert [bytes(e.payload) for e in left] == [b'{"i":"new"}']
    assert (await platform.purge_retained_once())["events"] == 0


# ---- counted events (bids, no-bids, offers): totals per second and key, a sample written whole ----

async def _counting_log(tmp_path, clock, **kw):
    db = Database(tmp_path / "events.db", migrations.EVENTS, synchronous="NORMAL")
    await db.open()
    options = dict(capacity=100_000, flush_rows=10_000, flush_interval_ms=1000,
                   sample={"Bid": 0.1, "NoBid": 0.1, "OfferGenerated": 1.0}, whole_per_s=0)
    options.update(kw)
    return db, EventLog(SqliteEventLogStore(db), Hub(10), clock, Metrics(), **options)


async def _stored(log, type_):
    return [(e.at, msgspec.json.decode(e.payload)) for e in await log.query(type_, None, 0, 1_000_000)]


async def test_totals_count_every_bid_and_no_bid_and_a_sample_is_written_whole(tmp_path):
    clock = ManualClock(1_000_000.25)
    db, log = await _counting_log(tmp_path, clock)
    sent: Counter = Counter()
    reasons: Counter = Counter()
    for second in range(4):
        for k in range(1000):
            campaign = ("spring", "summer", "autumn")[k % 3]
            log.log_event("Bid", {"bid_id": f"b{second}-{k}", "campaign_id": campaign, "price": 1.5})
            sent[campaign] += 1
        log.log_events("NoBid", [{"reason": "below_floor"}] * 200 + [{"reason": "no_eligible_campaign"}] * 50)
        reasons.update({"below_floor": 200, "no_eligible_campaign": 50})
        if second == 1:
            await log.flush()  # a flush in the middle of a second: that second's totals come in two rows
        clock.advance(1)
    await log.flush()
    totals = await _stored(log, "BidTotals")
    by_campaign: Counter = Counter()
    for at, row in totals:
        assert at == int(at) and row["seconds"] == 1
        by_campaign[row["campaign_id"]] += row["count"]
    assert by_campaign == sent
    assert sum(row["price_sum"] for _, row in totals) == 1.5 * 4000
    counted: Counter = Counter()
    for _, row in await _stored(log, "NoBidTotals"):
        counted[row["reason"]] += row["count"]
    assert counted == reasons
    whole = await _stored(log, "Bid")
    assert 250 <= len(whole) <= 550  # 10% of 4,000, about
    assert all(row["sampled"] is True and row["campaign_id"] in sent for _, row in whole)
    assert log.dropped == 0
    await db.close()


async def test_the_first_events_of_each_second_are_written_whole(tmp_path):
    clock = ManualClock(1_000_000.0)
    db, log = await _counting_log(tmp_path, clock, sample={"Bid": 0.0}, whole_per_s=5)
    for second in range(3):
        for k in range(20):
            log.log_event("Bid", {"bid_id": f"b{second}-{k}", "campaign_id": "spring", "price": 1.0})
        clock.advance(1)
    await log.flush()
    whole = await _stored(log, "Bid")
    assert [row["bid_id"] for _, row in whole] == [f"b{s}-{k}" for s in range(3) for k in range(5)]
    assert sum(row["count"] for _, row in await _stored(log, "BidTotals")) == 60
    await db.close()


async def test_at_a_rate_of_one_every_event_is_written_whole_as_before(tmp_path):
    clock = ManualClock(1_000_000.0)
    db, log = await _counting_log(tmp_path, clock, sample={"Bid": 1.0, "NoBid": 1.0})
    for k in range(30):
        log.log_event("Bid", {"bid_id": f"b{k}", "campaign_id": "spring"})
    await log.flush()
    assert [row for _, row in await _stored(log, "Bid")] == [{"bid_id": f"b{k}", "campaign_id": "spring"}
                                                             for k in range(30)]
    assert await _stored(log, "BidTotals") == []
    await db.close()


async def test_totals_are_bounded_and_what_finds_no_room_is_dropped_and_counted(tmp_path):
    clock = ManualClock(1_000_000.0)
    db, log = await _counting_log(tmp_path, clock, max_totals=2)
    kept = log.log_events("Bid", [{"campaign_id": c} for c in ("a", "b", "c", "a", "c")])
    assert kept == 3 and log.dropped == 2  # "c" is a third key: its two bids are lost, and counted
    await log.flush()
    assert sorted((r["campaign_id"], r["count"]) for _, r in await _stored(log, "BidTotals")) == [("a", 2), ("b", 1)]
    assert log.log_event("Bid", {"campaign_id": "c"}) is True  # the flush made room
    await db.close()


async def test_the_size_budget_drops_the_oldest_first_and_the_file_stops_growing(aiohttp_client, tmp_path):
    budget = 1_000_000
    clock = ManualClock(1_000_000.0)
    client = await aiohttp_client(create_app(make_config(tmp_path, analytics__max_bytes=budget), clock=clock))
    platform = client.app[PLATFORM]
    log, db = platform.event_log, platform.events_db
    if db.dialect != "sqlite":
        pytest.skip("the size budget is the SQLite file's (on PostgreSQL the age retention applies)")
    sizes, trimmed = [], 0
    for round_ in range(40):  # 40 x ~60 KB: two and a half times the budget
        log.log_events("OrderPaid", [{"order_id": f"o{round_}-{k}", "note": "x" * 100} for k in range(400)])
        await log.flush()
        trimmed += (await platform.purge_retained_once(chunk=500))["events_over_budget"]
        page_count, page_size = (await db.fetchone("SELECT * FROM pragma_page_count(), pragma_page_size()"))
        sizes.append(page_count * page_size)
        clock.advance(1)
    assert trimmed > 0 and max(sizes) <= budget, sizes
    # Freed pages are written again: over the last 20 rounds (~1.2 MB written) the file grew by a few pages at most.
    assert sizes[-1] - sizes[-20] <= budget // 50, sizes
    ids = [row[0] for row in await db.fetchall("SELECT id FROM events ORDER BY id")]
    assert ids == list(range(ids[0], ids[0] + len(ids))) and ids[-1] == 40 * 400  # the newest, none missing
    first = msgspec.json.decode((await log.query(None, None, 0, 1))[0].payload)
    assert first["order_id"] == f"o{(ids[0] - 1) // 400}-{(ids[0] - 1) % 400}"
    metrics = await (await client.get("/metrics")).text()
    assert f'contrail_rows_pruned_total{{what="events_over_budget"}} {float(trimmed)}' in metrics
    assert 'contrail_events_bytes_written_total' in metrics and 'contrail_database_bytes{db="events"}' in metrics


async def test_ingested_channel_events_are_counted_per_source_and_type(tmp_path):
    clock = ManualClock(1_000_000.0)
    db, log = await _counting_log(tmp_path, clock, sample={"ChannelEvent": 0.0})
    sent: Counter = Counter()
    for k in range(500):
        source, kind = ("web", "mobile_app")[k % 2], ("page_view", "purchase", "search")[k % 3]
        log.log_events("ChannelEvent", [{"source": source, "type": kind, "user_id": f"u{k}",
                                         "amount_cents": 1000 if kind == "purchase" else None}])
        sent[(source, kind)] += 1
        if k % 100 == 99:
            clock.advance(1)
    await log.flush()
    counted: Counter = Counter()
    spent = 0
    for _, row in await _stored(log, "ChannelEventTotals"):
        counted[(row["source"], row["type"])] += row["count"]
        spent += row["amount_cents_sum"]
    assert counted == sent and spent == 1000 * sum(n for (_, kind), n in sent.items() if kind == "purchase")
    assert await _stored(log, "ChannelEvent") == []  # a rate of 0: none whole, and no user id in the totals
    await db.close()


async def test_on_postgresql_an_append_waits_for_one_still_uncommitted_so_ids_become_visible_in_order(
        aiohttp_client, tmp_path):
    """Another node's append holds its ids until it commits: ours waits, so a reader going by id never sees a later
    id while an earlier one can still appear."""
    config = make_config(tmp_path)
    if config.storage.backend != "postgres":
        pytest.skip("about nodes sharing PostgreSQL: run with --storage=postgres or --storage=scaleout")
    import asyncpg

    from adapters.sqlite.eventlog import APPEND_LOCK
    client = await aiohttp_client(create_app(config))
    store = SqliteEventLogStore(client.app[PLATFORM].events_db)
    other_node = await asyncpg.connect(config.storage.events_postgres_dsn or config.storage.postgres_dsn, timeout=10)
    try:
        async with asyncio.timeout(60):  # a wait that never ends is this test's failure, not the run's hang
            held = other_node.transaction()
            await held.start()
            await other_node.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            first = await other_node.fetchval("INSERT INTO events(at, type, payload) VALUES (1, 'Other', '{}') "
                                              "RETURNING id")
            ours = asyncio.ensure_future(store.append_batch([(2.0, "Ours", "{}")]))
            await asyncio.sleep(0.3)
            assert not ours.done()  # waiting for the other node's commit
            assert [e.type for e in await store.query(None, None, 0, 10)] == []
            await held.commit()
            assert await asyncio.wait_for(ours, 10) == 1
            stored = await store.query(None, None, 0, 10)
            assert [(e.type, e.id > first) for e in stored] == [("Other", False), ("Ours", True)]
    finally:
        other_node.terminate()  # at once: its lock, if still held, goes with the session
