"""Protocol fuzzing, websockets: every stream answers a good message after any bad one; only what RFC 6455
fails a connection for closes one."""

from __future__ import annotations

import json
import random
import time
from typing import Any

from aiohttp import WSMsgType

from tests.integration.bidding.helpers import banner_request
from tests.integration.fuzz.helpers import (
    DEEP,
    MIB,
    OPEN,
    World,
    _call,
    _encode,
    _mutated_bid,
    _random_json,
    _report,
    _still_ready,
    _world,
)


async def _answers(ws, want, others: int, timeout: float = 5.0) -> None:
    """Read until `want` accepts one message and `others` other messages came (answers to what was sent before,
    or live events); an AssertionError when the stream closes or falls silent first."""
    deadline, seen, matched = time.monotonic() + timeout, 0, False
    while not matched or seen < others:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no answer in time (the good one {'came' if matched else 'did not'}, "
                                 f"{seen} of {others} others)")
        msg = await ws.receive(timeout=left)
        if msg.type != WSMsgType.TEXT:
            raise AssertionError(f"the stream closed or failed: {msg.type.name} {msg.data!r} {msg.extra!r}")
        data = json.loads(msg.data)
        if not matched and any(want(item) for item in (data if isinstance(data, list) else [data])):
            matched = True
        else:
            seen += 1


def _ws_junk(rng: random.Random) -> list[tuple[str, Any]]:
    """(label, a text str or binary bytes) messages no stream takes as they are."""
    return [
        ("empty text", ""), ("not json", "not json"), ("brace", "{"), ("null", "null"), ("number", "1e308"),
        ("NaN", "NaN"), ("string", '"ping"'), ("empty array", "[]"), ("empty object", "{}"),
        ("deep", DEEP), ("deep object", '{"type": ' * 500 + '"ping"' + "}" * 500),
        ("deep escaped", '{"a": "\\"", "b": ' + DEEP + "}"), ("open brackets", OPEN),
        ("open brackets in a field", '{"type": "ping", "id": "x", "imp": [{"id": "1", "banner": {}, "ext": ' + OPEN),
        ("open brackets in an array", "[" + json.dumps(banner_request(request_id="arr")) + ", " + OPEN),
        ("junk array", json.dumps([_random_json(rng) for _ in range(50)])),
        ("long junk array", json.dumps([rng.choice([1, None, "x", {}, []]) for _ in range(2000)])),
        ("junk object", json.dumps({str(i): _random_json(rng) for i in range(20)})),
        ("wrong type", '{"type": "subscribe", "events": "all"}'), ("unknown type", '{"type": "rm -rf"}'),
        ("huge events", json.dumps({"type": "subscribe", "events": ["x" * 100] * 5000})),
        ("near the limit", json.dumps({"type": "x" * (MIB - 100)})),
        ("lone surrogate escape", '{"type": "\\ud800"}'), ("NaN value", '{"type": "ping", "x": NaN}'),
        ("binary", b"\x00\x01\xff"), ("binary json", b'{"type": "ping"}'), ("empty binary", b""),
    ]


