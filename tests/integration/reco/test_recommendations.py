"""Recommendations through the real app: events through ingest change lists at once; exclusions, categories,
unknown users, the cache, restarts, future and replayed events, paid orders, bounded user state."""

import asyncio
import gc

import msgspec
import pytest

from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.reco.helpers import browse_history, event, ids, ingest, recommend, seed_items, staff


@pytest.fixture
async def reco(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, reco__explore_items=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    return client, headers


async def test_a_view_changes_the_users_list_at_once_with_reasons(reco, clock):
    client, headers = reco
    await browse_history(client, headers, clock)
    before = await recommend(client, headers, "ana", n=3)
    assert before["model"] == "popular"  # an unknown user: 200 with what is popular
    await ingest(client, headers, [event("ana", "product_view", "dest-BCN")])
    after = await recommend(client, headers, "ana", n=3)
    assert after["strategy"] == "personalized" and after["model"] == "seed"
    assert after["items"][0] == {"item_id": "dest-MAD", "score": after["items"][0]["score"],
                                 "reason": "co-viewed with dest-BCN"}
    cf = await recommend(client, headers, "ana", strategy="cf", n=1)
    assert ids(cf) == ["dest-MAD"]
    trending = await recommend(client, headers, "ana", strategy="trending", n=2)
    assert trending["items"][0]["reason"].startswith("trending in ")


async def test_every_strategy_answers(reco, clock):
    client, headers = reco
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("ana", "purchase", "lounge-pass"), event("ana", "click", "dest-LHR")])
    for strategy in ("personalized", "cf", "content_based", "frequently_bought_together", "trending",
                     "new_arrivals"):
        answer = await recommend(client, headers, "ana", strategy=strategy, n=4)
        assert answer["strategy"] == strategy and len(answer["items"]) == 4, answer
        assert "lounge-pass" not in ids(answer)  # bought: never recommended back
        assert all(i["reason"] for i in answer["items"])
    assert {i["reason"] for i in (await recommend(client, headers, "ana", strategy="new_arrivals"))["items"]} == \
        {"new"}


async def test_dismissed_and_bought_items_never_come_back_and_exclude_seen_leaves_out_everything_seen(reco, clock):
    client, headers = reco
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("bo", "product_view", "dest-BCN")])
    assert ids(await recommend(client, headers, "bo", n=1)) == ["dest-MAD"]
    await ingest(client, headers, [event("bo", "dismiss", "dest-MAD")])
    listed = ids(await recommend(client, headers, "bo", n=20))
    assert "dest-MAD" not in listed and "dest-BCN" in listed  # viewed only: still shown by default
    assert "dest-BCN" not in ids(await recommend(client, headers, "bo", n=20, exclude="seen"))
    assert "dest-LHR" not in ids(await recommend(client, headers, "bo", n=20, exclude="dest-LHR,seen"))
    await ingest(client, headers, [event("bo", "purchase", "dest-CDG")])
    assert "dest-CDG" not in ids(await recommend(client, headers, "bo", n=20))


async def test_include_bought_lists_bought_items_again_but_never_dismissed_ones(reco, clock):
    client, headers = reco
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("flo", "purchase", "bag-23kg"), event("flo", "product_view", "lounge-pass"),
                                   event("flo", "purchase", "dest-BCN"), event("flo", "dismiss", "dest-BCN")])
    default = ids(await recommend(client, headers, "flo", n=20))
    assert "bag-23kg" not in default and "dest-BCN" not in default
    again = ids(await recommend(client, headers, "flo", n=20, include="bought"))
    assert "bag-23kg" in again  # bags are bought again
    assert "dest-BCN" not in again  # bought, then dismissed: dismissed wins
    assert "bag-23kg" not in ids(await recommend(client, headers, "flo", n=20, include="bought", exclude="seen"))
    resp = await client.get("/v1/recommendations/flo", params={"include": "dismissed"}, headers=headers)
    assert resp.status == 400 and "include" in (await resp.json())["error"]["message"]
    # Forgotten by memory and read back from the store, the user is served the same.
    client.app[PLATFORM].reco.features.users.clear()
    client.app[PLATFORM].reco.lists.clear()
    assert ids(await recommend(client, headers, "flo", n=20, include="bought")) == again


