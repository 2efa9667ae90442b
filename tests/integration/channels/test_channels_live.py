"""In-app messages live and in the inbox; push, SMS and paid media through HTTP providers on loopback."""

import asyncio

import pytest
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from app.main import PLATFORM, create_app
from tests.conftest import bearer, make_config


class Provider:
    """A push / SMS provider stand-in: a real HTTP server that can fail on purpose."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.fail_next: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_next:
            return web.Response(status=self.fail_next.pop(0))
        body = await request.json()
        self.received.append(body)
        return web.json_response({"id": f"prov-{len(self.received)}"})


@pytest.fixture
async def provider(aiohttp_server):
    p = Provider()
    app = web.Application()
    app.router.add_post("/send", p.handle)
    server = await aiohttp_server(app)
    p.url = str(server.make_url("/send"))
    return p


async def _app(aiohttp_client, tmp_path, clock, **overrides):
    client = await aiohttp_client(create_app(make_config(tmp_path, **overrides), clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    return client, {"X-Api-Key": key}


async def test_in_app_messages_arrive_live_and_wait_in_the_inbox(aiohttp_client, tmp_path, clock):
    client, staff = await _app(aiohttp_client, tmp_path, clock)
    customer = await bearer(client, "uma@example.com", "correct horse battery", "customer")
    uma = (await (await client.get("/v1/me", headers=customer)).json())["id"]
    offline = await client.post("/v1/channels/activate", headers=staff,
                                json={"user_id": uma, "subject": "Hello", "text": "While you were away"})
    assert (await offline.json())["status"] == "unreachable"  # no app, no contact details yet
    token = customer["Authorization"].split()[1]
    async with client.ws_connect(f"/v1/stream/inapp?token={token}") as ws:
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=2))["type"] == "pong"
        result = await (await client.post("/v1/channels/activate", headers=staff,
                                          json={"user_id": uma, "subject": "Gate change",
                                                "text": "Now boarding at gate 12"})).json()
        assert result["channel"] == "in_app" and result["status"] == "delivered"
        live = await ws.receive_json(timeout=2)
        assert live["data"]["subject"] == "Gate change" and live["data"]["id"] == result["provider_message_id"]
    inbox = await (await client.get("/v1/inbox", headers=customer)).json()
    assert [m["subject"] for m in inbox["items"]] == ["Gate change"]
    assert (await client.get("/v1/inbox", headers=staff)).status == 403


async def test_the_cascade_uses_providers_with_retries_and_falls_through(aiohttp_client, tmp_path, clock, provider):
    client, staff = await _app(aiohttp_client, tmp_path, clock, adaptors__push_url=provider.url,
                               adaptors__sms_url=provider.url, channels__max_per_customer_per_day=10)
    await client.put("/v1/loyalty/members/vic", headers=staff,
                     json={"push_token": "tok-1", "phone": "+351912345678", "email": "vic@example.com"})
    provider.fail_next = [503, 503]  # two failures, then the third attempt goes through
    result = await (await client.post("/v1/channels/activate", headers=staff,
                                      json={"user_id": "vic", "subject": "Sale", "text": "48 hours only"})).json()
    assert result["channel"] == "push" and result["status"] == "sent" and result["provider_message_id"] == "prov-1"
    assert provider.received[0]["to"] == "tok-1" and provider.received[0]["title"] == "Sale"
    provider.fail_next = [400]  # refused: no retry, the cascade moves on (in-app: the customer has the app)
    result = await (await client.post("/v1/channels/activate", headers=staff,
                                      json={"user_id": "vic", "subject": "Sale", "text": "24 hours left"})).json()
    assert result["channel"] == "in_app" and result["status"] == "delivered"
    sms = await (await client.post("/v1/channels/activate", headers=staff,
                                   json={"user_id": "vic", "subject": "Sale", "text": "Last call",
                                         "channel": "sms"})).json()
    assert sms["status"] == "sent" and provider.received[-1]["to"] == "+351912345678"
    await client.post("/v1/suppressions", headers=staff, json={"entries": [{"identifier": "+351912345678",
                                                                             "channel": "sms"}]})
    body = {"user_id": "vic", "subject": "x", "text": "y", "channel": "sms"}
    suppressed = await (await client.post("/v1/channels/activate", headers=staff, json=body)).json()
    assert suppressed["status"] == "suppressed" and len(provider.received) == 2


async def test_an_in_app_socket_closes_once_its_customer_is_erased_or_its_token_expired(aiohttp_client, tmp_path,
                                                                                        clock):
    """The customer's token is checked again each heartbeat: erasing the customer, or the token's hour passing,
    closes the socket with 1008 and says why, and the stream delivers nothing after; another customer's goes on."""
    client, staff = await _app(aiohttp_client, tmp_path, clock, websocket__heartbeat_s=0.1)
    uma = await bearer(client, "uma@example.com", "correct horse battery", "customer")
    vic = await bearer(client, "vic@example.com", "correct horse battery", "customer")
    ids = {name: (await (await client.get("/v1/me", headers=h)).json())["id"] for name, h in (("uma", uma),
                                                                                              ("vic", vic))}

    async def open_for(headers: dict):
        ws = await client.ws_connect(f"/v1/stream/inapp?token={headers['Authorization'].split()[1]}")
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=2))["type"] == "pong"
        return ws

    async def close_frame(ws) -> WSMessage:
        async def first_frame() -> WSMessage:  # the heartbeat's pings are answered inside receive()
            return await ws.receive()
        msg = await asyncio.wait_for(first_frame(), 5)
        assert msg.type != WSMsgType.TEXT, f"delivered after the customer's credentials ended: {msg.data}"
        return msg

    uma_ws, vic_ws = await open_for(uma), await open_for(vic)
    try:
        assert (await client.delete(f"/v1/customers/{ids['uma']}", headers=uma)).status == 200
        msg = await close_frame(uma_ws)
        assert msg.type == WSMsgType.CLOSE and msg.data == WSCloseCode.POLICY_VIOLATION, (msg.type, msg.data)
        assert "no longer valid" in msg.extra, msg.extra
        sent = await (await client.post("/v1/channels/activate", headers=staff,
                                        json={"user_id": ids["vic"], "subject": "Still here", "text": "hi"})).json()
        assert sent["channel"] == "in_app" and sent["status"] == "delivered", sent
        assert (await vic_ws.receive_json(timeout=2))["data"]["subject"] == "Still here"
        clock.advance(3700)  # past the token's hour
        msg = await close_frame(vic_ws)
        assert msg.type == WSMsgType.CLOSE and msg.data == WSCloseCode.POLICY_VIOLATION, (msg.type, msg.data)
        assert "expired" in msg.extra, msg.extra
    finally:
        await uma_ws.close()
        await vic_ws.close()


