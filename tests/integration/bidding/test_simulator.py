import asyncio

from app.demo import demo_campaigns
from app.main import PLATFORM, create_app
from tests.conftest import make_config


async def test_demo_traffic_feeds_bids_wins_and_losses_through_the_pipeline(aiohttp_client, tmp_path):
    app = create_app(make_config(tmp_path, demo__traffic_per_s="400"))
    client = await aiohttp_client(app)
    platform = client.app[PLATFORM]
    for campaign in demo_campaigns():
        await platform.campaigns.create("test", campaign, audit=False)
    seen: set[str] = set()
    for _ in range(100):
        await asyncio.sleep(0.05)
        await platform.event_log.flush()
        seen = {e.type for e in await platform.event_log.query(None, None, 0, 10_000)}
        if {"Bid", "Win", "Loss"} <= seen:
            break
    assert {"Bid", "Win", "Loss"} <= seen
    assert platform.supervisor.states["demo_traffic"].state == "running"
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_bid_requests_total{outcome="bid",protocol="simulator"}' in metrics


async def test_demo_traffic_is_off_by_default(client):
    assert "demo_traffic" not in client.app[PLATFORM].supervisor.states
