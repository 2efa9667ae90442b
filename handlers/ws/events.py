"""GET /v1/stream/events: live events for dashboards, filtered by type.

Client -> server: {"type": "subscribe", "events": ["OrderPaid", ...]}   ([] or ["*"] = all)
                  {"type": "unsubscribe", "events": [...]}
                  {"type": "ping"}
Server -> client: {"type": "<EventType>", "at": <epoch s>, "data": {...}}
                  {"type": "subscribed", "events": [...]}, {"type": "pong"}, {"type": "error", "message": "..."}
"""

from __future__ import annotations

import asyncio
from typing import Annotated, ClassVar, Literal

import msgspec
from aiohttp import web
from opentelemetry.context import Context

from app.auth import Authenticator
from app.hub import Hub
from app.runtime.metrics import Metrics
from app.runtime.tracing import SERVER, Tracing
from app.sessions import Sessions
from handlers.rest.common import endpoint
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


class ControlMessage(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["subscribe", "unsubscribe", "ping"]
    events: list[str] = []


_decode = msgspec.json.Decoder(ControlMessage).decode


class EventsStreamQuery(msgspec.Struct):
    """The stream's query (the handler reads it; checked first)."""
    comma_lists: ClassVar[frozenset[str]] = frozenset({"types"})  # also given repeated
    types: Annotated[str, msgspec.Meta(description="Event types to start with, comma-separated (default none: "
                                                   "send a subscribe message)")] | None = None


class EventStream:
    """The admin's live event stream."""

    def __init__(self, hub: Hub, metrics: Metrics, max_lag_s: float, heartbeat_s: float,
                 max_msg_size: int, tracing: Tracing | None = None, sessions: Sessions | None = None,
                 authenticator: Authenticator | None = None) -> None:
        self._hub = hub
        self._authenticator = authenticator  # checks a bearer token's socket again each heartbeat
        self._sessions = Sessions() if sessions is None else sessions  # the sockets open with each API key
        self._tracing = tracing or Tracing.off()  # each control message its own trace, linked to the connection's
        self._metrics = metrics
        self._max_lag_s = max_lag_s  # websocket.max_lag_s
        self._heartbeat_s = heartbeat_s
        self._max_msg_size = max_msg_size

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/stream/events", self.stream_events)

    @endpoint("Websocket: live event stream (admin; token may be passed as ?token=)", tags=("streams",),
              roles=("admin",), params=EventsStreamQuery,
              status=101, websocket=True, headers={"Upgrade": {"type": "string", "const": "websocket"}})
    async def stream_events(self, request: web.Request, principal) -> web.StreamResponse:
        metrics = self._metrics
        initial = [t for t in ",".join(request.query.getall("types", [])).split(",") if t]
        # Opened with an API key: closed with 1008 when the key is revoked, with nothing delivered after.
        revocable = Revocable(self._sessions, principal, recheck(request, self._authenticator), self._heartbeat_s)
        ws = await revocable.open(request, self._heartbeat_s, self._max_msg_size)
        sub = self._hub.subscribe("events", initial)
        revocable.stopping(lambda: stop_subscription(sub))
        gauge = metrics.ws_clients.labels("events")
        gauge.inc()
        sender = asyncio.create_task(pump(request, ws, sub, self._max_lag_s, metrics))
        links = Tracing.link_to_current() if self._tracing.enabled else []
        try:
            async for msg in ws:
                if msg.type not in MESSAGE_TYPES:
                    continue
                with self._tracing.span("ws /v1/stream/events message", kind=SERVER, context=Context(), links=links):
                    try:
                        control = decode_message(msg, _decode)
                    except BadMessage as exc:
                        await send_error(ws, f"bad control message: {exc}")
                        continue
                    if control.type == "ping":
                        await send_json(ws, {"type": "pong"})
                        continue
                    if control.type == "subscribe":
                        sub.types.update(control.events or ["*"])
                    else:
                        sub.types.difference_update(control.events)
                    await send_json(ws, {"type": "subscribed", "events": sorted(sub.types)})
                    if sender.done():
                        break
        finally:
            try:
                await revocable.release()  # a revoked key's 1008 goes before the stream's own close
            finally:
                await end_subscription(ws, sub, sender, gauge)
        return ws
