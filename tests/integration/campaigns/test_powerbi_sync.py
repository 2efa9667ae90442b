"""The Power BI sync of campaign hours against the real app's roll-up and records database and a loopback server with
Power BI's push-rows route: complete hours arrive once, whole hours a POST, the place survives a restart, and a
failing server is counted in /metrics and tried again at the next interval without the task raising."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web

from adapters.http.powerbi import PowerBIExporter
from adapters.http.retry import RetryPolicy
from adapters.sqlite.cursors import SqliteCursorStore
from adapters.sqlite.reports import SqliteReportStore
from app.campaigns.powerbi_sync import CURSOR, PowerBISync
from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.campaigns.test_reports import live_campaign
from tests.integration.integrations.test_powerbi import DATASET, FakePowerBI

HOUR = 3600
FAST = RetryPolicy(attempts=3, deadline_s=5.0, base_delay_s=0.01, max_delay_s=0.02)


@pytest.fixture
async def powerbi(aiohttp_server):
    fake = FakePowerBI()
    app = web.Application()
    app.router.add_post("/v1.0/myorg/datasets/{dataset}/tables/{table}/rows", fake.rows)
    server = await aiohttp_server(app)
    return fake, str(server.make_url(""))


@pytest.fixture
async def shop(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    for name in ("spring", "summer"):
        await client.app[PLATFORM].campaigns.create("test", live_campaign(name), audit=False)
    return client, config


@pytest.fixture
async def make_sync():
    """The sync as app/campaigns/wiring.py builds it, on the real app's services and a loopback Power BI (sessions
    closed after the test)."""
    made: list[PowerBISync] = []

    def make(client, base_url: str, interval_s: float = 300.0, max_rows: int = 10_000) -> PowerBISync:
        made.append(_sync(client, base_url, interval_s, max_rows))
        return made[-1]
    yield make
    for sync in made:
        await sync._exporter.close()


def _sync(client, base_url: str, interval_s: float, max_rows: int) -> PowerBISync:
    p = client.app[PLATFORM]
    metrics = p.metrics
    exporter = PowerBIExporter(base_url, DATASET, "entra-token", enabled=True, policy=FAST,
                               max_rows_per_post=max_rows,
                               on_attempt=lambda tool, outcome: metrics.integration_calls.labels(tool, outcome).inc())
    return PowerBISync(exporter, SqliteReportStore(p.records_db), SqliteCursorStore(p.records_db), p.clock,
                       metrics, table="campaign_hours", interval_s=interval_s,
                       name_of=lambda c: p.campaigns.get(c).name if p.campaigns.exists(c) else None)


async def traffic(client, clock, hours: dict[int, list[str]]) -> None:
    """Bids for these campaigns in these hours (offsets from the clock's hour), through the event log and roll-up;
    the clock is moved to each hour to log them and back after."""
    p = client.app[PLATFORM]
    now = clock.now()
    base = int(now // HOUR) * HOUR
    for offset, campaigns in hours.items():
        clock.advance(base + offset * HOUR + 60 - clock.now())
        p.event_log.log_events("Bid", [{"campaign_id": c, "bid_id": f"{c}-{offset}"} for c in campaigns])
    clock.advance(now - clock.now())
    await p.event_log.flush()
    await p.reports.roll_up()


async def calls(client, outcome: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = re.search(rf'^contrail_integration_calls_total{{outcome="{outcome}",tool="powerbi"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_complete_hours_arrive_once_and_the_place_survives_a_restart(shop, make_sync, powerbi, aiohttp_client,
                                                                        clock):
    client, config = shop
    fake, base = powerbi
    start = clock.now()
    await traffic(client, clock, {-3: ["spring", "summer"], -2: ["spring"], 0: ["summer"]})
    sync = make_sync(client, base)
    assert await sync.run_once() == 3  # the two complete hours; the current one is not over
    assert [p["rows"] for p in fake.posts] == [3]
    first = fake.posts[0]["first"]
    hour = int(start // HOUR) * HOUR - 3 * HOUR
    assert first["campaign_id"] == "spring" and first["campaign_name"] == "Spring" and first["bids"] == 1
    assert first["hour"].endswith(":00:00Z") and first["row_id"] == f"spring@{first['hour']}"
    assert fake.posts[0]["path"] == f"/v1.0/myorg/datasets/{DATASET}/tables/campaign_hours/rows"
    cursors = SqliteCursorStore(client.app[PLATFORM].records_db)
    assert await cursors.get(CURSOR) == sync.last_complete_hour() >= hour + HOUR
    assert await sync.run_once() == 0 and len(fake.posts) == 1  # nothing new

    clock.advance(2 * HOUR)  # the hour with summer's bid is over
    await client.close()
    again = await aiohttp_client(create_app(config, clock=clock))
    restarted = make_sync(again, base)
    assert await restarted.run_once() == 1  # only the new hour, not what was sent before the restart
    assert fake.posts[-1]["first"]["campaign_id"] == "summer" and len(fake.posts) == 2
    assert await calls(again, "ok") == 1


async def test_posts_hold_whole_hours(shop, make_sync, powerbi, clock):
    client, _ = shop
    fake, base = powerbi
    await traffic(client, clock, {-5: ["spring", "summer"], -4: ["spring", "summer"], -3: ["spring"]})
    sync = make_sync(client, base, max_rows=3)
    assert await sync.run_once() == 5
    assert [p["rows"] for p in fake.posts] == [2, 3]  # the second hour does not fit beside the first: its own POST
    one = make_sync(client, base, max_rows=1)
    await SqliteCursorStore(client.app[PLATFORM].records_db).put(CURSOR, 0)
    assert await one.run_once() == 5  # an hour with more rows than a POST takes goes alone, in several POSTs
    assert [p["rows"] for p in fake.posts[2:]] == [1, 1, 1, 1, 1]


async def test_a_failing_server_is_counted_and_tried_again_next_interval(shop, make_sync, powerbi, clock):
    client, _ = shop
    fake, base = powerbi
    await traffic(client, clock, {-3: ["spring"]})
    cursors = SqliteCursorStore(client.app[PLATFORM].records_db)
    fake.fail_next = [500, 502, 503, 500]  # the first pass's three attempts fail, and the next pass's first
    sync = make_sync(client, base, interval_s=0.05)
    task = asyncio.create_task(sync.run())
    try:
        for _ in range(200):  # until the second pass has posted and moved the cursor past what it sent
            if fake.posts and await cursors.get(CURSOR) is not None:
                break
            await asyncio.sleep(0.02)
        assert [p["rows"] for p in fake.posts] == [1]
        assert not task.done()  # it never raised
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sync.passes_failed == 1
    assert await calls(client, "failed") == 1 and await calls(client, "retry") == 3 and await calls(client, "ok") == 1
    assert await cursors.get(CURSOR) == sync.last_complete_hour()


async def test_a_refused_token_is_logged_not_raised_and_moves_nothing(shop, make_sync, powerbi, clock):
    client, _ = shop
    fake, base = powerbi
    await traffic(client, clock, {-3: ["spring"]})
    sync = make_sync(client, base)
    sync._exporter._token = "expired"  # type: ignore[attr-defined]
    assert await sync.run_once() == 0
    assert fake.posts == [] and await calls(client, "failed") == 1 and await calls(client, "retry") == 0
    assert await SqliteCursorStore(client.app[PLATFORM].records_db).get(CURSOR) is None


async def test_a_disabled_exporter_sends_nothing_and_keeps_its_place(shop, make_sync, powerbi, clock):
    client, _ = shop
    fake, base = powerbi
    await traffic(client, clock, {-3: ["spring"]})
    sync = make_sync(client, base)
    sync._exporter.enabled = False
    assert await sync.run_once() == 0 and fake.posts == []
    assert await SqliteCursorStore(client.app[PLATFORM].records_db).get(CURSOR) is None
