"""Every RPC but health and reflection needs credentials; messages are bounded; bad bytes are INVALID_ARGUMENT;
errors map to their status; bid streams are rate limited per message, as REST is per request."""

import json
import struct

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest

from app.main import GRPC, PLATFORM
from handlers.rpc import (
    bidding_grpc,
    bidding_pb2,
    platform_grpc,
    platform_pb2,
    ranking_grpc,
    ranking_pb2,
    syncvalue_grpc,
)
from tests.conftest import ADMIN, CUSTOMER, bearer
from tests.integration.bidding.helpers import _client, banner_request

MIB = 1_048_576


@pytest.fixture
async def server(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, bidding__exchange_per_s="5", bidding__exchange_burst="5")
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    yield client, channel
    channel.close()


async def _status(call) -> Status:
    with pytest.raises(GRPCError) as err:
        await call
    return err.value.status


async def test_every_rpc_but_health_and_reflection_needs_credentials(server):
    client, channel = server
    platform, ranking = platform_grpc.PlatformServiceStub(channel), ranking_grpc.RankingServiceStub(channel)
    bidding = bidding_grpc.BiddingServiceStub(channel)
    calls = [lambda md: platform.Echo(platform_pb2.EchoRequest(message="x"), metadata=md),
             lambda md: platform.GetStatus(platform_pb2.StatusRequest(), metadata=md),
             lambda md: bidding.HealthCheck(bidding_pb2.HealthCheckRequest(), metadata=md),
             lambda md: ranking.RankOffers(ranking_pb2.RankOffersRequest(
                 search_context=ranking_pb2.SearchContext(passengers=1)), metadata=md)]
    for call in calls:
        assert await _status(call(None)) == Status.UNAUTHENTICATED
        assert await _status(call({"x-api-key": "ck_nobody"})) == Status.UNAUTHENTICATED
        assert await _status(call({"authorization": "Bearer not.a.jwt"})) == Status.UNAUTHENTICATED
    assert (await HealthStub(channel).Check(HealthCheckRequest(service=""))).status == 1
    # Roles as on REST: an exchange key may bid but not rank; a customer's token may echo.
    exchange = {"x-api-key": client.headers["X-Api-Key"]}
    assert await _status(calls[3](exchange)) == Status.PERMISSION_DENIED
    assert (await calls[2](exchange)).serving
    customer = await bearer(client, *CUSTOMER, "customer")
    assert (await calls[0]({"authorization": customer["Authorization"]})).message == "x"
    admin = await bearer(client, *ADMIN, "admin")
    assert (await calls[3]({"authorization": admin["Authorization"]})).model_version


async def test_messages_over_the_limit_are_refused_before_they_are_read(server):
    client, channel = server
    md = {"x-api-key": client.headers["X-Api-Key"]}
    echo = platform_grpc.PlatformServiceStub(channel).Echo
    assert (await echo(platform_pb2.EchoRequest(message="x" * (MIB - 100)), metadata=md)).message
    assert await _status(echo(platform_pb2.EchoRequest(message="x" * (MIB + 1)), metadata=md)) == \
        Status.RESOURCE_EXHAUSTED
    # A prefix announcing 128 MiB is refused at once; the server never waits for, or buffers, the body.
    with pytest.raises(GRPCError) as err:
        async with echo.open(metadata=md) as stream:
            await stream.send_request()
            await stream._stream.send_data(struct.pack(">?I", False, 128 * MIB))
            await stream.recv_message()
    assert err.value.status == Status.RESOURCE_EXHAUSTED and "exceeds the limit" in err.value.message
    assert (await echo(platform_pb2.EchoRequest(message="after"), metadata=md)).message == "after"


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x0a\x05\xff\xfe\xfd\xfc\xfb", b"\x0a\xff\xff\xff\x0f"])
async def test_malformed_protobuf_and_invalid_utf8_are_invalid_argument(server, payload):
    client, channel = server
    md = {"x-api-key": client.headers["X-Api-Key"]}
    syncvalue = syncvalue_grpc.SyncValueServiceStub(channel)
    partner = {"x-api-key": (await client.app[PLATFORM].api_keys.create("valuer", "partner"))[1]}
    for method, key in ((platform_grpc.PlatformServiceStub(channel).Echo, md),
                        (bidding_grpc.BiddingServiceStub(channel).ProcessBid, md),
                        (syncvalue.PredictLTV, partner), (syncvalue.PredictLTVBatch, partner)):
        with pytest.raises(GRPCError) as err:
            async with method.open(metadata=key) as stream:
                await stream.send_request()
                await stream._stream.send_data(struct.pack(">?I", False, len(payload)) + payload, end_stream=True)
                await stream.recv_message()
        assert err.value.status == Status.INVALID_ARGUMENT, err.value


async def test_domain_errors_map_to_their_status_and_faults_to_internal(server):
    client, channel = server
    admin = await bearer(client, *ADMIN, "admin")
    md = {"authorization": admin["Authorization"]}
    ranking = ranking_grpc.RankingServiceStub(channel)
    client.app[PLATFORM].ranker.local = lambda ctx, offers: 1 / 0  # a bug in a service
    request = ranking_pb2.RankOffersRequest(
        search_context=ranking_pb2.SearchContext(passengers=1),
        offers=[ranking_pb2.OfferFeatures(offer_id="o", total_price_nuc=10)])
    with pytest.raises(GRPCError) as err:
        await ranking.RankOffers(request, metadata=md)
    assert err.value.status == Status.INTERNAL and "ZeroDivision" not in (err.value.message or "")


async def test_bid_streams_are_rate_limited_per_message_and_go_on(server):
    client, channel = server
    md = {"x-api-key": client.headers["X-Api-Key"]}
    async with bidding_grpc.BiddingServiceStub(channel).StreamBids.open(metadata=md) as stream:
        for i in range(12):
            await stream.send_message(bidding_pb2.BidRequestProto(
                openrtb_json=json.dumps(banner_request(request_id=f"r{i}")), request_id=f"r{i}"))
        await stream.end()
        replies = [r async for r in stream]
    assert len(replies) == 12
    limited = [r for r in replies if r.error.startswith("rate_limited")]
    # The burst of 5: one for opening the stream, four for messages (a fifth may have refilled meanwhile).
    assert 7 <= len(limited) <= 8 and sum(r.has_bid for r in replies) == 12 - len(limited)
    # Unary calls share the same bucket: it is empty now.
    assert await _status(bidding_grpc.BiddingServiceStub(channel).ProcessBid(
        bidding_pb2.BidRequestProto(openrtb_json=json.dumps(banner_request())), metadata=md)) == \
        Status.RESOURCE_EXHAUSTED


async def test_websocket_bids_share_the_same_limit_per_request(server):
    client, _ = server
    key = client.headers["X-Api-Key"]
    async with client.ws_connect(f"/v1/stream/bids?api_key={key}") as ws:  # the upgrade is one request
        await ws.send_str(json.dumps([banner_request(request_id=f"w{i}") for i in range(6)]))
        answers = await ws.receive_json(timeout=2)
        assert [a["type"] for a in answers[:4]] == ["bid_response"] * 4
        assert answers[5]["type"] == "error" and answers[5]["code"] == "rate_limited"
        await ws.send_str(json.dumps(banner_request(request_id="later")))
        assert (await ws.receive_json(timeout=2))["code"] == "rate_limited"  # the socket stays open
