"""The gRPC server: our services plus standard health and reflection, in the aiohttp event loop.

Every call of our services passes one guard: credentials (`x-api-key` or `authorization: Bearer`
metadata, as on REST), the service's roles, the shared rate limits, and one mapping of errors to
status codes (a domain error to its status, anything else to INTERNAL with no traceback). Messages
larger than `grpc.max_message_bytes` are refused from their 5-byte prefix, before they are read (a stream
skips such a message unheld and answers it, as one that does not parse). A caller's deadline that has passed is
DEADLINE_EXCEEDED, a malformed `grpc-timeout` header INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import grpclib.server
from google.protobuf.message import DecodeError as ProtobufDecodeError
from grpclib.config import Configuration
from grpclib.const import Cardinality, Handler, Status
from grpclib.events import RecvRequest, SendTrailingMetadata, listen
from grpclib.exceptions import GRPCError
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.metadata import Deadline, decode_timeout, encode_grpc_message
from grpclib.reflection.service import ServerReflection
from grpclib.server import Server, Stream
from grpclib.utils import DeadlineWrapper

from app.auth import Authenticator, Principal
from app.certificates import CertificatePrincipals, peer_common_name
from app.errors import DomainError, Forbidden, InvalidInput, Unauthenticated, Unavailable
from app.ratelimit import RateLimiter
from app.runtime.metrics import Metrics
from app.runtime.tracing import SERVER, Tracing
from state.ports import StorageUnavailable, UnstorableValue

log = logging.getLogger("contrail.grpc")
_call: contextvars.ContextVar[tuple[str, float] | None] = contextvars.ContextVar("grpc_call", default=None)
# The guarded caller of the call being served, for services that limit work per stream message.
CALLER: contextvars.ContextVar[tuple[Principal, str]] = contextvars.ContextVar("grpc_caller")

_STATUS_BY_HTTP = {
    400: Status.INVALID_ARGUMENT, 401: Status.UNAUTHENTICATED, 402: Status.FAILED_PRECONDITION,
    403: Status.PERMISSION_DENIED, 408: Status.DEADLINE_EXCEEDED,
    404: Status.NOT_FOUND, 409: Status.FAILED_PRECONDITION, 410: Status.FAILED_PRECONDITION,
    413: Status.INVALID_ARGUMENT, 422: Status.FAILED_PRECONDITION, 429: Status.RESOURCE_EXHAUSTED,
    503: Status.UNAVAILABLE, 504: Status.DEADLINE_EXCEEDED,
}


# The codes that say the server failed, not the caller (what marks a span as an error).
_SERVER_FAULTS = frozenset({Status.INTERNAL, Status.UNKNOWN, Status.UNAVAILABLE, Status.DATA_LOSS,
                            Status.DEADLINE_EXCEEDED})


def grpc_error(exc: DomainError) -> GRPCError:
    """The gRPC status for a domain error (same errors, same meaning as REST)."""
    return GRPCError(_STATUS_BY_HTTP.get(exc.status, Status.INTERNAL), exc.message)


class MessageLimit:
    """How large a message may be, each way; one per process (the config's `grpc.max_message_bytes`)."""
    receive = 1_048_576
    send = 1_048_576


async def _recv_bounded(stream: Any, codec: Any, message_type: type) -> Any:
    """grpclib's recv_message, refusing a message from its length prefix before reading it, and
    answering a body that does not parse with INVALID_ARGUMENT instead of UNKNOWN."""
    try:
        meta = await stream.recv_data(5)
    except AssertionError:  # grpclib's way of saying the stream ended early
        raise GRPCError(Status.INVALID_ARGUMENT, "the stream ended inside a message prefix") from None
    if not meta:
        return None
    compressed, length = struct.unpack(">?I", meta)
    if compressed:
        raise RefusedMessage(Status.UNIMPLEMENTED, "compressed messages are not supported; send them uncompressed",
                             length=length)
    if length > MessageLimit.receive:
        raise RefusedMessage(Status.RESOURCE_EXHAUSTED,
                             f"message of {length} bytes exceeds the limit of {MessageLimit.receive} bytes",
                             length=length)
    try:
        data = await stream.recv_data(length)
    except AssertionError:
        raise GRPCError(Status.INVALID_ARGUMENT, "the stream ended inside a message") from None
    if len(data) != length:
        raise GRPCError(Status.INVALID_ARGUMENT, "the stream ended inside a message")
    try:
        return codec.decode(data, message_type)
    except (ProtobufDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(Status.INVALID_ARGUMENT, f"malformed {message_type.__name__}: {exc}") from None


async def _send_bounded(stream: Any, codec: Any, message: Any, message_type: type, *, end: bool = False) -> None:
    """grpclib's send_message, refusing a reply larger than the limit."""
    data = codec.encode(message, message_type)
    check_reply_size(len(data))
    await stream.send_data(struct.pack(">?I", False, len(data)) + data, end_stream=end)


def check_reply_size(length: int) -> None:
    if length > MessageLimit.send:
        raise GRPCError(Status.RESOURCE_EXHAUSTED,
                        f"reply of {length} bytes exceeds the limit of {MessageLimit.send} bytes")


class MalformedMessage(GRPCError):
    """A request message that a stream cannot take (it does not parse, or was refused from its prefix and skipped):
    a streaming method can answer it and read on."""


class RefusedMessage(GRPCError):
    """A request message refused from its 5-byte prefix, unread (over the size limit, or compressed): a unary call
    ends with its status; each_message skips its `length` bytes and yields it as a MalformedMessage."""

    def __init__(self, status: Status, message: str, *, length: int) -> None:
        super().__init__(status, message)
        self.length = length


# The streams that end on a message over the size limit instead of skipping it: StreamBids documents so
# (docs/api.md, and tests/integration/bidding/test_bad_input.py holds it); change it there before removing it here.
ENDED_BY_OVERSIZED = frozenset({"/campaign.bidding.v1.BiddingService/StreamBids"})
_SKIP_CHUNK = 65_536  # what a skipped message holds in memory at a time (and the HTTP/2 window lets in)


async def each_message(stream: Stream) -> AsyncIterator[Any]:
    """A stream's request messages in order until the client ends it. A message that does not parse, is compressed
    or is over the size limit comes as its MalformedMessage, for the method to answer before it reads on: one bad
    message never ends a stream."""
    while True:
        try:
            message = await stream.recv_message()
        except MalformedMessage as exc:
            yield exc
            continue
        except RefusedMessage as exc:
            if exc.status is Status.RESOURCE_EXHAUSTED and stream._method_name in ENDED_BY_OVERSIZED:
                raise
            if not await _skipped(stream, exc.length):
                raise  # the client ended the stream inside the message: the call ends with the message's error
            yield MalformedMessage(exc.status, exc.message)
            continue
        if message is None:
            return
        yield message


async def _skipped(stream: Stream, length: int) -> bool:
    """Reads a refused message's bytes, as its length prefix counts them, dropping them a chunk at a time; whether
    they all came (else the stream ended inside the message)."""
    while length:
        try:
            chunk = await stream._stream.recv_data(min(length, _SKIP_CHUNK))
        except AssertionError:  # grpclib's way of saying the stream ended early
            return False
        if not chunk:
            return False
        length -= len(chunk)
    return True


async def recv_one(stream: Stream) -> Any:
    """The one request message of a unary call."""
    message = await stream.recv_message()
    if message is None:
        raise GRPCError(Status.INVALID_ARGUMENT, "the call carried no request message")
    return message


# grpclib reads and writes every server-side message through these module-level functions
# (requirements.txt pins the version they are read from); it has no size limit of its own.
grpclib.server.recv_message = _recv_bounded
grpclib.server.send_message = _send_bounded


class _CallDeadline(DeadlineWrapper):
    """grpclib's DeadlineWrapper (utils.py), ending a call past its deadline with DEADLINE_EXCEEDED and a message.

    grpclib's own raises TimeoutError when the deadline has passed before the call starts (`grpc-timeout: 1n`),
    which request_handler logs as an error with a traceback and answers UNKNOWN; and a deadline that passes while
    the call runs gets DEADLINE_EXCEEDED with no message. A GRPCError is answered as it is, with nothing logged."""

    @contextlib.contextmanager
    def start(self, deadline: Deadline) -> Iterator[None]:
        left = deadline.time_remaining()
        if not left:
            raise GRPCError(Status.DEADLINE_EXCEEDED, "the call's deadline (grpc-timeout) had passed before it began")
        timer = asyncio.get_running_loop().call_later(left, self.cancel, GRPCError(
            Status.DEADLINE_EXCEEDED, "the call's deadline (grpc-timeout) passed before it was answered"))
        try:
            yield
        finally:
            timer.cancel()

    def __exit__(self, *exc_info: Any) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            if self.cancel_failed and isinstance(self._error, GRPCError):  # what grpclib logs for its TimeoutError
                log.error("a gRPC call went on after its deadline cancelled it", exc_info=exc_info)


_grpclib_request_handler = grpclib.server.request_handler


async def _request_handler(mapping: Any, _stream: Any, headers: list[tuple[str, str]], codec: Any,
                           status_details_codec: Any, dispatch: Any, release_stream: Callable[[], Any]) -> None:
    """grpclib's request_handler, refusing a malformed `grpc-timeout` header with INVALID_ARGUMENT that names it
    (grpclib answers it UNKNOWN, "Invalid grpc-timeout header")."""
    for name, value in headers:
        if name == "grpc-timeout":
            try:
                decode_timeout(value)
            except ValueError:
                try:
                    await grpclib.server._abort(_stream, 200, Status.INVALID_ARGUMENT, encode_grpc_message(
                        f"malformed grpc-timeout header {value[:40]!r}: send an integer and a unit, one of H, M, S, "
                        "m, u or n (e.g. 500m)"))
                except Exception:  # as grpclib's request_handler does (the client may have reset the stream)
                    log.exception("could not answer a gRPC call with a malformed grpc-timeout header")
                finally:
                    release_stream()
                return
    await _grpclib_request_handler(mapping, _stream, headers, codec, status_details_codec, dispatch, release_stream)


# grpclib serves each call through request_handler and times its deadline with DeadlineWrapper, both looked up in
# grpclib.server's namespace when a call comes (requirements.txt pins the version they are read from).
grpclib.server.request_handler = _request_handler
grpclib.server.DeadlineWrapper = _CallDeadline  # type: ignore[misc]


class Guard:
    """Serves a service's methods behind authentication, roles, rate limits and error mapping.

    A service declares `ROLES` (the roles that may call any of its methods; empty: any caller
    with valid credentials). A streaming call made with an API key ends UNAUTHENTICATED when the key is revoked
    (`_revocable`); a unary call, short, is checked as it starts only (it costs nothing more)."""

    def __init__(self, service: Any, authenticator: Authenticator, limiter: RateLimiter,
                 tracing: Tracing | None = None) -> None:
        self.service = service
        self._tracing = tracing or Tracing.off()
        self._authenticator = authenticator
        self._limiter = limiter
        self._roles: tuple[str, ...] = getattr(service, "ROLES", ())
        self._sessions = authenticator.sessions  # the streams open with each API key
        self.certificates: CertificatePrincipals | None = None  # set when tls.client_ca_file is

    def __mapping__(self) -> dict[str, Handler]:
        return {path: Handler(self._traced(path, self._guarded(
                    h.func if h.cardinality is Cardinality.UNARY_UNARY else self._revocable(h.func))),
                    h.cardinality, h.request_type, h.reply_type)
                for path, h in self.service.__mapping__().items()}

    def _revocable(self, func: Any) -> Any:
        """A streaming method, run (in `_guarded`, its caller known) held under the caller's API key: revoking the key
        cancels the call's task, and that cancellation (only that one) ends the call UNAUTHENTICATED with the reason."""
        sessions = self._sessions

        @functools.wraps(func)
        async def run(stream: Stream) -> None:
            principal, _ = CALLER.get()
            task = asyncio.current_task()
            if principal.kind != "api_key" or task is None:
                await func(stream)
                return
            revoked: list[str] = []

            def end(reason: str) -> None:
                if not revoked:
                    revoked.append(reason)
                    task.cancel()

            try:
                with sessions.held(principal.scope, "grpc", end):
                    await func(stream)
                    if revoked:  # revoked as the method returned: its cancellation, not delivered yet, lands here
                        await asyncio.sleep(0)
            except asyncio.CancelledError:
                if not revoked:
                    raise
            else:
                if not revoked:
                    return
            task.uncancel()
            raise GRPCError(Status.UNAUTHENTICATED, f"{revoked[0]}: the stream opened with it has ended") from None
        return run

    def _traced(self, path: str, call: Any) -> Any:
        """A server span around each call, under the caller's `traceparent` metadata; the call itself when off."""
        tracing = self._tracing
        if not tracing.enabled:
            return call
        service, _, method = path.strip("/").partition("/")

        @functools.wraps(call)
        async def traced(stream: Stream) -> None:
            with tracing.span(path.strip("/"), kind=SERVER, context=Tracing.extract(stream.metadata or {}),
                              attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}) as span:
                try:
                    await call(stream)
                except GRPCError as exc:
                    if span is not None:
                        span.set_attribute("rpc.grpc.status_code", exc.status.value)
                        if exc.status in _SERVER_FAULTS:
                            Tracing.failed(span, exc.status.name)
                    raise
        return traced

    def _guarded(self, func: Any) -> Any:
        @functools.wraps(func)
        async def call(stream: Stream) -> None:
            try:
                ip = (stream.peer.addr() or ("unknown",))[0]
                try:
                    principal = await self._caller(stream)
                except Unauthenticated:
                    self._limiter.failed_authentication(ip)  # guessing keys is rate limited
                    raise
                self._limiter.check(principal, ip)
                CALLER.set((principal, ip))
                await func(stream)
            except GRPCError:
                raise
            except DomainError as exc:
                raise grpc_error(exc) from None
            except StorageUnavailable as exc:
                raise grpc_error(Unavailable(f"storage is unavailable; try again shortly ({exc})")) from None
            except UnstorableValue as exc:
                raise grpc_error(InvalidInput(str(exc))) from None
            except (TimeoutError, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("unhandled error in gRPC call", extra={"method": func.__name__})
                raise GRPCError(Status.INTERNAL, "internal error; the server logs say what went wrong") from None
        return call

    async def _caller(self, stream: Stream) -> Principal:
        md: Mapping[str, Any] = stream.metadata or {}
        api_key, auth = md.get("x-api-key"), md.get("authorization")
        principal = await self._authenticator.identify(None if api_key is None else str(api_key),
                                                       None if auth is None else str(auth))
        if principal is None and self.certificates is not None:
            # Metadata credentials, when sent, decide; else a verified client certificate (mTLS) can.
            common_name = peer_common_name(stream.peer.cert())
            if common_name is not None:
                principal = self.certificates.principal(common_name)
        if principal is None:
            raise Unauthenticated("send an API key as x-api-key metadata (or a bearer token as authorization)")
        if self._roles and principal.role not in self._roles:
            raise Forbidden(f"needs role {' or '.join(self._roles)}")
        return principal


class GrpcServer:
    """Owns the grpclib Server, its health statuses and call metrics."""

    def __init__(self, services: Iterable[Any], metrics: Metrics, authenticator: Authenticator,
                 limiter: RateLimiter, max_message_bytes: int, keepalive_time_s: float = 10.0,
                 keepalive_timeout_s: float = 5.0, tracing: Tracing | None = None) -> None:
        self.services = list(services)
        MessageLimit.receive = MessageLimit.send = max_message_bytes
        self.statuses = {svc: ServiceStatus() for svc in self.services}
        health = Health({svc: [status] for svc, status in self.statuses.items()})
        # Health and reflection answer anyone (orchestrators and tools); our services need credentials.
        handlers = [Guard(svc, authenticator, limiter, tracing) for svc in self.services] + [health]
        self._guards = [h for h in handlers if isinstance(h, Guard)]
        # Every quiet connection is pinged each keepalive_time_s, with a call open or not, however many pings went
        # before (grpclib's defaults ping only while a call is open, then at most twice, 300 s apart: a peer that
        # answered one ping and vanished held its connection for minutes).
        self.server = Server(ServerReflection.extend(handlers),
                             config=Configuration(_keepalive_time=keepalive_time_s,
                                                  _keepalive_timeout=keepalive_timeout_s,
                                                  _keepalive_permit_without_calls=True,
                                                  _http2_max_pings_without_data=0,
                                                  _http2_min_sent_ping_interval_without_data=keepalive_time_s))
        self._metrics = metrics
        listen(self.server, RecvRequest, self._on_request)
        listen(self.server, SendTrailingMetadata, self._on_trailers)
        self.listening = False
        # Each call's task until it ends: a call whose connection is lost (the client went away, or stopped answering
        # keepalive pings) sends no trailers, and must still stop counting as in flight, or every stop would wait
        # its whole grace for it.
        self._calls: dict[asyncio.Task[Any], tuple[str, float]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    async def _on_request(self, event: RecvRequest) -> None:
        call = (event.method_name, time.perf_counter())
        _call.set(call)
        task = asyncio.current_task()
        if task is not None:
            self._calls[task] = call
            task.add_done_callback(self._ended)

    async def _on_trailers(self, event: SendTrailingMetadata) -> None:
        call = _call.get()
        if call is None:
            return
        _call.set(None)
        task = asyncio.current_task()
        if task is not None:
            self._calls.pop(task, None)
        self._observe(call, event.status.name)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        call = self._calls.pop(task, None)
        if call is not None:  # ended without its trailers: the connection was lost under it
            self._observe(call, Status.CANCELLED.name)

    def _observe(self, call: tuple[str, float], status: str) -> None:
        method, started = call
        self._metrics.grpc_calls.labels(method, status).inc()
        self._metrics.grpc_latency.labels(method).observe(time.perf_counter() - started)

    def accept_certificates(self, certificates: CertificatePrincipals) -> None:
        """Let verified client certificates authenticate callers of our services (tls.client_principals)."""
        for guard in self._guards:
            guard.certificates = certificates

    async def start(self, host: str, port: int, reuse_port: bool = False, ssl: ssl.SSLContext | None = None) -> None:
        await self.server.start(host, port, reuse_address=True, reuse_port=reuse_port or None, ssl=ssl)
        self.listening = True
        self.set_serving(True)

    def set_serving(self, serving: bool) -> None:
        for status in self.statuses.values():
            status.set(serving)

    @property
    def port(self) -> int:
        server = self.server._server
        sockets = server.sockets if isinstance(server, asyncio.Server) else ()
        return sockets[0].getsockname()[1] if sockets else 0

    async def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING, let in-flight calls finish (up to grace_s), then close."""
        self.set_serving(False)
        deadline = time.monotonic() + grace_s
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.listening = False
        self.server.close()
        await self.server.wait_closed()
