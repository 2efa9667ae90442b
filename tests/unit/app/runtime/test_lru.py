"""The bounded cache keeps at most its capacity, forgets the least recently used, and reports itself."""

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from app.runtime.lru import LRU, CacheCollector, SizedLRU


def test_a_use_keeps_an_entry_and_the_least_recently_used_goes_first():
    cache: LRU[str, int] = LRU(2, "t")
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.peek("a") == 1 and cache.oldest() == ("a", 1)  # peek does not count as a use
    assert cache.evictions == 1 and len(cache) == 2


def _read(cache: LRU | SizedLRU, key: int, order: list[int], values: dict) -> list[int]:
    """A get checked against the reference: the value it holds, and the key then the most recently used."""
    assert cache.get(key) == values.get(key)
    return [k for k in order if k != key] + [key] if key in values else order


@given(st.lists(st.tuples(st.sampled_from("pgc"), st.integers(0, 9), st.integers(0, 40)), max_size=200),
       st.integers(1, 5), st.integers(10, 60))
def test_the_sized_cache_behaves_as_a_recency_list_cut_to_its_bytes_and_entries(ops, capacity, max_bytes):
    """Reference: a list ordered by recency, the oldest dropped while the sizes add up past the budget or the list
    is past its capacity; a value alone over the budget is not kept (and whatever it replaced is gone)."""
    cache: SizedLRU[int, bytes] = SizedLRU(max_bytes, capacity, "t", lambda key, value: 1 + len(value))
    order: list[int] = []
    values: dict[int, bytes] = {}
    for op, key, length in ops:
        if op == "p":
            value = bytes(length)
            cache.put(key, value)
            order = [k for k in order if k != key]
            values.pop(key, None)
            if 1 + length <= max_bytes:
                order.append(key)
                values[key] = value
            while sum(1 + len(values[k]) for k in order) > max_bytes or len(order) > capacity:
                values.pop(order.pop(0))
        elif op == "g":
            order = _read(cache, key, order, values)
        else:
            cache.clear()
            order, values = [], {}
        assert cache.bytes == sum(1 + len(v) for v in values.values()) <= max_bytes
        assert [k for k, _ in cache.items()] == order


@given(st.lists(st.tuples(st.sampled_from("pgd"), st.integers(0, 9)), max_size=200), st.integers(1, 5))
def test_the_cache_behaves_as_a_plain_recency_list(ops, capacity):
    """Reference: a list ordered by recency, cut to the capacity."""
    cache: LRU[int, int] = LRU(capacity)
    order: list[int] = []
    values: dict[int, int] = {}
    for op, key in ops:
        if op == "p":
            cache.put(key, key * 10)
            order = [k for k in order if k != key] + [key]
            values[key] = key * 10
            while len(order) > capacity:
                values.pop(order.pop(0))
        elif op == "g":
            order = _read(cache, key, order, values)
        else:
            assert cache.pop(key) == values.pop(key, None)
            order = [k for k in order if k != key]
        assert len(cache) == len(order) <= capacity
        assert [k for k, _ in cache.items()] == order


def test_caches_are_exported_by_name():
    registry, collector = CollectorRegistry(), CacheCollector()
    registry.register(collector)
    cache = collector.register(LRU(1, "profiles"))
    cache.put(1, 1)
    cache.put(2, 2)
    text = generate_latest(registry).decode()
    assert 'contrail_cache_entries{cache="profiles"} 1.0' in text
    assert 'contrail_cache_capacity{cache="profiles"} 1.0' in text
    assert 'contrail_cache_evictions_total{cache="profiles"} 1.0' in text
