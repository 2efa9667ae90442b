"""Revoking an API key takes effect at once on the streams already open with it, not only on the requests made with it
afterwards: a websocket opened with the key is closed with 1008 (policy violation) and the reason, with nothing
delivered after; a gRPC stream opened with it ends UNAUTHENTICATED. Streams opened with other keys go on. The same
holds for a key another node revoked (its notice)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from app.errors import Unauthenticated
from app.main import GRPC, PLATFORM
from app.sessions import KEY_REVOKED, Sessions, key_scope
from handlers.rpc import bidding_grpc, bidding_pb2, syncvalue_grpc
from handlers.rpc import syncvalue_pb2 as pb
from tests.integration.bidding.helpers import _admin, _client, banner_request


async def _key(client, admin: dict, name: str, role: str) -> dict:
    resp = await client.post("/v1/admin/api-keys", json={"name": name, "role": role}, headers=admin)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _revoke(client, admin: dict, key_id: str) -> None:
    resp = await client.delete(f"/v1/admin/api-keys/{key_id}", headers=admin)
    assert resp.status == 200, await resp.text()


async def _events(client, key: str):
    ws = await client.ws_connect(f"/v1/stream/events?api_key={key}")
    await ws.send_json({"type": "subscribe", "events": ["*"]})
    assert (await ws.receive_json(timeout=2))["type"] == "subscribed"
    return ws


async def _closed_for_revocation(ws) -> None:
    """The socket's next frame is its close, 1008 with the reason (no event, no answer comes before it)."""
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE, (msg.type, msg.data)
    assert msg.data == WSCloseCode.POLICY_VIOLATION and msg.extra == KEY_REVOKED, (msg.data, msg.extra)


@pytest.fixture
async def bidder(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock)
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    yield client, await _admin(client), channel
    channel.close()


async def test_revoking_a_key_closes_the_event_sockets_opened_with_it_and_no_others(bidder):
    client, admin, _ = bidder
    platform = client.app[PLATFORM]
    first, second = await _key(client, admin, "dash-1", "admin"), await _key(client, admin, "dash-2", "admin")
    held = platform.sessions.count("websocket")
    revoked, kept = await _events(client, first["key"]), await _events(client, second["key"])
    by_token = await client.ws_connect(f"/v1/stream/events?token={admin['Authorization'].split()[1]}&types=*")
    try:
        assert platform.sessions.count("websocket") == held + 2  # a socket opened with a bearer token is not held
        # Another admin (the second key) revokes the first: its socket closes at once, before the revocation's own
        # AdminAction event (which the other socket gets) or anything after it reaches it.
        await _revoke(client, {"X-Api-Key": second["key"]}, first["id"])
        await _closed_for_revocation(revoked)
        platform.event_log.log_event("AfterRevocation", {"n": 1})
        for ws in (kept, by_token):  # the other key's socket, and the admin's opened with a token, go on
            seen = [(await ws.receive_json(timeout=2))["type"] for _ in range(2)]
            assert seen == ["AdminAction", "AfterRevocation"], seen
        assert platform.sessions.count("websocket") == held + 1
        # The key opens nothing new either.
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect(f"/v1/stream/events?api_key={first['key']}")
        assert err.value.status == 401
        assert b'contrail_key_streams{protocol="websocket"}' in platform.metrics.render()
    finally:
        for ws in (revoked, kept, by_token):
            await ws.close()
    assert platform.sessions.count("websocket") == held


async def test_revoking_an_exchange_key_closes_its_bid_socket_and_no_others(bidder):
    client, admin, _ = bidder
    other = await _key(client, admin, "exchange-2", "exchange")
    keys = {k.name: k for k in client.app[PLATFORM].api_keys.list()}
    revoked_key = client.headers["X-Api-Key"]
    async with client.ws_connect(f"/v1/stream/bids?api_key={revoked_key}") as revoked, \
            client.ws_connect(f"/v1/stream/bids?api_key={other['key']}") as kept:
        await revoked.send_str(json.dumps(banner_request(request_id="before")))
        assert (await revoked.receive_json(timeout=2))["request_id"] == "before"
        await _revoke(client, admin, keys["exchange"].id)
        await _closed_for_revocation(revoked)
        await kept.send_str(json.dumps(banner_request(request_id="after")))
        answer = await kept.receive_json(timeout=2)
        assert answer["type"] == "bid_response" and answer["request_id"] == "after"


async def test_a_key_another_node_revoked_closes_the_sockets_opened_with_it_here(bidder):
    client, admin, _ = bidder
    platform = client.app[PLATFORM]
    key = await _key(client, admin, "dash", "admin")
    ws = await _events(client, key["key"])
    try:
        # Another node revokes it (written to the shared store; this node's memory learns of it from the notice).
        await platform.api_key_store.revoke(key["id"], platform.clock.now())
        await platform.apply_change("api_key", [key["id"]])
        await _closed_for_revocation(ws)
    finally:
        await ws.close()


def _unauthenticated(err: pytest.ExceptionInfo[GRPCError]) -> None:
    assert err.value.status == Status.UNAUTHENTICATED, err.value
    assert KEY_REVOKED in (err.value.message or ""), err.value.message


