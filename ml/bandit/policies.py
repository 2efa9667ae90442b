"""Offer-selection bandit policies over string arms, optionally per context bucket. Pure computation: no I/O.

Every policy keeps, per bucket and arm, the number of pulls, the sum of the rewards mapped to [0, 1] (`y`) and
the sum of the raw rewards. A reward r maps to y = clip((r - r_min) / (r_max - r_min), 0, 1); with Contrail's
signals (ignored -0.1, clicked +1.0, redeemed +2.0) and the default range [-0.1, 2.0], ignored is 0, clicked
0.524 and redeemed 1. epsilon-greedy and UCB1 choose on y.

`ThompsonPolicy` counts successes instead: a reward r adds s = max(r, 0) successes and f = clip(1 - r, 0, 1)
failures (a click is one success, a redemption two, an ignored offer one failure; a reward in (0, 1) is the
fractional Bernoulli update), so for click/no-click rewards it is exact Beta-Bernoulli Thompson sampling. An
arm's posterior is Beta(a0 + S, b0 + F) with S, F its (discounted) sums and an empirical-Bayes prior shared by
the bucket's arms (`fitted_prior`). The pooled prior has the bucket's pooled success rate
(S_all + 1) / (S_all + F_all + 2), kept in [PRIOR_FLOOR, PRIOR_CEILING], as its mean and a strength of one
expected success (Beta(1, 1) with no data). With fit_arms > 0 (the default, 2), once at least two arms have one
expected success's worth of trials, a Beta fitted to those arms' rates by the method of moments (their mean
rate; their variance less the binomial noise) takes over, shrunk toward the pooled prior as if fit_arms more
arms had shown the pooled prior's spread. It is recomputed from the stored S and F at every choice (no state of
its own). With `optimistic` (the default) an arm's score is max(draw, posterior mean) (optimistic Thompson
sampling: Chapelle and Li 2011, May et al. 2012). With gamma < 1 every update of a bucket first multiplies all
its arms' S and F by gamma (discounted Thompson sampling): an arm's posterior decays toward the shared prior with
a memory of about 1 / (1 - gamma) updates, except that with gamma_floor > 0 the discount never takes an arm below
gamma_floor trials (S + F): what is known of an arm ages, but a bad arm keeps enough evidence against it not to
be explored again as if it were new. With arm_memory > 0 each update of an arm first multiplies that arm's
own S and F by 1 - 1 / arm_memory: its posterior holds about its last arm_memory updates, and the evidence about the
arms not shown meanwhile stays whole. See docs/bandit.md (how the defaults were chosen).

The random draws each `choose` makes are fixed (their number depends only on the number of allowed arms), so the
vectorised simulation in eval/bandit.py reproduces a policy's choices exactly for a seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

R_MIN = -0.1
R_MAX = 2.0
MAX_BUCKETS = 64
LEVEL = 0.90  # posterior intervals
KINDS = ("thompson", "epsilon_greedy", "uniform", "ucb1")
PRIOR_FLOOR, PRIOR_CEILING = 1e-4, 0.5  # the bounds of the shared prior's mean (Thompson)
PRIOR_SUCCESSES = 1.0  # the shared prior's strength in expected successes (Thompson)
# Thompson's per-update discount of a bucket (1 = no forgetting), and the trials (S + F) below which it takes no arm
# (0 = no floor). Chosen together by the rule in docs/bandit.md.
GAMMA = 0.99995
GAMMA_FLOOR = 800.0
# Thompson's prior fitted across arms: the pseudo-arms nu it is shrunk with toward the pooled prior; 0 = the pooled
# prior alone. OPTIMISTIC: max(draw, posterior mean). Both chosen by the rule in docs/bandit.md.
FIT_ARMS = 2.0
OPTIMISTIC = True
# Thompson's per-arm memory: each update of an arm first multiplies that arm's S and F by 1 - 1 / ARM_MEMORY, so an
# arm's posterior holds about its last ARM_MEMORY updates; 0 = no forgetting. Chosen by the rule in docs/bandit.md.
ARM_MEMORY = 5_000.0
_Z = 1.6448536269514722  # the standard normal's 95% quantile: a two-sided 90% interval


def unit_reward(reward: float | np.ndarray, r_min: float = R_MIN, r_max: float = R_MAX) -> Any:
    """A reward mapped to [0, 1]: clip((r - r_min) / (r_max - r_min))."""
    return np.clip((np.asarray(reward, dtype=np.float64) - r_min) / (r_max - r_min), 0.0, 1.0)


def successes(reward: float | np.ndarray) -> tuple[Any, Any]:
    """(successes, failures) a reward counts for Thompson: max(r, 0) and clip(1 - r, 0, 1)."""
    r = np.asarray(reward, dtype=np.float64)
    return np.maximum(r, 0.0), np.clip(1.0 - r, 0.0, 1.0)


def prior(s_all: Any, f_all: Any, strength: float = PRIOR_SUCCESSES) -> tuple[Any, Any]:
    """The shared Beta prior (a0, b0) of a bucket whose arms have S_all successes and F_all failures in all:
    mean m = clip((S_all + 1) / (S_all + F_all + 2), PRIOR_FLOOR, PRIOR_CEILING), a0 = strength,
    b0 = a0 (1 - m) / m. Scalars or arrays (one bucket per element)."""
    m = np.minimum(np.maximum((s_all + 1.0) / (s_all + f_all + 2.0), PRIOR_FLOOR), PRIOR_CEILING)
    return strength, strength * (1.0 - m) / m


def fitted_prior(s: Any, f: Any, fit_arms: float = FIT_ARMS,
                 strength: float = PRIOR_SUCCESSES) -> tuple[np.ndarray, np.ndarray]:
    """The shared Beta prior (a0, b0) of a bucket fitted across its arms: `s`, `f` are the arms' successes and
    failures along the last axis (an array (..., K); arms without data are zeros), the result one (a0, b0) per row.

    The pooled prior (`prior`: mean m_p, a0 = strength) is the starting point. Arms with at least 1 / m_p trials
    (one expected success at the pooled rate) "have data"; with J >= 2 of them, a method-of-moments fit over their
    rates r_i = S_i / n_i: mean mu = mean(r_i), between-arm variance t2 = max(var(r_i) - mean(mu (1 - mu) / n_i), 0)
    (the sample variance less the binomial noise). The fit is shrunk toward the pooled prior with
    lam = (J - 1) / (J - 1 + fit_arms): m = lam mu + (1 - lam) m_p (within [PRIOR_FLOOR, PRIOR_CEILING]) and
    t2' = lam t2 + (1 - lam) t2_p (t2_p the pooled prior's variance); the prior has mean m and variance t2':
    strength k = max(m (1 - m) / t2' - 1, 2), a0 = m k, b0 = (1 - m) k. fit_arms <= 0: the pooled prior."""
    # written for speed (the simulation calls it every round): np.minimum/np.maximum for np.clip, a boolean
    # factor for np.where; the same floats
    s = np.asarray(s, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    a_s, b_p = prior(s.sum(axis=-1), f.sum(axis=-1), strength)
    b_p = np.asarray(b_p, dtype=np.float64)
    a_p = np.full(b_p.shape, a_s, dtype=np.float64)
    if fit_arms <= 0.0:
        return a_p, b_p
    k_p = a_p + b_p
    m_p = a_p / k_p
    t2_p = m_p * (1.0 - m_p) / (k_p + 1.0)
    n = s + f
    has = n >= (1.0 / m_p)[..., None]
    j = np.count_nonzero(has, axis=-1).astype(np.float64)
    safe_n = np.where(has, n, 1.0)
    r = s / safe_n * has
    jc = np.maximum(j, 1.0)
    mu = r.sum(axis=-1) / jc
    var = ((r - mu[..., None]) ** 2 * has).sum(axis=-1) / np.maximum(j - 1.0, 1.0)
    noise = (has / safe_n).sum(axis=-1) / jc * (mu * (1.0 - mu))
    t2_fit = np.maximum(var - noise, 0.0)
    lam = np.where(j >= 2.0, (j - 1.0) / (j - 1.0 + fit_arms), 0.0)
    m = np.minimum(np.maximum(lam * mu + (1.0 - lam) * m_p, PRIOR_FLOOR), PRIOR_CEILING)
    t2 = lam * t2_fit + (1.0 - lam) * t2_p
    k = np.maximum(m * (1.0 - m) / t2 - 1.0, 2.0)
    return m * k, (1.0 - m) * k


def discount(s: Any, f: Any, gamma: float, floor: float) -> Any:
    """The factor a bucket's update multiplies each arm's S and F by: gamma, but never taking an arm below `floor`
    trials, max(gamma, min(1, floor / (S + F))) (an arm at or below the floor keeps its counts); gamma when floor
    is 0."""
    if not floor:
        return gamma
    with np.errstate(divide="ignore"):
        return np.maximum(gamma, np.minimum(1.0, floor / (np.asarray(s) + f)))


def thompson_draw(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, optimistic: bool = OPTIMISTIC) -> Any:
    """One draw per element from Beta(a, b); optimistic: max(draw, the posterior mean a / (a + b)) (optimistic
    Bayesian sampling, May et al. 2012). Either way one Beta draw per element."""
    theta = rng.beta(a, b)
    return np.maximum(theta, a / (a + b)) if optimistic else theta


def _tie_break(score: np.ndarray, noise: np.ndarray) -> int:
    """The index of the highest score; ties go to the highest noise (uniform among the tied)."""
    return int(np.argmax(noise * (score == score.max())))


class Policy:
    """The statistics and the API every policy shares; subclasses choose an arm from them (`_select`)."""

    kind: ClassVar[str] = ""
    # the per-arm statistics of a bucket, one row each; subclasses may add rows
    fields: ClassVar[tuple[str, ...]] = ("pulls", "ysum", "reward_sum")

    def __init__(self, arms: Iterable[str] = (), *, r_min: float = R_MIN, r_max: float = R_MAX,
                 max_buckets: int = MAX_BUCKETS) -> None:
        if not r_max > r_min:
            raise ValueError(f"r_max ({r_max}) must be above r_min ({r_min})")
        if max_buckets < 1:
            raise ValueError("max_buckets must be at least 1")
        self.r_min = float(r_min)
        self.r_max = float(r_max)
        self.max_buckets = int(max_buckets)
        self._arms: list[str] = []
        self._index: dict[str, int] = {}
        # bucket -> (len(fields), K) array: pulls, sum of y, sum of raw rewards (and the subclass's rows)
        self._stats: dict[str, np.ndarray] = {"": self._zeros(0)}
        for arm in arms:
            self.add_arm(arm)

    def _zeros(self, k: int) -> np.ndarray:
        return np.zeros((len(self.fields), k))

    # arms and buckets

    @property
    def arms(self) -> list[str]:
        return list(self._arms)

    @property
    def buckets(self) -> list[str]:
        return list(self._stats)

    def add_arm(self, arm: str) -> int:
        """The arm's index, adding it (with no pulls in any bucket) if it is new."""
        i = self._index.get(arm)
        if i is not None:
            return i
        i = len(self._arms)
        self._arms.append(arm)
        self._index[arm] = i
        for b, s in self._stats.items():
            self._stats[b] = np.concatenate([s, self._zeros(1)], axis=1)
        return i

    def set_arms(self, arms: Iterable[str]) -> None:
        """Add the arms that are new; known arms keep their statistics (restrict a choice with `allowed`)."""
        for arm in arms:
            self.add_arm(arm)

    def bucket_key(self, bucket: str, create: bool = False) -> str:
        """The bucket whose statistics serve `bucket`: itself, or "" once `max_buckets` buckets exist."""
        if bucket in self._stats:
            return bucket
        if len(self._stats) < self.max_buckets:
            if create:
                self._stats[bucket] = self._zeros(len(self._arms))
            return bucket
        return ""

    def _view(self, bucket: str) -> np.ndarray:
        key = self.bucket_key(bucket)
        s = self._stats.get(key)
        return s if s is not None else self._zeros(len(self._arms))

    # choosing and learning

    def choose(self, bucket: str, rng: np.random.Generator, allowed: Sequence[str] | None = None) -> str:
        """One arm among `allowed` (default: every arm) for a request in `bucket`."""
        if allowed is None:
            if not self._arms:
                raise ValueError("no arms to choose from")
            idx = np.arange(len(self._arms))
        else:
            if len(allowed) == 0:
                raise ValueError("allowed is empty")
            idx = np.asarray([self.add_arm(a) for a in allowed], dtype=np.intp)
        j = self._select(self._view(bucket), idx, rng)
        return self._arms[int(idx[j])]

    def update(self, arm: str, reward: float, bucket: str = "") -> None:
        i = self.add_arm(arm)
        s = self._stats[self.bucket_key(bucket, create=True)]
        s[0, i] += 1.0
        s[1, i] += float(unit_reward(reward, self.r_min, self.r_max))
        s[2, i] += float(reward)
        self._learn(s, i, float(reward))

    def _learn(self, s: np.ndarray, i: int, reward: float) -> None:
        """The subclass's own statistics (rows after the first three) after arm i of bucket s got `reward`."""

    def _select(self, s: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> int:
        """The position in `idx` (the allowed arms) of the arm to show, from the bucket's statistics `s`."""
        raise NotImplementedError

    # reporting

    def posterior(self, bucket: str = "") -> list[dict[str, Any]]:
        """Per arm: the mean expected reward (in reward units) with a 90% interval, the pulls and the reward sum."""
        s = self._view(bucket)
        lo, mid, hi = self._interval(s[0], s[1])
        span = self.r_max - self.r_min
        return [{"arm": arm, "mean": self.r_min + span * float(mid[i]), "lower": self.r_min + span * float(lo[i]),
                 "upper": self.r_min + span * float(hi[i]), "pulls": int(s[0, i]), "reward_sum": float(s[2, i])}
                for i, arm in enumerate(self._arms)]

    def _interval(self, pulls: np.ndarray, ysum: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower, mean, upper) of E[y]: the empirical mean with a Wilson interval; [0, 1] around 0.5 unpulled."""
        with np.errstate(divide="ignore", invalid="ignore"):
            n = pulls
            p = np.where(n > 0, ysum / np.maximum(n, 1.0), 0.5)
            z2 = _Z * _Z
            centre = (p + z2 / (2 * n)) / (1 + z2 / n)
            half = _Z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
            lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
            hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
        return lo, p, hi

    # durable state

    def params(self) -> dict[str, float]:
        return {}

    def to_bytes(self) -> bytes:
        """The whole state as JSON (floats round-trip exactly)."""
        doc = {"kind": self.kind, "params": self.params(), "r_min": self.r_min, "r_max": self.r_max,
               "max_buckets": self.max_buckets, "arms": self._arms,
               "buckets": {b: {f: s[n].tolist() for n, f in enumerate(self.fields)} for b, s in self._stats.items()}}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Policy:
        """A policy from `to_bytes`; any kind when called on `Policy`, else it must be this class's kind."""
        try:
            doc = json.loads(data)
            kind, params = doc["kind"], dict(doc["params"])
            if kind == "thompson" and "gamma_floor" not in params:
                # stored before the floor existed: its gamma was that time's default (no policy could be given
                # another), so it takes today's discount with today's floor
                params.pop("gamma", None)
            policy = make_policy(kind, arms=doc["arms"], r_min=doc["r_min"], r_max=doc["r_max"],
                                 max_buckets=doc["max_buckets"], **params)
            k = len(policy._arms)
            policy._stats = {}
            for b, s in doc["buckets"].items():
                arr = np.asarray([s[f] for f in policy.fields], dtype=np.float64)
                if arr.shape != (len(policy.fields), k):
                    raise ValueError(f"bucket {b!r} has {arr.shape[-1]} arms, expected {k}")
                policy._stats[b] = arr
            policy._stats.setdefault("", policy._zeros(k))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a bandit policy state: {exc}") from exc
        if cls is not Policy and not isinstance(policy, cls):
            raise ValueError(f"state is a {kind!r} policy, not {cls.kind!r}")
        return policy


class ThompsonPolicy(Policy):
    """Beta-Bernoulli Thompson sampling on successes, with a shared empirical-Bayes prior per bucket (pooled, or
    fitted across arms with `fit_arms` > 0), optionally optimistic, with an optional discount `gamma` of the whole
    bucket per update (down to `gamma_floor` trials an arm) and a memory `arm_memory` of each arm's own updates
    (module docstring). Draws per choice: one Beta per allowed arm."""

    kind = "thompson"
    fields = ("pulls", "ysum", "reward_sum", "successes", "failures")

    def __init__(self, arms: Iterable[str] = (), *, gamma: float = GAMMA, gamma_floor: float = GAMMA_FLOOR,
                 prior_successes: float = PRIOR_SUCCESSES, fit_arms: float = FIT_ARMS,
                 optimistic: bool | float = OPTIMISTIC, arm_memory: float = ARM_MEMORY, **kw: Any) -> None:
        if not 0.0 < gamma <= 1.0:
            raise ValueError("gamma must be in (0, 1]")
        if not gamma_floor >= 0.0:  # also refuses NaN
            raise ValueError("gamma_floor must be 0 (no floor) or a positive number of trials")
        if not (arm_memory == 0.0 or arm_memory >= 1.0):  # also refuses NaN
            raise ValueError("arm_memory must be 0 (no forgetting) or at least 1 update")
        if not prior_successes > 0.0:
            raise ValueError("prior_successes must be positive")
        if not fit_arms >= 0.0:
            raise ValueError("fit_arms must be 0 (the pooled prior) or positive")
        self.gamma = float(gamma)
        self.gamma_floor = float(gamma_floor)
        self.prior_successes = float(prior_successes)
        self.fit_arms = float(fit_arms)
        self.optimistic = bool(optimistic)
        self.arm_memory = float(arm_memory)
        super().__init__(arms, **kw)

    def params(self) -> dict[str, float]:
        # a state stored before fit_arms, optimistic or arm_memory existed loads with their defaults; one stored
        # before gamma_floor, with gamma's too (from_bytes)
        return {"gamma": self.gamma, "gamma_floor": self.gamma_floor, "prior_successes": self.prior_successes,
                "fit_arms": self.fit_arms, "optimistic": float(self.optimistic), "arm_memory": self.arm_memory}

    def _learn(self, s: np.ndarray, i: int, reward: float) -> None:
        if self.gamma < 1.0:
            s[3:5] *= discount(s[3], s[4], self.gamma, self.gamma_floor)
        if self.arm_memory:  # this arm's own evidence only: the others keep theirs until they are shown again
            s[3:5, i] *= 1.0 - 1.0 / self.arm_memory
        ds, df = successes(reward)
        s[3, i] += float(ds)
        s[4, i] += float(df)

    def _prior(self, s: np.ndarray) -> tuple[float, float]:
        a0, b0 = fitted_prior(s[3], s[4], self.fit_arms, self.prior_successes)
        return float(a0), float(b0)

    def _select(self, s: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> int:
        a0, b0 = self._prior(s)
        return int(np.argmax(thompson_draw(a0 + s[3, idx], b0 + s[4, idx], rng, self.optimistic)))

    def posterior(self, bucket: str = "") -> list[dict[str, Any]]:
        """Per arm: the success rate (successes per trial: a click is one success, a redemption two, an ignored
        offer one failure; for click-only rewards the click rate) as the Beta posterior's mean with a 90% central
        interval, the pulls and the raw reward sum, and the bucket's shared prior mean (an arm never pulled shows
        it, with the prior's interval). The posterior is the plain Beta's, optimistic or not."""
        s = self._view(bucket)
        a0, b0 = self._prior(s)
        a, b = a0 + s[3], b0 + s[4]
        tail = (1.0 - LEVEL) / 2
        from scipy.stats import beta as beta_dist  # here: scipy.stats costs ~0.6 s of every start to import
        lo = np.asarray(beta_dist.ppf(tail, a, b), dtype=np.float64)
        hi = np.asarray(beta_dist.ppf(1.0 - tail, a, b), dtype=np.float64)
        mid = a / (a + b)
        return [{"arm": arm, "mean": float(mid[i]), "lower": float(lo[i]), "upper": float(hi[i]),
                 "pulls": int(s[0, i]), "reward_sum": float(s[2, i]), "prior_mean": a0 / (a0 + b0)}
                for i, arm in enumerate(self._arms)]


class EpsilonGreedyPolicy(Policy):
    """With probability epsilon a uniformly random arm, else the best empirical mean (unpulled arms first,
    ties at random). Draws per choice: one uniform, one integer, one uniform per allowed arm."""

    kind = "epsilon_greedy"

    def __init__(self, arms: Iterable[str] = (), *, epsilon: float = 0.1, **kw: Any) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError("epsilon must be in [0, 1]")
        self.epsilon = float(epsilon)
        super().__init__(arms, **kw)

    def params(self) -> dict[str, float]:
        return {"epsilon": self.epsilon}

    def _select(self, s: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> int:
        pulls, ysum = s[0, idx], s[1, idx]
        u = rng.random()
        j = int(rng.integers(len(pulls)))
        noise = rng.random(len(pulls))
        if u < self.epsilon:
            return j
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(pulls > 0, ysum / pulls, np.inf)
        return _tie_break(mean, noise)


class UCB1Policy(Policy):
    """UCB1 (Auer et al. 2002) on y: mean + sqrt(2 ln n / pulls), unpulled arms first, ties at random."""

    kind = "ucb1"

    def _select(self, s: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> int:
        pulls, ysum = s[0, idx], s[1, idx]
        noise = rng.random(len(pulls))
        total = pulls.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            index = np.where(pulls > 0, ysum / pulls + np.sqrt(2.0 * math.log(max(total, 1.0)) / pulls), np.inf)
        return _tie_break(index, noise)


class UniformPolicy(Policy):
    """A uniformly random allowed arm: the baseline, and what a randomised log was collected with."""

    kind = "uniform"

    def _select(self, s: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> int:
        return int(rng.integers(len(idx)))


_CLASSES: dict[str, type[Policy]] = {c.kind: c for c in (ThompsonPolicy, EpsilonGreedyPolicy, UniformPolicy,
                                                          UCB1Policy)}


def make_policy(kind: str, **params: Any) -> Policy:
    """A policy by its `kind` ("thompson", "epsilon_greedy", "uniform", "ucb1") with its parameters
    (arms, r_min, r_max, max_buckets; epsilon for epsilon_greedy; gamma, gamma_floor, prior_successes,
    fit_arms, optimistic and arm_memory for thompson)."""
    cls = _CLASSES.get(kind)
    if cls is None:
        raise ValueError(f"unknown policy kind {kind!r}; expected one of {', '.join(KINDS)}")
    return cls(**params)
