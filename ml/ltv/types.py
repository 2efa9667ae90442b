"""The shapes the rest of Contrail exchanges with the lifetime-value models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """One row per customer, arrays of equal length; times in days."""

    frequency: np.ndarray  # repeat purchases in the calibration period (first purchase not counted)
    recency: np.ndarray  # days from first purchase to the last purchase (0 if no repeat)
    age: np.ndarray  # T: days from first purchase to the end of calibration ("now")
    monetary: np.ndarray  # mean value of the repeat purchases (0 if none)
    extra: np.ndarray | None = None  # (customers, k) optional extra features
    extra_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.frequency.shape[0])

    def take(self, rows: np.ndarray) -> Summary:
        return Summary(self.frequency[rows], self.recency[rows], self.age[rows], self.monetary[rows],
                       None if self.extra is None else self.extra[rows], self.extra_names)


@dataclass(frozen=True)
class Prediction:
    """Arrays, one entry per customer."""

    expected_purchases: np.ndarray
    probability_alive: np.ndarray
    expected_spend: np.ndarray  # per purchase
    ltv: np.ndarray
    ltv_lower: np.ndarray
    ltv_upper: np.ndarray
    confidence: np.ndarray
