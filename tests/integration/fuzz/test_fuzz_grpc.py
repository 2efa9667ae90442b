"""Protocol fuzzing, gRPC: every method gets bad credentials, malformed and oversized bytes, and well-formed
messages with out-of-range values."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from app.main import GRPC
from handlers.rpc import bidding_pb2, platform_pb2, ranking_pb2, syncvalue_pb2
from handlers.rpc.server import ENDED_BY_OVERSIZED
from tests.conftest import ADMIN, bearer
from tests.integration.bidding.helpers import _client, banner_request
from tests.integration.fuzz.helpers import (
    DEEP,
    MIB,
    OPEN,
    _bad_credentials,
    _mutated_bid,
    _report,
    _still_ready,
    _world,
)


def _grpc_methods(app) -> list[tuple[str, Any, tuple[str, ...]]]:
    """(path, handler, the roles its service takes: () for any caller) of every method of every service."""
    return [(path, handler, getattr(service, "ROLES", ())) for service in app[GRPC].services
            for path, handler in service.__mapping__().items()]


def _frame(payload: bytes) -> bytes:
    return struct.pack(">?I", False, len(payload)) + payload


async def _raw_call(channel: Channel, path: str, handler: Any, metadata: dict[str, str] | None,
                    frames: list[bytes] | None, timeout: float = 5.0) -> tuple[Status, Any]:
    """A call carrying these bytes exactly (None: no message at all); its status and replies (or message)."""
    stream = channel.request(path, handler.cardinality, handler.request_type, handler.reply_type,
                             metadata=metadata, timeout=timeout)
    replies = []
    try:
        async with stream:
            await stream.send_request()
            if not frames:  # grpclib's API will not end a unary call without a message
                await stream._stream.end()
            for i, frame in enumerate(frames or []):
                await stream._stream.send_data(frame, end_stream=i == len(frames) - 1)
            stream._end_done = True  # the frames went around grpclib's bookkeeping: the request has ended
            while (reply := await stream.recv_message()) is not None:
                replies.append(reply)
            await stream.recv_trailing_metadata()
    except GRPCError as exc:
        return exc.status, exc.message
    except StreamTerminatedError as exc:
        return Status.CANCELLED, str(exc)
    return Status.OK, replies


_PB2 = {"campaign.bidding.v1": bidding_pb2, "contrail.platform.v1": platform_pb2, "ranking": ranking_pb2,
        "syncvalue.v1": syncvalue_pb2}
STRING_EDGES = ["", "x" * 100_000, "\u0000", "\U0001F4BA" * 200, "2026-13-45", "9999-12-31", "NaN", "-1",
                "${AUCTION_PRICE}", DEEP, OPEN, '{"id": "x", "imp": [{"id": "1", "banner": {}, "ext": ' + OPEN,
                '{"id": "x", "imp": []}', "null", "[1, 2, 3]", "LIS", "economy"]


def _edge_scalar(f: Any, rng: random.Random) -> Any:
    t, T = f.type, FieldDescriptor
    if t == T.TYPE_STRING:
        if f.name == "openrtb_json":
            return rng.choice(STRING_EDGES + [json.dumps(_mutated_bid(rng))] * 4)
        return rng.choice(STRING_EDGES)
    if t == T.TYPE_BYTES:
        return rng.choice([b"", b"\xff" * 100])
    if t in (T.TYPE_INT32, T.TYPE_SINT32, T.TYPE_SFIXED32):
        return rng.choice([-(2**31), -1, 0, 1, 51, 2**31 - 1])
    if t in (T.TYPE_INT64, T.TYPE_SINT64, T.TYPE_SFIXED64):
        return rng.choice([-(2**63), -1, 0, 2**63 - 1])
    if t in (T.TYPE_UINT32, T.TYPE_FIXED32):
        return rng.choice([0, 2**32 - 1])
    if t in (T.TYPE_UINT64, T.TYPE_FIXED64):
        return rng.choice([0, 2**64 - 1])
    if t == T.TYPE_DOUBLE:
        return rng.choice([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 100.0, 1e7])
    if t == T.TYPE_FLOAT:
        return rng.choice([math.nan, math.inf, -math.inf, 3.4e38, -1.0])
    if t == T.TYPE_BOOL:
        return rng.random() < 0.5
    return rng.choice([0, 999, -1])  # an enum: proto3 keeps numbers it does not know


def _extreme(message_type: Any, rng: random.Random, depth: int = 0) -> Any:
    """A well-formed message with every field at a random edge (repeated ones 0 to 150 times)."""
    message = message_type()
    for f in message_type.DESCRIPTOR.fields:
        for _ in range(rng.choice([0, 1, 3, 150]) if f.is_repeated else 1):
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if depth >= 3 or f.message_type.GetOptions().map_entry:
                    break
                sub = _extreme(getattr(_PB2[f.message_type.file.package], f.message_type.name), rng, depth + 1)
                target = getattr(message, f.name)
                (target.add() if f.is_repeated else target).CopyFrom(sub)
            elif f.is_repeated:
                getattr(message, f.name).append(_edge_scalar(f, rng))
            else:
                setattr(message, f.name, _edge_scalar(f, rng))
    return message


def _big_message(message_type: Any, size: int) -> bytes | None:
    """A well-formed message of at least `size` bytes: its first string field that long."""
    for f in message_type.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated:
            return message_type(**{f.name: "x" * size}).SerializeToString()
    return None


MALFORMED_PROTOBUF = [
    b"\xff\xff\xff",                              # no such wire type
    b"\x0a\x05\xff\xfe\xfd\xfc\xfb",              # field 1, wire type 2: invalid UTF-8 (a string in most messages)
    b"\x0a\x02\xc3\x28",                          # field 1: a broken two-byte sequence
    b"\x0a\xff\xff\xff\x0f",                      # field 1: a length past the end
    b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # a varint of 11 bytes
    b"\x0b\x0c",                                  # a group start and end (deprecated wire types)
    b"\x0b",                                      # a group that never ends
    b"\x00\x00",                                  # field number 0
    b"\x12\x03\x0a\x01\xff",                      # field 2, a message holding invalid UTF-8 in its field 1
    b"\x1a\x64" + b"\x1a\x62" + b"\x1a\x60" * 48,  # nested far deeper than the fields go
    b"\x0d\x00\x00\x00",                          # a fixed32 cut short
    b"\xfa\xff\xff\xff\x0f\x00",                  # the largest field number
]
GOOD_GRPC = {
    "/contrail.platform.v1.PlatformService/Echo": platform_pb2.EchoRequest(message="still here"),
    "/contrail.platform.v1.PlatformService/GetStatus": platform_pb2.StatusRequest(),
    "/campaign.bidding.v1.BiddingService/ProcessBid": bidding_pb2.BidRequestProto(
        openrtb_json=json.dumps(banner_request(request_id="after", user_id="after"))),
    "/campaign.bidding.v1.BiddingService/StreamBids": bidding_pb2.BidRequestProto(
        openrtb_json=json.dumps(banner_request(request_id="after-s", user_id="after-s")), request_id="after-s"),
    "/campaign.bidding.v1.BiddingService/HealthCheck": bidding_pb2.HealthCheckRequest(),
    "/ranking.RankingService/PredictConversion": ranking_pb2.PredictConversionRequest(
        search_context=ranking_pb2.SearchContext(passengers=1),
        offer_features=ranking_pb2.OfferFeatures(offer_id="o", total_price_nuc=100)),
    "/ranking.RankingService/RankOffers": ranking_pb2.RankOffersRequest(
        search_context=ranking_pb2.SearchContext(passengers=1),
        offers=[ranking_pb2.OfferFeatures(offer_id="o", total_price_nuc=100)]),
    "/syncvalue.v1.SyncValueService/PredictLTV": syncvalue_pb2.LTVPredictionRequest(customer_id="after"),
    "/syncvalue.v1.SyncValueService/PredictLTVBatch": syncvalue_pb2.LTVBatchRequest(
        requests=[syncvalue_pb2.LTVPredictionRequest(customer_id="after")]),
    "/syncvalue.v1.SyncValueService/PredictLTVStream": syncvalue_pb2.LTVPredictionRequest(customer_id="after-s"),
    "/syncvalue.v1.SyncValueService/GetModelHealth": syncvalue_pb2.HealthRequest(),
}


async def test_every_grpc_method_survives_bad_credentials_bytes_sizes_and_values(aiohttp_client, tmp_path, clock):
    world = await _world(aiohttp_client, tmp_path, clock)
    app, rng = world.client.app, world.rng
    channel = Channel("127.0.0.1", app[GRPC].port)
    admin = {"authorization": world.creds["admin"]["Authorization"]}
    others = {"customer": {"authorization": world.creds["customer"]["Authorization"]},
              "exchange": {"x-api-key": world.creds["exchange"]["X-Api-Key"]},
              "partner": {"x-api-key": world.creds["partner"]["X-Api-Key"]}}
    bad = [None, {"x-api-key": "ck_nobody"}, {"x-api-key": " "}, {"authorization": "Bearer not.a.jwt"},
           {"authorization": "Basic YWRtaW4="}, {"x-api-key": "k" * 4000}]
    bad += [{k.lower(): v for k, v in headers.items()} for headers in _bad_credentials(world).values()
            if all(headers.values())]  # grpclib sends no empty metadata values

    async def check(path: str, handler: Any, md: Any, frames: list[bytes] | None, label: str,
                    expect: set[Status] | None = None) -> None:
        world.sent += 1
        status, detail = await _raw_call(channel, path, handler, md, frames)
        if status in (Status.UNKNOWN, Status.INTERNAL) or (expect is not None and status not in expect):
            world.problems.append(f"{path} [{label}]: {status.name} {str(detail)[:200]}")

    try:
        for path, handler, roles in _grpc_methods(app):
            empty = [_frame(handler.request_type().SerializeToString())]
            good = [_frame(GOOD_GRPC[path].SerializeToString())]
            for md in bad:
                await check(path, handler, md, empty, f"credentials {str(md)[:40]}", {Status.UNAUTHENTICATED})
            for who, md in others.items():  # each caller's role is its name
                await check(path, handler, md, good, f"as {who}",
                            {Status.PERMISSION_DENIED} if roles and who not in roles else None)
            for payload in MALFORMED_PROTOBUF:
                await check(path, handler, admin, [_frame(payload)], f"bytes {payload[:12]!r}")
            await check(path, handler, admin, [struct.pack(">?I", False, MIB + 1) + b"\x0a"], "prefix over the limit",
                        {Status.RESOURCE_EXHAUSTED})
            await check(path, handler, admin, [struct.pack(">?I", False, 2**32 - 1)], "prefix of 4 GiB",
                        {Status.RESOURCE_EXHAUSTED})
            big = _big_message(handler.request_type, MIB + 1)
            if big is not None:
                # A stream answers a message over the limit and reads on (StreamBids documents that it ends);
                # a unary call ends with RESOURCE_EXHAUSTED.
                answered = handler.cardinality.client_streaming and path not in ENDED_BY_OVERSIZED
                await check(path, handler, admin, [_frame(big)], "a message over the limit",
                            {Status.OK} if answered else {Status.RESOURCE_EXHAUSTED, Status.CANCELLED})
            await check(path, handler, admin, [b"\x01" + struct.pack(">I", 3) + b"abc"], "compressed flag")
            await check(path, handler, admin, [b"\x00\x00"], "a prefix cut short")
            await check(path, handler, admin, [struct.pack(">?I", False, 50) + b"x"], "a message cut short")
            await check(path, handler, admin, good + [b"\x00"], "a good message, then a cut prefix")
            await check(path, handler, admin, None, "no message",
                        {Status.OK} if handler.cardinality == Cardinality.STREAM_STREAM else None)
            for i in range(40):  # well-formed messages with out-of-range values
                count = 4 if handler.cardinality == Cardinality.STREAM_STREAM else 1
                payloads = [_extreme(handler.request_type, rng).SerializeToString() for _ in range(count)]
                if sum(map(len, payloads)) < MIB:
                    await check(path, handler, admin, [_frame(p) for p in payloads], f"edge values #{i}")
        # A bid stream answers every message, whatever its values, and bids on the good ones among them.
        path = "/campaign.bidding.v1.BiddingService/StreamBids"
        handler = next(h for p, h, _ in _grpc_methods(app) if p == path)
        messages = []
        for i in range(60):
            bid = banner_request(request_id=f"g{i}", user_id=f"gu{i}") if i % 2 else _mutated_bid(rng)
            messages.append(bidding_pb2.BidRequestProto(openrtb_json=json.dumps(bid), request_id=f"s{i}"))
        status, replies = await _raw_call(channel, path, handler, admin, [_frame(m.SerializeToString())
                                                                           for m in messages])
        assert status == Status.OK and sorted(r.request_id for r in replies) == sorted(f"s{i}" for i in range(60))
        assert all(r.has_bid for r in replies if int(r.request_id[1:]) % 2), [r for r in replies if not r.has_bid]
        # Every method still answers a good call.
        for path, handler, _ in _grpc_methods(app):
            good = [_frame(GOOD_GRPC[path].SerializeToString())]
            status, replies = await _raw_call(channel, path, handler, admin, good)
            assert status == Status.OK and len(replies) == 1, (path, status, replies)
    finally:
        channel.close()
    _report(world, "gRPC calls")
    await _still_ready(world)


async def test_a_grpc_stream_that_ends_inside_a_message_is_invalid_argument(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock)
    admin = {"authorization": (await bearer(client, *ADMIN, "admin"))["Authorization"]}
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    try:
        for path, handler, _ in _grpc_methods(client.app):
            for frames in ([b"\x00\x00"], [struct.pack(">?I", False, 50) + b"x"]):
                status, detail = await _raw_call(channel, path, handler, admin, frames)
                assert status == Status.INVALID_ARGUMENT, (path, frames, status, detail)
    finally:
        channel.close()
