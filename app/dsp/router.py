"""The DSP router: one OpenRTB 2.6 request fanned out to every enabled DSP (and, optionally, Contrail's own bidder),
each call under a deadline of its own, then the best bid per impression after bid adjustments and floors.

Deadlines follow Prebid Server's split of tmax: a DSP gets `tmax` (`dsp.default_tmax_ms` when absent) less the time
already spent since the request arrived, less `dsp.reserve_ms` (our processing after the calls) and
`dsp.network_buffer_ms` (the way back to the exchange), capped by its own `timeout_ms`; with less than
`dsp.min_timeout_ms` left it is not called. Every call runs as its own task bounded by `asyncio.timeout`; one
future, resolved when the last call hands in its outcome or by a timer at the longest deadline (`_Gather`), gathers
them, and whatever is still pending then is cancelled and
counted as a timeout, so a slow or failing DSP never holds the answer past its deadline. Each DSP has a circuit
breaker (app/runtime/breaker.py): errors, timeouts and answers slower than `dsp.breaker_slow_ms` count as failures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.bidding.gateway import BidAnswer
from app.bidding.openrtb import Bid, BidRequest, Imp, InvalidBidRequest, SeatBid, decode_request
from app.config import BiddingConfig, DspConfig, DspPlatform
from app.dsp.ports import DspAdapter, DspBid, DspError
from app.dsp.wins import DspWins
from app.jsondepth import MAX_DEPTH, nesting_exceeds
from app.runtime.breaker import CircuitBreaker
from app.runtime.clock import Clock
from app.runtime.metrics import Metrics

log = logging.getLogger("contrail.dsp")

OwnBidder = Callable[[bytes, float, int], Coroutine[Any, Any, BidAnswer]]  # (raw, started, timeout_ms) -> the answer
LATENCY_WINDOW = 2048  # the latencies /v1/dsp/status reads its p50 / p99 from, per DSP


class _O(msgspec.Struct, omit_defaults=True):
    pass


class DspBidResponse(_O):
    """OpenRTB 2.6 BidResponse with `ext` (the per-DSP report in debug mode)."""
    id: str
    seatbid: list[SeatBid] | None = None
    bidid: str | None = None
    cur: str | None = None
    nbr: int | None = None
    ext: dict[str, Any] | None = None


_encode = msgspec.json.Encoder().encode


class DspReport(msgspec.Struct, omit_defaults=True):
    """One DSP's part in one request (the debug `ext.dsp.<name>`)."""
    status: str                 # bid, nobid, timeout, error, skipped, open
    timeout_ms: int = 0
    latency_ms: float | None = None
    bids: int = 0
    kept: int = 0               # bids left after floors and checks
    error: str | None = None


@dataclass
class DspLink:
    """One configured DSP at run time: its adapter, breaker and counters."""
    platform: DspPlatform
    adapter: DspAdapter
    breaker: CircuitBreaker
    requests: int = 0
    bids: int = 0
    nobids: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    @property
    def name(self) -> str:
        return self.platform.name


@dataclass
class RouteAnswer:
    invalid: str | None = None      # the reason the request is invalid (400, no body)
    body: bytes | None = None       # None with invalid None: no bid (204)


@dataclass
class _Candidate:
    seat: str
    bid: Bid
    price: float                    # CPM in the bidding currency, adjusted
    link: DspLink | None            # None: Contrail's own bidder
    currency: str = ""


