"""A caller's gRPC deadline (`grpc-timeout`) over loopback, sent as raw HTTP/2 so the exact header reaches the server:
a deadline that has passed before the call starts, or passes while it runs, is DEADLINE_EXCEEDED saying so; a
malformed header is INVALID_ARGUMENT naming it; neither is UNKNOWN or an error-level traceback, on any service."""

from __future__ import annotations

import asyncio
import logging
import struct

import h2.config
import h2.connection
import h2.events
import pytest
from grpclib.const import Status
from grpclib.metadata import decode_grpc_message

from app.main import GRPC, PLATFORM
from handlers.rpc import syncvalue_pb2 as pb
from tests.integration.bidding.helpers import _client

EMPTY = struct.pack(">?I", False, 0)  # an empty message: valid for every request type
SYNCVALUE = "/syncvalue.v1.SyncValueService/"
EVERY_KIND = [SYNCVALUE + "PredictLTV", SYNCVALUE + "PredictLTVStream", SYNCVALUE + "GetModelHealth",
              "/contrail.platform.v1.PlatformService/Echo", "/campaign.bidding.v1.BiddingService/StreamBids",
              "/grpc.health.v1.Health/Check"]


def framed(message: pb.LTVPredictionRequest) -> bytes:
    data = message.SerializeToString()
    return struct.pack(">?I", False, len(data)) + data


@pytest.fixture
async def grpc(aiohttp_client, tmp_path, clock):
    """The real app (demo campaigns, so bids work too), its gRPC port and an admin key's metadata."""
    client = await _client(aiohttp_client, tmp_path, clock)
    _, key = await client.app[PLATFORM].api_keys.create("ops", "admin")
    return client.app[GRPC].port, [("x-api-key", key)]


async def raw_call(port: int, path: str, metadata: list[tuple[str, str]], body: bytes = EMPTY, *,
                   end: bool = True) -> tuple[dict[str, str], list[bytes]]:
    """One call as HTTP/2 frames; the response's headers and trailers merged, and the reply messages' bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
                          ("content-type", "application/grpc"), ("te", "trailers"), *metadata])
    conn.send_data(1, body, end_stream=end)
    writer.write(conn.data_to_send())
    answer: dict[str, str] = {}
    data = b""
    try:
        async with asyncio.timeout(3):
            while "grpc-status" not in answer:
                chunk = await reader.read(65_536)
                assert chunk, f"the connection closed without a grpc-status: {answer}"
                for event in conn.receive_data(chunk):
                    if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                        answer.update(event.headers)
                    elif isinstance(event, h2.events.DataReceived):
                        data += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                writer.write(conn.data_to_send())
    finally:
        writer.close()
    messages = []
    while data:
        _, length = struct.unpack(">?I", data[:5])
        messages.append(data[5:5 + length])
        data = data[5 + length:]
    return answer, messages


def status_of(answer: dict[str, str]) -> tuple[Status, str]:
    return Status(int(answer["grpc-status"])), decode_grpc_message(answer.get("grpc-message", ""))


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("path", EVERY_KIND)
async def test_a_call_whose_deadline_has_already_passed_is_deadline_exceeded_on_every_service(grpc, caplog, path):
    port, md = grpc
    for timeout in ("1n", "0n", "0S"):
        answer, replies = await raw_call(port, path, [*md, ("grpc-timeout", timeout)])
        status, message = status_of(answer)
        assert status == Status.DEADLINE_EXCEEDED, (timeout, status, message)
        assert "deadline" in message and "grpc-timeout" in message, message
        assert replies == []
    assert errors(caplog) == []
    # A deadline with time left is served as before.
    answer, _ = await raw_call(port, SYNCVALUE + "GetModelHealth", [*md, ("grpc-timeout", "5S")])
    assert status_of(answer) == (Status.OK, "")


@pytest.mark.parametrize("value", ["abc", "1.5S", "-1S", "10", "5s", "S"])
async def test_a_malformed_grpc_timeout_header_is_invalid_argument_naming_it(grpc, caplog, value):
    port, md = grpc
    for path in (SYNCVALUE + "PredictLTV", SYNCVALUE + "PredictLTVStream", "/grpc.health.v1.Health/Check"):
        answer, replies = await raw_call(port, path, [*md, ("grpc-timeout", value)])
        status, message = status_of(answer)
        assert status == Status.INVALID_ARGUMENT, (path, status, message)
        assert "grpc-timeout" in message and repr(value) in message, message
        assert replies == []
    assert errors(caplog) == []


async def test_a_deadline_that_passes_while_a_stream_is_open_ends_it_with_deadline_exceeded(grpc, caplog):
    port, md = grpc
    # The stream is answered, then waits for a next message that never comes before the 300 ms deadline.
    answer, replies = await raw_call(port, SYNCVALUE + "PredictLTVStream", [*md, ("grpc-timeout", "300m")],
                                     framed(pb.LTVPredictionRequest(request_id="first", customer_id="c1")),
                                     end=False)
    assert [pb.LTVPredictionResponse.FromString(r).request_id for r in replies] == ["first"]
    status, message = status_of(answer)
    assert status == Status.DEADLINE_EXCEEDED and "deadline" in message, (status, message)
    assert errors(caplog) == []
