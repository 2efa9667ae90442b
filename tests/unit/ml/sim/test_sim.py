"""The simulator's population, hidden truth and oracle (ml/sim/): seeded, in range, and learnable."""

import numpy as np
import pytest

from ml import features
from ml.sim import Oracle, Truth, auc, population
from ml.sim.population import ANCILLARIES

SEEDS = [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def worlds():
    return {seed: Truth(population(seed)) for seed in SEEDS}


def test_the_same_seed_gives_the_same_population_and_truth(worlds):
    again = Truth(population(1))
    pop, truth = worlds[1].population, worlds[1]
    assert [t.user_id for t in again.population.travellers] == [t.user_id for t in pop.travellers]
    assert np.array_equal(again.population.interests, pop.interests)
    assert [t.segments for t in again.population.travellers] == [t.segments for t in pop.travellers]
    assert [s.category for s in again.population.sites] == [s.category for s in pop.sites]
    assert np.array_equal(again.interest_w, truth.interest_w)
    t = pop.travellers[7]
    assert again.p_click(again.population.travellers[7], 4, 0.5) == truth.p_click(t, 4, 0.5)


def test_different_seeds_give_different_populations_and_truths(worlds):
    a, b = worlds[0], worlds[1]
    assert not np.array_equal(a.population.interests, b.population.interests)
    assert not np.array_equal(a.interest_w, b.interest_w)
    assert {t.user_id for t in a.population.travellers}.isdisjoint(t.user_id for t in b.population.travellers)
    # The same profile is clicked at a different rate under another seed's truth.
    t = a.population.travellers[0]
    assert a.p_click(t, 4, 0.5) != b.p_click(t, 4, 0.5)


def test_profiles_fit_what_the_server_accepts(worlds):
    for t in worlds[2].population.travellers[:200]:
        body = t.profile(now=1_800_000_000.0)
        assert len(body["interests"]) == 64 and all(0 <= x <= 1 for x in body["interests"])
        assert 4 <= sum(x > 0 for x in body["interests"]) <= 10  # sparse
        assert body["segments"] and all(0 <= s < 64 for s in body["segments"])
        assert len(body["loyalty"]) == 8 and all(0 <= x <= 100 for x in body["loyalty"])
        assert body["loyalty"][0] in (0.0, 0.5, 1.0)
        assert body["last_seen"] <= 1_800_000_000.0
        assert t.device in (2, 4, 5) and t.price_sensitivity > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_click_rates_are_those_real_ads_see_and_the_oracle_ranks_well(worlds, seed):
    truth = worlds[seed]
    rng = np.random.default_rng(1000 + seed)
    imps = truth.population.sample_impressions(rng, 100_000)
    p = truth.p_click_impressions(imps)
    assert p.min() >= 0.002 and p.max() <= 0.05
    assert 0.005 <= p.mean() <= 0.02
    clicks = rng.random(len(p)) < p
    assert auc(clicks, p) >= 0.70


def test_the_true_ctr_is_a_function_of_the_bidding_features_alone(worlds):
    """Click depends on what the profile and the device expose, through ml/features.py's layout."""
    truth = worlds[3]
    pop = truth.population
    for t in pop.travellers[:50]:
        body = t.profile(now=0.0)
        for device in (2, 4, 5):
            recency = pop.recency(t)
            row = features.user_block(np.asarray(body["interests"], dtype=np.float32), body["segments"],
                                      np.asarray(body["loyalty"], dtype=np.float32), recency, device)
            assert truth.p_click_rows(row)[0] == pytest.approx(truth.p_click(t, device, recency), rel=1e-4)
    # Hidden traits do not move it: a twin with other price sensitivity, airport, activity and tastes.
    import dataclasses
    t = pop.travellers[11]
    twin = dataclasses.replace(t, price_sensitivity=t.price_sensitivity * 3, home_airport="XXX", activity=9.0,
                               ancillary_taste=-t.ancillary_taste, email_affinity=5.0)
    assert truth.p_click(twin, 4, 0.3) == truth.p_click(t, 4, 0.3)
    # ...while the observable parts do: device, recency, tier.
    assert len({truth.p_click(t, d, 0.3) for d in (2, 4, 5)}) == 3
    assert truth.p_click(t, 4, 1.0) != truth.p_click(t, 4, 0.1)


def test_hidden_traits_shift_conversion_offers_and_email(worlds):
    truth = worlds[4]
    pop = truth.population
    import dataclasses
    t = pop.travellers[5]
    travel = next(s for s in pop.sites if s.category == "IAB20")
    news = next(s for s in pop.sites if s.category != "IAB20")
    assert 0 < truth.p_convert(t, news) < truth.p_convert(t, travel) < 0.5
    thrifty = dataclasses.replace(t, price_sensitivity=t.price_sensitivity * 2)
    assert truth.p_convert(thrifty, travel) < truth.p_convert(t, travel)
    assert truth.p_accept(t, ANCILLARIES[:2], 120, 100) < truth.p_accept(t, ANCILLARIES[:2], 90, 100)
    assert truth.p_accept(thrifty, [], 150, 100) < truth.p_accept(t, [], 150, 100)
    assert 0 < truth.p_email_open(t) < 1 and 0 < truth.p_email_click(t, 3) < 1
    assert truth.flights_per_year(t) > 0 and 0 < truth.p_redeem(t) < 1


def test_the_oracle_answers_logged_impressions(worlds):
    oracle = Oracle(0, worlds[0].population)
    t = oracle.population.travellers[3]
    line = {"request_id": "sim0-r1", "user_id": t.user_id, "device": 4, "recency": 0.25}
    assert oracle.record(line) == oracle.truth.p_click(t, 4, 0.25) == oracle.ctr_of("sim0-r1")
    assert oracle.true_ctr(t.user_id, 4, 0.25) == oracle.ctr_of("sim0-r1")
    with pytest.raises(KeyError):
        oracle.ctr_of("sim0-r2")


def test_auc():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_shoppers_choose_by_their_hidden_tastes_and_price_sensitivity():
    from ml.sim.shopping import Search, choose
    pop = population(0)
    truth = Truth(pop)
    keen = max(pop.travellers, key=lambda t: t.ancillary_taste.sum() - t.price_sensitivity)
    thrifty = min(pop.travellers, key=lambda t: t.ancillary_taste.sum() - t.price_sensitivity)
    offers = [(["Flight"], 100.0), (["Flight", "Seat", "Bag", "Meal", "Lounge", "Insurance"], 180.0)]
    always = Search(0, 0, 0, 1, 1, "economy", (1.0, 0.0, 1.0), 0.0)  # declines the first, takes the second
    _, p_keen = choose(truth, keen, offers, always)
    _, p_thrifty = choose(truth, thrifty, offers, always)
    assert p_keen[0] == p_thrifty[0]  # the bare fare at the reference price: the same for both
    assert p_keen[1] > 0.5 > p_thrifty[1]
    assert choose(truth, keen, offers, always)[0] == 1
    assert choose(truth, keen, offers, Search(0, 0, 0, 1, 1, "economy", (1.0, 1.0, 1.0), 0.0))[0] is None
    assert choose(truth, keen, [], always) == (None, [])
