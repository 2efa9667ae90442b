"""OpenTelemetry tracing: spans reach a real OTLP/HTTP receiver, one booking is one trace, traceparent goes in
and out, log lines carry the ids, and with no collector configured nothing is traced at all."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import ssl
from dataclasses import dataclass

import nats
import pytest
from aiohttp import web
from grpclib.client import Channel
from grpclib.server import Server
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from adapters.tls import configure_outbound
from app.config import TlsConfig
from app.devcerts import make_dev_certs
from app.main import GRPC, PLATFORM, create_app
from app.runtime.logs import JsonFormatter
from handlers.rest.middleware import tracing_middleware
from handlers.rpc import platform_grpc, platform_pb2
from tests.conftest import ADMIN, bearer, make_config
from tests.integration.bidding.helpers import _client as _bidder
from tests.integration.bidding.helpers import banner_request
from tests.integration.dsp.conftest import SIMPLE_BANNER, platforms, post_bid, router_client, start_dsp
from tests.integration.retail.helpers import PAID_CARD, customer, search_body, seed_catalog
from tests.integration.retail.test_ranking import RemoteRanking


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict
    service: str
    error: bool
    links: list[str]


class Collector:
    """An OpenTelemetry collector's OTLP/HTTP trace endpoint (protobuf, as the SDK's exporter sends it)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.content_types: set[str] = set()

    async def traces(self, request: web.Request) -> web.Response:
        self.content_types.add(request.content_type)
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    attributes = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in s.attributes}
                    self.spans.append(Span(s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name,
                                           s.kind, attributes, service, s.status.code == 2,
                                           [link.span_id.hex() for link in s.links]))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


@pytest.fixture
async def collector():
    receiver = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined,union-attr]
    yield receiver
    await runner.cleanup()


async def _traced_client(aiohttp_client, tmp_path, clock, collector, **overrides):
    config = make_config(tmp_path, tracing__otlp_endpoint=collector.url, tracing__export_interval_ms="50",
                         server__node_id="node-a", **overrides)
    return await aiohttp_client(create_app(config, clock=clock))


async def _flush(client) -> None:
    assert await asyncio.to_thread(client.app[PLATFORM].tracing.flush)


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def test_one_booking_is_one_trace_with_its_commits(aiohttp_client, tmp_path, clock, collector):
    client = await _traced_client(aiohttp_client, tmp_path, clock, collector)
    await seed_catalog(client.app[PLATFORM], clock)
    shopper = await customer(client, "tracy")
    # The shop's front end began the trace: every request of the booking carries its traceparent.
    header, trace_id, root = _traceparent()
    headers = {**shopper, "traceparent": header}
    found = await client.post("/v1/offers/search", json=search_body(clock), headers=headers)
    assert found.status == 200
    offer = (await found.json())["offers"][0]
    accepted = await client.post(f"/v1/offers/{offer['id']}/accept", headers=headers)
    assert accepted.status == 201, await accepted.text()
    order = await accepted.json()
    paid = await client.post(f"/v1/orders/{order['id']}/pay", headers=headers,
                             json={"card": {"number": PAID_CARD, "exp_month": 12, "exp_year": 2099, "cvc": "123"}})
    assert paid.status == 200, await paid.text()
    await _flush(client)

    booking = [s for s in collector.spans if s.trace_id == trace_id]
    requests = {s.name: s for s in booking if s.parent_id == root}
    assert set(requests) == {"POST /v1/offers/search", "POST /v1/offers/{offer_id}/accept",
                             "POST /v1/orders/{order_id}/pay"}
    assert all(s.kind == 2 and s.service == "contrail" for s in requests.values())  # SPAN_KIND_SERVER
    assert requests["POST /v1/orders/{order_id}/pay"].attributes["http.response.status_code"] == 200
    assert requests["POST /v1/orders/{order_id}/pay"].attributes["contrail.request_id"] == \
        paid.headers["X-Request-Id"]
    # The accept's hold and the payment were each committed inside their request's span.
    commits = [s for s in booking if s.name == "commit contrail.db"]
    writes = ("POST /v1/offers/{offer_id}/accept", "POST /v1/orders/{order_id}/pay")
    parents = {requests[name].span_id for name in writes}
    assert parents <= {c.parent_id for c in commits}
    assert all(c.attributes["db.system.name"] == "sqlite" and c.attributes["contrail.group_size"] >= 1
               for c in commits)
    assert collector.content_types == {"application/x-protobuf"}
    # Nothing of the booking went to another trace.
    assert not [s for s in collector.spans if s.name.startswith("POST /v1/o") and s.trace_id != trace_id]


async def test_requests_without_traceparent_start_their_own_trace_and_failures_are_marked(
        aiohttp_client, tmp_path, clock, collector):
    client = await _traced_client(aiohttp_client, tmp_path, clock, collector)
    assert (await client.get("/v1/orders/nope")).status in (401, 404)
    assert (await client.get("/health/live")).status == 200
    await _flush(client)
    live = collector.named("GET /health/live")
    assert len(live) == 1 and live[0].parent_id == "" and not live[0].error
    assert {s.attributes["http.route"] for s in collector.spans if s.kind == 2} >= {"/health/live"}


