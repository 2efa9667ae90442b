import asyncio

from app.demo import demo_campaigns
from app.main import PLATFORM, create_app
from tests.conftest import make_config


async def test_demo_traffic_is_the_simulator_driving_the_node_over_loopback(aiohttp_client, tmp_path):
    app = create_app(make_config(tmp_path, demo__traffic_per_s="100"))
    client = await aiohttp_client(app)
    platform = client.app[PLATFORM]
    for campaign in demo_campaigns():
        await platform.campaigns.create("test", campaign, audit=False)
    seen: set[str] = set()
    for _ in range(100):
        await asyncio.sleep(0.05)
        await platform.event_log.flush()
        seen = {e.type for e in await platform.event_log.query(None, None, 0, 10_000)}
        if {"Bid", "Win", "Loss", "Shown"} <= seen:
            break
    assert {"Bid", "Win", "Loss", "Shown"} <= seen  # won bids log their features: the bid model learns from them
    assert platform.supervisor.states["demo_traffic"].state == "running"
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_bid_requests_total{outcome="bid",protocol="rest"}' in metrics
    keys = [k for k in platform.api_keys.list() if k.name.startswith("demo traffic")]
    assert sorted((k.name, k.role) for k in keys) == [("demo traffic (bids)", "exchange"),
                                                      ("demo traffic (profiles)", "partner")]


async def test_demo_traffic_is_off_by_default(client):
    assert "demo_traffic" not in client.app[PLATFORM].supervisor.states
