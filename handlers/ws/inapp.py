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
from opentelemetry.context import Context

from app.auth import Authenticator
from app.channels.inapp import InAppService
from app.runtime.metrics import Metrics
from app.runtime.tracing import SERVER, Tracing
from app.sessions import Sessions
from handlers.rest.common import endpoint, json_response
from handlers.ws.common import (
    MESSAGE_TYPES,
    BadMessage,
    Revocable,
    decode_message,
    end_subscription,
    pump,
    recheck,
    send_error,
    send_json,
    stop_subscription,
)
from state.inbox import InAppMessage

CUSTOMERS = ("customer",)


class Ping(msgspec.Struct):
    type: Literal["ping"]


_decode_ping = msgspec.json.Decoder(Ping).decode


class InboxQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    before: Annotated[float, msgspec.Meta(ge=0)] | None = None


class Inbox(msgspec.Struct):
    items: list[InAppMessage]


class InAppStream:
    """A customer's in-app messages: live over a websocket, and the durable inbox."""

    def __init__(self, inapp: InAppService, metrics: Metrics, max_lag_s: float, heartbeat_s: float,
                 max_msg_size: int, tracing: Tracing | None = None, sessions: Sessions | None = None,
                 authenticator: Authenticator | None = None) -> None:
        self._inapp = inapp
        self._sessions = Sessions() if sessions is None else sessions
        self._authenticator = authenticator  # checks the customer's token again each heartbeat
        self._tracing = tracing or Tracing.off()  # each message its own trace, linked to the connection's
        self._metrics = metrics
        self._max_lag_s = max_lag_s  # websocket.max_lag_s
        self._heartbeat_s = heartbeat_s
        self._max_msg_size = max_msg_size

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/stream/inapp", self.stream_inapp)
        router.add_get("/v1/inbox", self.inbox)

    @endpoint("Websocket: the signed-in customer's in-app messages as they are sent", tags=("streams", "channels"),
              roles=CUSTOMERS,
              status=101, websocket=True, headers={"Upgrade": {"type": "string", "const": "websocket"}})
    async def stream_inapp(self, request: web.Request, principal) -> web.StreamResponse:
        inapp, metrics = self._inapp, self._metrics
        # Closed with 1008 once the customer's token no longer authenticates (expired, or the customer erased).
        revocable = Revocable(self._sessions, principal, recheck(request, self._authenticator), self._heartbeat_s)
        ws = await revocable.open(request, self._heartbeat_s, self._max_msg_size)
        sub = inapp.connect(principal.id)
        revocable.stopping(lambda: stop_subscription(sub))
        gauge = metrics.ws_clients.labels("inapp")
        gauge.inc()
        sender = asyncio.create_task(pump(request, ws, sub, self._max_lag_s, metrics))
        links = Tracing.link_to_current() if self._tracing.enabled else []
        try:
            async for msg in ws:
                if msg.type in MESSAGE_TYPES:
                    with self._tracing.span("ws /v1/stream/inapp message", kind=SERVER, context=Context(), links=links):
                        try:
                            decode_message(msg, _decode_ping)
                            await send_json(ws, {"type": "pong"})
                        except BadMessage as exc:
                            await send_error(ws, f"{exc}; the only message this stream takes is "
                                                 "{\"type\": \"ping\"}")
                if sender.done():
                    break
        finally:
            inapp.disconnect(principal.id)
            try:
                await revocable.release()  # the 1008 goes before the stream's own close
            finally:
                await end_subscription(ws, sub, sender, gauge)
        return ws

    @endpoint("The signed-in customer's in-app inbox, newest first (page with ?before=<at of the last item>)",
              tags=("channels",), roles=CUSTOMERS, query=InboxQuery, response=Inbox)
    async def inbox(self, request: web.Request, principal, query: InboxQuery) -> web.Response:
        return json_response(Inbox(await self._inapp.inbox(principal.id, query.limit, query.before)))
