"""Bandit offer-selection policies: Thompson sampling (served), epsilon-greedy, UCB1 and uniform (baselines).
See docs/bandit.md."""

from ml.bandit.policies import (
    GAMMA,
    KINDS,
    MAX_BUCKETS,
    PRIOR_CEILING,
    PRIOR_FLOOR,
    PRIOR_SUCCESSES,
    R_MAX,
    R_MIN,
    EpsilonGreedyPolicy,
    Policy,
    ThompsonPolicy,
    UCB1Policy,
    UniformPolicy,
    make_policy,
    prior,
    successes,
    unit_reward,
)

__all__ = ["GAMMA", "KINDS", "MAX_BUCKETS", "PRIOR_CEILING", "PRIOR_FLOOR", "PRIOR_SUCCESSES", "R_MAX", "R_MIN",
           "EpsilonGreedyPolicy", "Policy", "ThompsonPolicy", "UCB1Policy", "UniformPolicy", "make_policy", "prior",
           "successes", "unit_reward"]
