"""The shared retry helper against a real loopback server that fails on purpose: what is retried, what is not, how
long it waits, and what the error says."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from adapters.http.retry import IntegrationError, RetryPolicy, backoff_delay, call, describe_error, retry_after_s
from tests.integration.integrations.helpers import Sleeps, closed_port


class Flaky:
    """Answers the scripted failures first, then 200 {"ok": true}. A script entry is a status, or "slow"."""

    def __init__(self) -> None:
        self.script: list[int | str] = []
        self.hits = 0
        self.retry_after: str | None = None
        self.slow_s = 0.5

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.script:
            step = self.script.pop(0)
            if step == "slow":
                await asyncio.sleep(self.slow_s)
                return web.json_response({"ok": "late"})
            if step == "text":
                return web.Response(text="<html>gateway</html>", status=200)
            assert isinstance(step, int)
            headers = {"Retry-After": self.retry_after} if self.retry_after and step in (429, 503) else {}
            return web.json_response({"message": f"scripted {step}"}, status=step, headers=headers)
        return web.json_response({"ok": True, "echo": await request.json() if request.can_read_body else None})


@pytest.fixture
async def flaky(aiohttp_server):
    f = Flaky()
    app = web.Application()
    app.router.add_route("*", "/thing", f.handle)
    server = await aiohttp_server(app)
    f.url = str(server.make_url("/thing"))
    async with aiohttp.ClientSession() as session:
        f.session = session
        yield f


FAST = RetryPolicy(attempts=3, deadline_s=5.0, base_delay_s=0.01, max_delay_s=0.05)


async def test_a_503_then_success_is_retried_once_and_counted(flaky):
    flaky.script = [503]
    outcomes: list[tuple[str, str]] = []
    sleeps = Sleeps()
    answer = await call(flaky.session, "POST", flaky.url, tool="jira", policy=FAST, json={"a": 1},
                        on_attempt=lambda tool, outcome: outcomes.append((tool, outcome)), sleep=sleeps)
    assert answer.status == 200 and answer.body == {"ok": True, "echo": {"a": 1}}
    assert flaky.hits == 2
    assert outcomes == [("jira", "retry"), ("jira", "ok")]
    assert len(sleeps.waits) == 1 and 0.005 <= sleeps.waits[0] <= 0.01


async def test_a_400_is_not_retried_and_the_error_says_what_the_tool_said(flaky):
    flaky.script = [400]
    outcomes: list[str] = []
    with pytest.raises(IntegrationError) as caught:
        await call(flaky.session, "POST", flaky.url, tool="asana", policy=FAST, json={},
                   on_attempt=lambda tool, outcome: outcomes.append(outcome))
    assert flaky.hits == 1 and outcomes == ["failed"]
    error = caught.value
    assert (error.tool, error.status) == ("asana", 400)
    assert "scripted 400" in str(error) and "/thing" in str(error)


@pytest.mark.parametrize("status", [401, 403, 404, 409, 422])
async def test_no_other_4xx_is_retried(flaky, status):
    flaky.script = [status]
    with pytest.raises(IntegrationError) as caught:
        await call(flaky.session, "GET", flaky.url, tool="t", policy=FAST)
    assert caught.value.status == status and flaky.hits == 1


async def test_a_429_waits_as_long_as_retry_after_says(flaky):
    flaky.script, flaky.retry_after = [429], "2"
    sleeps = Sleeps()
    answer = await call(flaky.session, "GET", flaky.url, tool="bynder", policy=FAST, sleep=sleeps)
    assert answer.status == 200 and flaky.hits == 2
    assert sleeps.waits == [2.0]


async def test_a_retry_after_longer_than_we_wait_gives_up_at_once(flaky):
    flaky.script, flaky.retry_after = [429], "3600"
    sleeps = Sleeps()
    with pytest.raises(IntegrationError) as caught:
        await call(flaky.session, "GET", flaky.url, tool="powerbi", policy=FAST, sleep=sleeps)
    assert caught.value.status == 429 and "3600" in caught.value.message
    assert sleeps.waits == [] and flaky.hits == 1


async def test_5xx_until_attempts_run_out(flaky):
    flaky.script = [502, 500, 504, 200]
    outcomes: list[str] = []
    with pytest.raises(IntegrationError) as caught:
        await call(flaky.session, "GET", flaky.url, tool="aem", policy=FAST,
                   on_attempt=lambda tool, outcome: outcomes.append(outcome))
    assert flaky.hits == 3 and outcomes == ["retry", "retry", "failed"]
    assert caught.value.status == 504 and "gave up after 3 attempts" in caught.value.message


async def test_a_slow_answer_times_out_and_the_retry_succeeds(flaky):
    flaky.script = ["slow"]
    policy = RetryPolicy(attempts=2, deadline_s=2.0, attempt_timeout_s=0.1, base_delay_s=0.01)
    started = time.monotonic()
    answer = await call(flaky.session, "GET", flaky.url, tool="decision", policy=policy)
    assert answer.body["ok"] is True and flaky.hits == 2
    assert time.monotonic() - started < 0.45


async def test_the_deadline_bounds_the_whole_call(flaky):
    flaky.script = ["slow", "slow", "slow"]
    policy = RetryPolicy(attempts=5, deadline_s=0.3, base_delay_s=0.01)
    started = time.monotonic()
    with pytest.raises(IntegrationError) as caught:
        await call(flaky.session, "GET", flaky.url, tool="decision", policy=policy)
    assert time.monotonic() - started < 0.45
    assert caught.value.status is None and "did not answer" in caught.value.message


async def test_a_refused_connection_is_retried_then_reported():
    outcomes: list[str] = []
    async with aiohttp.ClientSession() as session:
        with pytest.raises(IntegrationError) as caught:
            await call(session, "GET", f"http://127.0.0.1:{closed_port()}/x", tool="jira", policy=FAST,
                       on_attempt=lambda tool, outcome: outcomes.append(outcome))
    assert outcomes == ["retry", "retry", "failed"]
    assert caught.value.status is None and "failed" in caught.value.message


async def test_a_2xx_that_is_not_json_is_a_failure(flaky):
    flaky.script = ["text"]
    with pytest.raises(IntegrationError, match="not JSON"):
        await call(flaky.session, "GET", flaky.url, tool="t", policy=FAST)
    assert flaky.hits == 1


async def test_a_broken_metrics_callback_does_not_fail_the_call(flaky):
    def broken(tool: str, outcome: str) -> None:
        raise RuntimeError("metrics down")

    assert (await call(flaky.session, "GET", flaky.url, tool="t", policy=FAST, on_attempt=broken)).status == 200


def test_backoff_doubles_is_capped_and_jittered():
    policy = RetryPolicy(base_delay_s=0.2, max_delay_s=1.0, jitter=0.5)
    assert [backoff_delay(policy, n, rand=lambda: 1.0) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.0]
    assert backoff_delay(policy, 2, rand=lambda: 0.0) == pytest.approx(0.2)


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Thu, 01 Jan 2026 12:00:30 GMT", now=lambda: now) == 30.0
    assert retry_after_s("Thu, 01 Jan 2026 11:00:00 GMT", now=lambda: now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_errors_are_described_in_each_tools_words():
    assert describe_error({"errorMessages": [], "errors": {"summary": "You must specify a summary of the issue."}},
                          "") == "summary: You must specify a summary of the issue."
    assert describe_error({"errors": [{"message": "projects: Not a recognized ID"}]}, "") == \
        "projects: Not a recognized ID"
    assert describe_error({"error": {"code": "ItemNotFound", "message": "Dataset not found"}}, "") == \
        "Dataset not found"
    assert describe_error(None, "  Bad gateway  ") == "Bad gateway"
