"""The Power BI push-dataset exporter against a loopback server with Power BI's routes, limits and error bodies; the
rolling-minute limiter runs on a fake clock, so a minute of waiting takes no time."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from adapters.http.powerbi import PowerBIExporter, RollingWindowLimiter
from adapters.http.retry import IntegrationError, RetryPolicy
from app.campaigns.wiring import powerbi_exporter
from app.config import load_config
from tests.integration.integrations.helpers import FakeTime

FAST = RetryPolicy(attempts=3, deadline_s=5.0, base_delay_s=0.01, max_delay_s=0.05)
DATASET = "cfc8f9a4-0000-4c1a-9000-000000000001"
WORKSPACE = "f089354e-8366-4e18-aea3-4cb4a3a50b48"


class FakePowerBI:
    """POST rows to a push dataset table: at most 10,000 rows a POST, a Bearer token, a known dataset and table."""

    def __init__(self, time: FakeTime | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.time = time

    async def rows(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer entra-token":
            return web.json_response({"error": {"code": "TokenExpired", "message": "Access token has expired"}},
                                     status=403)
        if self.fail_next:
            status = self.fail_next.pop(0)
            return web.json_response({"error": {"code": "TooManyRequests", "message": "Throttled"}}, status=status,
                                     headers={"Retry-After": "4"})
        if request.match_info["dataset"] != DATASET:
            return web.json_response({"error": {"code": "ItemNotFound",
                                                "message": f"Dataset {request.match_info['dataset']} is not found"}},
                                     status=404)
        body = await request.json()
        rows = body.get("rows")
        if not isinstance(rows, list) or len(rows) > 10_000:
            return web.json_response({"error": {"code": "InvalidRequest", "message": "Too many rows in request"}},
                                     status=400)
        self.posts.append({"path": request.path, "group": request.match_info.get("group"), "rows": len(rows),
                           "first": rows[0] if rows else None, "at": self.time.now if self.time else None})
        return web.json_response({})


async def _server(aiohttp_server, fake: FakePowerBI) -> str:
    app = web.Application()
    app.router.add_post("/v1.0/myorg/datasets/{dataset}/tables/{table}/rows", fake.rows)
    app.router.add_post("/v1.0/myorg/groups/{group}/datasets/{dataset}/tables/{table}/rows", fake.rows)
    return str((await aiohttp_server(app)).make_url(""))


@pytest.fixture
async def powerbi(aiohttp_server):
    time = FakeTime()
    fake = FakePowerBI(time)
    base = await _server(aiohttp_server, fake)
    exporter = PowerBIExporter(base, DATASET, "entra-token", enabled=True, clock=time.clock, sleep=time.sleep,
                               policy=FAST)
    yield fake, exporter, time
    await exporter.close()


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"booking_id": i, "route": "LIS-FNC", "revenue_eur": 89.5} for i in range(n)]


async def test_it_is_off_by_default_and_sends_nothing(aiohttp_server):
    fake = FakePowerBI()
    exporter = PowerBIExporter(await _server(aiohttp_server, fake), DATASET, "entra-token")
    try:
        assert await exporter.push_rows("Bookings", _rows(5)) == 0
    finally:
        await exporter.close()
    assert fake.posts == []


async def test_10001_rows_go_as_two_posts(powerbi):
    fake, exporter, _ = powerbi
    assert await exporter.push_rows("Bookings", _rows(10_001)) == 2
    assert [p["rows"] for p in fake.posts] == [10_000, 1]
    assert fake.posts[1]["first"]["booking_id"] == 10_000
    assert fake.posts[0]["path"] == f"/v1.0/myorg/datasets/{DATASET}/tables/Bookings/rows"


async def test_the_121st_post_in_a_minute_waits_for_the_first_to_age(powerbi):
    fake, exporter, time = powerbi
    exporter.max_rows_per_post = 1
    assert await exporter.push_rows("Bids", _rows(121)) == 121
    assert len(fake.posts) == 121
    assert [p["at"] for p in fake.posts[:120]] == [0.0] * 120
    assert fake.posts[120]["at"] == 60.0
    assert time.sleeps == [60.0]


async def test_posts_spread_over_time_do_not_wait(powerbi):
    fake, exporter, time = powerbi
    exporter.max_rows_per_post = 1
    for _ in range(3):
        await exporter.push_rows("Bids", _rows(60))
        time.now += 30.0  # 60 POSTs every 30 s: never more than 120 in a rolling minute
    assert len(fake.posts) == 180 and time.sleeps == []


async def test_a_throttled_post_is_retried_after_retry_after(powerbi):
    fake, exporter, time = powerbi
    fake.fail_next = [429]
    assert await exporter.push_rows("Bookings", _rows(3)) == 1
    assert [p["rows"] for p in fake.posts] == [3] and time.sleeps == [4.0]


async def test_a_workspace_dataset_and_a_token_provider(aiohttp_server):
    fake = FakePowerBI()
    fetched: list[int] = []

    async def token() -> str:
        fetched.append(1)
        return "entra-token"

    exporter = PowerBIExporter(await _server(aiohttp_server, fake), DATASET, token, group_id="ws-1", enabled=True,
                               max_rows_per_post=2, policy=FAST)
    try:
        assert await exporter.push_rows("Sends", _rows(3)) == 2
    finally:
        await exporter.close()
    assert fake.posts[0]["path"] == f"/v1.0/myorg/groups/ws-1/datasets/{DATASET}/tables/Sends/rows"
    assert len(fetched) == 2


async def test_an_unknown_dataset_is_refused_with_power_bis_words(aiohttp_server):
    fake = FakePowerBI()
    exporter = PowerBIExporter(await _server(aiohttp_server, fake), "no-such-dataset", "entra-token", enabled=True,
                               policy=FAST)
    try:
        with pytest.raises(IntegrationError) as caught:
            await exporter.push_rows("Bookings", _rows(1))
    finally:
        await exporter.close()
    assert caught.value.status == 404 and "Dataset no-such-dataset is not found" in caught.value.message


def test_the_batch_size_cannot_exceed_power_bis_limit():
    with pytest.raises(ValueError):
        PowerBIExporter("http://127.0.0.1:9", DATASET, "t", max_rows_per_post=10_001)


async def test_the_limiter_frees_one_slot_as_each_send_ages():
    time = FakeTime()
    limiter = RollingWindowLimiter(2, 60.0, clock=time.clock, sleep=time.sleep)
    await limiter.acquire()
    time.now = 10.0
    await limiter.acquire()
    await limiter.acquire()  # waits until the first is 60 s old
    assert time.now == 60.0
    await limiter.acquire()  # and then until the second is
    assert time.now == 70.0 and time.sleeps == [50.0, 10.0]


@pytest.mark.parametrize("group_id, path", [
    (WORKSPACE, f"/v1.0/myorg/groups/{WORKSPACE}/datasets/{DATASET}/tables/campaign_hours/rows"),
    ("", f"/v1.0/myorg/datasets/{DATASET}/tables/campaign_hours/rows"),  # unset: My workspace, as before
], ids=["workspace", "my-workspace"])
async def test_the_configured_workspace_reaches_the_wire(aiohttp_server, group_id, path):
    """integrations.powerbi_group_id, from the environment through the app's wiring, picks Post Rows In Group."""
    fake = FakePowerBI()
    env = {"POWERBI_ENABLED": "true", "POWERBI_URL": await _server(aiohttp_server, fake), "POWERBI_DATASET_ID": DATASET,
           "POWERBI_TOKEN": "entra-token", "POWERBI_GROUP_ID": group_id}
    tools = load_config(None, env={f"CONTRAIL__INTEGRATIONS__{k}": v for k, v in env.items()}).integrations
    outcomes: list[str] = []
    exporter = powerbi_exporter(tools, FAST, lambda tool, outcome: outcomes.append(f"{tool}:{outcome}"))
    try:
        assert await exporter.push_rows(tools.powerbi_table, _rows(2)) == 1
    finally:
        await exporter.close()
    assert [(p["path"], p["group"], p["rows"]) for p in fake.posts] == [(path, group_id or None, 2)]
    assert outcomes == ["powerbi:ok"]