async def test_revoking_a_partner_key_ends_its_value_stream_and_no_others(bidder):
    client, admin, channel = bidder
    platform = client.app[PLATFORM]
    first, second = await _key(client, admin, "crm-1", "partner"), await _key(client, admin, "crm-2", "partner")
    stub = syncvalue_grpc.SyncValueServiceStub(channel)
    held = platform.sessions.count("grpc")
    async with stub.PredictLTVStream.open(metadata={"x-api-key": second["key"]}) as kept:
        await kept.send_message(pb.LTVPredictionRequest(request_id="before", customer_id="cust-1"))
        assert (await kept.recv_message()).request_id == "before"
        with pytest.raises(GRPCError) as err:
            async with stub.PredictLTVStream.open(metadata={"x-api-key": first["key"]}) as revoked:
                await revoked.send_message(pb.LTVPredictionRequest(request_id="before", customer_id="cust-1"))
                assert (await revoked.recv_message()).request_id == "before"
                assert platform.sessions.count("grpc") == held + 2
                await _revoke(client, admin, first["id"])
                await asyncio.wait_for(revoked.recv_message(), 5)  # the stream's end, at once: no answer
        _unauthenticated(err)
        for i in range(3):
            await kept.send_message(pb.LTVPredictionRequest(request_id=f"after{i}", customer_id="cust-1"))
            assert (await kept.recv_message()).request_id == f"after{i}"
        assert platform.sessions.count("grpc") == held + 1
        await kept.end()
    assert platform.sessions.count("grpc") == held
    # A unary call is never held, and the key is refused from then on.
    with pytest.raises(GRPCError) as refused:
        await stub.GetModelHealth(pb.HealthRequest(), metadata={"x-api-key": first["key"]})
    assert refused.value.status == Status.UNAUTHENTICATED


async def test_revoking_an_exchange_key_ends_its_grpc_bid_stream_and_no_others(bidder):
    client, admin, channel = bidder
    other = await _key(client, admin, "exchange-2", "exchange")
    revoked_id = next(k.id for k in client.app[PLATFORM].api_keys.list() if k.name == "exchange")
    stub = bidding_grpc.BiddingServiceStub(channel)

    def bid(request_id: str, user_id: str = "u1") -> bidding_pb2.BidRequestProto:
        return bidding_pb2.BidRequestProto(openrtb_json=json.dumps(banner_request(request_id, user_id)),
                                           request_id=request_id)

    async with stub.StreamBids.open(metadata={"x-api-key": other["key"]}) as kept:
        with pytest.raises(GRPCError) as err:
            async with stub.StreamBids.open(metadata={"x-api-key": client.headers["X-Api-Key"]}) as revoked:
                await revoked.send_message(bid("before"))
                assert (await revoked.recv_message()).request_id == "before"
                await _revoke(client, admin, revoked_id)
                await asyncio.wait_for(revoked.recv_message(), 5)
        _unauthenticated(err)
        await kept.send_message(bid("after", "u2"))
        reply = await kept.recv_message()
        assert reply.request_id == "after" and reply.has_bid
        await kept.end()


def test_a_scope_revoked_lately_is_refused_and_its_connections_told_once():
    sessions = Sessions()
    told: list[str] = []
    with sessions.held(key_scope("k1"), "grpc", told.append), sessions.held(key_scope("k2"), "websocket", told.append):
        assert sessions.count() == 2
        assert sessions.revoke(key_scope("k1")) == 1 and told == [KEY_REVOKED]
        assert sessions.count("grpc") == 0 and sessions.count("websocket") == 1
        assert sessions.revoke(key_scope("k1")) == 0 and told == [KEY_REVOKED]
    assert sessions.count() == 0
    with pytest.raises(Unauthenticated):  # authenticated just before the revocation, held just after it
        with sessions.held(key_scope("k1"), "websocket", told.append):
            pass
    assert sessions.count() == 0


async def test_a_socket_opened_with_a_token_closes_once_the_token_no_longer_authenticates(aiohttp_client, tmp_path,
                                                                                         clock):
    """A bearer token is checked again each heartbeat: once it has expired (or its account is gone), the socket it
    opened closes with 1008 and says why, while one opened with a fresh token goes on."""
    client = await _client(aiohttp_client, tmp_path, clock, websocket__heartbeat_s=0.1)
    admin = await _admin(client)
    # This client answers the heartbeat's pings itself: a ping sent just before the close must not fail the read.
    old = await client.ws_connect(f"/v1/stream/events?token={admin['Authorization'].split()[1]}&types=*",
                                  autoping=False)
    clock.advance(3000)
    fresh = await _admin(client)  # signed now: it expires later than the first
    new = await client.ws_connect(f"/v1/stream/events?token={fresh['Authorization'].split()[1]}&types=*")
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def read_new() -> None:  # read all along, so that its pings are answered
        async for msg in new:
            if msg.type == WSMsgType.TEXT:
                seen.put_nowait(json.loads(msg.data)["type"])

    reading = asyncio.create_task(read_new())

    async def next_frame() -> aiohttp.WSMessage:
        while (msg := await old.receive(timeout=5)).type == WSMsgType.PING:
            with contextlib.suppress(aiohttp.ClientConnectionResetError):
                await old.pong(msg.data)
        return msg

    try:
        with pytest.raises(asyncio.TimeoutError):  # both tokens still valid: nothing but pings for a while
            await asyncio.wait_for(next_frame(), 0.4)
        clock.advance(700)  # past the first token's hour, not the second's
        msg = await asyncio.wait_for(next_frame(), 5)
        assert msg.type == WSMsgType.CLOSE and msg.data == WSCloseCode.POLICY_VIOLATION, (msg.type, msg.data)
        assert "expired" in msg.extra, msg.extra
        client.app[PLATFORM].event_log.log_event("StillHere", {"n": 1})
        while await asyncio.wait_for(seen.get(), 2) != "StillHere":
            pass
        assert not new.closed
    finally:
        reading.cancel()
        with contextlib.suppress(aiohttp.ClientConnectionResetError):  # closed by the server already
            await old.close()
        await new.close()