async def test_categories_filter_and_hidden_items_never_appear(reco, clock):
    client, headers = reco
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("cy", "product_view", "dest-BCN")])
    only = await recommend(client, headers, "cy", n=20, category="ancillary")
    assert ids(only) and all(not i.startswith("dest-") for i in ids(only))
    both = await recommend(client, headers, "cy", n=20, category="ancillary,destination")
    assert len(ids(both)) == 10
    repeated = await client.get("/v1/recommendations/cy", params=[("n", "20"), ("category", "ancillary"),
                                                                  ("category", "destination")], headers=headers)
    assert ids(await repeated.json()) == ids(both)  # a list parameter may also be given once per value
    twice = await client.get("/v1/recommendations/cy", params=[("n", "2"), ("n", "20")], headers=headers)
    assert twice.status == 400 and "n is given 2 times" in (await twice.json())["error"]["message"]
    await client.put("/v1/reco/items/dest-MAD", json={"category": "destination", "hidden": True}, headers=headers)
    assert "dest-MAD" not in ids(await recommend(client, headers, "cy", n=20))
    popular = await (await client.get("/v1/recommendations/popular", params={"n": "3", "category": "destination"},
                                      headers=headers)).json()
    assert ids(popular) == ["dest-BCN", "dest-CDG", "dest-LHR"]  # views 6 + 1, clicks 2 x 3, views 2
    assert popular["items"][0]["reason"] == "popular in destination"


async def test_unknown_users_get_popular_items(reco, clock):
    client, headers = reco
    await browse_history(client, headers, clock)
    answer = await recommend(client, headers, "nobody", n=3)
    assert (answer["user_id"], answer["strategy"], answer["model"]) == ("nobody", "personalized", "popular")
    # BCN, MAD (6 views each) and CDG (2 clicks weighing 3): the most recent decays least.
    assert ids(answer) == ["dest-CDG", "dest-MAD", "dest-BCN"]
    assert [i["score"] for i in answer["items"]] == sorted((i["score"] for i in answer["items"]), reverse=True)
    assert all(i["reason"] == "popular in destination" and i["score"] == pytest.approx(6.0, rel=1e-3)
               for i in answer["items"])
    for strategy in ("cf", "content_based", "frequently_bought_together"):  # each needs a history: popular items
        cold = await recommend(client, headers, "nobody", strategy=strategy, n=3)
        assert (ids(cold), cold["model"]) == (ids(answer), "popular")
    # Trending and new arrivals need no history: an unknown user gets them as asked.
    trending = await recommend(client, headers, "nobody", strategy="trending", n=3)
    assert trending["model"] != "popular" and {r["reason"] for r in trending["items"]} == {"trending in destination"}
    newest = await recommend(client, headers, "nobody", strategy="new_arrivals", n=3)
    assert newest["model"] != "popular" and {r["reason"] for r in newest["items"]} == {"new"}
    assert ids(newest) == ids(await recommend(client, headers, "h0", strategy="new_arrivals", n=3))
    # Popular in the context asked for: one category, or several.
    ancillary = await recommend(client, headers, "nobody", n=3, category="ancillary")
    assert ancillary["model"] == "popular" and ids(ancillary)
    assert all(not i.startswith("dest-") and r["reason"] == "popular in ancillary"
               for i, r in zip(ids(ancillary), ancillary["items"], strict=True))
    both = await recommend(client, headers, "nobody", n=20, category="ancillary,destination")
    assert set(ids(ancillary)) < set(ids(both)) and set(ids(answer)) < set(ids(both))


