"""HTTP connections that cannot starve the server: a cap on open connections, and a deadline for a
request's headers.

aiohttp waits for a request's headers for as long as the connection stays open, and accepts
connections until the process runs out of file descriptors: a few thousand slow clients (one
header line every few seconds) then take every endpoint down, health probes included. Here a
connection beyond `server.max_connections` is answered 503 and closed at once, and one whose
headers are not complete `server.header_timeout_s` after it opened (or after its first byte,
for the next request on a kept-alive connection) is closed. Body reads have their own
deadline (`server.body_timeout_s`, in the middleware).

Built on aiohttp's RequestHandler and Server (requirements.txt pins the version read from).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from app.config import ServerConfig
from app.runtime.metrics import Metrics
from handlers.rest.common import encode_json

log = logging.getLogger("contrail.http")

_BUSY = encode_json({"error": {"code": "unavailable", "message": "too many open connections; retry shortly",
                               "details": None}})
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                 b"Connection: close\r\nContent-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY)
# File descriptors kept for what is not a client connection: databases, gRPC, SMTP, logs.
RESERVED_FDS = 128


class GuardedHandler(RequestHandler):
    """A connection with a header deadline, refused with 503 when the server is at its cap."""

    __slots__ = ("_header_timer",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._header_timer: asyncio.TimerHandle | None = None
        server = self._manager
        assert isinstance(server, GuardedServer)
        super().connection_made(transport)
        if len(server.connections) > server.max_connections:
            server.closed.labels("max_connections").inc()
            transport.write(BUSY_RESPONSE)  # type: ignore[attr-defined]
            self.force_close()
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages or self._waiter is None:  # a whole request arrived, or one is being served
            self._disarm()
        else:
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """What aiohttp answers itself (a request it cannot parse, a body not in its Content-Encoding),
        in Contrail's error envelope, logged without a traceback when the client is at fault."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started; the connection is closed")
        if status < 500:
            text = getattr(exc, "message", None) or message or HTTPStatus(status).phrase
            detail = " ".join(str(text).split())
            if isinstance(exc, ContentEncodingError):  # its message names the encoding
                detail = f"the body does not decode as its Content-Encoding says ({detail})"
            log.info("unparseable request", extra={"status": status, "detail": detail[:200]})
            error: dict[str, Any] = {"code": "bad_request", "message": f"the request could not be read: {detail}",
                                     "details": None}
            unsupported = _unsupported_encoding(exc)
            if unsupported is not None:  # a coding this server has no decoder for (RFC 9110 15.5.16: 415)
                status = 415
                error = {"code": "unsupported_media_type", "details": {"accepted": ["gzip", "deflate"]},
                         "message": f"Content-Encoding {unsupported} is not supported: send the body with gzip, "
                                    "deflate or no Content-Encoding"}
        else:
            log.error("error handling request", exc_info=exc)
            error = {"code": "internal", "message": "internal error; the server logs say what went wrong",
                     "details": None}
        response = web.Response(status=status, body=encode_json({"error": error}), content_type="application/json")
        response.force_close()
        return response

    def _arm(self) -> None:
        if self._header_timer is None:
            server = self._manager
            assert isinstance(server, GuardedServer)
            self._header_timer = self._loop.call_later(server.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        server = self._manager
        if isinstance(server, GuardedServer):
            server.closed.labels("slow_headers").inc()
        self.force_close()
        if self.transport is not None:
            self.transport.close()


class GuardedServer(web.Server):
    """aiohttp's connection factory, making GuardedHandlers."""

    max_connections: int
    header_timeout_s: float
    closed: Any  # contrail_http_connections_closed{reason}

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections are capped and whose header reads have a deadline; `metrics` counts
    the open connections and those it closes."""

    def __init__(self, app: web.Application, config: ServerConfig, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=config.keepalive_timeout_s, **kwargs)
        self._max_connections = connection_cap(config.max_connections)
        self._header_timeout_s = config.header_timeout_s
        self._metrics = metrics

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The Server aiohttp built, with our factory method: its own state and arguments are kept.
        server.__class__ = GuardedServer
        assert isinstance(server, GuardedServer)
        server.max_connections = self._max_connections
        server.header_timeout_s = self._header_timeout_s
        metrics = self._metrics
        server.closed = metrics.http_closed
        metrics.http_connections.set_function(lambda: len(server._connections))
        return server


def connection_cap(configured: int) -> int:
    """The configured cap, lowered to what the open-file limit allows (raised to its hard limit first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(1, min(configured, soft - RESERVED_FDS))


class QuietRepeats:
    """An event loop exception handler that logs a repeating message (`socket.accept() out of system
    resource` at every accept while descriptors run out) once per interval, with the count it hid."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self._interval = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        now = time.monotonic()
        last, hidden = self._last.get(message, (-self._interval, 0))
        if now - last < self._interval:
            self._last[message] = (last, hidden + 1)
            return
        self._last[message] = (now, 0)
        if len(self._last) > 1000:
            self._last.clear()
        if hidden:
            context = {**context, "message": f"{message} (and {hidden} more times in the last {self._interval:g}s)"}
        loop.default_exception_handler(context)


def _unsupported_encoding(exc: BaseException | None) -> str | None:
    """The content coding aiohttp refused for want of its optional decoder (br without Brotli, zstd without
    backports.zstd), or None."""
    if not isinstance(exc, ContentEncodingError) or "Please install" not in str(exc):
        return None
    return "br" if "(br)" in str(exc) else "zstd" if "(zstd)" in str(exc) else "this"
