"""One user's stored data, or one deeply nested message, never fails a request, a batch or a stream."""

import json
import struct

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from app.main import PLATFORM, create_app
from handlers.rpc import bidding_pb2
from state.profiles import Profile
from tests.conftest import CUSTOMER, bearer, make_config
from tests.integration.bidding.helpers import _admin, _client, banner_request, post_bid

DEEP = "[" * 1000 + "]" * 1000


def deep_object(key: str = "ext") -> dict:
    return {key: json.loads("[" * 100 + "]" * 100)}


async def test_a_profile_vector_of_the_wrong_length_is_refused_naming_the_field(bidder):
    admin = await _admin(bidder)
    for field, values, width in (("interests", [0.9, 0.5, 0.1], 64), ("loyalty", [1.0, 0.2], 8)):
        resp = await bidder.put("/v1/profiles/pp1", json={field: values}, headers=admin)
        assert resp.status == 422
        error = (await resp.json())["error"]
        assert error["details"]["field"] == field and error["details"]["expected_length"] == width
        assert field in error["message"]
    ok = await bidder.put("/v1/profiles/pp1", json={"interests": [0.5] * 64, "loyalty": [0.5] * 8}, headers=admin)
    assert ok.status == 200


async def _store_short_profile(app, user_id: str) -> None:
    """A row written before the edge checked shapes (or by another node): straight into the store."""
    now = app[PLATFORM].clock.now()
    await app[PLATFORM].profile_store.put(Profile(user_id, [0.9, 0.5, float("nan")], [3], [1.0, 0.2], now, now))


async def test_a_short_stored_profile_still_bids_over_rest_grpc_and_websocket(bidder, stub):
    await _store_short_profile(bidder.app, "pp1")
    resp = await post_bid(bidder, banner_request(user_id="pp1"))
    assert resp.status == 200, await resp.text()

    client, md = stub
    reply = await client.ProcessBid(bidding_pb2.BidRequestProto(
        openrtb_json=json.dumps(banner_request(request_id="g", user_id="pp1"))), metadata=md, timeout=2)
    assert reply.has_bid
    async with client.StreamBids.open(metadata=md) as stream:
        for i in range(5):
            await stream.send_message(bidding_pb2.BidRequestProto(
                openrtb_json=json.dumps(banner_request(request_id=f"s{i}", user_id="pp1" if i % 2 else f"o{i}")),
                request_id=f"s{i}"))
        await stream.end()
        replies = [r async for r in stream]
    assert sorted(r.request_id for r in replies) == [f"s{i}" for i in range(5)]
    assert all(r.has_bid for r in replies)

    key = bidder.headers["X-Api-Key"]
    async with bidder.ws_connect(f"/v1/stream/bids?api_key={key}") as ws:
        await ws.send_str(json.dumps([banner_request(request_id="w1", user_id="pp1"),
                                      banner_request(request_id="w2", user_id="other")]))
        answers = await ws.receive_json(timeout=2)
        assert [a["request_id"] for a in answers] == ["w1", "w2"] and all(a["has_bid"] for a in answers)


async def test_a_short_stored_profile_still_bids_after_a_restart(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    first = create_app(config, clock=clock)
    client = await aiohttp_client(first)
    await _store_short_profile(client.app, "pp1")
    await client.close()
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[])
    from app.demo import demo_campaigns
    for campaign in demo_campaigns():
        await client.app[PLATFORM].campaigns.create("test", campaign, audit=False)
    resp = await post_bid(client, banner_request(user_id="pp1"))
    assert resp.status == 200, await resp.text()


async def test_a_failing_request_is_a_counted_no_bid_and_the_stream_goes_on(bidder, stub):
    """A fault inside one request's processing answers that request with a technical no-bid (nbr 1)."""
    processor = bidder.app[PLATFORM].bidder
    real = processor._features

    def broken(request, *args):
        if request.id == "boom":
            raise ValueError("could not broadcast")
        return real(request, *args)
    processor._features = broken
    resp = await post_bid(bidder, banner_request(request_id="boom"))
    assert resp.status == 204
    client, md = stub
    async with client.StreamBids.open(metadata=md) as stream:
        for rid in ("a", "boom", "b"):
            await stream.send_message(bidding_pb2.BidRequestProto(
                openrtb_json=json.dumps(banner_request(request_id=rid)), request_id=rid))
        await stream.end()
        replies = {r.request_id: r async for r in stream}
    assert replies["a"].has_bid and replies["b"].has_bid
    assert json.loads(replies["boom"].openrtb_json) == {"id": "boom", "nbr": 1}
    metrics = await (await bidder.get("/metrics")).text()
    assert 'contrail_bid_nobids_total{reason="error"} 2.0' in metrics