async def test_feedback_weights_and_the_popularity_half_life_are_configuration(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, reco__explore_items=0, reco__weight_click=7.0, reco__weight_view=0.5,
                         reco__popularity_half_life_s=3600)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    now = clock.now()
    await ingest(client, headers, [event("wes", "click", "dest-MAD", now - 3600),
                                   event("wes", "product_view", "dest-BCN", now)])
    activity = await (await client.get("/v1/reco/users/wes", headers=headers)).json()
    assert [(e["item_id"], e["weight"]) for e in activity["events"]] == [("dest-BCN", 0.5), ("dest-MAD", 7.0)]
    popular = await (await client.get("/v1/recommendations/popular", params={"n": "2"}, headers=headers)).json()
    # The click an hour (one half-life) before the latest event counts 7 / 2; the view now counts 0.5.
    assert [(i["item_id"], round(i["score"], 3)) for i in popular["items"]] == [("dest-MAD", 3.5), ("dest-BCN", 0.5)]


async def test_a_purchase_weighing_nothing_still_keeps_the_bought_item_out(aiohttp_client, tmp_path, clock):
    """Bought is told by the event's kind: with reco.weight_purchase = 0 (purchases add nothing to the scores), the
    item bought stays out of the lists, live and after the user is forgotten and read back from the store."""
    config = make_config(tmp_path, reco__explore_items=0, reco__weight_purchase=0, reco__max_users=3)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    now = clock.now()
    await ingest(client, headers, [event(f"o{k}", "product_view", "dest-MAD", now - 200 + k) for k in range(5)])
    await ingest(client, headers, [event("pat", "purchase", "dest-MAD", now - 100),
                                   event("pat", "product_view", "dest-BCN", now - 99)])
    assert "dest-MAD" not in ids(await recommend(client, headers, "pat", n=9))
    activity = await (await client.get("/v1/reco/users/pat", headers=headers)).json()
    assert activity["bought_or_dismissed"] == ["dest-MAD"]
    await ingest(client, headers, [event(f"p{k}", "product_view", "dest-CDG", now - 50 + k) for k in range(5)])
    assert "pat" not in client.app[PLATFORM].reco.features.users   # forgotten: read back from the store
    assert "dest-MAD" not in ids(await recommend(client, headers, "pat", n=9))


async def test_unknown_users_lists_leave_out_what_they_exclude(reco, clock):
    client, headers = reco
    await browse_history(client, headers, clock)
    answer = await recommend(client, headers, "nobody", n=3, exclude="dest-MAD,seen")
    assert ids(answer) == ["dest-CDG", "dest-BCN", "bag-23kg"]  # a cart add (5) outweighs two views of LHR


async def test_unknown_users_get_an_exploratory_item_so_not_everyone_sees_the_same_list(aiohttp_client, tmp_path,
                                                                                         clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, reco__explore_items=1), clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    await browse_history(client, headers, clock)
    lists = [await recommend(client, headers, f"stranger-{k}", n=3) for k in range(12)]
    for answer in lists:
        assert answer["model"] == "popular"
        assert ids(answer)[:2] == ["dest-CDG", "dest-MAD"]  # the most popular first, then one explored
        assert answer["items"][2]["reason"] == "explore: something different"
    assert len({ids(answer)[2] for answer in lists}) > 1
    popular = await (await client.get("/v1/recommendations/popular", params={"n": "3"}, headers=headers)).json()
    assert ids(popular) == ["dest-CDG", "dest-MAD", "dest-BCN"]  # the popular list itself explores nothing