async def _ws_fuzz(world: World, url: str, good, is_answer, label: str) -> None:
    """Every junk message gets an answer and a good one after it gets its own; a burst of junk, then a good one;
    then what RFC 6455 fails a connection for closes this one (1007, 1009), and the next connection works."""
    client, rng = world.client, world.rng
    async with client.ws_connect(url, max_msg_size=0) as ws:
        for i, (name, junk) in enumerate(_ws_junk(rng)):
            world.sent += 1
            await (ws.send_bytes(junk) if isinstance(junk, bytes) else ws.send_str(junk))
            await ws.send_str(good(i))
            try:
                await _answers(ws, lambda m, i=i: is_answer(m, i), others=1)
            except (AssertionError, TimeoutError) as exc:
                world.problems.append(f"{label} after {name}: {exc!r}")
                return
        for _ in range(300):
            await ws.send_str(rng.choice(["{", "[]", "null", '{"type": 1}', OPEN[:100]]))
        await ws.send_str(good(9999))
        try:
            await _answers(ws, lambda m: is_answer(m, 9999), others=300, timeout=15)
        except (AssertionError, TimeoutError) as exc:
            world.problems.append(f"{label} after a burst of junk: {exc!r}")
        await ws.ping(b"x" * 100)  # a control frame: aiohttp answers it, the stream goes on
        await ws.send_str(good(10_000))
        await _answers(ws, lambda m: is_answer(m, 10_000), others=0)
    for name, send, code in (("a text frame that is not UTF-8", lambda ws: ws.send_frame(b'{"\xff"}', WSMsgType.TEXT),
                              1007),
                             ("a frame over the size limit", lambda ws: ws.send_str("x" * (MIB + 1)), 1009)):
        async with client.ws_connect(url) as ws:
            world.sent += 1
            await send(ws)
            msg = await ws.receive(timeout=5)
            if msg.type != WSMsgType.CLOSE or ws.close_code != code:
                world.problems.append(f"{label}: {name} gave {msg.type.name} {str(msg.data)[:100]}, not a close {code}")
    async with client.ws_connect(url) as ws:
        await ws.send_str(good(20_000))
        await _answers(ws, lambda m: is_answer(m, 20_000), others=0)


async def test_every_websocket_stream_answers_a_good_message_after_any_bad_one(aiohttp_client, tmp_path, clock):
    world = await _world(aiohttp_client, tmp_path, clock)
    key = world.creds["exchange"]["X-Api-Key"]
    admin = world.creds["admin"]["Authorization"].split()[1]
    customer = world.creds["customer"]["Authorization"].split()[1]

    def ping(i: int) -> str:
        return '{"type": "ping"}'

    def pong(m: Any, i: int) -> bool:
        return m == {"type": "pong"}

    await _ws_fuzz(world, f"/v1/stream/bids?api_key={key}",
                   lambda i: json.dumps(banner_request(request_id=f"good-{i}", user_id=f"g{i}")),
                   lambda m, i: m.get("request_id") == f"good-{i}" and m.get("type") == "bid_response", "bids")
    await _ws_fuzz(world, f"/v1/stream/events?token={admin}", ping, pong, "events")
    await _ws_fuzz(world, f"/v1/stream/events?token={admin}&types=" + ",".join(["x" * 50] * 100), ping, pong,
                   "events with many types")
    await _ws_fuzz(world, f"/v1/stream/inapp?token={customer}", ping, pong, "inapp")
    # Bid requests at their edges, alone and in arrays: each answered, and the stream goes on.
    async with world.client.ws_connect(f"/v1/stream/bids?api_key={key}") as ws:
        for i in range(150):
            edge = _mutated_bid(world.rng)
            await ws.send_str(_encode(edge if i % 3 else [edge, _mutated_bid(world.rng)]).decode())
            await ws.send_str(json.dumps(banner_request(request_id=f"ok-{i}", user_id=f"ok{i}")))
            try:
                await _answers(ws, lambda m, i=i: m.get("request_id") == f"ok-{i}", others=1)
            except (AssertionError, TimeoutError) as exc:
                world.problems.append(f"bids after {json.dumps(edge)[:200]}: {exc!r}")
                break
    # Callers a stream does not take are refused at the handshake, in the envelope.
    handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    for url, expect in ((f"/v1/stream/events?api_key={key}", 403), (f"/v1/stream/inapp?token={admin}", 403),
                        (f"/v1/stream/bids?token={customer}", 403), ("/v1/stream/bids", 401),
                        ("/v1/stream/events?token=x.y.z", 401), ("/v1/stream/inapp?token=", 401)):
        await _call(world, "GET", url.split("?")[0], url, headers=handshake, expect=expect, label="handshake")
    _report(world, "websocket checks")
    await _still_ready(world)
