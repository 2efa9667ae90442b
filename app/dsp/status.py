"""GET /v1/dsp/status: each DSP's state, calls, bids, today's wins and spend, and its recent latency."""

from __future__ import annotations

import msgspec

from app.dsp.ports import DspWinStore
from app.dsp.router import DspLink
from app.runtime.breaker import CircuitBreaker
from app.runtime.clock import Clock

BREAKER_STATES = {CircuitBreaker.CLOSED: "closed", CircuitBreaker.HALF_OPEN: "half_open",
                  CircuitBreaker.OPEN: "open"}


class DspStatusView(msgspec.Struct):
    name: str
    kind: str
    enabled: bool
    healthy: bool                # its breaker is closed
    breaker: str                 # closed, half_open, open
    requests: int                # calls made since the start
    bids: int
    nobids: int
    errors: int
    timeouts: int
    skipped: int                 # not called: too little time left, or the breaker open
    wins_today: int              # UTC day
    spend_today_micros: int
    p50_latency_ms: float | None  # over its last calls answered (or failed); null before any
    p99_latency_ms: float | None
    notices_queued: int = 0      # its own win/billing notices not delivered yet: waiting for a retry, or under way


class DspStatusList(msgspec.Struct):
    platforms: list[DspStatusView]


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return round(sorted_values[index], 3)


class DspStatus:
    def __init__(self, links: list[DspLink], store: DspWinStore, clock: Clock) -> None:
        self._links = links
        self._store = store
        self._clock = clock

    async def status(self) -> DspStatusList:
        now = self._clock.now()
        spend = await self._store.spend_since(now - now % 86_400)
        queued = await self._store.queued_forwards()
        views = []
        for link in self._links:
            latencies = sorted(link.latencies_ms)
            today = spend.get(link.name)
            views.append(DspStatusView(
                link.name, link.platform.kind, link.platform.enabled, link.breaker.state == CircuitBreaker.CLOSED,
                BREAKER_STATES[link.breaker.state], link.requests, link.bids, link.nobids, link.errors, link.timeouts,
                link.skipped, today.wins if today else 0, today.spend_micros if today else 0,
                _percentile(latencies, 0.5), _percentile(latencies, 0.99), queued.get(link.name, 0)))
        return DspStatusList(views)
