"""The bandit policies on small problems: they learn, their intervals cover, their state round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from ml.bandit import (
    KINDS,
    PRIOR_CEILING,
    PRIOR_FLOOR,
    EpsilonGreedyPolicy,
    Policy,
    ThompsonPolicy,
    fitted_prior,
    make_policy,
    prior,
    successes,
    thompson_draw,
    unit_reward,
)

RATES = {"a": 0.05, "b": 0.10, "c": 0.40}


def _play(policy: Policy, rounds: int, seed: int, bucket: str = "") -> dict[str, int]:
    rng, env = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    counts = dict.fromkeys(RATES, 0)
    for _ in range(rounds):
        arm = policy.choose(bucket, rng)
        counts[arm] += 1
        policy.update(arm, 1.0 if env.random() < RATES[arm] else -0.1, bucket)
    return counts


@pytest.mark.parametrize("kind", ["thompson", "epsilon_greedy", "ucb1"])
def test_learning_policies_find_the_best_arm(kind):
    policy = make_policy(kind, arms=list(RATES))
    counts = _play(policy, 2000, seed=3)
    assert max(counts, key=lambda a: counts[a]) == "c"
    assert counts["c"] > 0.6 * 2000
    best = max(policy.posterior(), key=lambda r: r["mean"])
    assert best["arm"] == "c"


def test_uniform_spreads_its_choices():
    counts = _play(make_policy("uniform", arms=list(RATES)), 3000, seed=4)
    assert all(800 < n < 1200 for n in counts.values())


def test_reward_mapping():
    assert float(unit_reward(-0.1)) == 0.0 and float(unit_reward(2.0)) == 1.0
    assert float(unit_reward(1.0)) == pytest.approx(1.1 / 2.1)
    assert float(unit_reward(-5.0)) == 0.0 and float(unit_reward(9.0)) == 1.0
    assert float(unit_reward(0.5, 0.0, 1.0)) == 0.5


def test_thompson_counts_successes():
    """A click is one success, a redemption two, an ignored offer one failure; fractions are the Bernoulli update."""
    assert [tuple(float(x) for x in successes(r)) for r in (-0.1, 0.0, 1.0, 2.0, 0.25)] == [
        (0.0, 1.0), (0.0, 1.0), (1.0, 0.0), (2.0, 0.0), (0.25, 0.75)]
    policy = ThompsonPolicy(["x", "y"], arm_memory=0.0, gamma=1.0)  # whole counts (forgetting is tested on its own)
    for r in (1.0, -0.1, -0.1, 2.0):
        policy.update("x", r)
    assert policy._stats[""][3:, 0].tolist() == [3.0, 2.0]
    (x, y) = policy.posterior()
    assert x["pulls"] == 4 and x["reward_sum"] == pytest.approx(2.8) and y["pulls"] == 0


def test_shared_prior_is_the_pooled_rate():
    # no data: Beta(1, 1)
    a0, b0 = prior(0.0, 0.0)
    assert (a0, float(b0)) == (1.0, 1.0)
    # the pooled rate with one success's strength, within the floor and ceiling
    a0, b0 = prior(9.0, 989.0)
    assert a0 == 1.0 and float(a0 / (a0 + b0)) == pytest.approx(0.01)
    assert float(1 / (1 + prior(0.0, 1e9)[1])) == pytest.approx(PRIOR_FLOOR)
    assert float(1 / (1 + prior(1e9, 0.0)[1])) == pytest.approx(PRIOR_CEILING)
    # per bucket: an arm never pulled in a bucket shows that bucket's pooled rate (the pooled prior: fit_arms=0)
    policy = ThompsonPolicy(["a", "b", "new"], fit_arms=0.0, arm_memory=0.0, gamma=1.0)
    for i in range(1000):
        policy.update("a" if i % 2 else "b", 1.0 if i % 50 == 0 else -0.1, "low")
        policy.update("a", 1.0 if i % 4 == 0 else -0.1, "high")
    low = {r["arm"]: r for r in policy.posterior("low")}
    high = {r["arm"]: r for r in policy.posterior("high")}
    assert low["new"]["mean"] == pytest.approx(21 / 1002) == low["new"]["prior_mean"]
    assert high["new"]["mean"] == pytest.approx(251 / 1002)
    assert low["new"]["lower"] < 0.005 and 0.05 < low["new"]["upper"] < 0.1  # one success's worth of evidence
    b0 = (1 - 21 / 1002) / (21 / 1002)
    assert low["b"]["mean"] == pytest.approx((1 + 20) / (1 + 20 + b0 + 480))  # 20 clicks in 500 pulls


def test_discount_decays_toward_the_prior():
    policy = ThompsonPolicy(["a", "b"], gamma=0.5, gamma_floor=0.0)
    policy.update("a", 1.0)
    policy.update("b", -0.1)
    s = policy._stats[""]
    assert s[3].tolist() == [0.5, 0.0] and s[4].tolist() == [0.0, 1.0] and s[0].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="gamma"):
        ThompsonPolicy(gamma=0.0)
    with pytest.raises(ValueError, match="fit_arms"):
        ThompsonPolicy(fit_arms=-1.0)


def test_the_discount_never_takes_an_arm_below_its_floor():
    policy = ThompsonPolicy(["a", "b"], gamma=0.5, gamma_floor=4.0, arm_memory=0.0, fit_arms=0.0)
    s = policy._stats[""]
    for _ in range(5):  # up to the floor nothing is discounted: 5 whole failures
        policy.update("b", -0.1)
    assert s[4].tolist() == [0.0, 5.0]
    policy.update("b", -0.1)  # past it: discounted to the floor (not halved), then one more
    assert s[4].tolist() == [0.0, 5.0]
    for _ in range(3):  # the arm not shown ages to its floor and keeps it
        policy.update("a", 1.0)
    assert s[4].tolist() == [0.0, 4.0] and s[3].tolist() == [3.0, 0.0] and s[0].tolist() == [3.0, 6.0]
    for _ in range(20):  # the arm shown is held near the floor too: its posterior stays able to move
        policy.update("a", 1.0)
    assert s[3, 0] == 5.0 and s[4, 1] == 4.0
    again = Policy.from_bytes(policy.to_bytes())
    assert again.params()["gamma_floor"] == 4.0 and again.to_bytes() == policy.to_bytes()
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="gamma_floor"):
            ThompsonPolicy(gamma_floor=bad)


def test_arm_memory_forgets_only_the_evidence_of_the_arm_shown():
    policy = ThompsonPolicy(["a", "b"], arm_memory=2.0, fit_arms=0.0, gamma=1.0)
    policy.update("a", 1.0)      # a: one success
    policy.update("b", -0.1)     # b: one failure; a keeps its success whole
    policy.update("b", -0.1)     # b: its failure halves, then one more
    s = policy._stats[""]
    assert s[3].tolist() == [1.0, 0.0] and s[4].tolist() == [0.0, 1.5]
    policy.update("a", -0.1)     # a: its success halves, then a failure
    assert s[3].tolist() == [0.5, 0.0] and s[4].tolist() == [1.0, 1.5] and s[0].tolist() == [2.0, 2.0]
    again = Policy.from_bytes(policy.to_bytes())
    assert again.params()["arm_memory"] == 2.0 and again.to_bytes() == policy.to_bytes()
    for bad in (0.5, -1.0, float("nan")):
        with pytest.raises(ValueError, match="arm_memory"):
            ThompsonPolicy(arm_memory=bad)


def test_thompson_interval_covers_the_true_rate():
    """0/1 rewards: the exact Beta posterior (under the weak shared prior); its 90% interval covers about 90% of
    the time."""
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(200):
        policy = ThompsonPolicy(["x"], r_min=0.0, r_max=1.0)
        for r in rng.random(300) < 0.2:
            policy.update("x", float(r))
        (row,) = policy.posterior()
        covered += row["lower"] <= 0.2 <= row["upper"]
        assert row["pulls"] == 300
    assert 0.83 <= covered / 200 <= 0.97
    # Contrail's signals (clicked +1.0, ignored -0.1): the posterior is of the click rate, whatever r_min/r_max
    policy = ThompsonPolicy(["x"])
    for r in rng.random(5000) < 0.3:
        policy.update("x", 1.0 if r else -0.1)
    (row,) = policy.posterior()
    assert row["lower"] <= 0.3 <= row["upper"] and row["lower"] < row["mean"] < row["upper"]


def test_empirical_interval_and_unpulled_arm():
    policy = EpsilonGreedyPolicy(["x", "y"], r_min=0.0, r_max=1.0)
    for i in range(400):
        policy.update("x", float(i % 4 == 0))
    rows = {r["arm"]: r for r in policy.posterior()}
    assert rows["x"]["lower"] < 0.25 < rows["x"]["upper"] and rows["x"]["mean"] == 0.25
    assert rows["x"]["reward_sum"] == 100.0
    assert (rows["y"]["lower"], rows["y"]["upper"], rows["y"]["pulls"]) == (0.0, 1.0, 0)


@pytest.mark.parametrize("kind,params", [(k, {}) for k in KINDS] + [
    ("thompson", {"gamma": 0.99}), ("thompson", {"fit_arms": 2.0, "optimistic": True})])
def test_state_round_trip_continues_identically(kind, params):
    a = make_policy(kind, arms=list(RATES), **params)
    _play(a, 300, seed=5, bucket="tier=gold")
    b = Policy.from_bytes(a.to_bytes())
    assert type(b) is type(a) and b.arms == a.arms and b.to_bytes() == a.to_bytes() and b.params() == a.params()
    ra, rb = np.random.default_rng(9), np.random.default_rng(9)
    for i in range(200):
        bucket = "tier=gold" if i % 2 else ""
        x, y = a.choose(bucket, ra), b.choose(bucket, rb)
        assert x == y
        a.update(x, 1.0 if i % 7 == 0 else -0.1, bucket)
        b.update(y, 1.0 if i % 7 == 0 else -0.1, bucket)
    assert a.posterior("tier=gold") == b.posterior("tier=gold")
    with pytest.raises(ValueError, match="not a bandit policy state"):
        Policy.from_bytes(b"{}")


def test_buckets_are_bounded_and_separate():
    policy = ThompsonPolicy(["a", "b"], max_buckets=4)
    for i in range(10):
        policy.update("a", 2.0, f"route={i}")
    assert len(policy.buckets) == 4 and policy.buckets[0] == ""
    # route=0..2 have their own statistics; route=3.. fell to ""
    assert policy.posterior("route=0")[0]["pulls"] == 1
    assert policy.posterior("")[0]["pulls"] == 7
    assert policy.posterior("route=9") == policy.posterior("")
    policy.choose("route=99", np.random.default_rng(0))
    assert len(policy.buckets) == 4


def test_allowed_restricts_and_new_arms_are_added():
    policy = make_policy("thompson", arms=["a", "b"])
    rng = np.random.default_rng(1)
    assert {policy.choose("", rng, allowed=["b"]) for _ in range(20)} == {"b"}
    assert policy.choose("", rng, allowed=["new"]) == "new" and "new" in policy.arms
    policy.update("newer", 1.0)
    assert policy.arms == ["a", "b", "new", "newer"]
    with pytest.raises(ValueError):
        policy.choose("", rng, allowed=[])
    with pytest.raises(ValueError, match="unknown policy kind"):
        make_policy("softmax")
    assert make_policy("epsilon_greedy", epsilon=0.3).params() == {"epsilon": 0.3}


def test_fitted_prior_is_the_pooled_prior_until_arms_have_data():
    s, f = np.asarray([3.0, 0.0, 1.0]), np.asarray([97.0, 5.0, 20.0])
    a_p, b_p = prior(s.sum(), f.sum())
    a0, b0 = fitted_prior(s, f, 0.0)
    assert (float(a0), float(b0)) == (a_p, float(b_p))
    # one expected success at the pooled rate 5/127 is ~25 trials: only the first arm has data, J = 1
    a0, b0 = fitted_prior(s, f, 2.0)
    assert float(a0) == pytest.approx(a_p) and float(b0) == pytest.approx(float(b_p))
    # no data at all: Beta(1, 1)
    assert tuple(float(x) for x in fitted_prior(np.zeros(4), np.zeros(4), 2.0)) == (1.0, 1.0)


def test_fitted_prior_recovers_the_arms_spread():
    """Many arms with rates from Beta(2, 98) (mean 2%, strength 100), 20,000 trials each: the fit is close to it,
    and a larger nu pulls it toward the pooled prior (strength ~1 / 0.02)."""
    rng = np.random.default_rng(3)
    rates = rng.beta(2.0, 98.0, 400)
    n = 20_000.0
    s = rng.binomial(int(n), rates).astype(float)
    a0, b0 = (float(x) for x in fitted_prior(s, n - s, 2.0))
    assert a0 / (a0 + b0) == pytest.approx(rates.mean(), rel=0.02)
    assert 70 < a0 + b0 < 140
    a8, b8 = (float(x) for x in fitted_prior(s, n - s, 1e6))
    a_p, b_p = prior(s.sum(), (n - s).sum())
    assert a8 / (a8 + b8) == pytest.approx(a_p / (a_p + float(b_p)), rel=1e-3)
    # rows: the same numbers as one bucket at a time
    s2, f2 = np.vstack([s[:30], s[30:60]]), np.vstack([n - s[:30], n - s[30:60]])
    rows = fitted_prior(s2, f2, 2.0)
    for i in range(2):
        one = fitted_prior(s2[i], f2[i], 2.0)
        assert (float(rows[0][i]), float(rows[1][i])) == (float(one[0]), float(one[1]))


def test_optimistic_draw_is_never_below_the_posterior_mean():
    a, b = np.full(1000, 2.0), np.full(1000, 50.0)
    theta = thompson_draw(a, b, np.random.default_rng(0), optimistic=True)
    assert np.all(theta >= a / (a + b)) and np.any(theta > a / (a + b))
    plain = thompson_draw(a, b, np.random.default_rng(0))
    assert np.array_equal(theta, np.maximum(plain, a / (a + b)))  # the same draws


# a state stored by the version before fit_arms and optimistic existed (pooled prior), and its posterior then
OLD_STATE = (
    b'{"kind":"thompson","params":{"gamma":1.0,"prior_successes":1.0},"r_min":-0.1,"r_max":2.0,"max_buckets":64,'
    b'"arms":["a","b","c"],"buckets":{"":{"pulls":[10.0,5.0,5.0],"ysum":[1.5714285714285716,1.0,0.5238095238095238],'
    b'"reward_sum":[2.2999999999999994,1.5999999999999999,0.6000000000000001],"successes":[3.0,2.0,1.0],'
    b'"failures":[7.0,4.0,4.0]},"tier=gold":{"pulls":[10.0,7.0,3.0],"ysum":[2.5238095238095237,1.0476190476190477,'
    b'0.5238095238095238],"reward_sum":[4.299999999999999,1.5,0.8],"successes":[5.0,2.0,1.0],'
    b'"failures":[7.0,5.0,2.0]}}}')
OLD_GOLD_MEANS = [0.4090909090909091, 0.31034482758620685, 0.3529411764705882]


def test_a_state_stored_before_the_fitted_prior_still_loads():
    policy = Policy.from_bytes(OLD_STATE)
    assert isinstance(policy, ThompsonPolicy) and policy.arms == ["a", "b", "c"]
    assert policy.buckets == ["", "tier=gold"] and policy.prior_successes == 1.0
    defaults = ThompsonPolicy()  # what it did not store, and the discount it had before the floor existed
    assert (policy.fit_arms, policy.optimistic, policy.arm_memory, policy.gamma, policy.gamma_floor) == (
        defaults.fit_arms, defaults.optimistic, defaults.arm_memory, defaults.gamma, defaults.gamma_floor)
    rows = policy.posterior("tier=gold")
    assert [r["pulls"] for r in rows] == [10, 7, 3] and [r["reward_sum"] for r in rows] == [4.299999999999999, 1.5, 0.8]
    assert all(r["lower"] <= r["mean"] <= r["upper"] for r in rows)
    # its counts are intact: under the pooled prior it is exactly the policy it was
    policy.fit_arms = 0.0
    assert [r["mean"] for r in policy.posterior("tier=gold")] == pytest.approx(OLD_GOLD_MEANS, rel=1e-12)
    # it keeps learning and round-trips in the new format
    policy.fit_arms = defaults.fit_arms
    policy.update(policy.choose("tier=gold", np.random.default_rng(0)), 1.0, "tier=gold")
    again = Policy.from_bytes(policy.to_bytes())
    assert again.to_bytes() == policy.to_bytes() and set(again.params()) >= {"gamma", "fit_arms", "optimistic"}
