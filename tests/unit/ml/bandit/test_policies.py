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
    make_policy,
    prior,
    successes,
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
    policy = ThompsonPolicy(["x", "y"])
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
    # per bucket: an arm never pulled in a bucket shows that bucket's pooled rate
    policy = ThompsonPolicy(["a", "b", "new"])
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
    policy = ThompsonPolicy(["a", "b"], gamma=0.5)
    policy.update("a", 1.0)
    policy.update("b", -0.1)
    s = policy._stats[""]
    assert s[3].tolist() == [0.5, 0.0] and s[4].tolist() == [0.0, 1.0] and s[0].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="gamma"):
        ThompsonPolicy(gamma=0.0)


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


@pytest.mark.parametrize("kind,params", [(k, {}) for k in KINDS] + [("thompson", {"gamma": 0.99})])
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
