"""The external decision API client against a loopback service that speaks Contrail's contract, answers late or
wrongly on purpose, and the shared CircuitBreaker wrapped around it as a caller would."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from adapters.http.decision import DecisionClient
from adapters.http.retry import IntegrationError, RetryPolicy
from app.runtime.breaker import CircuitBreaker
from app.runtime.clock import ManualClock
from tests.integration.integrations.helpers import Sleeps

FAST = RetryPolicy(attempts=3, deadline_s=5.0, base_delay_s=0.01, max_delay_s=0.05)


class FakeDecisionService:
    def __init__(self) -> None:
        self.recommendations: list[dict[str, Any]] = []
        self.rewards: list[tuple[str | None, dict[str, Any]]] = []
        self.catalog: list[dict[str, Any]] = []
        self.action: Any = "b"
        self.delay_s = 0.0
        self.fail_next: list[int] = []

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != "Bearer dk-live-1":
            return web.json_response({"error": "invalid_api_key"}, status=401)
        if request.content_type != "application/json":
            return web.json_response({"error": "unsupported_media_type"}, status=415)
        return None

    async def recommend(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await request.json()
        if not body.get("arms"):
            return web.json_response({"error": "validation", "detail": "arms must not be empty"}, status=422)
        self.recommendations.append(body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.json_response({"action": self.action, "request_id": f"r-{len(self.recommendations)}"})

    async def reward(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await request.json()
        self.rewards.append((request.headers.get("Idempotency-Key"), body))
        if self.fail_next:
            return web.json_response({"error": "unavailable"}, status=self.fail_next.pop(0))
        return web.Response(status=202)

    async def put_catalog(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        self.catalog = (await request.json())["items"]
        return web.Response(status=204)


@pytest.fixture
async def service(aiohttp_server):
    fake = FakeDecisionService()
    app = web.Application()
    app.router.add_post("/v1/recommendations", fake.recommend)
    app.router.add_post("/v1/rewards", fake.reward)
    app.router.add_put("/v1/catalog", fake.put_catalog)
    server = await aiohttp_server(app)
    client = DecisionClient(str(server.make_url("")), "dk-live-1", recommendation_deadline_s=0.2, policy=FAST,
                            sleep=Sleeps())
    yield fake, client
    await client.close()


async def test_a_recommendation_is_one_of_the_arms(service):
    fake, client = service
    context = {"route": "LIS-FNC", "channel": "email", "days_to_departure": 21}
    assert await client.get_recommendation("u-42", context, ["a", "b", "c"]) == "b"
    assert fake.recommendations == [{"user_id": "u-42", "context": context, "arms": ["a", "b", "c"]}]


async def test_no_opinion_is_none_and_an_unknown_arm_is_an_error(service):
    fake, client = service
    fake.action = None
    assert await client.get_recommendation("u-1", {}, ["a"]) is None
    fake.action = "z"
    with pytest.raises(IntegrationError, match="not one of the arms"):
        await client.get_recommendation("u-1", {}, ["a"])


async def test_a_slow_recommendation_fails_at_its_deadline(service):
    fake, client = service
    fake.delay_s = 1.0
    started = time.monotonic()
    with pytest.raises(IntegrationError) as caught:
        await client.get_recommendation("u-1", {}, ["a", "b"])
    assert time.monotonic() - started < 0.5
    assert caught.value.tool == "decision" and caught.value.status is None
    assert len(fake.recommendations) == 1  # tried once: a retry would not fit the deadline


async def test_a_reward_is_retried_with_the_same_idempotency_key(service):
    fake, client = service
    fake.fail_next = [503]
    await client.send_reward("u-42", "b", 1.0)
    assert len(fake.rewards) == 2
    (first_key, body), (second_key, _) = fake.rewards
    assert first_key and first_key == second_key
    assert body == {"user_id": "u-42", "action": "b", "reward": 1.0}
    await client.send_reward("u-42", "b", 0.0)
    assert fake.rewards[-1][0] != first_key


async def test_the_catalog_is_replaced(service):
    fake, client = service
    items = [{"id": "offer-1", "kind": "fare", "route": "LIS-FNC"}, {"id": "offer-2", "kind": "bag"}]
    await client.sync_catalog(items)
    assert fake.catalog == items


async def test_refusals_are_not_retried_and_say_why(service):
    fake, client = service
    with pytest.raises(IntegrationError) as caught:
        await client.get_recommendation("u-1", {}, [])
    assert caught.value.status == 422 and "arms must not be empty" in caught.value.message
    bad = DecisionClient(client.base_url, "dk-revoked", policy=FAST)
    try:
        with pytest.raises(IntegrationError) as caught:
            await bad.sync_catalog([])
        assert caught.value.status == 401 and "invalid_api_key" in caught.value.message
    finally:
        await bad.close()


async def test_wrapped_in_the_circuit_breaker_it_falls_back_then_recovers(service):
    fake, client = service
    clock = ManualClock()
    breaker = CircuitBreaker(clock, failures=2, open_s=30.0, successes=1)
    calls_before = len(fake.recommendations)

    async def choose(arms: list[str]) -> str:
        if breaker.allow():
            try:
                action = await client.get_recommendation("u-7", {}, arms)
            except IntegrationError:
                breaker.failed()
            else:
                breaker.succeeded()
                if action is not None:
                    return action
        return arms[0]  # the local policy

    fake.action = "not-an-arm"
    assert [await choose(["a", "b"]) for _ in range(4)] == ["a"] * 4
    assert breaker.state == CircuitBreaker.OPEN and len(fake.recommendations) - calls_before == 2
    fake.action = "b"
    clock.advance(31.0)
    assert await choose(["a", "b"]) == "b" and breaker.state == CircuitBreaker.CLOSED
