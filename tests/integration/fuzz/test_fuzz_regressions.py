"""Regressions: what the protocol sweeps found, fixed in app/ and state/, one focused test each."""

from __future__ import annotations

import base64
import json

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from app.main import GRPC, PLATFORM
from handlers.rpc import bidding_grpc, bidding_pb2
from tests.conftest import ADMIN, bearer
from tests.integration.bidding.helpers import _client, banner_request, post_bid
from tests.integration.fuzz.helpers import OPEN, _b64, _envelope_ok, _raw_http


async def test_a_bid_request_with_invalid_utf8_or_open_brackets_is_invalid_on_every_protocol(
        aiohttp_client, tmp_path, clock):
    """Was a 500 on REST, INTERNAL on gRPC (the whole stream), and an unanswered message on the websocket:
    msgspec raises UnicodeDecodeError and RecursionError, which decode_request did not turn into invalid."""
    client = await _client(aiohttp_client, tmp_path, clock)
    open_ext = '{"id": "o", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "ext": ' + OPEN
    for raw in (b'{"id": "\xff\xfe", "imp": []}', open_ext.encode()):
        resp = await post_bid(client, raw)
        assert resp.status == 400 and await resp.read() == b""
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    md = {"x-api-key": client.headers["X-Api-Key"]}
    try:
        stub = bidding_grpc.BiddingServiceStub(channel)
        with pytest.raises(GRPCError) as err:
            await stub.ProcessBid(bidding_pb2.BidRequestProto(openrtb_json=open_ext), metadata=md, timeout=5)
        assert err.value.status == Status.INVALID_ARGUMENT
        async with stub.StreamBids.open(metadata=md, timeout=5) as stream:
            await stream.send_message(bidding_pb2.BidRequestProto(openrtb_json=open_ext, request_id="open"))
            await stream.send_message(bidding_pb2.BidRequestProto(
                openrtb_json=json.dumps(banner_request(request_id="ok")), request_id="ok"))
            await stream.end()
            replies = {r.request_id: r async for r in stream}
        assert replies["open"].error == "invalid_request: not_json" and replies["ok"].has_bid
    finally:
        channel.close()
    async with client.ws_connect(f"/v1/stream/bids?api_key={md['x-api-key']}") as ws:
        await ws.send_str(open_ext)
        assert (await ws.receive_json(timeout=5))["type"] == "error"
        await ws.send_str(json.dumps(banner_request(request_id="after")))
        assert (await ws.receive_json(timeout=5))["request_id"] == "after"


@pytest.mark.parametrize("raw", [b'{"source": "web", "type": "page_view", "user_id": "\xff\xfe"}',
                                 b'[{"source": "web", "type": "page_view", "user_id": "u", "attributes": '
                                 + OPEN.encode(),
                                 b'[{"source": "web", "type": "x", "bad": 1}, ' + OPEN.encode()],
                         ids=["invalid utf-8 in a string", "open brackets in attributes",
                              "open brackets after a bad event"])
