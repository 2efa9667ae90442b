"""The NATS entry points of the real app on a real nats-server: bids by request/reply, bad messages, ingest."""

from __future__ import annotations

import json

import nats
import pytest
from grpclib.client import Channel

from app.main import GRPC, NATS, PLATFORM
from handlers.rpc import bidding_grpc, bidding_pb2
from tests.integration.bidding.helpers import _client, banner_request, check_response, post_bid


@pytest.fixture
async def bidder(aiohttp_client, tmp_path, clock, nats_server, bid_subject):
    client = await _client(aiohttp_client, tmp_path, clock, nats__url=nats_server.url, server__node_id="node1",
                           nats__subject=bid_subject, nats__max_payload_bytes=1024, nats__agents=2)
    client.subject = bid_subject
    return client


@pytest.fixture
async def nc(nats_server):
    conn = await nats.connect(nats_server.url)
    yield conn
    await conn.close()


async def ask(nc, subject: str, data: bytes | str, key: str | None) -> dict:
    raw = data.encode() if isinstance(data, str) else data
    msg = await nc.request(subject, raw, timeout=5, headers={"x-api-key": key} if key else None)
    return json.loads(msg.data)


async def test_bid_over_request_reply(bidder, nc):
    request = banner_request("n1")
    answer = await ask(nc, bidder.subject, json.dumps(request), bidder.headers["X-Api-Key"])
    check_response(request, answer)
    assert answer["ext"] == {"agent_id": "node1-nats"}
    # A no-bid is a message too, with the OpenRTB nbr and our reason.
    nobid = await ask(nc, bidder.subject, json.dumps(banner_request("n2", floor=10_000)), bidder.headers["X-Api-Key"])
    assert nobid["id"] == "n2" and "seatbid" not in nobid and isinstance(nobid["nbr"], int)
    assert nobid["ext"]["agent_id"] == "node1-nats" and nobid["ext"]["reason"]
    ready = await (await bidder.get("/health/ready")).json()
    assert ready["checks"]["nats"] is True
    metrics = await (await bidder.get("/metrics")).text()
    assert 'contrail_nats_messages_total{kind="bid",outcome="bid"} 1.0' in metrics


async def test_every_protocol_names_its_agent(bidder):
    resp = await post_bid(bidder, banner_request("r1"))
    assert resp.status == 200 and resp.headers["x-agent-id"] == "node1-rest"
    resp = await post_bid(bidder, b"{not json")
    assert resp.status == 400 and resp.headers["x-agent-id"] == "node1-rest"
    async with bidder.ws_connect("/v1/stream/bids", headers=bidder.headers) as ws:
        await ws.send_str(json.dumps(banner_request("w1")))
        assert (await ws.receive_json())["agent_id"] == "node1-ws"
    channel = Channel("127.0.0.1", bidder.app[GRPC].port)
    try:
        stub = bidding_grpc.BiddingServiceStub(channel)
        reply = await stub.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=json.dumps(banner_request("g1"))),
                                      metadata={"x-api-key": bidder.headers["X-Api-Key"]})
        assert reply.agent_id == "node1-grpc"
    finally:
        channel.close()


async def test_bad_messages_get_error_replies_and_the_agents_keep_answering(bidder, nc):
    key, subject = bidder.headers["X-Api-Key"], bidder.subject
    bad = {
        "invalid_request": (b"{not json", key),
        "payload_too_large": (json.dumps(banner_request("big", pad="x" * 2000)), key),
        "unauthenticated": (json.dumps(banner_request("nokey")), None),
    }
    for code, (data, with_key) in bad.items():
        answer = await ask(nc, subject, data, with_key)
        assert answer["error"]["code"] == code and answer["agent_id"] == "node1-nats", answer
    wrong = await ask(nc, subject, json.dumps(banner_request("wrong")), "ck_not_a_key")
    assert wrong["error"]["code"] == "unauthenticated"
    _, partner = await bidder.app[PLATFORM].api_keys.create("pos", "partner")
    assert (await ask(nc, subject, json.dumps(banner_request("p")), partner))["error"]["code"] == "forbidden"
    # Deeply nested and non-object JSON are invalid requests too; then a good one is answered as ever.
    for data in ("[" * 1000, "42", "[]"):
        assert (await ask(nc, subject, data, key))["error"]["code"] == "invalid_request"
    request = banner_request("after")
    check_response(request, await ask(nc, subject, json.dumps(request), key))


async def test_ingest_over_nats(bidder, nc):
    platform = bidder.app[PLATFORM]
    _, partner = await platform.api_keys.create("pos", "partner")
    purchase = {"type": "purchase", "user_id": "cust-1", "amount_cents": 12_000, "transaction_id": "t-1"}
    result = await ask(nc, "ingest.pos.store-7", json.dumps(purchase), partner)
    assert result["accepted"] == 1 and result["stars_earned_events"] == 1 and result["rejected"] == []
    batch = [{"type": "page_view", "user_id": "cust-1", "category": "beach"},
             {"type": "page_view", "device_id": "d-1", "source": "pos"}]
    result = await ask(nc, "ingest.pos.store-7", json.dumps(batch), partner)
    assert result["accepted"] == 2
    refused = await ask(nc, "ingest.pos.store-7", json.dumps({**purchase, "source": "web"}), partner)
    assert refused["error"]["code"] == "invalid_argument" and "ingest.pos" in refused["error"]["message"]
    assert (await ask(nc, "ingest.pos.x", b"{oops", partner))["error"]["code"] == "invalid_argument"
    assert (await ask(nc, "ingest.pos.x", json.dumps(purchase), None))["error"]["code"] == "unauthenticated"
    # A message with no reply subject is ingested all the same.
    await nc.publish("ingest.web.site", json.dumps({"type": "page_view", "user_id": "cust-2"}).encode(),
                     headers={"x-api-key": partner})
    await nc.flush()
    metrics = ""
    for _ in range(100):
        metrics = await (await bidder.get("/metrics")).text()
        if 'contrail_nats_messages_total{kind="ingest",outcome="accepted"} 3.0' in metrics:
            break
        await __import__("asyncio").sleep(0.02)
    assert 'contrail_nats_messages_total{kind="ingest",outcome="accepted"} 3.0' in metrics
    assert bidder.app[NATS].connected
