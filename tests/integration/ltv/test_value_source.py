"""The values bids read, against a second SyncValueService on loopback (another team's, which the test can make
slow or fail) and against the in-process LtvService: values are cached and served without waiting; a model that
keeps failing is bypassed by the breaker and the platform heuristic answers until it recovers."""

from __future__ import annotations

import asyncio
import math
import statistics

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from prometheus_client import generate_latest

from adapters.grpc.syncvalue import RemoteSyncValue
from app.config import LtvConfig
from app.ltv.values import ValueSource
from app.runtime.breaker import CircuitBreaker
from app.runtime.clock import ManualClock
from app.runtime.metrics import Metrics
from handlers.rpc import syncvalue_grpc
from handlers.rpc import syncvalue_pb2 as pb
from state.ltv import Purchase, SavedLtvModel
from tests.integration.ltv.helpers import DAY, purchases

# Slow past 300 ms, within a 2 s deadline; open for 30 s after 3 failures; closed after 2 successful trials.
CONFIG = LtvConfig(breaker_slow_ms=300, remote_deadline_ms=2000)


class RemoteValues(syncvalue_grpc.SyncValueServiceBase):
    """Another team's SyncValueService: each customer is worth 10 × the length of their id; customers named
    new-* have no history, bad-* are invalid and fb-* get the remote's own fallback."""

    def __init__(self) -> None:
        self.mode = "ok"   # ok, slow (past the slow threshold), stuck (past the deadline), fail, short, nan
        self.calls = 0
        self.keys: list[str | None] = []
        self.asked: list[tuple[list[str], str]] = []

    async def PredictLTV(self, stream) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def PredictLTVStream(self, stream) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def GetModelHealth(self, stream) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def PredictLTVBatch(self, stream) -> None:
        request = await stream.recv_message()
        self.calls += 1
        self.keys.append(stream.metadata.get("x-api-key"))
        self.asked.append(([r.customer_id for r in request.requests], request.requests[0].platform))
        if self.mode == "fail":
            raise GRPCError(Status.UNAVAILABLE, "value model down")
        if self.mode in ("slow", "stuck"):
            await asyncio.sleep(0.8 if self.mode == "slow" else 3.0)
        replies = [self._answer(r) for r in request.requests]
        if self.mode == "short":
            replies = replies[:-1]
        await stream.send_message(pb.LTVBatchResponse(responses=replies))

    def _answer(self, r: pb.LTVPredictionRequest) -> pb.LTVPredictionResponse:
        status = pb.NO_HISTORY if r.customer_id.startswith("new-") else \
            pb.INVALID_INPUT if r.customer_id.startswith("bad-") else \
            pb.FALLBACK if r.customer_id.startswith("fb-") else pb.SUCCESS
        value = math.nan if self.mode == "nan" else 10.0 * len(r.customer_id)
        return pb.LTVPredictionResponse(request_id=r.request_id, customer_id=r.customer_id, status=status,
                                        predicted_ltv=value)


@pytest.fixture
async def remote():
    service = RemoteValues()
    server = Server([service])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    client = RemoteSyncValue(f"127.0.0.1:{port}", api_key="partner-key")
    yield service, client
    client.close()
    server.close()
    await server.wait_closed()


async def test_the_client_reads_valued_answers_and_refuses_answers_that_do_not_match(remote):
    service, client = remote
    got = await client.predict_many(["ana", "new-bo", "bad-cy", "fb-di"], "tiktok", 2.0)
    assert got == {"ana": 30.0, "new-bo": None}  # SUCCESS carries a value, NO_HISTORY none; the others are left out
    assert service.asked == [(["ana", "new-bo", "bad-cy", "fb-di"], "tiktok")] and service.keys == ["partner-key"]
    service.mode = "short"
    with pytest.raises(ValueError, match="answered 1 of 2"):
        await client.predict_many(["ana", "bo"], "meta", 2.0)
    service.mode = "nan"
    with pytest.raises(ValueError, match="non-finite"):
        await client.predict_many(["ana"], "meta", 2.0)
    service.mode = "fail"
    with pytest.raises(GRPCError) as err:
        await client.predict_many(["ana"], "meta", 2.0)
    assert err.value.status == Status.UNAVAILABLE
    service.mode = "stuck"
    with pytest.raises(TimeoutError):
        await client.predict_many(["ana"], "meta", 0.2)


