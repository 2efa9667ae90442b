"""Item embeddings from the interaction matrix with the `implicit` library (CPU), and exact neighbours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ml.reco.signals import normalize_rows


@dataclass(frozen=True)
class Embeddings:
    """Factors of a trained model: user_factors @ item_factors.T scores; `unit` rows are for cosine."""

    kind: str  # "als" or "bpr"
    user_factors: np.ndarray  # (n_users, f) float32
    item_factors: np.ndarray  # (n_items, f) float32
    unit: np.ndarray  # item_factors scaled to unit length

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) the model's own scores for users it was trained with."""
        return np.asarray(self.user_factors[users] @ self.item_factors.T)

    def profile_scores(self, profiles: sp.csr_matrix) -> np.ndarray:
        """(rows, n_items) cosine of each item with a profile's items, summed with the profile's weights.

        Serves users the model never saw and events newer than the model: only item factors are used.
        """
        return np.asarray((profiles @ self.unit) @ self.unit.T)

    def similar(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(items, cosines) each row an item's n nearest other items by exact blocked matmul, best first."""
        from ml.reco.ranking import top_n

        sims = self.unit[np.asarray(items)] @ self.unit.T
        sims[np.arange(len(sims)), items] = -np.inf
        return top_n(sims, n)

    def covering(self, n_items: int) -> Embeddings:
        """The same, with zero rows for the items registered after it was trained (up to `n_items`)."""
        have = self.item_factors.shape[0]
        if have >= n_items:
            return self
        pad = np.zeros((n_items - have, self.item_factors.shape[1]), dtype=np.float32)
        return Embeddings(self.kind, self.user_factors, np.vstack([self.item_factors, pad]),
                          np.vstack([self.unit, pad]))


def train_als(user_items: sp.csr_matrix, factors: int = 64, regularization: float = 0.1, alpha: float = 10.0,
              iterations: int = 15, seed: int = 0, threads: int = 1) -> Embeddings:
    """Implicit-feedback ALS (Hu, Koren, Volinsky) on a users x items matrix; deterministic for a seed."""
    from implicit.cpu.als import AlternatingLeastSquares

    # implicit's solvers run their own threads; BLAS threads inside them only contend (it warns otherwise).
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=iterations, random_state=seed, num_threads=threads,
                                        calculate_training_loss=False)
        model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=False)
    items = np.asarray(model.item_factors, dtype=np.float32)
    return Embeddings("als", np.asarray(model.user_factors, dtype=np.float32), items, normalize_rows(items))


def train_bpr(user_items: sp.csr_matrix, factors: int = 64, learning_rate: float = 0.01,
              regularization: float = 0.01, iterations: int = 100, seed: int = 0) -> Embeddings:
    """Bayesian personalised ranking; one thread, since its parallel updates are not reproducible."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    with threadpool_limits(limits=1, user_api="blas"):
        model = BayesianPersonalizedRanking(factors=factors, learning_rate=learning_rate,
                                            regularization=regularization, iterations=iterations,
                                            random_state=seed, num_threads=1)
        model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=False)
    items = np.asarray(model.item_factors, dtype=np.float32)
    return Embeddings("bpr", np.asarray(model.user_factors, dtype=np.float32), items, normalize_rows(items))
