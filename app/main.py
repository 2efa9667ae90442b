"""The composition root: create_app(config) wires everything, and only here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.smtp.sink import start_sink
from adapters.tls import ServerTls, configure_outbound
from app.bidding.gateway import agent_id
from app.certificates import CertificatePrincipals
from app.config import Config
from app.errors import CannotStart
from app.exports import Exports
from app.platform import Platform
from app.runtime.clock import Clock
from handlers.rest.admin import AdminApi
from handlers.rest.analytics import AnalyticsApi
from handlers.rest.auth import AuthApi
from handlers.rest.bidding import BiddingApi
from handlers.rest.campaigns import CampaignsApi
from handlers.rest.channels import ChannelsApi
from handlers.rest.common import STATIC_ROUTE
from handlers.rest.dsp import DspApi
from handlers.rest.exports import ExportsApi
from handlers.rest.loyalty import LoyaltyApi
from handlers.rest.ltv import LtvApi
from handlers.rest.middleware import core_middleware, idempotency_middleware, tracing_middleware
from handlers.rest.models import ModelsApi
from handlers.rest.openapi import OpenApiDocument
from handlers.rest.platform import PlatformApi
from handlers.rest.policies import PoliciesApi
from handlers.rest.privacy import PrivacyApi
from handlers.rest.reco import RecoApi
from handlers.rest.retail import RetailApi
from handlers.rpc.bidding import BiddingService
from handlers.rpc.platform import PlatformService
from handlers.rpc.ranking import RankingService
from handlers.rpc.server import GrpcServer
from handlers.rpc.syncvalue import SyncValueService
from handlers.ws.bids import BidStream
from handlers.ws.events import EventStream
from handlers.ws.inapp import InAppStream

if TYPE_CHECKING:
    from handlers.nats.agents import NatsAgents

log = logging.getLogger("contrail")
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# What the resource lifecycles below and the tests reach the services by; handlers get theirs in constructors.
PLATFORM = web.AppKey("platform", Platform)
GRPC = web.AppKey("grpc", GrpcServer)
TLS = web.AppKey("tls", ServerTls)  # present when tls.cert_file is set
NATS: web.AppKey[NatsAgents] = web.AppKey("nats")  # NATS's client is imported only when nats.url is set


def create_app(config: Config, *, clock: Clock | None = None, platform: Platform | None = None) -> web.Application:
    """Build the aiohttp application with every service, route and resource lifecycle; on `platform` when the
    caller built the services itself (serve keeps them to publish its address and to drain)."""
    p = platform or Platform(config, clock)
    p.load_after_ready = True  # ready once requests can be answered; the rest loads in the background
    config = p.config  # with the node's own secrets where the configuration leaves them empty
    middlewares = [core_middleware(config.server, p.authenticator, p.limiter, p.metrics),
                   idempotency_middleware(p.idempotency)]
    if p.tracing.enabled:  # absent when off: requests pay nothing for it
        middlewares.insert(0, tracing_middleware(p.tracing))
    app = web.Application(middlewares=middlewares, client_max_size=config.server.max_body_bytes)
    app[PLATFORM] = p

    node = config.server.node_id
    bidding_rpc = BiddingService(p.bid_gateway, p.limiter, agent_id(node, "grpc"), config.bidding.stream_max_in_flight)
    services = [PlatformService(p.health), bidding_rpc, RankingService(p.ranker), SyncValueService(p.ltv, p.limiter)]
    grpc = GrpcServer(services,
                      p.metrics, p.authenticator, p.limiter, config.grpc.max_message_bytes,
                      config.grpc.keepalive_time_s, config.grpc.keepalive_timeout_s, tracing=p.tracing)
    app[GRPC] = grpc
    configure_outbound(config.tls)
    if config.tls.enabled:
        app[TLS] = ServerTls(config.tls)
        if config.tls.client_ca_file:
            grpc.accept_certificates(CertificatePrincipals(config.tls.client_principals, p.api_keys))
    p.health.add_check("grpc", lambda: grpc.listening)
    # One drain() (at the signal, or from on_shutdown) turns readiness, gRPC health and streams off together.
    p.health.on_drain(lambda: grpc.set_serving(False))
    p.health.on_drain(p.hub.close)
    p.health.on_drain(p.inapp_hub.close)

    # The edges: each handler class gets the services it calls (the OpenAPI document walks these routes last).
    PlatformApi(p.health, p.metrics).register(app.router)
    AuthApi(p.accounts).register(app.router)
    AdminApi(p.admin).register(app.router)
    AnalyticsApi(p.event_log).register(app.router)
    BiddingApi(p.bid_gateway, p.notices, p.profiles, p.model, p.providers, p.batcher, p.clock,
               nobid_body=config.bidding.nobid_body, agent_id=agent_id(node, "rest")).register(app.router)
    RetailApi(p.catalog, p.offers, p.ranker, p.orders, p.order_store,
              config.payments.webhook_secret, p.clock, orders_loaded=p.order_store.loaded).register(app.router)
    LoyaltyApi(p.loyalty, p.policies.check_signal).register(app.router)
    ChannelsApi(p.activation, p.ingest, p.suppression, p.email, p.mailbox, p.email_analytics).register(app.router)
    RecoApi(p.reco).register(app.router)
    LtvApi(p.ltv).register(app.router)
    PrivacyApi(p.erasure).register(app.router)
    CampaignsApi(p.campaigns, p.workflow, p.reports, p.campaigns_domain.tasks, p.campaigns_domain.assets,
                 p.clock).register(app.router)
    PoliciesApi(p.policies).register(app.router)
    ModelsApi(p.learning.learners, p.bid_model).register(app.router)
    DspApi(p.dsp.router, p.dsp.wins, p.dsp.status).register(app.router)
    ExportsApi(Exports(p.reports, p.order_store, p.loyalty, p.clock), p.clock).register(app.router)
    ws, max_msg_size = config.websocket, config.server.max_body_bytes
    EventStream(p.hub, p.metrics, ws.max_lag_s, ws.heartbeat_s, max_msg_size, p.tracing,
                sessions=p.sessions, authenticator=p.authenticator).register(app.router)
    BidStream(p.bid_gateway, p.hub, p.limiter, p.metrics, config.bidding.stream_max_in_flight, ws.heartbeat_s,
              max_msg_size, agent_id(node, "ws"), p.tracing, sessions=p.sessions,
              authenticator=p.authenticator).register(app.router)
    InAppStream(p.inapp, p.metrics, ws.max_lag_s, ws.heartbeat_s, max_msg_size, p.tracing, sessions=p.sessions,
                authenticator=p.authenticator).register(app.router)
    OpenApiDocument(app.router).register(app.router)
    _setup_static(app)

    # Resources open in dependency order and close in reverse.
    app.cleanup_ctx.append(_databases)
    app.cleanup_ctx.append(_analytics_writer)
    app.cleanup_ctx.append(_grpc_server)
    if config.smtp.embedded_sink:
        app.cleanup_ctx.append(_smtp_sink)
    app.cleanup_ctx.append(_websocket_hub)
    app.cleanup_ctx.append(_background_tasks)
    if config.nats.url:  # after the tasks the bid pipeline runs on; closed (drained) before them
        from handlers.nats.agents import NatsAgents

        app[NATS] = NatsAgents(config.nats, p.bid_gateway, p.ingest, p.authenticator, p.limiter, p.metrics,
                               agent_id(node, "nats"), config.bidding.stream_max_in_flight, p.tracing)
        p.health.add_check("nats", lambda: app[NATS].connected)
        p.health.on_drain(app[NATS].stop_taking)
        app.cleanup_ctx.append(_nats_agents)
    app.cleanup_ctx.append(_steady_heap)
    app.on_shutdown.append(_begin_drain)
    return app


def _setup_static(app: web.Application) -> None:
    """static/ at /: the web UI. Registered last, so API routes always win."""
    root = STATIC_DIR.resolve()

    async def static_file(request: web.Request) -> web.FileResponse:
        name = request.match_info["path"] or "index.html"
        try:
            target = (root / name).resolve()
            found = target.is_relative_to(root) and target.is_file()
        except (ValueError, OSError):  # a null byte, a name too long for the file system
            found = False
        if not found:
            raise web.HTTPNotFound()  # the middleware tells "no such file" from "GET not allowed here"
        return web.FileResponse(target, headers={"Cache-Control": "no-cache"})

    app.router.add_get(STATIC_ROUTE.replace("{path}", "{path:.*}"), static_file)


async def _databases(app: web.Application) -> AsyncIterator[None]:
    p = app[PLATFORM]
    if p.changes is not None:  # hearing the other nodes from before this one loads: nothing falls in between
        try:
            await p.changes.start()
        except Exception as exc:
            raise CannotStart(f"NATS at {p.config.nats.url} (nats.url) for the other nodes' record changes: "
                              f"{type(exc).__name__}: {exc}") from None
    applied = await p.open_storage()
    if applied:
        log.info("migrations applied", extra={"versions": applied})
    if p.changes is not None:
        p.changes.loaded()
    yield
    if p.changes is not None:
        await p.changes.close()
    await p.records_db.close()
    if p.redis is not None:
        await p.redis.close()
    if p.tracing.enabled:  # last: the spans of everything closed above go out too
        await asyncio.to_thread(p.tracing.shutdown)


async def _analytics_writer(app: web.Application) -> AsyncIterator[None]:
    p = app[PLATFORM]
    task = asyncio.create_task(p.event_log.run(), name="event_log_writer")
    p.health.add_check("event_log_writer", lambda: not task.done())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await p.event_log.flush()
    await p.events_db.close()


async def _grpc_server(app: web.Application) -> AsyncIterator[None]:
    config = app[PLATFORM].config
    grpc = app[GRPC]
    tls = app.get(TLS)
    await grpc.start(config.grpc.host, config.grpc.port, reuse_port=config.server.reuse_port,
                     ssl=tls.grpc if tls is not None else None)
    log.info("gRPC listening", extra={"host": config.grpc.host, "port": grpc.port})
    yield
    await grpc.stop(config.server.shutdown_grace_s)
    for remote in (app[PLATFORM].remote_ranker, app[PLATFORM].ltv_domain.remote):
        if remote is not None:
            remote.close()


async def _smtp_sink(app: web.Application) -> AsyncIterator[None]:
    """The embedded SMTP sink (`smtp.embedded_sink`): mail goes nowhere but /v1/admin/mailbox."""
    smtp = app[PLATFORM].config.smtp
    server = await start_sink(smtp.host, smtp.port, app[PLATFORM].mailbox)
    # Port 0: the system's choice, which the relay then sends to (no port picked in advance and lost in a race).
    port = server.sockets[0].getsockname()[1] if smtp.port == 0 else smtp.port
    app[PLATFORM].channels.relay.use_port(port)
    log.info("SMTP sink listening", extra={"host": smtp.host, "port": port})
    yield
    server.close()
    await server.wait_closed()


async def _websocket_hub(app: web.Application) -> AsyncIterator[None]:
    yield
    app[PLATFORM].hub.close()
    app[PLATFORM].inapp.hub.close()


async def _background_tasks(app: web.Application) -> AsyncIterator[None]:
    p = app[PLATFORM]
    p.supervisor.start()
    p.health.started = True
    yield
    # What the queued bus subscribers were handed still gets handled, within the grace period.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(p.bus.idle(), p.config.server.shutdown_grace_s)
    await p.supervisor.stop()
    # What the stopped tasks would have done next: profile updates written behind, and the recommendation features
    # saved, so that the next start replays nothing; then the other services' sessions.
    await p.ingest.flush_profiles()
    if p.config.reco.checkpoint_interval_s > 0:
        try:
            await p.reco.checkpoint()
        except Exception as exc:  # the last periodic checkpoint serves; the start replays what came after it
            log.warning("no recommendation checkpoint at shutdown", extra={"error": str(exc)})
    await p.close_outbound(p.config.server.shutdown_grace_s)


# A young collection runs when the tracked objects allocated since the last one, less those freed,
# pass this. At CPython's 700 the objects of the requests in flight alone crossed it, so under
# load a young pass ran every few requests, found them all alive (about 270 us a pass) and
# promoted them for the older passes to walk again: 4 us per bid. Requests in flight never hold
# 20,000 (64 bids hold about 6,000), so young passes now come only as the heap really grows.
YOUNG_GC_THRESHOLD = 20_000


async def _nats_agents(app: web.Application) -> AsyncIterator[None]:
    """The NATS bid agents and ingest (`nats.url`); closing drains them: no new messages, in-flight ones answered."""
    agents = app[NATS]
    await agents.start()
    yield
    await agents.close(app[PLATFORM].config.server.shutdown_grace_s)


async def _steady_heap(app: web.Application) -> AsyncIterator[None]:
    """Take what startup loaded (catalog, campaigns, model, caches) out of the collector's full passes,
    raise the young generation's threshold, and time every collection from then on
    (`contrail_gc_pause_seconds`); what is loaded after readiness (the live orders, profile ids) joins them
    once it is loaded.

    Those objects live as long as the process, yet every full collection walked them all:
    under held ingest load the loop stalled 35-45 ms at each one, which was the whole p99.
    No collection first: it walked every object of the start (~0.1 s before readiness) to find next to no
    garbage (8 objects after the imports); the one after the loads walks only what came since.
    """
    gc.freeze()
    later = asyncio.create_task(_freeze_when_loaded(app[PLATFORM]), name="freeze_when_loaded")
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *thresholds[1:])
    pauses = [app[PLATFORM].metrics.gc_pauses.labels(str(g)) for g in range(3)]
    started = 0.0

    def timed(phase: str, info: dict) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            pauses[info["generation"]].observe(time.perf_counter() - started)
    gc.callbacks.append(timed)
    yield
    later.cancel()
    await asyncio.gather(later, return_exceptions=True)
    gc.callbacks.remove(timed)
    gc.set_threshold(*thresholds)
    gc.unfreeze()


async def _freeze_when_loaded(p: Platform) -> None:
    """Once what loads after readiness is loaded: collect what the loads left behind, freeze the rest."""
    await p.loaded_after_ready()
    gc.collect()
    gc.freeze()


async def _begin_drain(app: web.Application) -> None:
    """First step of shutdown: readiness off, gRPC NOT_SERVING, streams asked to finish."""
    app[PLATFORM].health.drain()
