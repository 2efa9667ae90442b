"""Synthetic logged bids whose true click probability is a known logistic function of a few features."""

from __future__ import annotations

import numpy as np

from ml import features

# logit = BIAS + sum(weight × feature) over these columns; the rest carry no signal.
TRUTH = {3: 1.6, 17: 1.2, 64 + 5: 0.9, 64 + 9: -0.8, 128: 1.0, features.DEVICE_TYPE: 0.8,
         features.OFFER_POSITION: -0.9}
BIAS = -5.0
P_MIN, P_MAX = 0.002, 0.05


def true_ctr(x: np.ndarray) -> np.ndarray:
    logit = np.full(len(x), BIAS)
    for col, weight in TRUTH.items():
        logit += weight * x[:, col]
    return np.clip(1 / (1 + np.exp(-logit)), P_MIN, P_MAX)


def rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, clicked, times, true probability) for n logged bids spread over one day in time order."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, features.DIM), dtype=np.float32)
    for k in range(8):  # eight interests per user, weights 0..1
        cols = rng.integers(0, 32, n) if k < 2 else rng.integers(0, 64, n)
        x[np.arange(n), cols] = rng.random(n).astype(np.float32)
    for _ in range(3):  # three segments
        x[np.arange(n), 64 + rng.integers(0, 16, n)] = 1.0
    x[:, 128] = rng.choice([0.0, 0.5, 1.0], n, p=[0.6, 0.3, 0.1])
    x[:, 129:136] = rng.random((n, 7)) * 0.5
    x[:, features.RECENCY] = rng.random(n)
    x[:, features.FREQ_UTIL] = rng.random(n)
    x[:, features.DEVICE_TYPE] = rng.integers(1, 8, n) / 7.0
    x[:, features.OFFER_POSITION] = rng.integers(0, 5, n) / 4.0
    p = true_ctr(x)
    clicked = (rng.random(n) < p).astype(np.int8)
    times = np.sort(rng.random(n) * 86400.0)
    return x, clicked, times, p
