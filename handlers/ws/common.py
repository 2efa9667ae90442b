"""Websocket plumbing shared by every stream: opening, the bounded send pump, closing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from app.auth import Authenticator, Principal
from app.errors import Unauthenticated
from app.hub import Subscription
from app.jsondepth import MAX_DEPTH, nesting_exceeds, refuse_left_open
from app.sessions import Sessions
from handlers.rest.common import CREDENTIALS

log = logging.getLogger("contrail.ws")
_encode = msgspec.json.Encoder().encode

MESSAGE_TYPES = (WSMsgType.TEXT, WSMsgType.BINARY)  # what a client sends; the rest are control frames
CLOSE_TOO_SLOW = 4008  # application close code: the client fell too far behind


async def open_socket(request: web.Request, heartbeat_s: float, max_msg_size: int) -> web.WebSocketResponse:
    """Accept the handshake: pings every `heartbeat_s` (`websocket.heartbeat_s`), client messages up to
    `max_msg_size` bytes (`server.max_body_bytes`)."""
    # timeout bounds the close handshake, so shutdown never waits long on a silent client.
    ws = web.WebSocketResponse(heartbeat=heartbeat_s, timeout=2.0, max_msg_size=max_msg_size)
    await ws.prepare(request)
    return ws


class Revocable:
    """A socket that ends when the API key it was opened with is revoked: it is closed at once with 1008 (policy
    violation) and the reason, and what feeds it (`stopping`) stops, so nothing is sent after. A key revoked lately
    is refused (401) before the handshake. A socket opened with a bearer token is not held: its credentials are
    checked again every `recheck_s` (`recheck`, the authentication the socket opened with), and it is closed alike
    once they no longer authenticate (the token expired, the account was deleted or its role changed).

    `open` holds the socket (under the key's scope) and opens it; `release`, as the stream ends, waits for the
    revocation's close, if any (so that it is the close the client gets), and lets go of it."""

    def __init__(self, sessions: Sessions, principal: Principal | None,
                 recheck: Callable[[], Awaitable[object]] | None = None, recheck_s: float = 20.0) -> None:
        self.reason: str | None = None  # why the socket was ended (its key was revoked, its token expired)
        self._ws: web.WebSocketResponse | None = None
        self._stop: Callable[[], None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._hold: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        self._recheck = recheck if principal is not None and principal.kind != "api_key" else None
        self._recheck_s = recheck_s
        self._rechecking: asyncio.Task[None] | None = None
        if principal is not None and principal.kind == "api_key":
            self._hold = sessions.held(principal.scope, "websocket", self._end)

    async def open(self, request: web.Request, heartbeat_s: float, max_msg_size: int) -> web.WebSocketResponse:
        """Hold, then accept the handshake (open_socket); a key revoked during the handshake closes it at once."""
        self._hold.__enter__()
        try:
            ws = await open_socket(request, heartbeat_s, max_msg_size)
        except BaseException:
            self._hold.__exit__(None, None, None)
            raise
        self._ws = ws
        if self.reason is not None:
            self._close()
        elif self._recheck is not None:
            self._rechecking = asyncio.get_running_loop().create_task(self._check_again(self._recheck))
        return ws

    async def _check_again(self, recheck: Callable[[], Awaitable[object]]) -> None:
        while self.reason is None:
            await asyncio.sleep(self._recheck_s)
            try:
                await recheck()
            except Unauthenticated as exc:
                self._end(f"credentials no longer valid: {exc.message}")
            except Exception:  # a store that cannot be read now: the socket stays, and is checked again later
                log.warning("could not check a websocket's credentials again", exc_info=True)

    def stopping(self, stop: Callable[[], None]) -> None:
        """What stops the socket's messages (a subscription's) when the key is revoked (now, if it was)."""
        self._stop = stop
        if self._closing is not None:
            stop()

    async def release(self) -> None:
        """The stream ended: wait for the revocation's close, if any, and stop holding the socket."""
        if self._rechecking is not None:
            self._rechecking.cancel()
        try:
            if self._closing is not None:
                with contextlib.suppress(Exception):
                    await self._closing
        finally:
            self._hold.__exit__(None, None, None)

    def _end(self, reason: str) -> None:
        self.reason = reason
        if self._ws is not None:
            self._close()

    def _close(self) -> None:
        assert self._ws is not None and self.reason is not None
        if self._closing is not None:
            return
        # The close starts first (at its first step it marks the socket closed and sends the close frame, so nothing
        # is sent after it, and the stream's own close is skipped), then what feeds the socket stops.
        self._closing = asyncio.get_running_loop().create_task(close_revoked(self._ws, self.reason))
        if self._stop is not None:
            self._stop()


def recheck(request: web.Request, authenticator: Authenticator | None) -> Callable[[], Awaitable[object]] | None:
    """How a stream's socket checks the credentials it was opened with again (Revocable); None without them."""
    credentials = request.get(CREDENTIALS)
    if authenticator is None or credentials is None:
        return None
    return lambda: authenticator.identify(*credentials)


async def close_revoked(ws: web.WebSocketResponse, reason: str) -> None:
    if not ws.closed:
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode())


def stop_subscription(sub: Subscription) -> None:
    """Deliver nothing more: what is queued is dropped, nothing more is queued, and the pump is woken to end."""
    sub.unsubscribe()
    sub.queue.clear()
    sub.close()


class BadMessage(Exception):
    """A client message that cannot be used; the stream answers it with an error and goes on."""


def decode_message(msg: WSMessage, decode: Callable[[str], Any]) -> Any:
    """A text frame's JSON through `decode`, or BadMessage saying what is wrong with it."""
    if msg.type != WSMsgType.TEXT:
        raise BadMessage("send JSON text frames; binary frames are not accepted")
    if nesting_exceeds(msg.data):
        raise BadMessage(f"JSON nests deeper than {MAX_DEPTH} levels")
    try:
        refuse_left_open(msg.data)
        return decode(msg.data)
    except msgspec.ValidationError as exc:
        raise BadMessage(f"invalid message: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadMessage(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise BadMessage("JSON is nested too deeply") from None


async def send_error(ws: web.WebSocketResponse, message: str, **fields: Any) -> None:
    await send_json(ws, {"type": "error", **fields, "message": message})


async def send_json(ws: web.WebSocketResponse, message: Any) -> None:
    await ws.send_str(_encode(message).decode())


async def pump(request: web.Request, ws: web.WebSocketResponse, sub: Subscription, max_lag_s: float,
               metrics) -> None:
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
            await _drop_slow_client(request, ws, sub, metrics)
            return
        try:
            for message in batch:
                await asyncio.wait_for(ws.send_str(message), max_lag_s)
            sub.sent()
        except TimeoutError:
            await _drop_slow_client(request, ws, sub, metrics)
            return
        except ConnectionResetError:
            return


async def end_subscription(ws: web.WebSocketResponse, sub: Subscription, sender: asyncio.Task, gauge) -> None:
    """Tear down a pumped stream: stop the subscription, let the pump finish, close the socket."""
    sub.close()
    sub.unsubscribe()
    gauge.dec()
    await sender
    await close_going_away(ws)


async def _drop_slow_client(request: web.Request, ws: web.WebSocketResponse, sub: Subscription, metrics) -> None:
    """Free the client's queue at once; close politely if the socket allows, else abort it."""
    metrics.ws_disconnects.labels(sub.stream).inc()
    sub.close()
    sub.unsubscribe()
    try:
        await asyncio.wait_for(ws.close(code=CLOSE_TOO_SLOW, message=b"client too slow"), 1.0)
    except (TimeoutError, ConnectionResetError):
        pass
    if request.transport is not None and not ws.closed:
        request.transport.abort()


async def close_going_away(ws: web.WebSocketResponse) -> None:
    if not ws.closed:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
