"""Bandit offer-selection policies: Thompson sampling (served), epsilon-greedy, UCB1 and uniform (baselines).
See docs/bandit.md."""

from ml.bandit.policies import (
    ARM_MEMORY,
    FIT_ARMS,
    GAMMA,
    GAMMA_FLOOR,
    KINDS,
    MAX_BUCKETS,
    OPTIMISTIC,
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
    discount,
    fitted_prior,
    make_policy,
    prior,
    successes,
    thompson_draw,
    unit_reward,
)

__all__ = ["ARM_MEMORY", "FIT_ARMS", "GAMMA", "GAMMA_FLOOR", "KINDS", "MAX_BUCKETS", "OPTIMISTIC", "PRIOR_CEILING",
           "PRIOR_FLOOR", "PRIOR_SUCCESSES", "R_MAX", "R_MIN", "EpsilonGreedyPolicy", "Policy", "ThompsonPolicy",
           "UCB1Policy", "UniformPolicy", "discount", "fitted_prior", "make_policy", "prior", "successes",
           "thompson_draw", "unit_reward"]
