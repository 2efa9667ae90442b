"""Offer acceptance: a logistic model over offer and search features, trained from outcomes.

Features (one module owns the layout): see FEATURES. Until enough outcomes are known the
caller uses documented rules instead (app/retail/ranking.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEGMENTS = ("premium", "corporate", "economy", "leisure")
CABINS = ("economy", "premium", "business")
BUNDLES = ("flight_only", "comfort", "premium", "rule")
FEATURES = ("bias", "total_hundreds_per_passenger", "discount_fraction", "products_fraction", "passengers_fraction",
            *(f"segment_{s}" for s in SEGMENTS), *(f"cabin_{c}" for c in CABINS), "days_to_departure_fraction",
            *(f"bundle_{b}" for b in BUNDLES))
DIM = len(FEATURES)


def offer_features(total_cents: int, passengers: int, discount_percent: float, n_products: int, segment: str,
                   cabin: str, days_to_departure: float, bundle: str) -> list[float]:
    """The feature vector of one offer, in FEATURES order."""
    kind = bundle if bundle in BUNDLES else "rule"
    return [1.0, total_cents / max(1, passengers) / 10_000, discount_percent / 100, n_products / 8,
            passengers / 9, *(float(segment == s) for s in SEGMENTS), *(float(cabin == c) for c in CABINS),
            min(days_to_departure, 365) / 365, *(float(kind == b) for b in BUNDLES)]


@dataclass(frozen=True)
class AcceptanceModel:
    weights: np.ndarray    # (DIM,)
    trained_on: int        # offers with a known outcome

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Acceptance probability per row of features."""
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, dtype=np.float64) @ self.weights)))


def train(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 25) -> AcceptanceModel:
    """L2-regularised logistic regression by Newton's method (IRLS); small and deterministic."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.zeros(x.shape[1])
    reg = l2 * np.eye(x.shape[1])
    reg[0, 0] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + reg @ w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + reg + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return AcceptanceModel(w, len(y))