async def test_remote_values_are_cached_and_a_failing_remote_is_bypassed_until_it_recovers(remote, clock):
    service, client = remote
    metrics = Metrics()
    values = ValueSource.remote(client.predict_many, CONFIG, clock, batch=2, metrics=metrics)

    # Normal: the first read falls back (nothing known yet) and queues; the refresher values; reads hit the cache.
    assert values.value("ana", "meta") == (None, "none")
    assert values.value("bob", "meta") == (None, "none")
    assert await values.refresh() == 2 and service.calls == 1
    assert values.value("ana", "meta") == (30.0, "remote") and values.value("bob", "meta") == (30.0, "remote")
    assert values.value("carla", "meta") == (30.0, "fallback")  # the median of what the remote returned

    # Slow (an answer, too late), then down: the third failure opens the breaker.
    service.mode = "slow"
    assert await values.refresh() == 1  # carla's value is kept; the call counts as failed
    service.mode = "fail"
    for name in ("dora", "emil"):
        values.value(name, "meta")
        assert await values.refresh() == 0
    assert values.breaker.state == CircuitBreaker.OPEN and service.calls == 4
    assert values.stats.calls == {"ok": 1, "slow": 1, "timeout": 0, "error": 2}

    # Open: the remote is not called; bids are answered by the heuristic, and every such answer is counted.
    service.mode = "ok"
    fallbacks = values.stats.fallbacks
    for name, platform, heuristic in (("fay", "tiktok", 45.0), ("gus", "tiktok", 45.0), ("dora", "meta", 30.0),
                                      ("emil", "meta", 30.0)):
        assert values.value(name, platform) == (pytest.approx(heuristic), "fallback")  # median 30 × multiplier
        assert await values.refresh() == 0
    clock.advance(CONFIG.breaker_open_s - 1)
    assert await values.refresh() == 0
    assert service.calls == 4 and values.stats.fallbacks == fallbacks + 4 and values.stats.skipped_open == 5
    assert values.value("carla", "meta") == (50.0, "remote")  # what was cached is still served

    # After the pause one trial goes through (half-open); two successes close the breaker.
    clock.advance(1)
    assert await values.refresh() == 2 and service.calls == 5
    assert values.breaker.state == CircuitBreaker.HALF_OPEN
    assert await values.refresh() == 2 and service.calls == 6
    assert values.breaker.state == CircuitBreaker.CLOSED
    assert values.value("fay", "tiktok") == (30.0, "remote") and values.value("dora", "meta") == (40.0, "remote")

    exposition = generate_latest(metrics.registry).decode()
    for line in ('contrail_ltv_value_fallbacks_total{kind="heuristic"} 7.0',
                 'contrail_ltv_value_fallbacks_total{kind="none"} 2.0',
                 'contrail_ltv_values_served_total{source="remote"} 5.0',
                 'contrail_ltv_value_calls_total{outcome="error"} 2.0',
                 'contrail_ltv_value_calls_total{outcome="slow"} 1.0',
                 'contrail_ltv_value_breaker_state 0.0', 'contrail_cache_entries{cache="ltv_values"} 7.0'):
        assert line in exposition
    assert service.keys == ["partner-key"] * 6


async def test_a_remote_past_its_deadline_counts_as_a_failure(remote, clock):
    service, client = remote
    service.mode = "stuck"
    values = ValueSource.remote(client.predict_many, LtvConfig(remote_deadline_ms=100, breaker_failures=1), clock)
    values.value("ana", "meta")
    assert await values.refresh() == 0
    assert values.stats.calls["timeout"] == 1 and values.breaker.state == CircuitBreaker.OPEN
    assert values.value("ana", "meta") == (None, "none")


async def test_a_caller_that_can_wait_gets_the_remotes_value_or_none_never_the_heuristic(remote, clock):
    """Activation's bands: one customer asked now (then cached); a failing remote is None, and once the breaker is
    open it is not called."""
    service, client = remote
    values = ValueSource.remote(client.predict_many, CONFIG, clock)
    assert await values.value_of("ana", "activation") == 30.0 and service.calls == 1
    assert await values.value_of("ana", "activation") == 30.0 and service.calls == 1  # cached
    assert await values.value_of("bad-cy", "activation") is None  # the remote has no value for them
    service.mode = "fail"
    for customer in ("bo", "cy", "di"):
        assert await values.value_of(customer, "activation") is None
    assert values.breaker.state == CircuitBreaker.OPEN and service.calls == 5
    assert await values.value_of("ed", "activation") is None and service.calls == 5  # open: not called
    assert values.value("ed", "activation") == (None, "none")  # nor do activation's values feed the bids' heuristic
    clock.advance(CONFIG.breaker_open_s)
    service.mode = "ok"
    assert await values.value_of("ed", "activation") == 20.0