async def test_every_strategy_ends_a_known_users_list_with_an_exploratory_item(aiohttp_client, tmp_path, clock):
    """Trending and new arrivals would otherwise be the same list for everyone."""
    client = await aiohttp_client(create_app(make_config(tmp_path, reco__explore_items=1), clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    await browse_history(client, headers, clock)
    shoppers = [f"h{u}" for u in range(6)]
    for strategy in ("personalized", "cf", "content_based", "frequently_bought_together", "trending",
                     "new_arrivals"):
        lists = [await recommend(client, headers, user, n=3, strategy=strategy) for user in shoppers]
        for answer in lists:
            assert [r["reason"] for r in answer["items"]][-1] == "explore: something different", (strategy, answer)
            assert "explore: something different" not in [r["reason"] for r in answer["items"][:-1]]
        if strategy in ("trending", "new_arrivals"):
            assert len({ids(answer)[-1] for answer in lists}) > 1, strategy  # not everyone the same list
            assert len({tuple(ids(answer)[:-1]) for answer in lists}) == 1  # what the strategy ranks is shared


async def test_the_cache_serves_repeats_and_the_users_event_invalidates_it(reco, clock):
    client, headers = reco
    metrics = client.app[PLATFORM].metrics
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("di", "product_view", "dest-BCN")])
    first = await recommend(client, headers, "di", n=3)
    assert await recommend(client, headers, "di", n=3) == first
    assert metrics.reco_cache.labels("hit").value == 1
    cached = client.app[PLATFORM].reco.lists
    assert len(cached) == 1 and not any(gc.is_tracked(x) for entry in cached.items() for x in entry)  # never walked
    await ingest(client, headers, [event("di", "dismiss", "dest-MAD")])
    assert "dest-MAD" not in ids(await recommend(client, headers, "di", n=3))
    assert metrics.reco_cache.labels("hit").value == 1
    text = (await (await client.get("/metrics")).text())
    assert 'contrail_reco_requests_total{strategy="personalized"} 3.0' in text
    assert 'contrail_reco_seconds_count{strategy="personalized"} 3.0' in text
    assert 'contrail_reco_model_info{version="seed",weights="seed"} 1.0' in text  # nothing trained yet
    assert 'contrail_reco_cache_total{result="miss"} 2.0' in text
    assert "contrail_reco_feature_update_seconds_count" in text and 'contrail_reco_events_total{kind="dismiss"}' in text


async def test_cached_lists_expire_and_the_cache_holds_at_most_its_entries(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, reco__explore_items=0, reco__cache_ttl_s=60, reco__cache_entries=2)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    await browse_history(client, headers, clock)
    metrics = client.app[PLATFORM].metrics
    await recommend(client, headers, "h0", n=3)
    await recommend(client, headers, "h0", n=3)
    assert (metrics.reco_cache.labels("hit").value, metrics.reco_cache.labels("miss").value) == (1, 1)
    clock.advance(61)  # past reco.cache_ttl_s: made again
    await recommend(client, headers, "h0", n=3)
    assert (metrics.reco_cache.labels("hit").value, metrics.reco_cache.labels("miss").value) == (1, 2)
    for user in ("h1", "h2", "h3"):
        await recommend(client, headers, user, n=3)
    assert len(client.app[PLATFORM].reco.lists) == 2  # reco.cache_entries: the least recently used went
    text = await (await client.get("/metrics")).text()
    assert 'contrail_cache_entries{cache="reco_lists"} 2.0' in text


async def test_the_list_cache_is_bounded_by_bytes_whatever_the_keys_carry(aiohttp_client, tmp_path, clock):
    """One customer asking with a different long exclude= each time cannot fill memory: keys and lists count
    against reco.cache_bytes, the oldest forgotten first, and /metrics shows the bytes held and the budget."""
    config = make_config(tmp_path, reco__explore_items=0, reco__cache_bytes=65_536)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    await browse_history(client, headers, clock)
    lists = client.app[PLATFORM].reco.lists
    for k in range(60):
        exclude = ",".join(f"not-an-item-{k}-{j:04d}" for j in range(90))   # about 2 KB of key
        resp = await client.get("/v1/recommendations/h0", params={"n": "10", "exclude": exclude}, headers=headers)
        assert resp.status == 200
        assert lists.bytes <= 65_536
    assert 20 < len(lists) < 60 and lists.evictions == 60 - len(lists)
    text = await (await client.get("/metrics")).text()
    assert f'contrail_cache_bytes{{cache="reco_lists"}} {float(lists.bytes)}' in text
    assert 'contrail_cache_budget_bytes{cache="reco_lists"} 65536.0' in text


