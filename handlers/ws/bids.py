"""GET /v1/stream/bids: OpenRTB over a websocket (exchange API key).

Client -> server: one BidRequest JSON object per message, or an array of them.
Server -> client: {"type": "bid_response", "request_id", "has_bid", "processing_time_us", "response": {...}}
                  {"type": "error", "request_id", "message"} for an invalid request (the socket stays open).
At most `bidding.stream_max_in_flight` requests are worked on at once per connection;
the server stops reading the socket until a slot frees up.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from aiohttp import WSMsgType, web

from app import keys
from handlers.rest.common import endpoint
from handlers.ws.common import close_going_away, open_socket, send_json


def _split(raw: str) -> list[bytes]:
    """An array of requests becomes one raw JSON per request; anything else is one request."""
    if raw.lstrip()[:1] == "[":
        try:
            return [bytes(part) for part in msgspec.json.decode(raw, type=list[msgspec.Raw])]
        except msgspec.DecodeError:
            pass
    return [raw.encode()]


@endpoint("Websocket: send OpenRTB bid requests, receive responses tagged with their request id",
          tags=("streams", "bidding"), roles=("exchange", "admin"), errors=(426,))
async def stream_bids(request: web.Request, principal) -> web.StreamResponse:
    app = request.app
    gateway, hub = app[keys.BID_GATEWAY], app[keys.HUB]
    slots = asyncio.Semaphore(app[keys.CONFIG].bidding.stream_max_in_flight)
    send_lock = asyncio.Lock()
    tasks: set[asyncio.Task] = set()
    ws = await open_socket(request)
    gauge = app[keys.METRICS].ws_clients.labels("bids")
    gauge.inc()

    async def one(raw: bytes, started: float) -> None:
        try:
            answer = await gateway.answer(raw, "websocket", started)
            if answer.invalid is not None:
                message = {"type": "error", "request_id": answer.request_id,
                           "message": f"invalid OpenRTB request: {answer.invalid}"}
            else:
                body = answer.body(nbr_body=True)
                message = {"type": "bid_response", "request_id": answer.request_id,
                           "has_bid": bool(answer.outcome.response), "processing_time_us": answer.elapsed_us,
                           "response": msgspec.Raw(body)}
            async with send_lock:
                if not ws.closed:
                    await send_json(ws, message)
        finally:
            slots.release()

    try:
        async for msg in ws:
            if hub.closed:
                break
            if msg.type != WSMsgType.TEXT:
                continue
            started = time.perf_counter()
            for raw in _split(msg.data):
                await slots.acquire()
                task = asyncio.create_task(one(raw, started))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        gauge.dec()
        await close_going_away(ws)
    return ws


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/stream/bids", stream_bids)
