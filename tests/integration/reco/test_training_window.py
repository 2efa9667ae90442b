"""A training reads the latest `reco.training_max_events` stored interactions, not the whole log."""

from app.main import PLATFORM, create_app
from app.reco import service
from tests.conftest import make_config
from tests.integration.reco.helpers import ingest, staff
from tests.integration.reco.test_training import clustered_history


async def test_training_reads_the_latest_interactions_up_to_the_cap(aiohttp_client, tmp_path, clock, monkeypatch):
    monkeypatch.setattr(service, "TRAINING_PAGE", 7)  # many pages, the last one short
    config = make_config(tmp_path, reco__explore_items=0, reco__factors=8, reco__coview_window=1,
                         reco__training_max_events=300)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    admin = {"X-Api-Key": (await client.app[PLATFORM].api_keys.create("ops", "admin"))[1]}
    await ingest(client, headers, clustered_history(clock.now()))  # 90 shoppers, 6 events each, one after another
    p = client.app[PLATFORM]
    every = await p.reco_store.interactions()
    assert len(every) == 540
    assert await p.reco._latest(300) == every[-300:]
    assert await p.reco._latest(1_000) == every

    result = await (await client.post("/v1/admin/reco/train", headers=admin)).json()
    assert result["evaluation"]["events"] == 300
    assert result["evaluation"]["users"] == 50  # the last 50 shoppers' events
