"""The lifetime values bids read: a customer's predicted LTV answered at once from a bounded local cache, never
waiting on a model.

A customer not yet valued (or whose value has expired) is queued, answered now by the platform heuristic (the
median of the platform's last 100 values this source fetched × its multiplier), and valued by the background
refresher: in batches, from the in-process model (app/ltv/service.py) or a remote SyncValueService
(adapters/grpc/syncvalue.py), through the circuit breaker. While the breaker is open the model is not asked and the
heuristic answers. A customer the model knows no purchase of (NO_HISTORY) has no value: held as such, answered
with none (the bid keeps the auction's price), never the prior the model gives a new customer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from app.config import LtvConfig
from app.runtime.breaker import CircuitBreaker
from app.runtime.clock import Clock
from app.runtime.lru import LRU

if TYPE_CHECKING:
    from app.ltv.service import Answer, Ask

log = logging.getLogger("contrail.ltv")

MODEL, REMOTE, FALLBACK, NONE = "model", "remote", "fallback", "none"
RECENT_PER_PLATFORM = 100       # the heuristic's window: each platform's last 100 predictions
CACHE_ENTRIES = 200_000         # customers whose value is held
TTL_S = 3600.0                  # a value is served this long after it was predicted ...
REFRESH_AHEAD = 0.1             # ... and a read in its last tenth queues it again, so a busy customer keeps one
QUEUE_LIMIT = 10_000            # customers waiting to be valued (more are not queued: their next read asks again)
BATCH = 256                     # customers valued per refresher pass
MAX_VALUE = 1_000_000.0         # a predicted LTV above this (currency units) is not believed (ltv.value_max)
_MEMO_PLATFORMS = 64            # platforms whose heuristic value is held between passes

# What the value source needs of a model: customer ids and a platform in; out, each valued customer's LTV, or None
# for a customer the model knows no purchase of (left out: one it could not value, asked again on the next read).
Fetch = Callable[[list[str], str, float], Awaitable[Mapping[str, float | None]]]


class LtvPredictor(Protocol):
    """What the value source needs of LtvService (app/ltv/service.py)."""

    async def predict(self, asks: list[Ask]) -> list[Answer]: ...


class Heuristic(Protocol):
    def heuristic(self, platform: str) -> float | None: ...


class PlatformMedian:
    """The fallback heuristic: the median of the platform's last 100 predicted values (of all platforms' when it
    has none) × the platform's multiplier (1 for platforms not configured). LtvService keeps one over its own
    predictions (its FALLBACK answers); the value source keeps its own over the values it fetched (bids'
    fallback), which no outside request can move."""

    def __init__(self, multipliers: Mapping[str, float], window: int = RECENT_PER_PLATFORM) -> None:
        self._multipliers = multipliers
        self._window = window
        self._recent: dict[str, deque[float]] = {}

    def _key(self, platform: str) -> str:
        return platform if platform in self._multipliers else ""

    def remember(self, platform: str, value: float) -> None:
        key = self._key(platform)
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = deque(maxlen=self._window)
        recent.append(value)

    def heuristic(self, platform: str) -> float | None:
        recent = self._recent.get(self._key(platform)) or [v for r in self._recent.values() for v in r]
        if not recent:
            return None
        return statistics.median(recent) * self._multipliers.get(platform, 1.0)


class InProcess:
    """The in-process model as a Fetch: one LtvService.predict call for the batch, from each customer's own
    purchases. NO_HISTORY is None (no value); answers the model could not give (FALLBACK, MODEL_NOT_READY) are
    left out."""

    def __init__(self, model: LtvPredictor) -> None:
        self.model = model

    async def predict_many(self, customer_ids: list[str], platform: str, timeout: float
                           ) -> dict[str, float | None]:
        from app.errors import InvalidInput
        from app.ltv.service import NO_HISTORY, SUCCESS, Ask  # the model package loads only with the service

        asks = []
        for c in customer_ids:
            try:
                asks.append(Ask(c, platform, explain=False))
            except InvalidInput:
                continue  # an id no customer can have (empty, over 256 characters): left unvalued, not a failure
        answers = await asyncio.wait_for(self.model.predict(asks), timeout)
        # NO_HISTORY's number is the prior of a customer who just made a first purchase (above most real
        # customers'): a stranger priced with it would bid at the campaign's cap.
        return {a.customer_id: a.predicted_ltv if a.status == SUCCESS else None
                for a in answers if a.status in (SUCCESS, NO_HISTORY)}


@dataclass
class ValueStats:
    """Counters of the value source (exported by whoever wires it)."""

    served: dict[str, int] = field(default_factory=lambda: {MODEL: 0, REMOTE: 0, FALLBACK: 0, NONE: 0})
    fallbacks: int = 0          # answers not from a model value: the heuristic's (fallback) or nothing (none)
    queue_full: int = 0         # customers not queued because the queue was full
    calls: dict[str, int] = field(default_factory=lambda: {"ok": 0, "slow": 0, "timeout": 0, "error": 0})
    skipped_open: int = 0       # passes with customers waiting that the open breaker kept from the model
    cached: int = 0             # values taken into the cache
    no_history: int = 0         # customers the model knows no purchase of: held as having no value
    unvalued: int = 0           # customers asked whom the model did not value
    rejected: dict[str, int] = field(default_factory=lambda: {"not_finite": 0, "too_low": 0, "too_high": 0})


class ValueSource:
    """What the bid path reads: `value()` is synchronous and never waits; `refresh()` is the background pass."""

    def __init__(self, fetch: Fetch, source: str, heuristic: Heuristic, clock: Clock, *, failures: int,
                 slow_ms: float, open_s: float, successes: int, deadline_s: float,
                 remember: PlatformMedian | None = None, capacity: int = CACHE_ENTRIES, ttl_s: float = TTL_S,
                 refresh_ahead: float = REFRESH_AHEAD, queue_limit: int = QUEUE_LIMIT, batch: int = BATCH,
                 min_value: float = 0.0, max_value: float = MAX_VALUE, metrics: Any = None,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        """Values outside [min_value, max_value] (the model's or the heuristic's) are not believed: not cached,
        not priced with, counted by reason. `remember`: the heuristic's window to feed with the values the
        refresher fetched (the same object as `heuristic`, so that only real customers' values at the configured
        horizon move it). `metrics` (Metrics, or anything with some of its
        attributes): counters ltv_values_served (by source), ltv_value_fallbacks (by kind: heuristic, none),
        ltv_value_calls (by outcome), ltv_value_rejected (by reason); the gauge ltv_value_breaker; caches, the
        CacheCollector the value cache is registered with."""
        if ttl_s <= 0 or not 0 <= refresh_ahead < 1 or queue_limit < 1 or batch < 1:
            raise ValueError("ttl_s > 0, 0 <= refresh_ahead < 1, queue_limit >= 1 and batch >= 1")
        self.source = source
        self._fetch = fetch
        self._heuristic = heuristic
        self._remember = remember
        self._clock = clock
        self._slow_s = slow_ms / 1000
        self._deadline_s = deadline_s
        self._ttl_s = ttl_s
        self._refresh_after_s = ttl_s * (1 - refresh_ahead)
        self._queue_limit = queue_limit
        self._batch = batch
        self._min_value, self._max_value = min_value, max_value
        self._timer = timer
        # → (value, valued at); a value of None: the model knows no purchase of theirs (no value, not asked again
        # before the TTL)
        self.cache: LRU[tuple[str, str], tuple[float | None, float]] = LRU(capacity, "ltv_values")
        self.queue: OrderedDict[tuple[str, str], None] = OrderedDict()  # (platform, customer) waiting, oldest first
        self.stats = ValueStats()
        self._memo: dict[str, float | None] = {}  # platform → heuristic value, until the next pass
        self._forgotten = 0  # bumped by forget(): a value fetched before it is not kept after it
        self._served_metric = _children(metrics, "ltv_values_served", tuple(self.stats.served))
        self._fallback_metric = _children(metrics, "ltv_value_fallbacks", ("heuristic", "none"))
        self._call_metric = _children(metrics, "ltv_value_calls", tuple(self.stats.calls))
        self._rejected_metric = _children(metrics, "ltv_value_rejected", tuple(self.stats.rejected))
        gauge = getattr(metrics, "ltv_value_breaker", None)
        self.breaker = CircuitBreaker(clock, failures=failures, open_s=open_s, successes=successes,
                                      on_change=gauge.set if gauge is not None else lambda state: None)
        caches = getattr(metrics, "caches", None)
        if caches is not None:
            caches.register(self.cache)
            metrics.watch_queue("ltv_values", lambda: len(self.queue))

    @classmethod
    def in_process(cls, model: LtvPredictor, config: LtvConfig, clock: Clock, **options: Any) -> ValueSource:
        """Values from the in-process LtvService; `config` is the [ltv] section. A pass's batch is cut at
        `max_batch` and its deadline is twice `breaker_slow_ms` (past the slow threshold it is a failure). The
        heuristic is kept over the values it fetches, not over the service's: the service also answers partners'
        made-up histories and other horizons, which must not move what bids pay."""
        options["batch"] = min(options.get("batch", BATCH), config.max_batch)
        recent = PlatformMedian(config.platform_multipliers)
        return cls(InProcess(model).predict_many, MODEL, recent, clock,
                   deadline_s=2 * config.breaker_slow_ms / 1000, remember=recent, **(_guards(config) | options))

    @classmethod
    def remote(cls, fetch: Fetch, config: LtvConfig, clock: Clock, **options: Any) -> ValueSource:
        """Values from a remote SyncValueService (RemoteSyncValue.predict_many) within `remote_deadline_ms`;
        the heuristic is kept over the values it returns."""
        recent = PlatformMedian(config.platform_multipliers)
        return cls(fetch, REMOTE, recent, clock, deadline_s=config.remote_deadline_ms / 1000, remember=recent,
                   **(_guards(config) | options))

    # ---- the bid path ----
    def value(self, customer_id: str, platform: str) -> tuple[float | None, str]:
        """(the customer's predicted LTV, where it came from: model, remote, fallback or none)."""
        key = (platform, customer_id)
        held = self.cache.get(key)
        if held is not None:
            age = self._clock.now() - held[1]
            if age < self._ttl_s:
                if age >= self._refresh_after_s:
                    self._enqueue(key)
                if held[0] is None:  # no purchase known: no value, and not the heuristic's either
                    return self._nothing()
                self.stats.served[self.source] += 1
                _inc(self._served_metric, self.source)
                return held[0], self.source
            self.cache.pop(key)
        self._enqueue(key)
        return self._fallback(platform)

    def _nothing(self) -> tuple[None, str]:
        self.stats.served[NONE] += 1
        self.stats.fallbacks += 1
        _inc(self._served_metric, NONE)
        _inc(self._fallback_metric, "none")
        return None, NONE

    def forget(self, customer_id: str) -> None:
        """An erased customer: their values are dropped on every platform, and they leave the queue."""
        self._forgotten += 1
        for key in [k for k, _ in self.cache.items() if k[1] == customer_id]:  # rare: a scan will do
            self.cache.pop(key)
        for key in [k for k in self.queue if k[1] == customer_id]:
            del self.queue[key]

    def _enqueue(self, key: tuple[str, str]) -> None:
        if key in self.queue:
            return
        if len(self.queue) >= self._queue_limit:
            self.stats.queue_full += 1
            return
        self.queue[key] = None

    def _fallback(self, platform: str) -> tuple[float | None, str]:
        if platform in self._memo:
            value = self._memo[platform]
        else:
            if len(self._memo) >= _MEMO_PLATFORMS:
                self._memo.clear()
            value = self._heuristic.heuristic(platform)
            if value is not None and self._refused(value):
                value = None  # the heuristic is only a median of predictions: it is held to the same bounds
            self._memo[platform] = value
        kind = FALLBACK if value is not None else NONE
        self.stats.served[kind] += 1
        self.stats.fallbacks += 1
        _inc(self._served_metric, kind)
        _inc(self._fallback_metric, "heuristic" if value is not None else "none")
        return value, kind

    # ---- one customer, waited for ----
    async def value_of(self, customer_id: str, platform: str) -> float | None:
        """The customer's value, cached or asked of the model now through the breaker, for callers that can wait
        (activation's LTV bands): None when the breaker is open, the call fails or the model has no value for
        them (no purchase known), never the heuristic, a platform's median that says nothing of this customer."""
        held = self.cache.get((platform, customer_id))
        if held is not None and self._clock.now() - held[1] < self._ttl_s:
            return held[0]
        if not self.breaker.allow():
            self.stats.skipped_open += 1
            return None
        if not await self._call(platform, [customer_id], remember=False):  # the heuristic's window is the bids'
            return None
        kept = self.cache.get((platform, customer_id))
        return kept[0] if kept is not None else None

    # ---- the background refresher ----
    async def refresh(self) -> int:
        """One pass: values up to `batch` queued customers (one call per platform), through the breaker.
        Returns how many values were cached. The supervisor runs it periodically."""
        taken = cached = 0
        try:
            while self.queue and taken < self._batch:
                if not self.breaker.allow():
                    self.stats.skipped_open += 1
                    break
                platform, ids = self._take(self._batch - taken)
                taken += len(ids)
                cached += await self._call(platform, ids)
        finally:
            self._memo.clear()  # the heuristic's window has moved on
        return cached

    def _take(self, most: int) -> tuple[str, list[str]]:
        """Up to `most` queued customers of the oldest waiting one's platform, oldest first."""
        platform = next(iter(self.queue))[0]
        ids = [c for p, c in self.queue if p == platform][:most]
        for c in ids:
            del self.queue[(platform, c)]
        return platform, ids

    async def _call(self, platform: str, ids: list[str], remember: bool = True) -> int:
        started = self._timer()
        forgotten = self._forgotten
        try:
            values = await self._fetch(ids, platform, self._deadline_s)
        except asyncio.CancelledError:
            self.breaker.failed()  # shutting down mid-call: a half-open trial is not left in flight
            raise
        except TimeoutError:
            self._outcome("timeout")
            return 0
        except Exception as exc:  # any failure of the model: its customers are asked again on their next read
            self._outcome("error")
            log.warning("ltv values: the model failed", extra={"source": self.source, "error": str(exc)[:200]})
            return 0
        self._outcome("slow" if self._timer() - started > self._slow_s else "ok")
        return self._keep(platform, ids, values, remember, forgotten)

    def _outcome(self, outcome: str) -> None:
        self.stats.calls[outcome] += 1
        _inc(self._call_metric, outcome)
        if outcome == "ok":
            self.breaker.succeeded()
        else:
            self.breaker.failed()

    def _refused(self, value: float) -> bool:
        """Whether a value is outside the bounds (counted by reason)."""
        reason = "not_finite" if not math.isfinite(value) else "too_low" if value < self._min_value else \
            "too_high" if value > self._max_value else ""
        if reason:
            self.stats.rejected[reason] += 1
            _inc(self._rejected_metric, reason)
        return bool(reason)

    def _keep(self, platform: str, ids: list[str], values: Mapping[str, float | None], remember: bool = True,
              forgotten: int | None = None) -> int:
        if forgotten is not None and forgotten != self._forgotten:
            return 0  # someone was erased while the model was asked: what it said of them is not kept
        now, kept = self._clock.now(), 0
        for customer_id in ids:
            if customer_id not in values:
                self.stats.unvalued += 1
                continue
            value = values[customer_id]
            if value is None:
                self.cache.put((platform, customer_id), (None, now))
                self.stats.no_history += 1
                continue
            if self._refused(value):
                continue
            self.cache.put((platform, customer_id), (value, now))
            if remember and self._remember is not None:
                self._remember.remember(platform, value)
            kept += 1
        self.stats.cached += kept
        return kept


def _guards(config: LtvConfig) -> dict[str, Any]:
    """The breaker's settings and the bounds a believed value keeps to, from the [ltv] section."""
    return {"failures": config.breaker_failures, "slow_ms": config.breaker_slow_ms,
            "open_s": config.breaker_open_s, "successes": config.breaker_successes,
            "min_value": config.value_min, "max_value": config.value_max}


def _children(metrics: Any, name: str, labels: tuple[str, ...]) -> dict[str, Any]:
    family = getattr(metrics, name, None)
    return {label: family.labels(label) for label in labels} if family is not None else {}


def _inc(children: dict[str, Any], label: str) -> None:
    child = children.get(label)
    if child is not None:
        child.inc()
