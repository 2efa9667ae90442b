"""The same bid pipeline over gRPC (unary and bidirectional) and websockets."""

import json
import socket

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from app.main import GRPC
from handlers.rpc import bidding_grpc, bidding_pb2
from tests.conftest import CONFORMANCE
from tests.integration.bidding.helpers import _client, banner_request, check_response


async def test_process_bid_over_grpc(stub):
    client, md = stub
    request = banner_request()
    reply = await client.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=json.dumps(request), request_id="g1"),
                                    metadata=md, timeout=2)
    assert reply.has_bid and reply.request_id == "g1" and reply.agent_id == f"{socket.gethostname()}-grpc"
    assert reply.processing_time_us > 0
    check_response(request, json.loads(reply.openrtb_json))


async def test_grpc_no_bid_carries_nbr(stub):
    client, md = stub
    reply = await client.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=json.dumps(banner_request(floor=9999))),
                                    metadata=md)
    assert not reply.has_bid and json.loads(reply.openrtb_json) == {"id": "r1", "nbr": 0}


async def test_grpc_errors_map_to_status_codes(stub):
    client, md = stub
    with pytest.raises(GRPCError) as err:
        await client.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json="{nope"), metadata=md)
    assert err.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(GRPCError) as err:
        await client.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json="{}"))
    assert err.value.status == Status.UNAUTHENTICATED
    with pytest.raises(GRPCError) as err:
        await client.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json="{}"), metadata={"x-api-key": "ck_bad"})
    assert err.value.status == Status.UNAUTHENTICATED


async def test_grpc_overload_is_resource_exhausted(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, inference__max_queue="1",
                           inference__max_wait_us="200000", inference__max_batch="100")
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    stub = bidding_grpc.BiddingServiceStub(channel)
    md = {"x-api-key": client.headers["X-Api-Key"]}
    import asyncio
    results = await asyncio.gather(*(stub.ProcessBid(bidding_pb2.BidRequestProto(
        openrtb_json=json.dumps(banner_request(request_id=f"r{i}", tmax=1000))), metadata=md) for i in range(5)),
        return_exceptions=True)
    channel.close()
    statuses = [r.status for r in results if isinstance(r, GRPCError)]
    assert statuses and set(statuses) == {Status.RESOURCE_EXHAUSTED}
    assert any(not isinstance(r, Exception) for r in results)


async def test_grpc_honours_the_deadline_with_a_no_bid(stub):
    client, md = stub
    reply = await client.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=json.dumps(banner_request()),
                                                                timeout_ms=1), metadata=md)
    assert not reply.has_bid and json.loads(reply.openrtb_json)["nbr"] == 15


async def test_stream_bids_answers_every_request_tagged(stub):
    client, md = stub
    async with client.StreamBids.open(metadata=md) as stream:
        for i in range(20):
            await stream.send_message(bidding_pb2.BidRequestProto(
                openrtb_json=json.dumps(banner_request(request_id=f"s{i}", user_id=f"u{i}")), request_id=f"s{i}"))
        await stream.send_message(bidding_pb2.BidRequestProto(openrtb_json="garbage", request_id="bad"))
        await stream.end()
        replies = [r async for r in stream]
    assert {r.request_id for r in replies} == {f"s{i}" for i in range(20)} | {"bad"}
    bad = next(r for r in replies if r.request_id == "bad")
    assert bad.error.startswith("invalid_request") and not bad.has_bid
    assert sum(r.has_bid for r in replies) == 20, [r for r in replies if not r.has_bid]


async def test_stream_bids_client_walking_away_leaves_the_server_serving(stub):
    client, md = stub
    async with client.StreamBids.open(metadata=md) as stream:
        for i in range(50):
            await stream.send_message(bidding_pb2.BidRequestProto(
                openrtb_json=json.dumps(banner_request(request_id=f"gone{i}")), request_id=f"gone{i}"))
        await stream.cancel()  # resets the HTTP/2 stream while replies are still being worked on
    async with client.StreamBids.open(metadata=md) as stream:
        await stream.send_message(bidding_pb2.BidRequestProto(
            openrtb_json=json.dumps(banner_request(request_id="after")), request_id="after"))
        await stream.end()
        replies = [r async for r in stream]
    assert [r.request_id for r in replies] == ["after"] and replies[0].has_bid


async def test_bidding_health_check(stub):
    client, md = stub
    reply = await client.HealthCheck(bidding_pb2.HealthCheckRequest(), metadata=md)
    assert reply.serving and reply.model_version == "default-v1" and reply.provider == "cpu"


async def test_websocket_bids_single_and_array(bidder):
    key = bidder.headers["X-Api-Key"]
    async with bidder.ws_connect(f"/v1/stream/bids?api_key={key}") as ws:
        await ws.send_str(json.dumps(banner_request(request_id="w1")))
        first = await ws.receive_json(timeout=2)
        assert first["type"] == "bid_response" and first["request_id"] == "w1" and first["has_bid"]
        check_response(banner_request(request_id="w1"), first["response"])
        batch = [banner_request(request_id=f"a{i}", user_id=f"x{i}") for i in range(5)]
        batch.append({"id": "broken", "imp": []})
        await ws.send_str(json.dumps(batch))
        got = await ws.receive_json(timeout=2)  # an array in, one array out, in request order
        assert [g["request_id"] for g in got[:5]] == [f"a{i}" for i in range(5)]
        assert all(g["type"] == "bid_response" for g in got[:5]) and got[5]["type"] == "error"


async def test_websocket_bids_need_an_exchange_key(bidder):
    from tests.conftest import CUSTOMER, bearer
    customer_headers = await bearer(bidder, *CUSTOMER, "customer")
    import aiohttp
    token = customer_headers["Authorization"].split()[1]
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with bidder.ws_connect(f"/v1/stream/bids?token={token}"):
            pass
    assert err.value.status == 403


async def test_conformance_requests_over_grpc(stub):
    client, md = stub
    for path in sorted((CONFORMANCE / "openrtb").glob("ortb26_req_*.json")):
        reply = await client.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=path.read_text()), metadata=md)
        if reply.has_bid:
            check_response(json.loads(path.read_text()), json.loads(reply.openrtb_json))
