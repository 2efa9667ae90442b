"""Websocket plumbing shared by every stream: opening, the bounded send pump, closing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from aiohttp import WSCloseCode, web

from app import keys
from app.hub import Subscription

log = logging.getLogger("contrail.ws")
_encode = msgspec.json.Encoder().encode

CLOSE_TOO_SLOW = 4008  # application close code: the client fell too far behind


async def open_socket(request: web.Request) -> web.WebSocketResponse:
    config = request.app[keys.CONFIG].websocket
    ws = web.WebSocketResponse(heartbeat=config.heartbeat_s, max_msg_size=request.app[keys.CONFIG].server.max_body_bytes)
    await ws.prepare(request)
    return ws


async def send_json(ws: web.WebSocketResponse, message: Any) -> None:
    await ws.send_str(_encode(message).decode())


async def pump(ws: web.WebSocketResponse, sub: Subscription, max_lag_s: float, metrics) -> None:
    """Forward a subscription's messages to the socket until either side closes.

    A client whose queue keeps overflowing for longer than `max_lag_s`, or whose socket
    will not take a message within `max_lag_s`, is disconnected and counted.
    """
    while not ws.closed:
        batch = await sub.next_batch(timeout=1.0)
        if sub.closed and not batch:
            await close_going_away(ws)
            return
        if sub.lagging_for() > max_lag_s:
            metrics.ws_disconnects.labels(sub.stream).inc()
            await ws.close(code=CLOSE_TOO_SLOW, message=b"client too slow")
            return
        try:
            for message in batch:
                await asyncio.wait_for(ws.send_str(message), max_lag_s)
        except asyncio.TimeoutError:
            metrics.ws_disconnects.labels(sub.stream).inc()
            await ws.close(code=CLOSE_TOO_SLOW, message=b"client too slow")
            return
        except ConnectionResetError:
            return


async def close_going_away(ws: web.WebSocketResponse) -> None:
    if not ws.closed:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
