"""The value source bids read: the cache, the refresh queue, expiry, the guards, the platform heuristic and the
breaker, on a hand-moved clock and a fake model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from app.config import LtvConfig
from app.ltv.values import PlatformMedian, ValueSource
from app.runtime.breaker import CircuitBreaker
from app.runtime.clock import ManualClock
from app.runtime.metrics import Metrics

CONFIG = LtvConfig()  # breaker: 3 failures, 500 ms slow, 30 s open, 2 successes


class FakeModel:
    """A model the test scripts: values by customer, or a failure, or a slow answer (on a hand-moved timer)."""

    def __init__(self, values: dict[str, float] | None = None) -> None:
        self.values = values or {}
        self.calls: list[tuple[list[str], str, float]] = []
        self.mode = "ok"
        self.elapsed = 0.0

    def timer(self) -> float:
        return self.elapsed

    async def __call__(self, ids: list[str], platform: str, timeout: float) -> dict[str, float]:
        self.calls.append((list(ids), platform, timeout))
        if self.mode == "fail":
            raise ConnectionError("model down")
        if self.mode == "timeout":
            raise TimeoutError
        self.elapsed += 0.6 if self.mode == "slow" else 0.01
        return {c: self.values.get(c, 100.0) for c in ids}


class Counter:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Family:
    def __init__(self) -> None:
        self.children: dict[str, Counter] = {}

    def labels(self, label: str) -> Counter:
        return self.children.setdefault(label, Counter())


def remote(clock: ManualClock, model: FakeModel, **options) -> ValueSource:
    return ValueSource.remote(model, CONFIG, clock, timer=model.timer, **options)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_a_customer_not_valued_yet_is_queued_answered_by_the_fallback_then_served_from_the_cache(clock):
    model = FakeModel({"c1": 120.0, "c2": 80.0})
    values = remote(clock, model)
    assert values.value("c1", "meta") == (None, "none")  # nothing predicted yet: nothing to fall back on
    assert values.value("c2", "meta") == (None, "none")
    assert list(values.queue) == [("meta", "c1"), ("meta", "c2")]
    assert await values.refresh() == 2
    assert model.calls == [(["c1", "c2"], "meta", CONFIG.remote_deadline_ms / 1000)]
    assert values.value("c1", "meta") == (120.0, "remote")
    assert values.value("c2", "meta") == (80.0, "remote")
    assert not values.queue and len(values.cache) == 2 and values.cache.name == "ltv_values"
    assert values.stats.served == {"model": 0, "remote": 2, "fallback": 0, "none": 2}
    assert values.stats.fallbacks == 2 and values.stats.calls["ok"] == 1
    assert await values.refresh() == 0 and len(model.calls) == 1  # nothing waiting: nothing asked


async def test_the_cache_is_bounded_and_each_platform_is_one_call(clock):
    model = FakeModel()
    values = remote(clock, model, capacity=2)
    for customer, platform in (("a", "meta"), ("b", "tiktok"), ("c", "meta")):
        values.value(customer, platform)
    assert await values.refresh() == 3
    assert [(ids, platform) for ids, platform, _ in model.calls] == [(["a", "c"], "meta"), (["b"], "tiktok")]
    assert len(values.cache) == 2 and values.cache.evictions == 1
    assert values.value("a", "meta")[1] == "fallback"  # forgotten first: asked again
    assert ("meta", "a") in values.queue


async def test_the_queue_is_deduplicated_and_bounded_and_a_pass_takes_at_most_a_batch(clock):
    model = FakeModel()
    values = remote(clock, model, queue_limit=3, batch=2)
    for customer in ("a", "a", "b", "a", "c", "d", "e"):
        values.value(customer, "meta")
    assert list(values.queue) == [("meta", "a"), ("meta", "b"), ("meta", "c")]
    assert values.stats.queue_full == 2  # d and e: their next read asks again
    assert await values.refresh() == 2 and model.calls[0][0] == ["a", "b"]
    assert list(values.queue) == [("meta", "c")]
    values.value("d", "meta")
    assert await values.refresh() == 2 and model.calls[1][0] == ["c", "d"]


async def test_values_expire_after_the_ttl_and_a_read_near_the_end_queues_a_refresh(clock):
    model = FakeModel({"c": 50.0})
    values = remote(clock, model, ttl_s=100.0, refresh_ahead=0.1)
    values.value("c", "meta")
    await values.refresh()
    clock.advance(89)
    assert values.value("c", "meta") == (50.0, "remote") and not values.queue
    clock.advance(2)  # in the last tenth: still served, and queued to be valued again
    assert values.value("c", "meta") == (50.0, "remote") and list(values.queue) == [("meta", "c")]
    model.values["c"] = 70.0
    await values.refresh()
    clock.advance(99)
    assert values.value("c", "meta") == (70.0, "remote")  # the refreshed value, valued 99 s ago
    clock.advance(1)
    value, source = values.value("c", "meta")  # expired: the fallback answers, and it is queued again
    assert source == "fallback" and value == pytest.approx(60.0)  # the median of 50 and 70
    assert ("meta", "c") not in values.cache and list(values.queue) == [("meta", "c")]


async def test_values_that_are_not_finite_negative_or_too_high_are_not_cached_and_are_counted(clock):
    model = FakeModel({"nan": math.nan, "inf": math.inf, "neg": -1.0, "high": 2_000.0, "ok": 1_000.0,
                       "zero": 0.0})
    metrics = SimpleNamespace(ltv_value_rejected=Family(), ltv_value_fallbacks=Family())
    values = remote(clock, model, max_value=1_000.0, metrics=metrics)
    for customer in model.values:
        values.value(customer, "meta")
    assert await values.refresh() == 2
    assert values.stats.rejected == {"not_finite": 2, "too_low": 1, "too_high": 1}
    assert {k: c.value for k, c in metrics.ltv_value_rejected.children.items()} == \
        {"not_finite": 2, "too_low": 1, "too_high": 1}
    assert values.value("ok", "meta") == (1_000.0, "remote") and values.value("zero", "meta") == (0.0, "remote")
    value, source = values.value("nan", "meta")
    assert source == "fallback" and value == pytest.approx(500.0)  # only believed values feed the heuristic
    assert metrics.ltv_value_fallbacks.children["none"].value == 6
    assert metrics.ltv_value_fallbacks.children["heuristic"].value == 1


async def test_the_configured_bounds_hold_for_the_heuristic_too(clock):
    config = LtvConfig(value_min=10.0, value_max=500.0)
    model = FakeModel({"a": 400.0, "b": 450.0, "c": 5.0, "d": 600.0})
    metrics = SimpleNamespace(ltv_value_rejected=Family(), ltv_value_fallbacks=Family())
    values = ValueSource.remote(model, config, clock, timer=model.timer, metrics=metrics)
    for customer in model.values:
        values.value(customer, "tiktok")
    assert await values.refresh() == 2  # c is below 10, d above 500: neither believed
    assert values.stats.rejected == {"not_finite": 0, "too_low": 1, "too_high": 1}
    # The heuristic's median (425) x tiktok's 1.5 is 637.5, past value_max: no value rather than an unbelieved one.
    assert values.value("c", "tiktok") == (None, "none")
    assert values.stats.rejected["too_high"] == 2
    assert values.value("c", "meta") == (pytest.approx(425.0), "fallback")  # meta's 1.0 keeps it inside


def test_value_min_must_be_below_value_max():
    with pytest.raises(Exception, match="value_min"):
        LtvConfig(value_min=10.0, value_max=10.0)


async def test_customers_the_model_does_not_value_are_asked_again_on_their_next_read(clock):
    model = FakeModel()

    async def some(ids, platform, timeout):
        await model(ids, platform, timeout)
        return {"known": 10.0}
    values = ValueSource.remote(some, CONFIG, clock)
    values.value("known", "meta")
    values.value("stranger", "meta")
    assert await values.refresh() == 1 and values.stats.unvalued == 1
    assert values.value("stranger", "meta")[1] == "fallback" and ("meta", "stranger") in values.queue


def test_the_heuristic_is_the_platforms_recent_median_times_its_multiplier():
    recent = PlatformMedian({"meta": 1.0, "tiktok": 1.5, "x": 0.75}, window=4)
    assert recent.heuristic("meta") is None
    for v in (10.0, 20.0, 30.0, 1_000.0):
        recent.remember("tiktok", v)
    assert recent.heuristic("tiktok") == pytest.approx(25.0 * 1.5)
    recent.remember("tiktok", 40.0)  # the window keeps the last 4: 20, 30, 1000, 40
    assert recent.heuristic("tiktok") == pytest.approx(35.0 * 1.5)
    # A platform with no values of its own: every platform's values, times its own multiplier.
    assert recent.heuristic("x") == pytest.approx(35.0 * 0.75)
    # Platforms the configuration does not name share one window, at multiplier 1.
    recent.remember("someone-new", 7.0)
    recent.remember("another", 9.0)
    assert recent.heuristic("unnamed") == pytest.approx(8.0)
    assert recent.heuristic("tiktok") == pytest.approx(35.0 * 1.5)


async def test_in_process_the_heuristic_is_the_values_fetched_and_a_customer_without_purchases_has_none(clock):
    from app.ltv.service import Answer

    class Service:
        """Answers SUCCESS (10 × the id's length), or NO_HISTORY (a new customer's prior, 900) for new-*."""

        def __init__(self) -> None:
            self.asked: list[str] = []

        async def predict(self, asks):
            self.asked += [a.customer_id for a in asks]
            return [Answer("", a.customer_id, "NO_HISTORY", predicted_ltv=900.0) if a.customer_id.startswith("new")
                    else Answer("", a.customer_id, "SUCCESS", predicted_ltv=10.0 * len(a.customer_id))
                    for a in asks]

        def heuristic(self, platform: str) -> float | None:
            raise AssertionError("the service's own window (every prediction it made) is not the bids'")

    service = Service()
    values = ValueSource.in_process(service, LtvConfig(max_batch=5), clock, batch=100, ttl_s=100.0)
    assert values.source == "model" and values._batch == 5  # a pass never asks for more than the service takes
    assert values.value("ana", "meta") == (None, "none")  # nothing fetched yet: nothing to fall back on
    for c in ("bo", "new-1"):
        values.value(c, "meta")
    assert await values.refresh() == 2 and service.asked == ["ana", "bo", "new-1"]
    assert values.stats.no_history == 1 and values.stats.unvalued == 0
    assert values.value("cy", "meta") == (25.0, "fallback")  # the median of 30 and 20, not of 900
    assert values.value("di", "tiktok") == (37.5, "fallback")  # × tiktok's 1.5
    # The prior is no one's value: none (the bid keeps the auction's price), and not asked again until it expires.
    assert values.value("new-1", "meta") == (None, "none") and ("meta", "new-1") not in values.queue
    clock.advance(100)
    assert values.value("new-1", "meta") == (25.0, "fallback") and ("meta", "new-1") in values.queue
    assert values.stats.fallbacks == 7 and values.stats.served["none"] == 4


async def test_the_breaker_opens_after_three_failures_skips_the_model_then_half_opens_and_closes(clock):
    model = FakeModel({"c0": 100.0, "c1": 200.0})
    gauge: list[int] = []
    metrics = SimpleNamespace(ltv_value_calls=Family(), ltv_value_breaker=SimpleNamespace(set=gauge.append))
    values = remote(clock, model, batch=1, metrics=metrics)
    values.value("c0", "meta")
    values.value("c1", "meta")
    await values.refresh()
    await values.refresh()
    assert values.breaker.state == CircuitBreaker.CLOSED
    for n, mode in enumerate(("fail", "slow", "timeout")):
        model.mode = mode
        values.value(f"d{n}", "meta")
        await values.refresh()
    assert values.stats.calls == {"ok": 2, "slow": 1, "timeout": 1, "error": 1}
    assert {k: c.value for k, c in metrics.ltv_value_calls.children.items()} == \
        {"ok": 2, "slow": 1, "timeout": 1, "error": 1}
    assert values.breaker.state == CircuitBreaker.OPEN and gauge == [CircuitBreaker.OPEN]
    assert ("meta", "d1") in values.cache  # a slow answer is still a value; the call counts as a failure

    # Open: the model is not asked; reads are answered by the heuristic (the median of 100, 200 and d1's 100).
    model.mode = "ok"
    asked = len(model.calls)
    for n in range(5):
        assert values.value(f"e{n}", "meta") == (100.0, "fallback")
        assert await values.refresh() == 0
    clock.advance(CONFIG.breaker_open_s - 1)
    assert await values.refresh() == 0
    assert len(model.calls) == asked and values.stats.skipped_open == 6 and len(values.queue) == 5

    # After the pause one trial call goes through; two successes close the breaker.
    clock.advance(1)
    assert await values.refresh() == 1
    assert values.breaker.state == CircuitBreaker.HALF_OPEN and len(model.calls) == asked + 1
    assert await values.refresh() == 1
    assert values.breaker.state == CircuitBreaker.CLOSED
    assert gauge == [CircuitBreaker.OPEN, CircuitBreaker.HALF_OPEN, CircuitBreaker.CLOSED]
    assert values.value("e0", "meta") == (100.0, "remote")


async def test_a_failed_trial_opens_the_breaker_again(clock):
    model = FakeModel()
    values = remote(clock, model)
    model.mode = "fail"
    for n in range(3):
        values.value(f"c{n}", "meta")
        await values.refresh()
    assert values.breaker.state == CircuitBreaker.OPEN
    clock.advance(CONFIG.breaker_open_s)
    values.value("trial", "meta")
    await values.refresh()  # the trial fails: open for another pause
    assert values.breaker.state == CircuitBreaker.OPEN and len(model.calls) == 4
    model.mode = "ok"
    clock.advance(CONFIG.breaker_open_s - 1)
    values.value("again", "meta")
    assert await values.refresh() == 0 and len(model.calls) == 4


async def test_one_pass_stops_asking_once_the_breaker_opens(clock):
    model = FakeModel()
    model.mode = "fail"
    values = remote(clock, model, batch=10)
    for platform in ("meta", "tiktok", "x", "linkedin", "amazon"):
        values.value("c", platform)
    await values.refresh()
    assert len(model.calls) == 3 and values.breaker.state == CircuitBreaker.OPEN
    assert values.stats.skipped_open == 1


def test_the_value_cache_is_exported_with_the_others(clock):
    metrics = Metrics()
    values = ValueSource.remote(FakeModel(), CONFIG, clock, metrics=metrics)
    names = {m.samples[0].labels["cache"] for m in metrics.caches.collect() if m.samples}
    assert "ltv_values" in names and values.cache.capacity == 200_000


def test_bad_options_are_refused(clock):
    with pytest.raises(ValueError):
        ValueSource.remote(FakeModel(), CONFIG, clock, ttl_s=0)
    with pytest.raises(ValueError):
        ValueSource.remote(FakeModel(), CONFIG, clock, refresh_ahead=1.0)


def test_the_breaker_and_the_heuristic_default_to_the_agreed_numbers():
    config = LtvConfig()
    assert (config.breaker_failures, config.breaker_slow_ms, config.breaker_open_s, config.breaker_successes) == \
        (3, 500, 30.0, 2)
    assert config.remote_deadline_ms > config.breaker_slow_ms  # a slow call is counted slow, not cut off
    assert config.platform_multipliers == {"google_ads": 1.0, "meta": 1.0, "tiktok": 1.5, "linkedin": 1.2,
                                           "amazon": 1.0, "tradedesk": 1.0, "x": 0.75}
