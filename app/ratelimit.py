"""Token-bucket rate limits per client IP and per principal (API key, customer)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from app.errors import RateLimited


class TokenBuckets:
    """Many buckets of one shape, keyed by caller; least recently used ones are forgotten."""

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = 100_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._now = monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Spend `cost` tokens; return 0 if allowed, else seconds until it would be."""
        now = self._now()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait

    def check(self, key: str, what: str) -> None:
        """Raise RateLimited (429) when `key` has no token left."""
        wait = self.take(key)
        if wait > 0:
            raise RateLimited(f"rate limit for this {what} exceeded; retry in {wait:.2f}s", wait)