async def test_activations_that_reach_nobody_hold_no_count_of_the_day(aiohttp_client, tmp_path, clock):
    """The day's counts per customer (the daily cap) hold only customers something was sent to: activations to
    ids with no way to reach them leave nothing behind (contrail_queue_depth{queue="activations_counted_today"})."""
    client, staff = await _app(aiohttp_client, tmp_path, clock)
    for n in range(50):
        result = await (await client.post("/v1/channels/activate", headers=staff,
                                          json={"user_id": f"nobody-{n}", "subject": "Hi", "text": "hello"})).json()
        assert result["status"] == "unreachable", result
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_queue_depth{queue="activations_counted_today"} 0.0' in metrics
    customer = await bearer(client, "uma@example.com", "correct horse battery", "customer")
    uma = (await (await client.get("/v1/me", headers=customer)).json())["id"]
    async with client.ws_connect(f"/v1/stream/inapp?token={customer['Authorization'].split()[1]}"):
        result = await (await client.post("/v1/channels/activate", headers=staff,
                                          json={"user_id": uma, "subject": "Hi", "text": "hello"})).json()
        assert result["status"] == "delivered", result
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_queue_depth{queue="activations_counted_today"} 1.0' in metrics
    assert 'contrail_queue_depth{queue="profiles_write_behind"}' in metrics
