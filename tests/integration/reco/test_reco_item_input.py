"""Input the recommendation endpoints refuse, and how they say so: `n` past the configured maximum names that maximum;
an item id with a space, a slash or a control character is refused in plain words (no regular expression), in the
path, in a bulk load and as ingest's product_id; an item created further in the future than the allowed clock skew is
refused (422), one by one or in bulk, where nothing of the request is written."""

from __future__ import annotations

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.reco.helpers import ids, recommend, seed_items, staff


@pytest.fixture
async def reco(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, reco__explore_items=0), clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    return client, headers


async def n_error(client, headers, path: str, n: str) -> dict:
    resp = await client.get(path, params={"n": n}, headers=headers)
    assert resp.status == 400, (path, n, await resp.text())
    return (await resp.json())["error"]


@pytest.mark.parametrize("path", ["/v1/recommendations/member-0571", "/v1/items/dest-BCN/similar",
                                  "/v1/recommendations/popular"])
@pytest.mark.parametrize("n", ["0", "101", "200", "1001", "99999999999999999999"])
async def test_n_out_of_range_names_the_configured_maximum(reco, path, n):
    client, headers = reco
    error = await n_error(client, headers, path, n)
    assert error["message"] == "n must be 1 to 100", error
    assert error["details"] == {"field": "n"}, error


async def test_the_maximum_named_is_the_configured_one(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, reco__max_n=500), clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    for path in ("/v1/recommendations/ana", "/v1/items/dest-BCN/similar", "/v1/recommendations/popular"):
        assert (await n_error(client, headers, path, "501"))["message"] == "n must be 1 to 500"
        assert (await n_error(client, headers, path, "1001"))["message"] == "n must be 1 to 500"
        resp = await client.get(path, params={"n": "500"}, headers=headers)
        assert resp.status == 200, await resp.text()
    assert "Expected `int`" in (await n_error(client, headers, "/v1/recommendations/ana", "ten"))["message"]


@pytest.mark.parametrize("item_id", ["a%20b", "a%09b", "a%00b", "a%01b", "a%7Fb", "a%C2%85b", "a%C2%9Fb"])
async def test_a_bad_item_id_in_the_path_is_refused_in_plain_words_and_not_created(reco, item_id):
    client, headers = reco
    resp = await client.put(f"/v1/reco/items/{item_id}", json={}, headers=headers)
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["message"] == "item_id must be 1 to 128 characters with no spaces, slashes or control characters", \
        error
    assert error["details"] == {"field": "item_id"}, error
    assert (await client.get(f"/v1/reco/items/{item_id}", headers=headers)).status == 404


@pytest.mark.parametrize("item_id", ["has space", "a/b", "a\u0000b", "a\u001bb", "tab\tin", "a\u0085b"])
async def test_a_bad_item_id_in_a_bulk_load_is_refused_without_a_regex(reco, item_id):
    client, headers = reco
    resp = await client.post("/v1/reco/items", json=[{"item_id": "fine"}, {"item_id": item_id}], headers=headers)
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert "regex" not in error["message"] and "(?" not in error["message"], error
    assert "no spaces, slashes or control characters" in error["message"], error
    assert error["details"] == {"field": "[1].item_id"}, error
    assert "fine" not in client.app[PLATFORM].reco.features.items.index  # all or none


async def test_ingest_refuses_the_product_ids_items_refuse(reco):
    client, headers = reco
    for product_id in ("a\u0000b", "a\u007fb", "a b"):
        event = {"source": "web", "type": "product_view", "user_id": "u1", "product_id": product_id}
        resp = await client.post("/v1/channels/ingest", json=[event], headers=headers)
        assert resp.status == 200, await resp.text()
        rejected = (await resp.json())["rejected"]
        assert len(rejected) == 1 and "product_id" in rejected[0]["error"], rejected
    assert not any("\u0000" in i or "\u007f" in i for i in client.app[PLATFORM].reco.features.items.index)


async def test_an_item_from_the_future_is_refused_naming_created_at(reco, clock):
    client, headers = reco
    for created_at in (clock.now() + 3600, 1e11):
        resp = await client.put("/v1/reco/items/dest-PDL", json={"created_at": created_at}, headers=headers)
        assert resp.status == 422, await resp.text()
        error = (await resp.json())["error"]
        assert error["code"] == "future_item", error
        assert "created_at" in error["message"] and "ingest.max_future_skew_s" in error["message"], error
        assert error["details"]["field"] == "created_at", error
        assert (await client.get("/v1/reco/items/dest-PDL", headers=headers)).status == 404
    # Within the skew (a clock a little ahead) is taken.
    resp = await client.put("/v1/reco/items/dest-PDL", json={"created_at": clock.now() + 60}, headers=headers)
    assert resp.status == 200, await resp.text()


async def test_a_bulk_load_with_an_item_from_the_future_writes_nothing(reco, clock):
    client, headers = reco
    items = [{"item_id": "bulk-7", "created_at": clock.now() - 60}, {"item_id": "bulk-8", "created_at": 1e11}]
    resp = await client.post("/v1/reco/items", json=items, headers=headers)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "future_item", error
    assert "item 1 (bulk-8)" in error["message"] and "created_at" in error["message"], error
    assert error["details"]["field"] == "[1].created_at", error
    for item_id in ("bulk-7", "bulk-8"):
        assert (await client.get(f"/v1/reco/items/{item_id}", headers=headers)).status == 404
    # So it is not the newest arrival for everyone, forever.
    newest = await recommend(client, headers, "anyone", strategy="new_arrivals", n=3)
    assert "bulk-8" not in ids(newest)
