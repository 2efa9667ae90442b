"""Builds DSP routing: one adapter and breaker per configured DSP, the router, wins and status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.http.dsp import DspSession, build_adapter
from adapters.sqlite.dsp import SqliteDspWinStore
from app.bidding.gateway import BidAnswer, BidGateway
from app.dsp.ports import DspAdapter
from app.dsp.router import DspLink, DspRouter
from app.dsp.status import DspStatus
from app.dsp.wins import DspWins
from app.infra import Infra
from app.runtime.breaker import CircuitBreaker


@dataclass
class Dsp:
    store: SqliteDspWinStore
    session: DspSession
    router: DspRouter
    wins: DspWins
    status: DspStatus

    async def close(self) -> None:
        """Let the notices being forwarded finish, then close the DSPs' connections."""
        await self.wins.drain()
        await self.session.close()


def build(infra: Infra, gateway: BidGateway, campaign_of: Callable[[str, str], str | None],
          held: Callable[[str, str], bool] | None = None) -> Dsp:
    """`campaign_of(platform, cid)`: the campaign whose line item on that DSP a bid's `cid` names; `held(platform,
    cid)`: whether that campaign holds the DSP's bids back (it is not live)."""
    config, clock, metrics = infra.config, infra.clock, infra.metrics
    d = config.dsp
    session = DspSession()
    store = SqliteDspWinStore(infra.records_db)
    links: list[DspLink] = []
    for platform in d.platforms:
        gauge = metrics.dsp_breaker.labels(platform.name)
        gauge.set(CircuitBreaker.CLOSED)
        breaker = CircuitBreaker(clock, failures=d.breaker_failures, open_s=d.breaker_open_s,
                                 successes=d.breaker_successes, on_change=gauge.set)
        links.append(DspLink(platform, build_adapter(platform, session), breaker))
    adapters: dict[str, DspAdapter] = {link.name: link.adapter for link in links}
    shared = None
    if infra.redis is not None:  # several nodes: a win may reach another node than the one that bid
        from adapters.redis.dsp import RedisDspBids  # imported only when Redis is configured
        shared = RedisDspBids(infra.redis, clock.now)
    wins = DspWins(store, adapters, clock, metrics, infra.public_urls.notices, currency=config.bidding.currency,
                   ttl_s=config.bidding.bid_ttl_s, shared=shared, campaign_of=campaign_of,
                   log_event=infra.event_log.log_event, max_live_bids=config.bidding.max_live_bids)
    metrics.caches.register(wins.issued)

    async def own_bidder(raw: bytes, started: float, timeout_ms: int) -> BidAnswer:
        return await gateway.answer(raw, "dsp", started, timeout_ms=timeout_ms)

    router = DspRouter(d, config.bidding, links, wins, metrics, clock, own_bidder, held)
    infra.supervisor.add_periodic("dsp_bid_sweep", 5.0, wins.sweep)
    # The DSPs' own notices not called yet: after a failure, a restart, or a burst (app/dsp/wins.py).
    infra.supervisor.add_periodic("dsp_forwards", 1.0, wins.relay_once)
    return Dsp(store, session, router, wins, DspStatus(links, store, clock))