async def test_bad_requests_get_clear_4xx(reco, clock):
    client, headers = reco
    for params, field in (({"strategy": "magic"}, "strategy"), ({"n": "0"}, "n"), ({"n": "1001"}, "n"),
                          ({"n": "101"}, "n"), ({"colour": "red"}, "colour")):
        resp = await client.get("/v1/recommendations/ana", params=params, headers=headers)
        assert resp.status == 400, params
        assert field in (await resp.json())["error"]["message"], params
    assert (await client.get("/v1/items/nope/similar", headers=headers)).status == 404
    for path in ("/v1/recommendations/popular", "/v1/items/dest-BCN/similar"):
        for n in ("0", "101", "ten"):
            resp = await client.get(path, params={"n": n}, headers=headers)
            assert resp.status == 400 and "n" in (await resp.json())["error"]["message"], (path, n)


async def test_future_timestamps_are_refused_naming_the_event(reco, clock):
    client, headers = reco
    events = [event("ed", "product_view", "dest-BCN"), event("ed", "click", "dest-MAD", clock.now() + 3600)]
    resp = await client.post("/v1/channels/ingest", json=events, headers=headers)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "future_event" and "event 1 (click)" in error["message"], error
    assert "ed" not in client.app[PLATFORM].reco.features.users  # nothing of the request was applied
    for far in (1e11 + 1, 1e300):  # milliseconds sent as seconds, or worse: the same refusal, not a lost event
        resp = await client.post("/v1/channels/ingest", json=[event("ed", "click", "dest-MAD", far)], headers=headers)
        assert resp.status == 422 and (await resp.json())["error"]["code"] == "future_event"
    await ingest(client, headers, [event("ed", "click", "dest-MAD", clock.now() + 60)])  # within the skew


async def test_a_replayed_old_event_fires_no_activation_and_earns_no_stars(reco, clock):
    client, headers = reco
    platform = client.app[PLATFORM]
    old = clock.now() - 2 * 86_400
    body = await ingest(client, headers, [event("fe", "purchase", "dest-BCN", old, transaction_id="old-1"),
                                          event("fe", "cart_abandon", "dest-BCN", old + 10)])
    assert body["stars_earned_events"] == 0
    await asyncio.sleep(0.1)
    await platform.event_log.flush()
    assert await platform.event_log.query("Activation", None, 0, 100) == []
    assert (await client.get("/v1/loyalty/balance/fe", headers=headers)).status == 404  # no stars, no account
    assert "dest-BCN" not in ids(await recommend(client, headers, "fe", n=20))  # but reco learned the purchase
    body = await ingest(client, headers, [event("fe", "purchase", "dest-MAD", transaction_id="new-1"),
                                          event("fe", "cart_abandon", "dest-MAD")])
    assert body["stars_earned_events"] == 1
    await asyncio.sleep(0.1)
    await platform.event_log.flush()
    assert len(await platform.event_log.query("Activation", None, 0, 100)) >= 1
    assert (await (await client.get("/v1/loyalty/balance/fe", headers=headers)).json())["balance"] > 0


async def test_features_survive_a_restart(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, reco__explore_items=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("gu", "product_view", "dest-BCN"), event("gu", "dismiss", "dest-LHR"),
                                   event("gu", "purchase", "seat-standard")])
    strategies = ("personalized", "cf", "trending", "frequently_bought_together", "new_arrivals", "content_based")
    before = {s: await recommend(client, headers, "gu", strategy=s, n=6) for s in strategies}
    popular = await (await client.get("/v1/recommendations/popular", headers=headers)).json()
    similar = await (await client.get("/v1/items/dest-BCN/similar", headers=headers)).json()
    await client.close()

    again = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(again)
    assert {s: await recommend(again, headers, "gu", strategy=s, n=6) for s in strategies} == before
    assert await (await again.get("/v1/recommendations/popular", headers=headers)).json() == popular
    assert await (await again.get("/v1/items/dest-BCN/similar", headers=headers)).json() == similar
    assert similar["source"] == "coview" and ids(similar)[0] == "dest-MAD"