async def test_sampling_ratio_zero_records_only_what_callers_sampled(aiohttp_client, tmp_path, clock, collector):
    client = await _traced_client(aiohttp_client, tmp_path, clock, collector, tracing__sample_ratio="0")
    for _ in range(5):
        assert (await client.get("/health/live")).status == 200
    header, trace_id, _ = _traceparent()
    assert (await client.get("/health/live", headers={"traceparent": header})).status == 200
    unsampled = header[:-2] + "00"
    assert (await client.get("/health/live", headers={"traceparent": unsampled})).status == 200
    await _flush(client)
    assert [s.trace_id for s in collector.named("GET /health/live")] == [trace_id]


async def test_a_quarter_of_new_traces_are_recorded_at_sample_ratio_a_quarter(aiohttp_client, tmp_path, clock,
                                                                                collector):
    client = await _traced_client(aiohttp_client, tmp_path, clock, collector, tracing__sample_ratio="0.25")
    for _ in range(400):
        assert (await client.get("/health/live")).status == 200
    await _flush(client)
    # Binomial(400, 0.25): 100 expected, 70..130 is more than four standard deviations either side.
    assert 70 <= len(collector.named("GET /health/live")) <= 130


async def test_grpc_calls_continue_the_callers_trace(aiohttp_client, tmp_path, clock, collector):
    client = await _traced_client(aiohttp_client, tmp_path, clock, collector)
    _, key = await client.app[PLATFORM].api_keys.create("partner", "partner")
    header, trace_id, root = _traceparent()
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    try:
        stub = platform_grpc.PlatformServiceStub(channel)
        reply = await stub.Echo(platform_pb2.EchoRequest(message="hi"),
                                metadata={"x-api-key": key, "traceparent": header})
        assert reply.message == "hi"
    finally:
        channel.close()
    await _flush(client)
    [span] = collector.named("contrail.platform.v1.PlatformService/Echo")
    assert (span.trace_id, span.parent_id, span.kind) == (trace_id, root, 2)
    assert span.attributes["rpc.system"] == "grpc" and span.attributes["rpc.method"] == "Echo"


async def test_log_lines_carry_the_trace_and_span_ids(aiohttp_client, tmp_path, clock, collector):
    client = await _traced_client(aiohttp_client, tmp_path, clock, collector, server__access_log="true")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("contrail.http")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        header, trace_id, _ = _traceparent()
        assert (await client.get("/health/live", headers={"traceparent": header})).status == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    await _flush(client)
    [line] = [json.loads(x) for x in out.getvalue().splitlines() if '"msg":"request"' in x]
    [span] = collector.named("GET /health/live")
    assert (line["trace_id"], line["span_id"]) == (trace_id, span.span_id)


async def test_periodic_tasks_run_in_spans_of_their_own(aiohttp_client, tmp_path, clock, collector):
    client = await _traced_client(aiohttp_client, tmp_path, clock, collector, retail__sweep_interval_s="0.05")
    for _ in range(200):
        await _flush(client)
        if len(collector.named("task retail_sweep")) >= 3:
            break
        await asyncio.sleep(0.05)
    sweeps = collector.named("task retail_sweep")
    assert len(sweeps) >= 3 and all(s.parent_id == "" and s.kind == 1 for s in sweeps)  # SPAN_KIND_INTERNAL
    assert len({s.trace_id for s in sweeps}) == len(sweeps)


async def test_without_a_collector_nothing_is_traced(client):
    platform = client.app[PLATFORM]
    assert not platform.tracing.enabled and platform.tracing.tracer is None
    assert all(m.__name__ != tracing_middleware(platform.tracing).__name__ for m in client.app.middlewares)
    assert (await client.get("/health/live", headers={"traceparent": _traceparent()[0]})).status == 200


async def test_a_dsp_called_for_a_traced_bid_request_gets_its_traceparent(aiohttp_client, tmp_path, clock, collector):
    dsp = await start_dsp("bid")
    url = dsp.url
    try:
        client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=dsp),
                                     tracing__otlp_endpoint=collector.url, tracing__export_interval_ms="50")
        header, trace_id, root = _traceparent()
        resp = await post_bid(client, SIMPLE_BANNER, traceparent=header)
        assert resp.status == 200, await resp.text()
    finally:
        assert dsp.server is not None
        await dsp.server.close()
    await _flush(client)
    [server] = collector.named("POST /v1/dsp/bid")
    [call] = [s for s in collector.spans if s.kind == 3]  # SPAN_KIND_CLIENT
    assert (server.trace_id, server.parent_id) == (trace_id, root)
    assert (call.trace_id, call.parent_id) == (trace_id, server.span_id)
    assert call.attributes["http.response.status_code"] == 200 and call.attributes["url.full"] == url
    # The DSP's own spans would continue ours: the header names our client span as their parent.
    sent = dsp.headers[0]["traceparent"].split("-")
    assert (sent[1], sent[2]) == (trace_id, call.span_id)


