"""Offer acceptance's learning loop in the real app: a retrain labels the logged offers by their paid orders (an
accept that was never paid is a negative), fits a candidate, and swaps it in only when it beats the live version
(the rules, until a trained one is live) on the newest offers; any kept version can be rolled back to, the rules
included, and the live version survives a restart.

The offers and outcomes are logged here as offer search, accept and pay log them (the same structs and payloads),
for a seed's simulated travellers and hidden truth (eval.ranking builds the searches with the retail domain's
pricing and features): thousands of searches through HTTP would take minutes. tests/integration/retail/
test_ranking.py trains from searches, accepts and payments made through the REST endpoints."""

import time

import numpy as np
import pytest

from app.config import RetailConfig
from app.learning import acceptance
from app.main import PLATFORM, create_app
from app.retail.offers import OfferGenerated
from app.retail.ranking import SearchContext, features
from app.runtime.clock import SystemClock
from eval import ranking as sim
from ml.acceptance import AcceptanceModel
from ml.sim.population import population
from ml.sim.truth import Truth
from ml.training import metrics as quality
from tests.conftest import bearer, make_config
from tests.integration.retail.helpers import ranking_of, search_body, seed_catalog

LEARNING = dict(learning__keep_files=2, ranking__min_training_offers=200, ratelimit__ip_per_s=100_000,
                ratelimit__ip_burst=100_000, ratelimit__principal_per_s=100_000, ratelimit__principal_burst=100_000)
SEARCHES = 1_500


async def _app(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(make_config(tmp_path, **LEARNING), clock=SystemClock()))
    _, key = await client.app[PLATFORM].api_keys.create("ops", "admin")
    return client, {"X-Api-Key": key}


async def _log_simulated(platform, seed, searches=SEARCHES):
    """The offers the rules showed for `searches` simulated searches over the day before the label delay, with the
    OfferAccepted and OrderPaid events of those accepted and paid; returns (searches, logged offer rows)."""
    world = population(seed)
    day = sim.simulate(world, Truth(world), np.random.default_rng(seed), searches, 0.0, sim.DAY, RetailConfig())
    rows = np.concatenate(sim.shown(day, day.p_rules, RetailConfig().max_offers))
    start = time.time() - platform.learning.acceptance.label_delay_s - sim.DAY - 60
    generated, accepted, paid = [], [], []
    for n, i in enumerate(rows):
        offer_id, order_id = f"off_{seed}_{n:08d}", f"ord_{seed}_{n:08d}"
        at = start + float(day.search[i]) * sim.DAY / searches
        generated.append(OfferGenerated(offer_id, "guest:x", "CT1", day.bundles[i], int(day.totals[i]), 1,
                                        float(day.p_rules[i]), int(day.margin[i]), 0.0, day.x[i].tolist(), at))
        if day.accepted[i]:
            accepted.append({"offer_id": offer_id, "order_id": order_id, "owner": "guest:x",
                             "total_cents": int(day.totals[i])})
        if day.paid[i]:
            paid.append({"order_id": order_id, "offer_id": offer_id, "owner": "guest:x",
                         "total_cents": int(day.totals[i]), "payment_id": f"pay_{n}", "flight_id": "CT1",
                         "products": []})
    log = platform.event_log
    assert log.log_events("OfferGenerated", generated) == len(generated)
    assert log.log_events("OfferAccepted", accepted) == len(accepted)
    assert log.log_events("OrderPaid", paid) == len(paid)
    await log.flush()
    return day, rows


async def test_acceptance_trains_on_paid_orders_and_goes_live_when_it_beats_the_rules(aiohttp_client, tmp_path):
    client, admin = await _app(aiohttp_client, tmp_path)
    platform = client.app[PLATFORM]
    empty = await (await client.post("/v1/admin/models/acceptance/train", headers=admin)).json()
    assert empty["status"] == "skipped" and "ranking.min_training_offers" in empty["reason"]

    day, rows = await _log_simulated(platform, seed=5)
    paid, accepts = int(day.paid[rows].sum()), int(day.accepted[rows].sum())
    assert accepts > paid  # some accepted offers were never paid: they must count as negatives
    run = await (await client.post("/v1/admin/models/acceptance/train", headers=admin)).json()
    assert run["status"] == "promoted", run["reason"]
    assert (run["version"], run["rows"], run["clicks"]) == ("acceptance-1", len(rows), paid)
    candidate, rules = run["candidate"], run["live"]
    assert candidate["auc"] > rules["auc"] + 0.02 and candidate["log_loss"] < rules["log_loss"]
    assert platform.ranker.model_version == "acceptance-1"

    listing = await (await client.get("/v1/admin/models", headers=admin)).json()
    model = next(m for m in listing["models"] if m["name"] == "acceptance")
    assert model["live"] == model["serving"] == "acceptance-1"
    assert [(v["version"], v["status"], v["source"]) for v in model["versions"]] == [
        ("acceptance-1", "live", "trained"), ("rules", "retired", "config")]
    metrics = model["versions"][0]["metrics"]
    assert (metrics["paid"], metrics["accepted"], metrics["compared_with"]) == (paid, accepts, "rules")
    assert metrics["accepted_unpaid"] == accepts - paid and metrics["holdout_rows"] + metrics["train_rows"] == len(rows)
    # The label is the paid order: the holdout's positives are its paid offers, not its accepted ones.
    assert metrics["holdout"]["clicks"] < int(day.accepted[rows].sum()) * 0.25

    # On a fresh day of the same travellers the live model ranks better than the rules it replaced.
    world = population(5)
    fresh = sim.simulate(world, Truth(world), np.random.default_rng(99), 1_000, 0.0, sim.DAY, RetailConfig())
    live = platform.ranker.model.predict(fresh.x)
    assert quality.auc(live, fresh.paid) > quality.auc(fresh.p_rules, fresh.paid) + 0.03