class MemoryLtvStore:
    """The LtvStore of state/ports.py over a list: the purchases the model learns from, and its saved models."""

    def __init__(self, purchases: list[Purchase]) -> None:
        self._purchases = sorted(purchases, key=lambda p: p.at)
        self.models: list[SavedLtvModel] = []

    async def purchases(self) -> list[Purchase]:
        return list(self._purchases)

    async def customer_purchases(self, customer_id: str) -> list[Purchase]:
        return [p for p in self._purchases if p.customer_id == customer_id]

    async def purchase_count(self) -> int:
        return len(self._purchases)

    async def save_model(self, model: SavedLtvModel) -> None:
        self.models = [*self.models[-2:], model]

    async def latest_model(self) -> SavedLtvModel | None:
        return self.models[-1] if self.models else None


def purchase_history(start: float, customers: int, days: int = 540, seed: int = 7) -> list[Purchase]:
    return [Purchase(f"cust-{c}", start + t * DAY, cents, "web") for t, c, cents in purchases(customers, days, seed)]


async def test_in_process_values_come_from_the_fitted_model():
    try:
        from app.ltv.service import LtvService
    except ImportError as exc:  # the model package (ml/ltv) is written alongside this
        pytest.skip(f"the in-process LtvService does not import yet: {exc}")
    clock = ManualClock()
    store = MemoryLtvStore(purchase_history(clock.now(), customers=80))
    clock.advance(540 * DAY)
    service = LtvService(LtvConfig(), "EUR", store, clock, Metrics())
    values = ValueSource.in_process(service, LtvConfig(breaker_slow_ms=5000), clock)  # not timed here

    # No model yet: nothing to value with and nothing to fall back on; the customers wait for the model.
    assert values.value("cust-1", "meta") == (None, "none")
    assert await values.refresh() == 0 and values.stats.unvalued == 1

    fitted = await service.refit()
    assert fitted["live"] is True, fitted
    for c in ("cust-1", "cust-2", "stranger"):
        values.value(c, "meta")
    assert await values.refresh() == 2 and values.stats.no_history == 1
    direct = {a.customer_id: a.predicted_ltv for a in await service.predict(
        [service_ask(c) for c in ("cust-1", "cust-2")])}
    for c in ("cust-1", "cust-2"):
        value, source = values.value(c, "meta")
        assert source == "model" and value == pytest.approx(direct[c]) and value >= 0
    assert values.value("stranger", "meta") == (None, "none")  # no purchase known: no value, not the prior

    # A customer not valued yet: the platform's median of the values fetched × its multiplier.
    value, source = values.value("cust-3", "tiktok")
    assert source == "fallback" and value == pytest.approx(statistics.median(direct.values()) * 1.5)

    # A bid may name an id no customer can have: it stays unvalued and does not fail the pass for the others.
    for c in ("x" * 300, "cust-4"):
        values.value(c, "meta")
    assert await values.refresh() == 2 and values.breaker.state == CircuitBreaker.CLOSED  # cust-3 and cust-4
    assert values.value("cust-4", "meta")[1] == "model" and values.value("x" * 300, "meta")[1] == "fallback"


def service_ask(customer_id: str):
    from app.ltv.service import Ask
    return Ask(customer_id, "meta", explain=False)


async def test_the_configured_annual_discount_rate_discounts_what_a_customer_is_worth():
    from app.ltv.service import Ask, LtvService
    clock = ManualClock()
    store = MemoryLtvStore(purchase_history(clock.now(), customers=80))
    clock.advance(540 * DAY)
    first = LtvService(LtvConfig(), "EUR", store, clock, Metrics())
    assert (await first.refit())["live"] is True
    worth = {}
    for rate in (0.0, 0.10, 0.50):  # each service serves the saved model (no refit) at its configured rate
        service = LtvService(LtvConfig(annual_discount_rate=rate), "EUR", store, clock, Metrics())
        await service.load()
        [answer] = await service.predict([Ask("cust-1", "meta", explain=False, horizon_days=730)])
        worth[rate] = answer.predicted_ltv
    assert worth[0.0] > worth[0.10] > worth[0.50] > 0