async def test_a_paid_order_makes_its_destination_and_products_the_customers_purchases(aiohttp_client, tmp_path,
                                                                                     clock):
    from tests.integration.retail.helpers import booked, customer, pay, seed_catalog
    client = await aiohttp_client(create_app(make_config(tmp_path, reco__explore_items=0), clock=clock))
    platform = client.app[PLATFORM]
    await seed_catalog(platform, clock)
    headers = await customer(client, "oli")
    account = platform.account_store.by_email("oli@example.com")
    order = await booked(client, headers, clock)
    assert (await pay(client, headers, order["id"])).status == 200
    state = platform.reco.features.users.peek(account.id)
    bought = {platform.reco.features.items.ids[i] for i in state.final}
    assert "dest-BCN" in bought
    mine = await recommend(client, headers, account.id, n=20)
    assert "dest-BCN" not in ids(mine)
    assert (await client.get("/v1/recommendations/someone-else", headers=headers)).status == 403


async def test_user_state_stays_bounded_under_many_users(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, reco__max_users=50, reco__explore_items=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    events = [event(f"u{n}", "product_view", "dest-BCN" if n % 2 else "dest-MAD") for n in range(400)]
    await ingest(client, headers, events)
    reco = client.app[PLATFORM].reco
    assert len(reco.features.users) == 50
    text = await (await client.get("/metrics")).text()
    assert 'contrail_cache_entries{cache="reco_users"} 50.0' in text
    assert 'contrail_cache_evictions_total{cache="reco_users"} 350.0' in text
    # A forgotten user comes back from storage: their view still counts, and it is excluded with exclude=seen.
    assert "u1" not in reco.features.users
    assert "dest-BCN" not in ids(await recommend(client, headers, "u1", n=20, exclude="seen"))
    assert (await recommend(client, headers, "u1"))["model"] != "popular"
    # A forgotten user's new event brings their history back first: the old view still counts as seen.
    assert "u3" not in reco.features.users
    await ingest(client, headers, [event("u3", "dismiss", "dest-LHR")])
    seen = {reco.features.items.ids[i] for i in reco.features.users.peek("u3").seen}
    assert seen == {"dest-BCN", "dest-LHR"}


async def test_personalized_lists_carry_an_exploratory_item_when_configured(client, clock):
    headers = await staff(client)
    await seed_items(client, headers)
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("hu", "product_view", "dest-BCN")])
    answer = await recommend(client, headers, "hu", n=4)
    assert [i["reason"] for i in answer["items"]][-1] == "explore: something different"
    assert len(set(ids(answer))) == 4
    assert msgspec.json.decode(msgspec.json.encode(answer))  # plain JSON


async def test_content_based_lists_answer_after_an_event_names_an_item_never_registered(reco, clock):
    """An ingested event makes an unregistered item known: the item features (kept per item) take it in, and every
    user's content_based list still answers."""
    client, headers = reco
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("ana", "product_view", "dest-BCN")])
    assert len(ids(await recommend(client, headers, "ana", strategy="content_based", n=4))) == 4
    await ingest(client, headers, [event("zoe", "product_view", "never-registered")])
    for user in ("ana", "zoe"):
        answer = await recommend(client, headers, user, strategy="content_based", n=5)
        assert answer["strategy"] == "content_based" and len(answer["items"]) == 5, answer