async def test_ingest_answers_invalid_utf8_and_open_brackets_400(aiohttp_client, tmp_path, clock, raw):
    """Were 500s: UnicodeDecodeError and RecursionError from msgspec escaped IngestService.ingest."""
    client = await _client(aiohttp_client, tmp_path, clock)
    admin = await bearer(client, *ADMIN, "admin")
    resp = await client.post("/v1/channels/ingest", data=raw, headers={**admin, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["message"].startswith("malformed JSON")


async def test_sendgrid_events_json_loads_took_are_refused_and_no_timestamp_poisons_the_report(
        aiohttp_client, tmp_path, clock):
    """json.loads took brackets left open (RecursionError: 500), lone surrogates (stored, then a 500 on encoding)
    and NaN (dropped as a duplicate); a timestamp past a float was a 500, and 1e400 (infinity) was stored as null,
    after which every analytics report was a 500."""
    client = await _client(aiohttp_client, tmp_path, clock, sendgrid__allow_unsigned="true")
    admin = await bearer(client, *ADMIN, "admin")
    for raw in (b'[{"event": "open", "x": ' + OPEN.encode(), b'[{"event": "bounce", "email": "\\ud800"}]',
                b'[{"event": "open", "email": "\xff"}]', b'[{"event": "open", "sg_event_id": "n", "timestamp": NaN}]',
                b'[{"event": "open", "sg_event_id": "i", "timestamp": 1e400}]'):
        resp = await client.post("/v1/webhooks/sendgrid", data=raw)
        assert resp.status == 400 and (await resp.json())["error"]["message"].startswith("malformed JSON"), raw
    for i, timestamp in enumerate((b"1" + b"0" * 400, b"1.7e308", b"true", b"-1e308")):
        raw = b'[{"event": "open", "email": "a@example.com", "sg_event_id": "e%d", "timestamp": %s}]' % (i, timestamp)
        resp = await client.post("/v1/webhooks/sendgrid", data=raw)
        assert resp.status == 200 and (await resp.json())["recorded"] == 1, await resp.text()
    resp = await client.get("/v1/channels/email/analytics", headers=admin)
    assert resp.status == 200 and (await resp.json())["opens"] == 4, await resp.text()


async def test_a_signed_sendgrid_webhook_timestamp_is_checked_as_the_bytes_that_came(aiohttp_client, tmp_path,
                                                                                     clock):
    """A timestamp header that is not UTF-8 was a 500 (encoding the str aiohttp made of it); it is checked as the
    bytes sent: a bad signature is 403, a good one over those bytes verifies."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    client = await _client(aiohttp_client, tmp_path, clock, sendgrid__verification_key=public)
    body, timestamp = b'[{"event": "open", "email": "a@example.com", "sg_event_id": "s1"}]', b"\xff\xfe1700000000"
    good = base64.b64encode(private.sign(timestamp + body, ec.ECDSA(hashes.SHA256()))).decode().encode()
    for signature, expect in ((base64.b64encode(b"nonsense"), 403), (good, 200)):
        status, answer = await _raw_http(client.server.port, (
            b"POST /v1/webhooks/sendgrid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Twilio-Email-Event-Webhook-Signature: " + signature + b"\r\n"
            b"X-Twilio-Email-Event-Webhook-Timestamp: " + timestamp + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body))
        assert status == expect, answer


async def test_credentials_that_are_not_utf8_are_401(aiohttp_client, tmp_path, clock):
    """Were 500s: aiohttp gives such header bytes as lone surrogates, which hashing the key or decoding the JWT
    could not encode."""
    client = await _client(aiohttp_client, tmp_path, clock)
    for header in (b"X-Api-Key: \xc3(", b"X-Api-Key: ck_\xff", b"Authorization: Bearer \xff\xfe",
                   b"Authorization: Bearer eyJ\xe2\x9c\x88.x.y"):
        raw = b"GET /v1/me HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nConnection: close\r\n\r\n"
        status, body = await _raw_http(client.server.port, raw)
        assert status == 401 and _envelope_ok("application/json", body), (header, status, body)


async def test_notices_for_negative_bid_ids_are_404_and_loss_reasons_past_int32_are_400(aiohttp_client, tmp_path,
                                                                                        clock):
    """A bid id whose sequence number parses negative indexed the ledger from its end (IndexError, a 500); a loss
    reason past 64 bits reached SQLite (OverflowError, a 500)."""
    client = await _client(aiohttp_client, tmp_path, clock)
    bid = await (await post_bid(client, banner_request())).json()
    bid_id = bid["seatbid"][0]["bid"][0]["id"]
    for kind in ("win", "billing", "loss"):
        for bad_id in ("-1", "-1e308", "-0000000001f" + bid_id[12:]):
            resp = await client.get(f"/v1/notices/{kind}", params={"bid": bad_id, "price": "1"})
            assert resp.status == 404 and _envelope_ok(resp.content_type, await resp.read()), (kind, bad_id)
    for reason in (str(2**63), str(2**31), "-1"):
        resp = await client.get("/v1/notices/loss", params={"bid": bid_id, "reason": reason})
        assert resp.status == 400 and "loss reason" in (await resp.json())["error"]["message"]
    resp = await client.get("/v1/notices/loss", params={"bid": bid_id, "reason": "102"})
    assert resp.status == 200 and (await resp.json())["recorded"]


async def test_cursors_holding_integers_past_64_bits_page_instead_of_failing(aiohttp_client, tmp_path, clock):
    """A cursor is base64 JSON a client can write; its integer reached SQLite (OverflowError, a 500)."""
    client = await _client(aiohttp_client, tmp_path, clock)
    admin = await bearer(client, *ADMIN, "admin")
    await client.post("/v1/admin/api-keys", json={"name": "n", "role": "partner"}, headers=admin)  # an audit entry
    await client.post("/v1/channels/ingest", json={"source": "web", "type": "page_view", "user_id": "u"},
                      headers=admin)  # an event
    await client.app[PLATFORM].event_log.flush()
    for after, items in ((_b64({"before": 2**70}), True), (_b64({"before": -(2**70)}), False)):
        resp = await client.get("/v1/admin/audit", params={"after": after}, headers=admin)
        assert resp.status == 200 and bool((await resp.json())["items"]) == items, await resp.text()
    for after, items in ((_b64({"id": 2**70}), False), (_b64({"id": -(2**70)}), True)):
        resp = await client.get("/v1/analytics/events", params={"after": after}, headers=admin)
        assert resp.status == 200 and bool((await resp.json())["items"]) == items, await resp.text()
