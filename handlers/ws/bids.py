"""GET /v1/stream/bids: OpenRTB over a websocket (exchange API key).

Client -> server: one BidRequest JSON object per message, or an array of them.
Server -> client: {"type": "bid_response", "request_id", "has_bid", "processing_time_us", "agent_id",
                   "response": {...}}
                  {"type": "error", "request_id", "agent_id", "message"} for an invalid request (the socket stays
                  open). agent_id is `{node_id}-ws`.
An array gets one array back: its answers in the order of its requests, in one frame (a
frame per answer cost a socket write each).
At most `bidding.stream_max_in_flight` requests are worked on at once per connection;
the server stops reading the socket until a slot frees up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import msgspec
from aiohttp import WSMsgType, web
from opentelemetry.context import Context

from app.auth import Authenticator
from app.bidding.gateway import BidGateway
from app.errors import RateLimited
from app.hub import Hub
from app.ratelimit import RateLimiter
from app.runtime.metrics import Metrics
from app.runtime.tracing import SERVER, Tracing
from app.sessions import Sessions
from handlers.rest.common import endpoint
from handlers.ws.common import MESSAGE_TYPES, Revocable, close_going_away, recheck, send_error, send_json


def _split(raw: str) -> list[bytes] | None:
    """An array of requests becomes one raw JSON per request; anything else (None) is one request."""
    if raw.lstrip()[:1] == "[":
        try:
            return [bytes(part) for part in msgspec.json.decode(raw, type=list[msgspec.Raw])]
        except (msgspec.DecodeError, RecursionError):
            pass  # answered as one (invalid) request
    return None


class BidStream:
    """OpenRTB bid requests and their answers over a websocket."""

    def __init__(self, gateway: BidGateway, hub: Hub, limiter: RateLimiter, metrics: Metrics, max_in_flight: int,
                 heartbeat_s: float, max_msg_size: int, agent_id: str = "", tracing: Tracing | None = None,
                 sessions: Sessions | None = None, authenticator: Authenticator | None = None) -> None:
        self._gateway = gateway
        self._authenticator = authenticator  # checks a bearer token's socket again each heartbeat
        self._sessions = Sessions() if sessions is None else sessions  # the sockets open with each API key
        self._agent_id = agent_id  # `{node_id}-ws`, in every answer's envelope
        self._hub = hub
        self._limiter = limiter
        self._metrics = metrics
        self._max_in_flight = max_in_flight  # bidding.stream_max_in_flight
        self._heartbeat_s = heartbeat_s
        self._max_msg_size = max_msg_size
        self._tracing = tracing or Tracing.off()

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/stream/bids", self.stream_bids)

    @endpoint("Websocket: send OpenRTB bid requests, receive responses tagged with their request id",
              tags=("streams", "bidding"), roles=("exchange", "admin"),
              status=101, websocket=True, headers={"Upgrade": {"type": "string", "const": "websocket"}})
    async def stream_bids(self, request: web.Request, principal) -> web.StreamResponse:
        gateway, hub, limiter = self._gateway, self._hub, self._limiter  # locals: read for every message
        agent = self._agent_id
        ip = request.remote or "unknown"
        slots = asyncio.Semaphore(self._max_in_flight)
        send_lock = asyncio.Lock()
        tasks: set[asyncio.Task] = set()
        # Opened with an API key: closed with 1008 when the key is revoked (answers in flight are then not sent).
        revocable = Revocable(self._sessions, principal, recheck(request, self._authenticator), self._heartbeat_s)
        ws = await revocable.open(request, self._heartbeat_s, self._max_msg_size)
        gauge = self._metrics.ws_clients.labels("bids")
        gauge.inc()

        tracing = self._tracing
        # Each message its own trace, linked to the connection's (which may stay open for days).
        links = Tracing.link_to_current() if tracing.enabled else []

        async def answer(raw: bytes, started: float) -> dict:
            try:
                if tracing.enabled:
                    with tracing.span("ws /v1/stream/bids message", kind=SERVER, context=Context(), links=links):
                        result = await gateway.answer(raw, "websocket", started)
                else:
                    result = await gateway.answer(raw, "websocket", started)
            finally:
                slots.release()
            body = result.body(nbr_body=True)
            if result.invalid is not None or result.outcome is None or body is None:
                return {"type": "error", "request_id": result.request_id, "agent_id": agent,
                        "message": f"invalid OpenRTB request: {result.invalid}"}
            return {"type": "bid_response", "request_id": result.request_id,
                    "has_bid": result.outcome.response is not None, "processing_time_us": result.elapsed_us,
                    "agent_id": agent, "response": msgspec.Raw(body)}

        async def reply(work: list[Awaitable[dict]], single: bool) -> None:
            answers = [await w for w in work]
            async with send_lock:
                if not ws.closed:
                    await send_json(ws, answers[0] if single else answers)

        async def close_at_shutdown() -> None:
            # The socket reads only what the client sends: at shutdown it is told here, after the answers in flight.
            await hub.shutting_down.wait()
            while tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)
            async with send_lock:
                await close_going_away(ws)

        closer = asyncio.create_task(close_at_shutdown())
        try:
            async for msg in ws:
                if hub.closed:
                    break
                if msg.type not in MESSAGE_TYPES:
                    continue
                if msg.type != WSMsgType.TEXT:
                    async with send_lock:
                        await send_error(ws, "send OpenRTB requests as JSON text frames", request_id="", agent_id=agent)
                    continue
                started = time.perf_counter()
                parts = _split(msg.data)
                work: list[Awaitable[dict]] = []
                for raw in parts if parts is not None else [msg.data.encode()]:
                    try:
                        limiter.check(principal, ip)  # every request is one, as on REST
                    except RateLimited as exc:
                        work.append(_answered({"type": "error", "request_id": "", "code": "rate_limited",
                                               "agent_id": agent, "message": exc.message}))
                        continue
                    await slots.acquire()  # bounded in-flight work: stop reading until a slot frees up
                    # An array's requests run side by side (so they share inference batches).
                    work.append(answer(raw, started) if parts is None else asyncio.create_task(answer(raw, started)))
                task = asyncio.create_task(reply(work, parts is None))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            closer.cancel()
            try:
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
                gauge.dec()
            finally:
                await revocable.release()  # a revoked key's 1008 (sent at once) is the close the client gets
                await close_going_away(ws)
        return ws


async def _answered(answer: dict) -> dict:
    return answer

