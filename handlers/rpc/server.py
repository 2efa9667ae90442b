"""The gRPC server: our services plus standard health and reflection, in the aiohttp event loop."""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Iterable

from grpclib.const import Status
from grpclib.events import RecvRequest, SendTrailingMetadata, listen
from grpclib.exceptions import GRPCError
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection
from grpclib.server import Server

from app.errors import DomainError
from app.metrics import Metrics

_call: contextvars.ContextVar[tuple[str, float] | None] = contextvars.ContextVar("grpc_call", default=None)

_STATUS_BY_HTTP = {
    400: Status.INVALID_ARGUMENT, 401: Status.UNAUTHENTICATED, 403: Status.PERMISSION_DENIED,
    404: Status.NOT_FOUND, 409: Status.FAILED_PRECONDITION, 410: Status.FAILED_PRECONDITION,
    413: Status.INVALID_ARGUMENT, 422: Status.FAILED_PRECONDITION, 429: Status.RESOURCE_EXHAUSTED,
    503: Status.UNAVAILABLE, 504: Status.DEADLINE_EXCEEDED,
}


def grpc_error(exc: DomainError) -> GRPCError:
    """The gRPC status for a domain error (same errors, same meaning as REST)."""
    return GRPCError(_STATUS_BY_HTTP.get(exc.status, Status.INTERNAL), exc.message)


class GrpcServer:
    """Owns the grpclib Server, its health statuses and call metrics."""

    def __init__(self, services: Iterable[object], metrics: Metrics) -> None:
        self.services = list(services)
        self.statuses = {svc: ServiceStatus() for svc in self.services}
        health = Health({svc: [status] for svc, status in self.statuses.items()})
        handlers = self.services + [health]
        self.server = Server(ServerReflection.extend(handlers))
        self._metrics = metrics
        listen(self.server, RecvRequest, self._on_request)
        listen(self.server, SendTrailingMetadata, self._on_trailers)
        self.listening = False
        self.in_flight = 0

    async def _on_request(self, event: RecvRequest) -> None:
        self.in_flight += 1
        _call.set((event.method_name, time.perf_counter()))

    async def _on_trailers(self, event: SendTrailingMetadata) -> None:
        call = _call.get()
        if call is None:
            return
        method, started = call
        _call.set(None)
        self.in_flight -= 1
        self._metrics.grpc_calls.labels(method, event.status.name).inc()
        self._metrics.grpc_latency.labels(method).observe(time.perf_counter() - started)

    async def start(self, host: str, port: int) -> None:
        await self.server.start(host, port, reuse_address=True)
        self.listening = True
        self.set_serving(True)

    def set_serving(self, serving: bool) -> None:
        for status in self.statuses.values():
            status.set(serving)

    @property
    def port(self) -> int:
        sockets = self.server._server.sockets if self.server._server else []  # noqa: SLF001
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
