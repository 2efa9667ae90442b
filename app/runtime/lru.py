"""The one bounded cache: a mapping that keeps at most `capacity` entries, forgetting the least recently used.

Every in-memory cache in Contrail is one of these, so each has a bound, and all of them are
exported alike (`contrail_cache_entries`, `contrail_cache_capacity`, `contrail_cache_evictions_total`
by cache name) through `CacheCollector`; one bounded by bytes too (bidding's request shapes) adds
`contrail_cache_bytes` and `contrail_cache_budget_bytes`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar, overload

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class LRU(Generic[K, V]):
    __slots__ = ("name", "capacity", "evictions", "_items")

    def __init__(self, capacity: int, name: str = "") -> None:
        if capacity < 1:
            raise ValueError("an LRU holds at least one entry")
        self.name = name
        self.capacity = capacity
        self.evictions = 0
        self._items: OrderedDict[K, V] = OrderedDict()

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: object = None) -> object:
        """The value, now the most recently used; `default` when absent."""
        try:
            self._items.move_to_end(key)
        except KeyError:
            return default
        return self._items[key]

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value without counting it as a use."""
        return self._items.get(key, default)

    def put(self, key: K, value: V) -> None:
        """Store the value as the most recently used, forgetting the least recently used past capacity."""
        items = self._items
        items[key] = value
        items.move_to_end(key)
        if len(items) > self.capacity:
            items.popitem(last=False)
            self.evictions += 1

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._items.pop(key, default)

    def oldest(self) -> tuple[K, V] | None:
        """The least recently used entry, left in place."""
        return next(iter(self._items.items()), None)

    def clear(self) -> None:
        self._items.clear()

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._items.items()))

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class SizedLRU(Generic[K, V]):
    """An LRU bounded by bytes as well as by count: the least recently used forgotten first past `max_bytes` or
    `max_entries`, each entry counted as `size(key, value)` bytes when it comes and when it goes (so the values
    are held as they are, with no wrapper the garbage collector would walk). A value alone over the budget is not
    kept."""

    __slots__ = ("name", "capacity", "max_bytes", "bytes", "evictions", "_size", "_items")

    def __init__(self, max_bytes: int, max_entries: int, name: str, size: Callable[[K, V], int]) -> None:
        if max_entries < 1:
            raise ValueError("an LRU holds at least one entry")
        self.name = name
        self.capacity = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        try:
            self._items.move_to_end(key)
        except KeyError:
            return None
        return self._items[key]

    def put(self, key: K, value: V) -> None:
        items = self._items
        old = items.pop(key, None)
        if old is not None:
            self.bytes -= self._size(key, old)
        size = self._size(key, value)
        if size > self.max_bytes:
            return
        items[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes or len(items) > self.capacity:
            gone = items.popitem(last=False)
            self.bytes -= self._size(*gone)
            self.evictions += 1

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._items.items()))

    def __len__(self) -> int:
        return len(self._items)


class Bounded(Protocol):
    """What the collector reads of a bounded collection (an LRU, a ring)."""

    name: str
    capacity: int
    evictions: int

    def __len__(self) -> int: ...


B = TypeVar("B", bound=Bounded)


class CacheCollector:
    """Prometheus collector for every registered bounded collection: entries, capacity and evictions by name."""

    def __init__(self) -> None:
        self._caches: dict[str, Bounded] = {}

    def register(self, cache: B) -> B:
        self._caches[cache.name] = cache
        return cache

    def collect(self) -> Iterator[Metric]:

        entries = GaugeMetricFamily("contrail_cache_entries", "Entries held by a bounded cache", labels=["cache"])
        capacity = GaugeMetricFamily("contrail_cache_capacity", "Most entries a bounded cache holds", labels=["cache"])
        evicted = CounterMetricFamily("contrail_cache_evictions", "Entries a full cache forgot", labels=["cache"])
        held = GaugeMetricFamily("contrail_cache_bytes", "Bytes held by a cache bounded by bytes", labels=["cache"])
        budget = GaugeMetricFamily("contrail_cache_budget_bytes", "Most bytes a cache bounded by bytes holds",
                                   labels=["cache"])
        for name, cache in self._caches.items():
            entries.add_metric([name], len(cache))
            capacity.add_metric([name], cache.capacity)
            evicted.add_metric([name], cache.evictions)
            max_bytes = getattr(cache, "max_bytes", None)
            if max_bytes is not None:  # bounded by bytes as well as by count
                held.add_metric([name], getattr(cache, "bytes", 0))
                budget.add_metric([name], max_bytes)
        yield from (entries, capacity, evicted, held, budget)
