"""GET /v1/stream/inapp: a customer's in-app messages, live (customer JWT, or ?token=); GET /v1/inbox: the
durable inbox, newest first, for when the app was closed.

Server -> client: {"type": "inapp:<user id>", "at": ..., "data": {id, subject, text, at, activation_id}}
Client -> server: {"type": "ping"} → {"type": "pong"}
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from app import keys
from handlers.rest.common import endpoint, json_response
from handlers.ws.common import (
    MESSAGE_TYPES,
    BadMessage,
    decode_message,
    end_subscription,
    open_socket,
    pump,
    send_error,
    send_json,
)
from state.inbox import InAppMessage

CUSTOMERS = ("customer",)


@endpoint("Websocket: the signed-in customer's in-app messages as they are sent", tags=("streams", "channels"),
          roles=CUSTOMERS,
          status=101, websocket=True, headers={"Upgrade": {"type": "string", "const": "websocket"}})
async def stream_inapp(request: web.Request, principal) -> web.StreamResponse:
    app = request.app
    inapp, metrics = app[keys.INAPP], app[keys.METRICS]
    ws = await open_socket(request)
    sub = inapp.connect(principal.id)
    gauge = metrics.ws_clients.labels("inapp")
    gauge.inc()
    sender = asyncio.create_task(pump(request, ws, sub, app[keys.CONFIG].websocket.max_lag_s, metrics))
    try:
        async for msg in ws:
            if msg.type in MESSAGE_TYPES:
                try:
                    decode_message(msg, _decode_ping)
                    await send_json(ws, {"type": "pong"})
                except BadMessage as exc:
                    await send_error(ws, f"{exc}; the only message this stream takes is {{\"type\": \"ping\"}}")
            if sender.done():
                break
    finally:
        inapp.disconnect(principal.id)
        await end_subscription(ws, sub, sender, gauge)
    return ws


class Ping(msgspec.Struct):
    type: Literal["ping"]


_decode_ping = msgspec.json.Decoder(Ping).decode


class InboxQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    before: Annotated[float, msgspec.Meta(ge=0)] | None = None


class Inbox(msgspec.Struct):
    items: list[InAppMessage]


@endpoint("The signed-in customer's in-app inbox, newest first (page with ?before=<at of the last item>)",
          tags=("channels",), roles=CUSTOMERS, query=InboxQuery, response=Inbox)
async def inbox(request: web.Request, principal, query: InboxQuery) -> web.Response:
    return json_response(Inbox(await request.app[keys.INAPP].inbox(principal.id, query.limit, query.before)))


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/stream/inapp", stream_inapp)
    app.router.add_get("/v1/inbox", inbox)
