"""One message a stream cannot take (over `grpc.max_message_bytes`, or flagged compressed) is answered with that
message's error and the stream reads on, over loopback against the real app; a unary call carrying one still ends
with RESOURCE_EXHAUSTED / UNIMPLEMENTED, refused from its prefix."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from app.main import GRPC, PLATFORM
from handlers.rpc import bidding_grpc, bidding_pb2, syncvalue_grpc
from handlers.rpc import syncvalue_pb2 as pb
from tests.integration.bidding.helpers import _client, banner_request

MIB = 1_048_576


def frame(data: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">?I", compressed, len(data)) + data


@pytest.fixture
async def grpc(aiohttp_client, tmp_path, clock):
    """The real app (demo campaigns, so bids work too), a channel to its gRPC port and an admin key's metadata."""
    client = await _client(aiohttp_client, tmp_path, clock)
    _, key = await client.app[PLATFORM].api_keys.create("ops", "admin")
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    yield channel, {"x-api-key": key}
    channel.close()


async def ltv_stream(channel: Channel, md: dict, middle: bytes) -> list[pb.LTVPredictionResponse]:
    """A PredictLTVStream call: a request, the raw `middle` bytes, another request; every answer in order."""
    async with asyncio.timeout(5), \
            syncvalue_grpc.SyncValueServiceStub(channel).PredictLTVStream.open(metadata=md) as stream:
        await stream.send_message(pb.LTVPredictionRequest(request_id="before", customer_id="c1"))
        answers = [await stream.recv_message()]
        await stream._stream.send_data(middle)
        answers.append(await stream.recv_message())
        await stream.send_message(pb.LTVPredictionRequest(request_id="after", customer_id="c2"), end=True)
        answers += [answer async for answer in stream]
    return answers


@pytest.mark.parametrize("size", [MIB + 1, 1_100_000, 5 * MIB])
async def test_a_message_over_the_limit_in_a_stream_is_answered_and_the_stream_goes_on(grpc, size):
    channel, md = grpc
    before, oversized, after = await ltv_stream(channel, md, frame(b"\x0a" * size))
    assert before.request_id == "before" and after.request_id == "after"
    assert oversized.status == pb.INVALID_INPUT
    assert f"message of {size} bytes exceeds the limit of {MIB} bytes" in oversized.message


async def test_a_compressed_message_in_a_stream_is_answered_and_the_stream_goes_on(grpc):
    channel, md = grpc
    body = pb.LTVPredictionRequest(request_id="zipped", customer_id="c1").SerializeToString()
    before, compressed, after = await ltv_stream(channel, md, frame(body, compressed=True))
    assert before.request_id == "before" and after.request_id == "after"
    assert compressed.status == pb.INVALID_INPUT and "compressed messages are not supported" in compressed.message


async def test_a_stream_that_ends_inside_a_message_over_the_limit_ends_with_resource_exhausted(grpc):
    channel, md = grpc
    with pytest.raises(GRPCError) as err:
        async with asyncio.timeout(5), \
                syncvalue_grpc.SyncValueServiceStub(channel).PredictLTVStream.open(metadata=md) as stream:
            await stream.send_message(pb.LTVPredictionRequest(request_id="before", customer_id="c1"))
            assert (await stream.recv_message()).request_id == "before"
            await stream._stream.send_data(struct.pack(">?I", False, 2 * MIB) + b"\x0a" * 4096)
            await stream.end()  # the rest of the message never comes
            await stream.recv_message()
    assert err.value.status == Status.RESOURCE_EXHAUSTED
    assert err.value.message == f"message of {2 * MIB} bytes exceeds the limit of {MIB} bytes"


async def test_a_unary_call_still_refuses_such_a_message_from_its_prefix(grpc):
    channel, md = grpc
    predict = syncvalue_grpc.SyncValueServiceStub(channel).PredictLTV
    for raw, status, says in ((struct.pack(">?I", False, 128 * MIB), Status.RESOURCE_EXHAUSTED, "exceeds the limit"),
                              (frame(b"\x0a\x01c", compressed=True), Status.UNIMPLEMENTED, "compressed")):
        with pytest.raises(GRPCError) as err:
            async with asyncio.timeout(5), predict.open(metadata=md) as stream:
                await stream.send_request()
                await stream._stream.send_data(raw)  # the stream is not ended: the prefix alone is refused
                await stream.recv_message()
        assert err.value.status == status and says in err.value.message
    assert (await predict(pb.LTVPredictionRequest(request_id="r", customer_id="c1"), metadata=md)).request_id == "r"


async def test_a_compressed_message_on_the_bid_stream_is_answered_and_the_stream_goes_on(grpc):
    channel, md = grpc
    bid = bidding_pb2.BidRequestProto(openrtb_json=json.dumps(banner_request(request_id="zipped")),
                                      request_id="zipped").SerializeToString()
    async with asyncio.timeout(5), bidding_grpc.BiddingServiceStub(channel).StreamBids.open(metadata=md) as stream:
        await stream.send_message(bidding_pb2.BidRequestProto(
            openrtb_json=json.dumps(banner_request(request_id="a")), request_id="a"))
        await stream._stream.send_data(frame(bid, compressed=True))
        await stream.send_message(bidding_pb2.BidRequestProto(
            openrtb_json=json.dumps(banner_request(request_id="b")), request_id="b"), end=True)
        replies = [reply async for reply in stream]
    assert sorted(r.request_id for r in replies if r.has_bid) == ["a", "b"]
    (refused,) = [r for r in replies if not r.has_bid]
    assert refused.error == "invalid_argument: compressed messages are not supported; send them uncompressed"
