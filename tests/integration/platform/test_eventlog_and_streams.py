"""The events API and GET /v1/stream/events through the real app, and the event log's retention."""

import asyncio
import socket

import aiohttp

from app.main import PLATFORM, create_app
from app.runtime.clock import ManualClock
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
    assert deleted == {"offers": 0, "drafts": 0, "change_offers": 0, "events": 7, "impressions": 0}
    left = await log.query(None, None, 0, 100)
    assert [bytes(e.payload) for e in left] == [b'{"i":"new"}']
    assert (await platform.purge_retained_once())["events"] == 0
