"""Token-bucket rate limits per client IP and per principal (API key, customer)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.errors import RateLimited
from app.runtime.lru import LRU

if TYPE_CHECKING:
    from app.auth import Principal


class TokenBuckets:
    """Many buckets of one shape, keyed by caller; least recently used ones are forgotten."""

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = 100_000,
                 monotonic: Callable[[], float] = time.monotonic, name: str = "rate_limit_buckets") -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._now = monotonic
        self.buckets: LRU[str, tuple[float, float]] = LRU(max_keys, name)  # key -> (tokens, at)
        # Several nodes (adapters/redis/ratelimit.py): tokens spent per key since the last exchange with the others.
        self.spent: dict[str, float] | None = None

    def take(self, key: str, cost: float = 1.0) -> float:
        """Spend `cost` tokens; return 0 if allowed, else seconds until it would be."""
        now = self._now()
        tokens, last = self.buckets.get(key) or (float(self.burst), now)
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
            if self.spent is not None:
                self.spent[key] = self.spent.get(key, 0.0) + cost
        else:
            wait = (cost - tokens) / self.rate
        self.buckets.put(key, (tokens, now))
        return wait

    def drain(self, key: str, amount: float) -> None:
        """Take `amount` tokens from a caller's bucket: what they spent on other nodes. A busy caller's bucket is
        near empty, so it goes below zero (down to minus the burst): its next requests wait that much longer."""
        found = self.buckets.peek(key)
        if found is not None:
            tokens, at = found
            self.buckets.put(key, (max(-float(self.burst), tokens - amount), at))

    def check(self, key: str, what: str) -> None:
        """Raise RateLimited (429) when `key` has no token left."""
        wait = self.take(key)
        if wait > 0:
            raise RateLimited(f"rate limit for this {what} exceeded; retry in {wait:.2f}s", wait)


class RateLimiter:
    """The one set of limits every protocol (REST, gRPC, websockets) checks: per client address, and per
    API key or account. Exchanges are limited per key, not per address (an exchange sends from few IPs),
    and have buckets of their own sized for bid traffic."""

    def __init__(self, ip: TokenBuckets, principal: TokenBuckets, exchange: TokenBuckets, metrics) -> None:
        self.ip = ip
        self.principal = principal
        self.exchange = exchange
        self._limited = {kind: metrics.rate_limited.labels(kind) for kind in ("ip", "principal")}

    def failed_authentication(self, ip: str) -> None:
        """Charge refused credentials to their address (exchanges included): RateLimited once it has none left."""
        try:
            self.ip.check(ip, "client address")
        except RateLimited:
            self._limited["ip"].inc()
            raise

    def check(self, principal: Principal | None, ip: str) -> None:
        """Spend one request's token; RateLimited (429 / RESOURCE_EXHAUSTED) when there is none."""
        try:
            if principal is None or principal.role != "exchange":
                self.ip.check(ip, "client address")
        except RateLimited:
            self._limited["ip"].inc()
            raise
        if principal is not None and principal.kind != "guest":
            buckets = self.exchange if principal.role == "exchange" else self.principal
            try:
                buckets.check(principal.scope, "API key" if principal.kind == "api_key" else "account")
            except RateLimited:
                self._limited["principal"].inc()
                raise