async def test_content_based_without_any_item_features_is_422(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    headers = await staff(client)
    await ingest(client, headers, [event("iv", "product_view", "a"), event("iv", "product_view", "b")])
    resp = await client.get("/v1/recommendations/iv", params={"strategy": "content_based"}, headers=headers)
    assert resp.status == 422 and "item features" in (await resp.json())["error"]["message"]
    await client.put("/v1/reco/items/b", json={"category": "x", "hidden": True}, headers=headers)
    similar = await (await client.get("/v1/items/a/similar", headers=headers)).json()
    assert similar["items"] == []  # b is co-viewed with a, but hidden


async def test_a_users_activity_lists_their_events_newest_first_and_which_count_now(aiohttp_client, tmp_path, clock):
    from tests.integration.retail.helpers import customer
    config = make_config(tmp_path, reco__recent_ttl_s=3600, reco__recent_n=3)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    now = clock.now()
    await ingest(client, headers, [
        event("ivy", "product_view", "dest-BCN", now - 7200), event("ivy", "click", "dest-MAD", now - 60),
        event("ivy", "dismiss", "dest-LHR", now - 50), event("ivy", "cart_add", "bag-23kg", now - 40),
        event("ivy", "purchase", "meal-hot", now - 30)])
    resp = await client.get("/v1/reco/users/ivy", headers=headers)
    assert resp.status == 200, await resp.text()
    activity = await resp.json()
    assert activity["known"] is True
    assert [(e["item_id"], e["kind"], e["counts"]) for e in activity["events"]] == [
        ("meal-hot", "purchase", True), ("bag-23kg", "cart_add", True), ("dest-LHR", "dismiss", True),
        ("dest-MAD", "click", False),   # beyond the last recent_n = 3
        ("dest-BCN", "product_view", False)]
    assert activity["events"][2]["weight"] == -5.0 and activity["events"][0]["at"] == now - 30
    assert sorted(activity["bought_or_dismissed"]) == ["dest-LHR", "meal-hot"]
    limited = await (await client.get("/v1/reco/users/ivy", params={"limit": "2"}, headers=headers)).json()
    assert [e["item_id"] for e in limited["events"]] == ["meal-hot", "bag-23kg"]

    nobody = await (await client.get("/v1/reco/users/nobody", headers=headers)).json()
    assert nobody == {"user_id": "nobody", "known": False, "events": [], "bought_or_dismissed": []}
    for bad in ("0", "201", "x"):
        resp = await client.get("/v1/reco/users/ivy", params={"limit": bad}, headers=headers)
        assert resp.status == 400 and "limit" in (await resp.json())["error"]["message"]
    member = await customer(client, "ivy")
    assert (await client.get("/v1/reco/users/ivy", headers=member)).status == 403  # not their own id
    assert (await client.get("/v1/reco/users/ivy")).status == 401


async def test_the_analytics_retention_leaves_what_recommendations_learn_from(aiohttp_client, tmp_path, clock):
    """Reco's interactions are kept apart from the analytics event log: deleting the log's old events (its retention)
    takes nothing from the lists, before or after a restart."""
    config = make_config(tmp_path, reco__explore_items=0, analytics__retention_days=1, reco__recent_ttl_s=0,
                         reco__coview_ttl_s=0, reco__popularity_half_life_s=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    await seed_items(client, headers)
    await browse_history(client, headers, clock)
    await ingest(client, headers, [event("rey", "product_view", "dest-BCN")])
    before = await recommend(client, headers, "rey", n=6)
    assert ids(before)
    clock.advance(3 * 86_400)
    platform = client.app[PLATFORM]
    await platform.event_log.flush()
    assert (await platform.purge_retained_once())["events"] > 0  # the ingested events are gone from the log
    assert await recommend(client, headers, "rey", n=6) == before
    await client.close()

    again = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(again)
    assert await recommend(again, headers, "rey", n=6) == before
    activity = await (await again.get("/v1/reco/users/rey", headers=headers)).json()
    assert [e["item_id"] for e in activity["events"]] == ["dest-BCN"]
