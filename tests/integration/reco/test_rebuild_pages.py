"""The features rebuilt at start a page of the interaction log at a time come back as they were live."""

from app.main import PLATFORM, create_app
from app.reco import service
from tests.conftest import make_config
from tests.integration.reco.helpers import browse_history, event, ingest, recommend, seed_items, staff


async def test_features_rebuilt_in_small_pages_are_the_live_ones(aiohttp_client, tmp_path, clock, monkeypatch):
    config = make_config(tmp_path, reco__explore_items=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("gu", "product_view", "dest-BCN"), event("gu", "cart_add", "seat-standard")])
    strategies = ("personalized", "cf", "trending", "frequently_bought_together")
    before = {s: await recommend(client, headers, "gu", strategy=s, n=6) for s in strategies}
    popular = await (await client.get("/v1/recommendations/popular", headers=headers)).json()
    stored = len(await client.app[PLATFORM].reco_store.interactions())
    await client.close()

    monkeypatch.setattr(service, "REBUILD_PAGE", 3)  # many pages, the last one short
    assert stored > 3 * 3 and stored % 3
    again = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(again)
    assert {s: await recommend(again, headers, "gu", strategy=s, n=6) for s in strategies} == before
    assert await (await again.get("/v1/recommendations/popular", headers=headers)).json() == popular
