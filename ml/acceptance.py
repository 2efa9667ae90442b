"""Offer acceptance: a logistic model over offer and search features, trained from outcomes.

Features (one module owns the layout): see FEATURES. Until a trained model is live the
caller uses documented rules instead (app/retail/ranking.py). The label the server trains on is
an offer whose order was paid (app/learning/acceptance.py); docs/acceptance.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

SEGMENTS = ("premium", "corporate", "economy", "leisure")
CABINS = ("economy", "premium", "business")
BUNDLES = ("flight_only", "comfort", "premium", "rule")
# A linear model sees each segment's taste for each bundle only through their product (segment x bundle), and a
# price relative to the search's own cheapest offer, which tracks the fare's multipliers better than the price alone
# (docs/acceptance.md: +0.03 AUC on the simulator's truth).
FEATURES = ("bias", "total_hundreds_per_passenger", "discount_fraction", "products_fraction", "passengers_fraction",
            *(f"segment_{s}" for s in SEGMENTS), *(f"cabin_{c}" for c in CABINS), "days_to_departure_fraction",
            *(f"bundle_{b}" for b in BUNDLES), *(f"segment_{s}_x_bundle_{b}" for s in SEGMENTS for b in BUNDLES),
            "log_price_vs_cheapest")
DIM = len(FEATURES)


def offer_features(total_cents: int, passengers: int, discount_percent: float, n_products: int, segment: str,
                   cabin: str, days_to_departure: float, bundle: str, cheapest_cents: int | None = None) -> list[float]:
    """The feature vector of one offer, in FEATURES order; `cheapest_cents`: the cheapest offer's total in the same
    search (None: this one's)."""
    kind = bundle if bundle in BUNDLES else "rule"
    cheapest = total_cents if cheapest_cents is None else cheapest_cents
    return [1.0, total_cents / max(1, passengers) / 10_000, discount_percent / 100, n_products / 8,
            passengers / 9, *(float(segment == s) for s in SEGMENTS), *(float(cabin == c) for c in CABINS),
            min(days_to_departure, 365) / 365, *(float(kind == b) for b in BUNDLES),
            *(float(segment == s and kind == b) for s in SEGMENTS for b in BUNDLES),
            math.log(max(1, total_cents) / max(1, min(cheapest, total_cents)))]


@dataclass(frozen=True)
class AcceptanceModel:
    weights: np.ndarray    # (DIM,)
    trained_on: int        # offers with a known outcome
    version: str = ""      # its label in the model registry ("" for one trained outside it)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Acceptance probability per row of features."""
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, dtype=np.float64) @ self.weights)))

    def save(self, f: BinaryIO) -> None:
        """The weights as .npz, with the feature names they belong to."""
        np.savez(f, weights=self.weights, trained_on=np.array(self.trained_on), version=np.array(self.version),
                 features=np.array(FEATURES))

    @staticmethod
    def load(path: str) -> AcceptanceModel:
        """A saved model; ValueError when the file does not fit this feature layout."""
        with np.load(path, allow_pickle=False) as f:
            missing = {"weights", "trained_on", "version", "features"} - set(f.files)
            if missing:
                raise ValueError(f"{path} is not an acceptance model: no {', '.join(sorted(missing))}")
            if tuple(str(n) for n in f["features"]) != FEATURES:
                raise ValueError(f"{path} was trained on other features than this server's ({DIM})")
            weights = np.asarray(f["weights"], dtype=np.float64)
            if weights.shape != (DIM,) or not np.all(np.isfinite(weights)):
                raise ValueError(f"{path}: weights must be {DIM} finite numbers")
            return AcceptanceModel(weights, int(f["trained_on"]), str(f["version"]))


def train(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 25, version: str = "") -> AcceptanceModel:
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
    return AcceptanceModel(w, len(y), version)
