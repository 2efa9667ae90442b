"""gRPC over loopback: health, reflection, the platform service, generated code freshness."""

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest

from app.main import GRPC, PLATFORM
from handlers.rpc import platform_grpc, platform_pb2
from tests.conftest import ROOT


@pytest.fixture
async def channel(client):
    ch = Channel("127.0.0.1", client.app[GRPC].port)
    yield ch
    ch.close()


async def test_health_reports_each_service(channel, client):
    health = HealthStub(channel)
    overall = await health.Check(HealthCheckRequest(service=""))
    assert overall.status == HealthCheckResponse.SERVING
    for name in ("contrail.platform.v1.PlatformService", "syncvalue.v1.SyncValueService"):
        svc = await health.Check(HealthCheckRequest(service=name))
        assert svc.status == HealthCheckResponse.SERVING, name
    client.app[GRPC].set_serving(False)
    for name in ("contrail.platform.v1.PlatformService", "syncvalue.v1.SyncValueService"):
        svc = await health.Check(HealthCheckRequest(service=name))
        assert svc.status == HealthCheckResponse.NOT_SERVING, name


async def test_reflection_lists_services(channel):
    stub = ServerReflectionStub(channel)
    async with stub.ServerReflectionInfo.open() as stream:
        await stream.send_message(ServerReflectionRequest(list_services=""), end=True)
        reply = await stream.recv_message()
    names = {s.name for s in reply.list_services_response.service}
    assert {"contrail.platform.v1.PlatformService", "syncvalue.v1.SyncValueService", "grpc.health.v1.Health"} <= names


async def test_echo_and_status_and_call_metrics(channel, client):
    stub = platform_grpc.PlatformServiceStub(channel)
    _, key = await client.app[PLATFORM].api_keys.create("partner", "partner")
    md = {"x-api-key": key}
    reply = await stub.Echo(platform_pb2.EchoRequest(message="hello"), metadata=md)
    assert reply.message == "hello" and reply.server_time_us > 0
    status = await stub.GetStatus(platform_pb2.StatusRequest(), metadata=md)
    assert status.state == "ready" and "idempotency_purge" in status.tasks
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_grpc_calls_total{code="OK",method="/contrail.platform.v1.PlatformService/Echo"} 1.0' in metrics


def test_generated_code_matches_the_protos(tmp_path):
    protos = sorted(p.name for p in (ROOT / "proto").glob("*.proto"))
    # grpclib's protoc plugin from the interpreter running the tests (its venv), never whatever is on PATH.
    plugin = f"--plugin=protoc-gen-grpclib_python={Path(sys.executable).parent / 'protoc-gen-grpclib_python'}"
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Ihandlers/rpc=proto", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}",
         f"--grpclib_python_out={tmp_path}", plugin, *[f"handlers/rpc/{p}" for p in protos]],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for proto in protos:
        stem = proto.removesuffix(".proto")
        for suffix in ("_pb2.py", "_pb2.pyi", "_grpc.py"):
            fresh = tmp_path / "handlers" / "rpc" / f"{stem}{suffix}"
            committed = ROOT / "handlers" / "rpc" / f"{stem}{suffix}"
            assert filecmp.cmp(fresh, committed, shallow=False), f"{committed.name} is stale: run `make proto`"


async def _pinged(reader, writer, peer, answered: int) -> tuple[list[float], float | None]:
    """Read what the server sends a raw HTTP/2 peer (h2) for up to 10 s, answering its first `answered` pings and
    then nothing: (when each ping came, when the connection was closed or None), seconds from now."""
    import asyncio
    import time

    import h2.events
    started, pings, closed = time.monotonic(), [], None
    while closed is None and time.monotonic() - started < 10:
        data = await asyncio.wait_for(reader.read(65_536), 10)
        if not data:
            closed = time.monotonic() - started
            break
        for event in peer.receive_data(data):
            if isinstance(event, h2.events.PingReceived):
                pings.append(time.monotonic() - started)
            elif isinstance(event, h2.events.ConnectionTerminated):
                closed = time.monotonic() - started
        if 0 < len(pings) <= answered:
            writer.write(peer.data_to_send())
    writer.close()
    return pings, closed


async def test_a_peer_that_stops_answering_pings_is_dropped_after_the_configured_keepalive(aiohttp_client, tmp_path,
                                                                                          clock):
    """grpc.keepalive_time_s and keepalive_timeout_s: a connection with a call open is pinged once it has been quiet
    that long, and closed when the ping goes unanswered (a peer gone without a FIN holds nothing for long). The call
    ends with it: counted as cancelled, and no longer in flight (a stop does not wait for it)."""
    import asyncio

    import h2.config
    import h2.connection
    import h2.events

    from app.main import create_app
    from tests.conftest import make_config
    client = await aiohttp_client(create_app(make_config(tmp_path, grpc__keepalive_time_s=0.3,
                                                         grpc__keepalive_timeout_s=0.4), clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("exchange", "exchange")
    reader, writer = await asyncio.open_connection("127.0.0.1", client.app[GRPC].port)
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    peer.initiate_connection()
    peer.send_headers(peer.get_next_available_stream_id(), [
        (":method", "POST"), (":scheme", "http"), (":path", "/campaign.bidding.v1.BiddingService/StreamBids"),
        (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers"), ("x-api-key", key)])
    writer.write(peer.data_to_send())  # the call is open; from here on nothing is sent, not even a ping's ack
    pings, closed = await _pinged(reader, writer, peer, answered=0)
    pinged = pings[0] if pings else None
    grpc = client.app[GRPC]
    for _ in range(100):  # the call ended with its connection: it no longer counts as in flight
        if grpc.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert grpc.in_flight == 0
    text = await (await client.get("/metrics")).text()
    assert 'contrail_grpc_calls_total{code="CANCELLED",method="/campaign.bidding.v1.BiddingService/StreamBids"} 1.0' \
        in text, [line for line in text.splitlines() if "grpc_calls" in line]
    assert pinged is not None and 0.25 <= pinged < 2, pinged
    assert closed is not None and closed - pinged >= 0.35 and closed < 5, (pinged, closed)


@pytest.mark.parametrize("with_call", [True, False], ids=["a call open", "no call"])
async def test_a_peer_that_answers_a_ping_then_vanishes_is_dropped_too(aiohttp_client, tmp_path, clock, with_call):
    """The keepalive pings every quiet connection each keepalive_time_s, a call open or not, not only once: a peer
    that answered the first ping and then went away is found out at the next one."""
    import asyncio

    import h2.config
    import h2.connection
    import h2.events

    from app.main import create_app
    from tests.conftest import make_config
    client = await aiohttp_client(create_app(make_config(tmp_path, grpc__keepalive_time_s=0.3,
                                                         grpc__keepalive_timeout_s=0.4), clock=clock))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.app[GRPC].port)
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    peer.initiate_connection()
    if with_call:
        peer.send_headers(peer.get_next_available_stream_id(), [
            (":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Watch"),
            (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers")])
        peer.send_data(1, b"\x00\x00\x00\x00\x00", end_stream=True)
    writer.write(peer.data_to_send())
    pings, closed = await _pinged(reader, writer, peer, answered=1)  # then the peer says nothing
    assert len(pings) >= 2 and closed is not None and closed < 5, (pings, closed)
