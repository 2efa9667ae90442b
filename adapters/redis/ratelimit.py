"""Rate limits that hold across nodes: each node keeps its token buckets in memory (a check stays a dictionary
lookup on every request) and, every `interval`, adds what each caller spent on it to a counter in Redis and takes
from its own bucket what the other nodes added since. A caller spreading requests over N nodes gets the configured
rate, plus at most what the other nodes let through in one interval."""

from __future__ import annotations

from adapters.redis.client import RedisClient
from app.ratelimit import TokenBuckets
from app.runtime.lru import LRU

COUNTER_TTL_S = 3600  # a caller idle this long starts afresh


class SharedRateLimits:
    def __init__(self, client: RedisClient, buckets: dict[str, TokenBuckets], max_keys: int = 100_000) -> None:
        self._r = client
        self._buckets = buckets
        for b in buckets.values():
            b.spent = {}
        # Each counter's total as this node last saw it: the others' share is the growth it did not add itself.
        self.totals: LRU[str, float] = LRU(max_keys, "rate_limit_shared_totals")

    async def sync(self) -> None:
        """Exchange what callers spent with the other nodes (a periodic task)."""
        batch: list[tuple[TokenBuckets, str, str, float]] = []
        for name, buckets in self._buckets.items():
            spent, buckets.spent = buckets.spent or {}, {}  # taken even if Redis fails: the memory stays bounded
            batch += [(buckets, key, self._r.key("rl", name, key), used) for key, used in spent.items()]
        if not batch:
            return
        pipe = self._r.redis.pipeline(transaction=False)
        for _, _, counter, used in batch:
            pipe.incrbyfloat(counter, used)
            pipe.expire(counter, COUNTER_TTL_S)
        results = await self._r.run("rate limits", pipe.execute())
        for i, (buckets, key, counter, used) in enumerate(batch):
            total = float(results[2 * i])
            before = self.totals.get(counter)
            self.totals.put(counter, total)
            others = total - used - before if before is not None else 0.0
            if others > 0:
                buckets.drain(key, min(others, float(buckets.burst)))
