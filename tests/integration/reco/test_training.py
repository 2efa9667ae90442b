"""Retraining: from the stored interactions, evaluated on held-out events, swapped in atomically."""

import numpy as np
import pytest

from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.reco.helpers import evaluation_gauges, event, ids, ingest, recommend, staff


def clustered_history(now: float, users: int = 90, seed: int = 1) -> list[dict]:
    """Shoppers of three tastes, each viewing 6 items of their cluster (of 20) in order, a minute apart."""
    rng = np.random.default_rng(seed)
    clusters = [[f"c{c}-{i}" for i in range(20)] for c in range(3)]
    events = []
    for u in range(users):
        items = rng.permutation(clusters[u % 3])[:6]
        start = now - 86_400 + u * 900
        events += [event(f"s{u}", "product_view", str(item), start + k * 60) for k, item in enumerate(items)]
    return events


async def test_train_evaluates_on_held_out_events_and_swaps_the_model_in(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, reco__explore_items=0, reco__factors=8, reco__coview_window=1)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    admin = {"X-Api-Key": (await client.app[PLATFORM].api_keys.create("ops", "admin"))[1]}
    early = await (await client.post("/v1/admin/reco/train", headers=admin)).json()
    assert early["live"] is False and "training needs 50" in early["reason"]
    assert (await client.post("/v1/admin/reco/train", headers=headers)).status == 403  # partners do not train

    await ingest(client, headers, clustered_history(clock.now()))
    similar = await (await client.get("/v1/items/c0-1/similar", params={"n": "3"}, headers=headers)).json()
    assert similar["source"] == "coview"
    resp = await client.post("/v1/admin/reco/train", headers=admin)
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert result["live"] is True, result
    assert result["version"] == "als-1" and result["model"] in ("als-1:learned", "als-1:seed")
    evaluation = result["evaluation"]
    assert evaluation["users"] == 90 and evaluation["events"] == 540
    assert evaluation["hr@10"] >= evaluation["serving_hr@10"] and evaluation["hr@10"] > 0.5
    assert len(result["weights"]) == 4 and result["weights_kind"] in ("learned", "seed")

    answer = await recommend(client, headers, "s0", n=3, exclude="seen")
    assert answer["model"] == result["model"]
    assert all(i.startswith("c0-") for i in ids(answer))  # the user's own taste
    assert all(r["reason"].startswith(("co-viewed with c0-", "similar to c0-")) for r in answer["items"])
    similar = await (await client.get("/v1/items/c0-1/similar", params={"n": "3"}, headers=headers)).json()
    assert similar["source"] == "embeddings" and similar["model"] == "als-1"
    text = await (await client.get("/metrics")).text()
    assert 'contrail_reco_model_info{version="als-1"' in text
    assert 'contrail_reco_trainings_total{outcome="live"} 1.0' in text
    gauges = await evaluation_gauges(client)  # the candidate went live: it is the serving model now
    for metric in ("hr@10", "ndcg@10"):
        assert gauges[(metric, "candidate")] == gauges[(metric, "serving")] == pytest.approx(evaluation[metric],
                                                                                              abs=1e-6)

    # The endpoint takes no body: one meant for something else is refused before anything trains; {} is none.
    for junk in (b'{"epochs": 5}', b'{"epochs":', b'"\xff"', b"[1]"):
        resp = await client.post("/v1/admin/reco/train", data=junk,
                                 headers={**admin, "Content-Type": "application/json"})
        assert resp.status == 400, junk
        assert "takes no request body" in (await resp.json())["error"]["message"], junk
    deep = await client.post("/v1/admin/reco/train", data=b"[" * 10_000 + b"]" * 10_000, headers=admin)
    assert deep.status == 400 and (await deep.json())["error"]["code"] == "too_deeply_nested"
    assert 'contrail_reco_trainings_total{outcome="live"} 1.0' in await (await client.get("/metrics")).text()
    again = await client.post("/v1/admin/reco/train", json={}, headers=admin)
    assert (await again.json())["version"] == "als-2"


async def test_the_periodic_retrain_is_a_supervised_task_unless_disabled(aiohttp_client, tmp_path, clock):
    on = await aiohttp_client(create_app(make_config(tmp_path / "on", reco__retrain_interval_s=60), clock=clock))
    assert "reco_retrain" in on.app[PLATFORM].supervisor.states
    ready = await (await on.get("/health/ready")).json()
    assert "reco_retrain" in str(ready)
    off = await aiohttp_client(create_app(make_config(tmp_path / "off", reco__retrain_interval_s=0), clock=clock))
    assert "reco_retrain" not in off.app[PLATFORM].supervisor.states