class _Gather:
    """The calls of one request: each hands in its outcome as it arrives; `done` resolves when all have, or at the
    deadline (`expire`). Cheaper than asyncio.wait, which wakes the waiter a loop step after each task's end."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()
        self.waiting = 0
        self.results: dict[str, tuple[DspReport, list[DspBid]]] = {}
        self.own: BidAnswer | None = None
        self.own_answered = False

    def arrived(self, name: str, result: tuple[DspReport, list[DspBid]]) -> None:
        if not self.done.done():
            self.results[name] = result
            self._one_less()

    def own_arrived(self, answer: BidAnswer | None) -> None:
        if not self.done.done():
            self.own, self.own_answered = answer, True
            self._one_less()

    def _one_less(self) -> None:
        self.waiting -= 1
        if self.waiting <= 0:
            self.done.set_result(None)

    def expire(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class DspRouter:
    def __init__(self, config: DspConfig, bidding: BiddingConfig, links: list[DspLink], wins: DspWins,
                 metrics: Metrics, clock: Clock, own_bidder: OwnBidder | None = None,
                 held: Callable[[str, str], bool] | None = None) -> None:
        self._config = config
        self._held = held  # held(platform, cid): the bid names a line item of a campaign that is not live
        self._seat = bidding.seat
        self._currency = bidding.currency
        self._rates = {k.upper(): v for k, v in bidding.currency_rates.items()}
        self.links = links
        self._wins = wins
        self._metrics = metrics
        self._clock = clock
        self._own = own_bidder if config.include_own_bidder else None
        self._outcomes = {(link.name, o): metrics.dsp_calls.labels(link.name, o) for link in links
                          for o in ("bid", "nobid", "timeout", "error", "skipped", "open")}
        self._latency = {link.name: metrics.dsp_latency.labels(link.name) for link in links}
        self._own_tasks: set[asyncio.Task] = set()

    def _to_bidding(self, amount: float, currency: str) -> float | None:
        """`amount` of `currency` in the bidding currency (None: a currency without a rate)."""
        rate, ours = self._rates.get(currency.upper()), self._rates.get(self._currency.upper())
        return None if rate is None or ours is None else amount * rate / ours

    async def route(self, raw: bytes, started: float | None = None) -> RouteAnswer:
        started = time.perf_counter() if started is None else started
        try:
            if nesting_exceeds(raw):
                raise InvalidBidRequest("too_deeply_nested", f"JSON nests deeper than {MAX_DEPTH} levels")
            request = decode_request(raw)
            generic = msgspec.json.decode(raw)
        except (InvalidBidRequest, msgspec.DecodeError) as exc:
            self._metrics.bid_invalid.labels(getattr(exc, "reason", "not_json")).inc()
            return RouteAnswer(invalid=getattr(exc, "reason", "not_json"))
        cfg = self._config
        tmax = request.tmax or cfg.default_tmax_ms
        budget_ms = int(tmax - cfg.reserve_ms - cfg.network_buffer_ms - (time.perf_counter() - started) * 1000)
        reports: dict[str, DspReport] = {}
        calls: dict[asyncio.Task, tuple[DspLink, int]] = {}
        gather = _Gather(asyncio.get_running_loop())
        for link in self.links:
            if not link.platform.enabled:
                continue
            timeout_ms = min(link.platform.timeout_ms, budget_ms)
            if timeout_ms < cfg.min_timeout_ms:
                reports[link.name] = self._done(link, "skipped", timeout_ms)
                link.skipped += 1
            elif not link.breaker.allow():
                reports[link.name] = self._done(link, "open", timeout_ms)
                link.skipped += 1
            else:
                link.requests += 1
                calls[asyncio.create_task(self._call(link, generic, timeout_ms, gather))] = (link, timeout_ms)
        own: asyncio.Task | None = None
        if self._own is not None and budget_ms >= cfg.min_timeout_ms:
            own = asyncio.create_task(self._own_call(raw, started, tmax - cfg.reserve_ms - cfg.network_buffer_ms,
                                                     gather))
        gather.waiting = len(calls) + (own is not None)
        if gather.waiting:
            longest = max([t for _, t in calls.values()] + ([budget_ms] if own is not None else []))
            timer = gather.loop.call_later(longest / 1000, gather.expire)
            await gather.done
            timer.cancel()
        candidates: list[_Candidate] = []
        for task, (link, timeout_ms) in calls.items():
            result = gather.results.get(link.name)
            if result is None:  # still running at the deadline (or done just after it: counted by its attempt)
                if not task.done():
                    task.cancel()
                    link.breaker.failed()
                    self._breaker_gauge(link)
                    link.timeouts += 1
                reports[link.name] = self._done(link, "timeout", timeout_ms)
                continue
            report, bids = result
            reports[link.name] = report
            candidates += self._dsp_candidates(link, request, bids, report)
        if own is not None:
            if gather.own_answered:
                candidates += self._own_candidates(gather.own)
            else:  # left to finish on its own (its bid is never sent): cancelling could cut a batch
                self._own_tasks.add(own)
                own.add_done_callback(self._own_tasks.discard)
        answer = self._auction(request, candidates)
        await self._wins.share_issued()
        debug = cfg.debug or request.test == 1
        elapsed = time.perf_counter() - started
        self._metrics.dsp_route_latency.observe(elapsed)
        if answer is None and not debug:
            return RouteAnswer()
        response = answer or DspBidResponse(id=request.id or "", nbr=0)
        if debug:
            response.ext = {"dsp": {name: msgspec.structs.asdict(r) for name, r in reports.items()},
                            "responsetimemillis": {name: r.latency_ms for name, r in reports.items()
                                                   if r.latency_ms is not None},
                            "tmaxrequest": tmax, "elapsed_ms": round(elapsed * 1000, 3)}
        return RouteAnswer(body=_encode(response))

    def _done(self, link: DspLink, status: str, timeout_ms: int, **kw: Any) -> DspReport:
        self._outcomes[(link.name, status)].inc()
        return DspReport(status, max(timeout_ms, 0), **kw)

    def _breaker_gauge(self, link: DspLink) -> None:
        self._metrics.dsp_breaker.labels(link.name).set(link.breaker.state)

    async def _call(self, link: DspLink, generic: dict[str, Any], timeout_ms: int, gather: _Gather) -> None:
        """One DSP call; its outcome handed to `gather` in the same loop step as its answer (no extra hop)."""
        gather.arrived(link.name, await self._attempt(link, generic, timeout_ms))

    async def _own_call(self, raw: bytes, started: float, timeout_ms: int, gather: _Gather) -> None:
        assert self._own is not None
        try:
            answer: BidAnswer | None = await self._own(raw, started, timeout_ms)
        except Exception:  # the gateway answers every fault itself; this is a bug's last line
            log.exception("own bidder failed in DSP routing")
            answer = None
        gather.own_arrived(answer)

    async def _attempt(self, link: DspLink, generic: dict[str, Any], timeout_ms: int
                       ) -> tuple[DspReport, list[DspBid]]:
        """One DSP call under its deadline; a report and its bids. Cancellation (the router's deadline) is left
        to the router to count."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                bids = await link.adapter.bid(generic, timeout_ms)
        except TimeoutError:
            link.breaker.failed()
            self._breaker_gauge(link)
            link.timeouts += 1
            return self._done(link, "timeout", timeout_ms), []
        except DspError as exc:
            return self._failed(link, timeout_ms, started, exc.code, exc.message), []
        except Exception as exc:  # an adapter's bug is this DSP's error, never the request's
            log.exception("DSP adapter failed", extra={"platform": link.name})
            return self._failed(link, timeout_ms, started, "adapter", repr(exc)), []
        latency_ms = (time.perf_counter() - started) * 1000
        link.latencies_ms.append(latency_ms)
        self._latency[link.name].observe(latency_ms / 1000)
        if latency_ms > self._config.breaker_slow_ms:
            link.breaker.failed()
        else:
            link.breaker.succeeded()
        self._breaker_gauge(link)
        if bids:
            link.bids += len(bids)
        else:
            link.nobids += 1
        return self._done(link, "bid" if bids else "nobid", timeout_ms, latency_ms=round(latency_ms, 3),
                          bids=len(bids)), bids

    def _failed(self, link: DspLink, timeout_ms: int, started: float, code: str, message: str) -> DspReport:
        latency_ms = (time.perf_counter() - started) * 1000
        link.latencies_ms.append(latency_ms)
        self._latency[link.name].observe(latency_ms / 1000)
        link.breaker.failed()
        self._breaker_gauge(link)
        link.errors += 1
        log.info("DSP call failed", extra={"platform": link.name, "error": message[:200]})
        error = f"{code}: {message}" if message else code
        return self._done(link, "error", timeout_ms, latency_ms=round(latency_ms, 3), error=error[:300])

    def _floor(self, imp: Imp, dealid: str | None) -> float | None:
        """The floor a bid must reach in the bidding currency (None: the bid may not be made for this imp)."""
        deals = {d.id: d for d in (imp.pmp.deals or ())} if imp.pmp is not None else {}
        if dealid is not None and dealid in deals:
            deal = deals[dealid]
            return self._to_bidding(deal.bidfloor, deal.bidfloorcur)
        if imp.pmp is not None and imp.pmp.private_auction == 1:
            return None  # a private auction admits deal bids only
        return self._to_bidding(imp.bidfloor, imp.bidfloorcur)

    def _dsp_candidates(self, link: DspLink, request: BidRequest, bids: list[DspBid],
                        report: DspReport) -> list[_Candidate]:
        imps = {imp.id: imp for imp in request.imp or ()}
        kept: list[_Candidate] = []
        dropped = self._metrics.dsp_bids.labels(link.name, "dropped")
        for b in bids:
            if b.bid.cid and self._held is not None and self._held(link.name, b.bid.cid):
                self._metrics.dsp_bids.labels(link.name, "held").inc()
                continue
            imp = imps.get(b.bid.impid)
            price = self._to_bidding(b.bid.price, b.currency)
            floor = self._floor(imp, b.bid.dealid) if imp is not None else None
            if imp is None or price is None or floor is None:
                dropped.inc()
                continue
            price *= link.platform.bid_adjustment
            if price <= 0 or price < floor - 1e-9:
                dropped.inc()
                continue
            kept.append(_Candidate(link.name, b.bid, round(price, 6), link, b.currency))
        report.kept = len(kept)
        return kept

    def _own_candidates(self, answer: BidAnswer | None) -> list[_Candidate]:
        response = answer.outcome.response if answer is not None and answer.outcome is not None else None
        if response is None:
            return []
        return [_Candidate(seatbid.seat or self._seat, bid, bid.price, None)
                for seatbid in response.seatbid or () for bid in seatbid.bid]

    def _auction(self, request: BidRequest, candidates: list[_Candidate]) -> DspBidResponse | None:
        """The best bid per impression (the first in DSP order on a tie, Contrail's own bidder last); None: none."""
        best: dict[str, _Candidate] = {}
        for c in candidates:
            held = best.get(c.bid.impid)
            if held is None or c.price > held.price:
                best[c.bid.impid] = c
        if not best:
            return None
        for c in candidates:
            if c.link is not None and best[c.bid.impid] is not c:
                self._metrics.dsp_bids.labels(c.link.name, "lost").inc()
        seats: dict[str, list[Bid]] = {}
        request_id = request.id or ""
        for c in best.values():
            if c.link is None:
                seats.setdefault(c.seat, []).append(c.bid)
                continue
            self._metrics.dsp_bids.labels(c.link.name, "won").inc()
            seats.setdefault(c.seat, []).append(self._wins.issue(c.link.name, c.bid, request_id, c.price))
        return DspBidResponse(id=request_id, bidid=self._wins.new_id(), cur=self._currency,
                              seatbid=[SeatBid(bid=bids, seat=seat) for seat, bids in seats.items()])