async def test_a_worse_candidate_is_recorded_not_swapped_in(aiohttp_client, tmp_path, monkeypatch):
    client, admin = await _app(aiohttp_client, tmp_path)
    platform = client.app[PLATFORM]
    await _log_simulated(platform, seed=6)
    learner = platform.learning.acceptance
    await learner.retrain_if_due()  # the periodic retrain
    assert learner.last_run.status == "promoted" and platform.ranker.model_version == "acceptance-1"
    await learner.retrain_if_due()
    assert learner.last_run.status == "skipped" and "nothing new" in learner.last_run.reason

    # A candidate that ranks backwards loses to the live version on the same holdout.
    train = acceptance.train

    def backwards(x, y, **kwargs):
        m = train(x, y, **kwargs)
        return AcceptanceModel(-m.weights, m.trained_on, m.version)

    monkeypatch.setattr(acceptance, "train", backwards)
    rejected = await (await client.post("/v1/admin/models/acceptance/train", headers=admin)).json()
    assert rejected["status"] == "rejected" and "not better" in rejected["reason"]
    assert rejected["candidate"]["auc"] < rejected["live"]["auc"] and "(live acceptance-1)" in rejected["reason"]
    assert platform.ranker.model_version == "acceptance-1"
    listing = await (await client.get("/v1/admin/models/acceptance", headers=admin)).json()
    assert [(v["version"], v["status"]) for v in listing["versions"]] == [
        ("acceptance-2", "rejected"), ("acceptance-1", "live"), ("rules", "retired")]


async def test_rollback_to_the_rules_and_the_live_version_survive_a_restart(aiohttp_client, tmp_path):
    client, admin = await _app(aiohttp_client, tmp_path)
    platform = client.app[PLATFORM]
    await _log_simulated(platform, seed=7, searches=800)
    assert (await (await client.post("/v1/admin/models/acceptance/train", headers=admin)).json())["status"] == \
        "promoted"
    trained = platform.ranker.model

    back = await client.post("/v1/admin/models/acceptance/rollback", headers=admin)
    assert back.status == 200 and (await back.json())["version"] == "rules"
    assert platform.ranker.model is None and platform.ranker.model_version == "rules"
    listing = await (await client.get("/v1/admin/models/acceptance", headers=admin)).json()
    assert [(v["version"], v["status"]) for v in listing["versions"]] == [("acceptance-1", "rolled_back"),
                                                                          ("rules", "live")]
    again = await client.post("/v1/admin/models/acceptance/rollback", json={"version": "acceptance-1"}, headers=admin)
    assert again.status == 200 and platform.ranker.model_version == "acceptance-1"
    assert np.array_equal(platform.ranker.model.weights, trained.weights)

    # A restart serves the version that was live, from its kept file.
    await client.close()
    restarted, _ = await _app(aiohttp_client, tmp_path)
    served = restarted.app[PLATFORM].ranker.model
    assert served is not None and served.version == "acceptance-1" and np.array_equal(served.weights, trained.weights)
    assert restarted.app[PLATFORM].ranker.model_version == "acceptance-1"


async def test_the_evaluation_prices_and_describes_offers_as_offer_search_does(aiohttp_client, tmp_path, clock):
    """eval ranking mirrors OfferService's bundle arithmetic (it needs no catalog service): the same fare gives the
    same bundles, totals, margins and ranker features as a real search."""
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    await seed_catalog(client.app[PLATFORM], clock)
    headers = await bearer(client, "mirror@example.com", "correct horse battery", "customer")
    for passengers, segment in ((3, "premium"), (1, "corporate"), (2, "leisure")):
        query = search_body(clock, passengers=passengers, segment=segment)
        body = await (await client.post("/v1/offers/search", json=query, headers=headers)).json()
        offers = body["offers"]
        fare = offers[0]["items"][0]["unit_price_cents"]
        mirrored = {o.bundle: o for o in sim.drafts([fare], passengers, segment, RetailConfig())}
        assert sorted(mirrored) == sorted(o["bundle"] for o in offers)
        logged = await ranking_of(client, offers)
        ctx = SearchContext("", False, "", "LIS", "BCN", query["departure_date"], passengers, "economy", segment)
        expected = features(ctx, [mirrored[o["bundle"]].summary for o in offers], clock.now())
        for offer, event, x in zip(offers, logged, expected, strict=True):
            draft = mirrored[offer["bundle"]]
            assert (draft.total_cents, draft.margin_cents) == (offer["total_cents"], event["margin_cents"])
            assert event["features"] == pytest.approx(x)
