"""Learning the personalized blend's weights on held-out data (a simplex grid, then coordinate moves)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ml.reco.protocol import full_ranks, hit_rate, ndcg
from ml.reco.strategies import SEED_WEIGHTS, combine


@dataclass(frozen=True)
class LearnedBlend:
    seed_weights: tuple[float, ...]
    seed_score: tuple[float, float]  # (HR@10, NDCG@10) of the seed weights on the validation split
    weights: tuple[float, ...]
    score: tuple[float, float]

    @property
    def learned_is_better(self) -> bool:
        return self.score > self.seed_score

    @property
    def served(self) -> tuple[float, ...]:
        """The weights to serve: the learned ones only when they did better on held-out data."""
        return self.weights if self.learned_is_better else self.seed_weights


def _score(normalised: list[np.ndarray], weights: tuple[float, ...], seen: sp.csr_matrix,
           held_out: np.ndarray) -> tuple[float, float]:
    ranks = full_ranks(combine(normalised, weights), seen, held_out)
    return hit_rate(ranks), ndcg(ranks)


def simplex(n: int, step: float) -> list[tuple[float, ...]]:
    """Every n-vector of non-negative multiples of step summing to 1."""
    parts = round(1 / step)
    out = []
    for cut in itertools.combinations(range(parts + n - 1), n - 1):
        bounds = (-1, *cut, parts + n - 1)
        out.append(tuple(round((bounds[i + 1] - bounds[i] - 1) * step, 10) for i in range(n)))
    return out


# The weight search holds its 4 signals for every validation user at once: users x items x 4 floats.
MAX_VALIDATION_USERS = 5000
MAX_VALIDATION_CELLS = 20_000_000


def validation_users(users: np.ndarray, held: np.ndarray, n_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All validation users, or a seeded sample of them when the catalogue makes all too many to hold."""
    cap = max(100, min(MAX_VALIDATION_USERS, MAX_VALIDATION_CELLS // max(n_items, 1)))
    if len(users) <= cap:
        return users, held
    pick = np.sort(np.random.default_rng(seed).choice(len(users), cap, replace=False))
    return users[pick], held[pick]


def learn_weights(normalised: list[np.ndarray], seen: sp.csr_matrix, held_out: np.ndarray,
                  seed_weights: tuple[float, ...] = SEED_WEIGHTS, grid_step: float = 0.1,
                  refine_steps: tuple[float, ...] = (0.05, 0.025)) -> LearnedBlend:
    """Maximise (HR@10, NDCG@10) on validation users: the seed, a grid over the simplex, then pairwise moves.

    `normalised` are the blend's signals for the validation users, z-scored per user; `held_out`
    is each one's validation item (never the test item). Ties keep the earlier candidate, the
    seed first, so equal quality keeps the seed.
    """
    seed = tuple(float(w) for w in seed_weights)
    seed_score = _score(normalised, seed, seen, held_out)
    best, best_score = seed, seed_score
    for w in simplex(len(seed), grid_step):
        s = _score(normalised, w, seen, held_out)
        if s > best_score:
            best, best_score = w, s
    for step in refine_steps:
        improved = True
        while improved:
            improved = False
            for i, j in itertools.permutations(range(len(best)), 2):
                if best[j] < step - 1e-12:
                    continue
                moved = list(best)
                moved[i] = round(moved[i] + step, 10)
                moved[j] = round(moved[j] - step, 10)
                cand = tuple(moved)
                s = _score(normalised, cand, seen, held_out)
                if s > best_score:
                    best, best_score, improved = cand, s, True
    return LearnedBlend(seed, seed_score, best, best_score)
