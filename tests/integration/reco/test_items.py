"""Items that can be recommended: created, replaced, read, validated."""

import pytest

from app.main import PLATFORM
from tests.integration.reco.helpers import seed_items, staff


@pytest.fixture
async def api(client):
    return client, await staff(client)


async def test_items_are_put_one_by_one_or_in_bulk_and_read_back(api, customer_headers):
    client, headers = api
    await seed_items(client, headers)
    resp = await client.put("/v1/reco/items/dest-PDL", headers=headers,
                            json={"category": "destination", "tags": ["islands"], "features": {"beach": 1.0},
                                  "created_at": 1_700_000_000})
    assert resp.status == 200, await resp.text()
    item = await (await client.get("/v1/reco/items/dest-PDL", headers=headers)).json()
    assert item == {"item_id": "dest-PDL", "category": "destination", "tags": ["islands"],
                    "features": {"beach": 1.0}, "created_at": 1_700_000_000, "hidden": False}
    resp = await client.put("/v1/reco/items/dest-PDL", headers=headers, json={"hidden": True})  # replaced whole
    assert (await resp.json())["hidden"] is True and (await resp.json())["category"] is None
    assert (await client.get("/v1/reco/items/nope", headers=headers)).status == 404
    assert (await client.put("/v1/reco/items/x", json={}, headers=customer_headers)).status == 403


@pytest.mark.parametrize("body, status, field", [
    ({"category": ""}, 400, "category"),
    ({"tags": "beach"}, 400, "tags"),
    ({"features": {"beach": "yes"}}, 400, "features"),
    ({"created_at": -1}, 400, "created_at"),
    ({"created_at": 1e300}, 400, "created_at"),  # no year past 5138
    ({"created_at": 1_700_000_000_000}, 400, "created_at"),  # milliseconds, not seconds
    ({"colour": "red"}, 400, "colour"),
    ({"item_id": "other"}, 400, "item_id"),
])
async def test_a_malformed_item_is_refused_naming_the_field(api, body, status, field):
    client, headers = api
    resp = await client.put("/v1/reco/items/dest-X", json=body, headers=headers)
    assert resp.status == status
    error = (await resp.json())["error"]
    assert field in error["message"], error
    assert (error.get("details") or {}).get("field", field).startswith(field), error   # the field it names


async def test_a_bulk_load_is_all_or_nothing(api):
    client, headers = api
    bad = [{"item_id": "a"}, {"item_id": "b", "hidden": "no"}]
    resp = await client.post("/v1/reco/items", json=bad, headers=headers)
    assert resp.status == 400 and "hidden" in (await resp.json())["error"]["message"]
    assert (await client.post("/v1/reco/items", json=[{"item_id": "a"}, {"item_id": "a"}],
                              headers=headers)).status == 400
    assert (await client.post("/v1/reco/items", json=[], headers=headers)).status == 400
    assert (await client.post("/v1/reco/items", json=[{"item_id": "has space"}], headers=headers)).status == 400
    assert "a" not in client.app[PLATFORM].reco.features.items.index


async def test_items_are_bounded_new_ones_past_the_bound_are_refused_and_their_feedback_not_learned(
        aiohttp_client, tmp_path, clock):
    from app.main import create_app
    from tests.conftest import make_config
    from tests.integration.reco.helpers import event, ingest
    client = await aiohttp_client(create_app(make_config(tmp_path, reco__max_items=11), clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)  # ten
    features = client.app[PLATFORM].reco.features
    assert len(features.items) == 10
    # Feedback for two products never registered: the first becomes the eleventh item, the second is not learned.
    await ingest(client, headers, [event("u1", "product_view", "gift-card"), event("u1", "product_view", "spa-day"),
                                   event("u1", "click", "dest-BCN")])
    assert "gift-card" in features.items.index and "spa-day" not in features.items.index
    assert len(features.items) == 11
    resp = await client.put("/v1/reco/items/dest-PDL", json={"category": "destination"}, headers=headers)
    assert resp.status == 400
    assert "room for 0 more items (reco.max_items is 11)" in (await resp.json())["error"]["message"]
    # Known items are still replaced, and their feedback learned.
    assert (await client.put("/v1/reco/items/dest-BCN", json={"category": "destination"},
                             headers=headers)).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_reco_events_dropped_total{reason="item_limit"} 1.0' in metrics
    assert 'contrail_reco_events_total{kind="click"} 1.0' in metrics