async def test_the_live_model_survives_a_restart_and_the_next_training_follows_it(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, reco__explore_items=0, reco__factors=8, reco__coview_window=1)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    admin = {"X-Api-Key": (await client.app[PLATFORM].api_keys.create("ops", "admin"))[1]}
    await ingest(client, headers, clustered_history(clock.now()))
    trained = await (await client.post("/v1/admin/reco/train", headers=admin)).json()
    assert trained["live"] is True, trained
    before = {u: await recommend(client, headers, u, n=5, exclude="seen") for u in ("s0", "s1", "s2", "new")}
    similar = await (await client.get("/v1/items/c1-3/similar", params={"n": "4"}, headers=headers)).json()
    await client.close()

    again = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(again)
    assert {u: await recommend(again, headers, u, n=5, exclude="seen") for u in before} == before
    assert before["s0"]["model"] == trained["model"]  # the trained model serves, not the features alone
    assert await (await again.get("/v1/items/c1-3/similar", params={"n": "4"}, headers=headers)).json() == similar
    assert similar["source"] == "embeddings"
    text = await (await again.get("/metrics")).text()
    assert f'contrail_reco_model_info{{version="{trained["version"]}"' in text
    assert await evaluation_gauges(again) == {  # the serving model's own evaluation, from when it was trained
        ("hr@10", "serving"): pytest.approx(trained["evaluation"]["hr@10"], abs=1e-6),
        ("ndcg@10", "serving"): pytest.approx(trained["evaluation"]["ndcg@10"], abs=1e-6)}
    admin = {"X-Api-Key": (await again.app[PLATFORM].api_keys.create("ops", "admin"))[1]}
    back = await again.post("/v1/admin/models/reco/rollback", headers=admin)
    assert back.status == 200, await back.text()
    assert await evaluation_gauges(again) == {}  # the seed serves again: it was never evaluated
    assert (await (await again.post("/v1/admin/reco/train", headers=admin)).json())["version"] == "als-2"
    # Newer events: the next candidate is also scored against als-2 itself on them (it knows, across a restart,
    # the newest event it was trained on), which no candidate of its own recipe can tie by construction.
    await again.close()
    third = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(third)
    await ingest(third, headers, [event(f"s{u}", "product_view", f"c{u % 3}-{(u + 7 * j) % 20}",
                                        clock.now() - 3_000 + u * 10 + j) for u in range(90) for j in (0, 1)])
    admin = {"X-Api-Key": (await third.app[PLATFORM].api_keys.create("ops", "admin"))[1]}
    result = await (await third.post("/v1/admin/reco/train", headers=admin)).json()
    assert "held-out events newer than that model's training" in result["reason"], result
    assert 30 <= result["evaluation"]["users"] <= 90


async def test_a_candidate_that_does_worse_than_the_serving_model_is_kept_out_and_says_why(aiohttp_client, tmp_path,
                                                                                           clock):
    """The demo carrier's history is one: its members keep to a few tastes, so the features-only blend serving now
    finds more of the held-out events in its top 10 than a candidate with embeddings learnt from a day of it."""
    from app.demo import seed_demo
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    assert any("recommendation model seed (kept_out" in line for line in await seed_demo(platform))
    admin = {"X-Api-Key": (await platform.api_keys.create("ops", "admin"))[1]}
    resp = await client.post("/v1/admin/reco/train", headers=admin)
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert (result["live"], result["status"], result["model"]) == (False, "kept_out", "seed")
    assert result["reason"] == "the candidate did worse on the held-out events than the model serving now"
    evaluation = result["evaluation"]
    assert evaluation["hr@10"] < evaluation["serving_hr@10"]
    headers = await staff(client)
    assert (await recommend(client, headers, "member-0001", n=3))["model"] == "seed"  # nothing was swapped in
    assert 'contrail_reco_trainings_total{outcome="kept_out"} 2.0' in await (await client.get("/metrics")).text()
    gauges = await evaluation_gauges(client)
    assert gauges[("hr@10", "candidate")] == pytest.approx(evaluation["hr@10"], abs=1e-6)
    assert ("hr@10", "serving") not in gauges  # the seed blend was never a trained version


async def test_dismissals_teach_the_embeddings_nothing_and_a_new_item_has_its_coview_neighbours(
        aiohttp_client, tmp_path, clock):
    """An offer every shopper of one taste dismissed is nobody's neighbour after a training (a dismissal is not a
    like), and an item first seen after the training answers `similar` by its co-views, not by a zero embedding."""
    config = make_config(tmp_path, reco__explore_items=0, reco__factors=8, reco__coview_window=1)
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await staff(client)
    admin = {"X-Api-Key": (await client.app[PLATFORM].api_keys.create("ops", "admin"))[1]}
    history = clustered_history(clock.now())
    dismissals = [event(e["user_id"], "dismiss", "junk-offer", e["at"] + 30) for e in history[2::6]
                  if int(e["user_id"][1:]) % 3 == 0]   # every c0 shopper, after their third view
    await ingest(client, headers, sorted(history + dismissals, key=lambda e: e["at"]))
    trained = await (await client.post("/v1/admin/reco/train", headers=admin)).json()
    assert trained["live"], trained
    for item in ("c0-1", "c0-5", "c1-3"):
        similar = await (await client.get(f"/v1/items/{item}/similar", params={"n": "30"}, headers=headers)).json()
        assert similar["source"] == "embeddings" and "junk-offer" not in ids(similar)
    junk = await (await client.get("/v1/items/junk-offer/similar", params={"n": "5"}, headers=headers)).json()
    assert junk["source"] == "coview" and junk["items"] == []   # a dismissal pairs with nothing

    now = clock.now()
    await ingest(client, headers, [e for u in range(5) for e in (event(f"n{u}", "product_view", "c0-1", now - 30 + u),
                                                                 event(f"n{u}", "product_view", "brand-new",
                                                                       now - 20 + u))])
    new = await (await client.get("/v1/items/brand-new/similar", params={"n": "5"}, headers=headers)).json()
    assert new["source"] == "coview" and ids(new) == ["c0-1"] and new["items"][0]["score"] > 0
    old = await (await client.get("/v1/items/c0-1/similar", params={"n": "30"}, headers=headers)).json()
    assert "brand-new" not in ids(old)   # no embedding to be anyone's neighbour by
