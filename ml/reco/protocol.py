"""Ranking metrics: the held-out item's rank under full ranking and among sampled negatives.

Ties count against the held-out item (its rank is the number of candidates scoring at least as
high), so a model that scores everything alike gets no credit for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

K = 10
N_NEGATIVES = 99
BLOCK_CELLS = 4_000_000  # users x items scored at once: bounds a block's score matrices (~32 MB each)

# scores(users) -> (len(users), n_items) float array; higher is better.
Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Result:
    hr: float
    ndcg: float
    hr_sampled: float
    users: int


def full_ranks(scores: np.ndarray, seen: sp.csr_matrix, held_out: np.ndarray) -> np.ndarray:
    """0-based rank of each row's held-out item among the items that row's user has not seen."""
    s = np.array(scores, dtype=np.float64, copy=True)
    s[np.isnan(s)] = -np.inf
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    s[rows, seen.indices] = -np.inf
    target = s[np.arange(len(held_out)), held_out]
    # Items scoring >= the held-out item, less the held-out item itself; seen items are -inf and
    # never count unless the held-out item is -inf too (then it ranks last among all candidates).
    at_least = (s >= target[:, None]) & np.isfinite(s)
    rank = at_least.sum(axis=1) - np.isfinite(target)
    worst = s.shape[1] - np.diff(seen.indptr) - 1
    return np.where(np.isfinite(target), rank, worst).astype(np.int64)


def sampled_ranks(scores: np.ndarray, held_out: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """0-based rank of the held-out item among itself and its row's sampled negatives."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    rows = np.arange(len(held_out))
    target = s[rows, held_out]
    neg = s[rows[:, None], negatives]
    return (neg >= target[:, None]).sum(axis=1).astype(np.int64)


def sample_negatives(seen: sp.csr_matrix, held_out: np.ndarray, n: int = N_NEGATIVES,
                     seed: int = 0) -> np.ndarray:
    """(users, n) items each user has neither seen in training nor holds out, uniform without repeats."""
    rng = np.random.default_rng(seed)
    n_items = seen.shape[1]
    out = np.empty((len(held_out), n), dtype=np.int64)
    for r in range(len(held_out)):
        banned = np.zeros(n_items, dtype=bool)
        banned[seen.indices[seen.indptr[r]:seen.indptr[r + 1]]] = True
        banned[held_out[r]] = True
        pool = np.flatnonzero(~banned)
        if len(pool) < n:
            raise ValueError(f"user row {r} has only {len(pool)} unseen items; {n} negatives are needed")
        out[r] = rng.choice(pool, size=n, replace=False)
    return out


def hit_rate(ranks: np.ndarray, k: int = K) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int = K) -> float:
    """One relevant item: 1 / log2(rank + 2) when it is in the top k, else 0."""
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(gains.mean())


@dataclass(frozen=True)
class Task:
    """What every model is scored against in one run: users, their seen items, held-out items, negatives."""

    users: np.ndarray
    held_out: np.ndarray
    seen: sp.csr_matrix  # (len(users), n_items) training items of each evaluated user
    negatives: np.ndarray

    @classmethod
    def build(cls, train_matrix: sp.csr_matrix, users: np.ndarray, held_out: np.ndarray,
              seed: int = 0, n_negatives: int = N_NEGATIVES) -> Task:
        seen = train_matrix[users].tocsr()
        if len(users):
            # A catalogue too small for n_negatives unseen items per user samples as many as every user has.
            pool = seen.shape[1] - np.diff(seen.indptr) - 1
            n_negatives = max(0, min(n_negatives, int(pool.min())))
        return cls(users, held_out, seen, sample_negatives(seen, held_out, n_negatives, seed))

    def ranks(self, scorer: Scorer) -> tuple[np.ndarray, np.ndarray]:
        """(full ranks, sampled ranks) of every evaluated user, scoring a block of users at a time."""
        full, sampled = [], []
        block = max(16, BLOCK_CELLS // max(self.seen.shape[1], 1))
        for lo in range(0, len(self.users), block):
            hi = min(lo + block, len(self.users))
            scores = scorer(self.users[lo:hi])
            full.append(full_ranks(scores, self.seen[lo:hi], self.held_out[lo:hi]))
            sampled.append(sampled_ranks(scores, self.held_out[lo:hi], self.negatives[lo:hi]))
        cat = np.concatenate
        return (cat(full), cat(sampled)) if full else (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def evaluate(self, scorer: Scorer, k: int = K) -> Result:
        full, sampled = self.ranks(scorer)
        return Result(hit_rate(full, k), ndcg(full, k), hit_rate(sampled, k), len(self.users))
