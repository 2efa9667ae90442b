"""Liveness, readiness, metrics, and the trivial baseline endpoint."""

from __future__ import annotations

import msgspec
from aiohttp import web

from app.runtime.health import Health, ReadyReport
from app.runtime.metrics import Metrics
from handlers.rest.common import endpoint, json_response


class Pong(msgspec.Struct):
    status: str


class Live(msgspec.Struct):
    status: str


_PONG = json_response(Pong("ok")).body


class PlatformApi:
    """The baseline ping, the probes and the metrics scrape."""

    def __init__(self, health: Health, metrics: Metrics) -> None:
        self._health = health
        self._metrics = metrics

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/ping", self.ping)
        router.add_get("/health/live", self.live)
        router.add_get("/health/ready", self.ready)
        router.add_get("/metrics", self.metrics)

    @endpoint("Trivial endpoint: the baseline every benchmark is measured against", tags=("platform",),
              response=Pong)
    async def ping(self, request: web.Request, principal) -> web.Response:
        return web.Response(body=_PONG, content_type="application/json")

    @endpoint("Liveness: the process is up and its event loop answers", tags=("platform",), response=Live)
    async def live(self, request: web.Request, principal) -> web.Response:
        return json_response(Live("ok"))

    @endpoint("Readiness: databases open, gRPC listening, background tasks running, not draining",
              tags=("platform",), response=ReadyReport, also=(503,),
              description="Ready means requests are answered correctly, not that everything is loaded: after a "
                          "start the live orders and the ids of users with a stored profile load in the background "
                          "(tasks.warm_up is \"running\" until they are); meanwhile retail's requests (but the "
                          "order list) wait for the live orders and profile lookups read the store.",
              descriptions={503: "Not ready (the report says why), or too many open connections (the error)"})
    async def ready(self, request: web.Request, principal) -> web.Response:
        report = self._health.report()
        return json_response(report, status=200 if report.ready else 503)

    @endpoint("Prometheus metrics in text exposition format", tags=("platform",), response=str,
              content_type="text/plain; version=0.0.4")
    async def metrics(self, request: web.Request, principal) -> web.Response:
        body = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