async def test_deeply_nested_bids_are_invalid_on_every_protocol(bidder, stub):
    body = banner_request(**deep_object())
    resp = await post_bid(bidder, body)
    assert resp.status == 400 and await resp.read() == b""
    assert (await post_bid(bidder, DEEP)).status == 400

    client, md = stub
    with pytest.raises(GRPCError) as err:
        await client.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=json.dumps(body)), metadata=md)
    assert err.value.status == Status.INVALID_ARGUMENT
    async with client.StreamBids.open(metadata=md) as stream:
        await stream.send_message(bidding_pb2.BidRequestProto(openrtb_json=DEEP, request_id="deep"))
        await stream.send_message(bidding_pb2.BidRequestProto(
            openrtb_json=json.dumps(banner_request(request_id="ok")), request_id="ok"))
        await stream.end()
        replies = {r.request_id: r async for r in stream}
    assert replies["deep"].error == "invalid_request: too_deeply_nested" and replies["ok"].has_bid

    key = bidder.headers["X-Api-Key"]
    async with bidder.ws_connect(f"/v1/stream/bids?api_key={key}") as ws:
        await ws.send_str(json.dumps(body))
        assert (await ws.receive_json(timeout=2))["type"] == "error"
        await ws.send_str("[" + json.dumps(banner_request(request_id="x")) + "," + DEEP + "]")
        assert (await ws.receive_json(timeout=2))["type"] == "error"  # the message as a whole is too deep
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive_json(timeout=2))["type"] == "error"
        await ws.send_str(json.dumps(banner_request(request_id="after")))
        assert (await ws.receive_json(timeout=2))["request_id"] == "after"
        # An invalid request's error names its id when it has one: the client can tell which was refused.
        negative = banner_request(request_id="neg")
        negative["imp"][0]["bidfloor"] = -1
        await ws.send_str(json.dumps([negative, {"id": "no-imp", "imp": []}, {"id": 7}]))
        answers = await ws.receive_json(timeout=2)
        assert [(a["type"], a["request_id"]) for a in answers] == [("error", "neg"), ("error", "no-imp"),
                                                                   ("error", "")]


async def test_a_malformed_message_on_the_bid_stream_is_answered_and_the_stream_goes_on(stub):
    client, md = stub
    payload = b"\x0a\xff\xff\xff\x0f"  # a field whose length runs past the message

    async with client.StreamBids.open(metadata=md) as stream:
        for rid in ("a", None, "b"):
            if rid is None:
                await stream._stream.send_data(struct.pack(">?I", False, len(payload)) + payload)
            else:
                await stream.send_message(bidding_pb2.BidRequestProto(
                    openrtb_json=json.dumps(banner_request(request_id=rid)), request_id=rid))
        await stream.end()
        replies = [r async for r in stream]
    assert sorted(r.request_id for r in replies if r.has_bid) == ["a", "b"]
    (broken,) = [r for r in replies if not r.has_bid]
    assert broken.error.startswith("invalid_argument: malformed BidRequestProto")

    # A message over the size limit cannot be skipped (it is refused unread, from its prefix): the stream ends
    # (RESOURCE_EXHAUSTED, which grpclib's client reports as the stream reset), the bid before it answered.
    with pytest.raises((GRPCError, StreamTerminatedError)):
        async with client.StreamBids.open(metadata=md) as stream:
            await stream.send_message(bidding_pb2.BidRequestProto(
                openrtb_json=json.dumps(banner_request(request_id="before")), request_id="before"))
            assert (await stream.recv_message()).request_id == "before"
            await stream._stream.send_data(struct.pack(">?I", False, 2_000_000) + b"\x00" * 1024)
            await stream.recv_message()


async def test_deeply_nested_bodies_get_400_on_free_form_endpoints(bidder):
    admin = await _admin(bidder)
    event = {"source": "web", "type": "page_view", "user_id": "u1", "attributes": deep_object("a")}
    for path in ("/v1/channels/ingest", "/v1/webhooks/sendgrid", "/v1/admin/campaigns", "/v1/offers/search"):
        for raw in (json.dumps(event), DEEP):
            resp = await bidder.post(path, data=raw, headers={**admin, "Content-Type": "application/json"})
            assert resp.status == 400, (path, resp.status, await resp.text())
            error = (await resp.json())["error"]
            assert error["code"] == "too_deeply_nested" and "64" in error["message"]


async def test_deep_or_binary_messages_on_the_inapp_and_event_streams_get_an_error_and_the_stream_stays(bidder):
    token = (await bearer(bidder, *CUSTOMER, "customer"))["Authorization"].split()[1]
    async with bidder.ws_connect(f"/v1/stream/inapp?token={token}") as ws:
        for send in (ws.send_str(DEEP), ws.send_str('{"a":'), ws.send_bytes(b"\xff")):
            await send
            assert (await ws.receive_json(timeout=2))["type"] == "error"
        await ws.send_str('{"type": "ping"}')
        assert (await ws.receive_json(timeout=2)) == {"type": "pong"}
    admin = (await _admin(bidder))["Authorization"].split()[1]
    async with bidder.ws_connect(f"/v1/stream/events?token={admin}") as ws:
        await ws.send_str('{"type": "subscribe", "events": ' + DEEP + "}")
        assert (await ws.receive_json(timeout=2))["type"] == "error"
        await ws.send_str('{"type": "ping"}')
        assert (await ws.receive_json(timeout=2)) == {"type": "pong"}


@pytest.mark.parametrize("raw", [b'{"a":', b"NaN", b"\xff\xfe{}", b'{"source": "web", "type": "x", "a": ', b"[1,",
                                 b'[{"source": "web"}, {"x": ]'])
async def test_malformed_ingest_bodies_are_400(bidder, raw):
    admin = await _admin(bidder)
    resp = await bidder.post("/v1/channels/ingest", data=raw, headers={**admin, "Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["message"]