async def test_the_remote_ranker_gets_the_searchs_traceparent(aiohttp_client, tmp_path, clock, collector):
    heard: list[str] = []

    class Ranker(RemoteRanking):
        async def RankOffers(self, stream) -> None:  # noqa: N802 (the RPC's name)
            heard.append(stream.metadata.get("traceparent", ""))
            await super().RankOffers(stream)

    service = Ranker()
    server = Server([service])
    await server.start("127.0.0.1", 0)
    try:
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        client = await _traced_client(aiohttp_client, tmp_path, clock, collector, ranking__remote=f"127.0.0.1:{port}",
                                      ranking__remote_share="1.0", ranking__remote_deadline_ms="2000")
        await seed_catalog(client.app[PLATFORM], clock)
        header, trace_id, root = _traceparent()
        found = await client.post("/v1/offers/search", json=search_body(clock),
                                  headers={**await customer(client, "rhea"), "traceparent": header})
        assert found.status == 200 and (await found.json())["ranked_by"] == "remote"
    finally:
        server.close()
        await server.wait_closed()
    await _flush(client)
    [search] = collector.named("POST /v1/offers/search")
    [call] = collector.named("ranking.RankingService/RankOffers")
    assert (call.trace_id, call.parent_id, call.kind) == (trace_id, search.span_id, 3)
    assert heard == [f"00-{trace_id}-{call.span_id}-01"]


async def test_spans_go_to_a_collector_over_mtls_verified_like_every_outbound_client(aiohttp_client, tmp_path,
                                                                                     clock):
    certs = make_dev_certs(tmp_path / "pki", "contrail-node")
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
    server_side.load_cert_chain(certs.server, certs.server_key)
    server_side.verify_mode = ssl.CERT_REQUIRED  # the collector takes spans only from nodes it issued certificates
    receiver = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_side)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        config = make_config(tmp_path, tracing__otlp_endpoint=f"https://localhost:{port}",
                             tracing__export_interval_ms="50", tls__outbound_ca_file=str(certs.ca),
                             tls__outbound_cert_file=str(certs.client), tls__outbound_key_file=str(certs.client_key))
        client = await aiohttp_client(create_app(config, clock=clock))
        assert (await client.get("/health/live")).status == 200
        await _flush(client)
        assert len(receiver.named("GET /health/live")) == 1
    finally:
        configure_outbound(TlsConfig())  # outbound HTTP's TLS is the process's: leave it as the defaults had it
        await runner.cleanup()


async def test_nats_and_websocket_bids_are_traced_each_message_its_own(aiohttp_client, tmp_path, clock, collector,
                                                                       nats_server):
    subject = f"tracing{secrets.token_hex(4)}.bid-requests"
    client = await _bidder(aiohttp_client, tmp_path, clock, nats__url=nats_server.url, nats__subject=subject,
                           tracing__otlp_endpoint=collector.url, tracing__export_interval_ms="50")
    key = client.headers["X-Api-Key"]
    header, trace_id, root = _traceparent()
    nc = await nats.connect(nats_server.url)
    try:
        answer = await nc.request(subject, json.dumps(banner_request("n1")).encode(), timeout=5,
                                  headers={"x-api-key": key, "traceparent": header})
        assert json.loads(answer.data)["id"] == "n1"
    finally:
        await nc.close()
    async with client.ws_connect("/v1/stream/bids", headers={**client.headers, "traceparent": header}) as ws:
        for n in ("w1", "w2"):
            await ws.send_str(json.dumps(banner_request(n)))
            assert (await ws.receive_json())["request_id"] == n
    async with client.ws_connect("/v1/stream/events", headers=await bearer(client, *ADMIN, "admin")) as ws:
        await ws.send_str(json.dumps({"type": "subscribe", "events": ["BidWon"]}))
        assert (await ws.receive_json())["type"] == "subscribed"
    await _flush(client)
    [control] = collector.named("ws /v1/stream/events message")
    assert control.parent_id == "" and len(control.links) == 1
    [consumed] = collector.named("nats bid")
    assert (consumed.trace_id, consumed.parent_id, consumed.kind) == (trace_id, root, 5)  # SPAN_KIND_CONSUMER
    assert consumed.attributes["messaging.destination.name"] == subject
    # The connection's request is in the caller's trace; each message starts a trace of its own, linked to it.
    [upgrade] = collector.named("GET /v1/stream/bids")
    messages = collector.named("ws /v1/stream/bids message")
    assert upgrade.trace_id == trace_id and len(messages) == 2
    assert all(m.parent_id == "" and m.trace_id != trace_id and m.links == [upgrade.span_id] for m in messages)
