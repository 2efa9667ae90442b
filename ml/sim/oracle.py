"""The oracle: the true click-through rate of an impression, for evaluation only (never told to the server).

An impression is named by its user id, device type and recency feature (what the simulator's log records for
each request id); the oracle answers from the seed's hidden truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ml.sim.population import Population, population
from ml.sim.truth import Truth


class Oracle:
    def __init__(self, seed: int, pop: Population | None = None) -> None:
        self.population = pop if pop is not None else population(seed)
        self.truth = Truth(self.population)
        self._logged: dict[str, float] = {}

    def true_ctr(self, user_id: str, device: int, recency: float) -> float:
        """The true CTR of an impression to `user_id` on a `device` (OpenRTB devicetype) with this recency."""
        return self.truth.p_click(self.population.by_id[user_id], device, recency)

    def record(self, line: Mapping) -> float:
        """Remember one logged impression (a line of the simulator's log); returns its true CTR."""
        ctr = self.true_ctr(line["user_id"], int(line["device"]), float(line["recency"]))
        self._logged[line["request_id"]] = ctr
        return ctr

    def load(self, lines: Iterable[Mapping]) -> None:
        """Remember the logged impressions (search lines, which carry their own true probabilities, are skipped)."""
        for line in lines:
            if "request_id" in line:
                self.record(line)

    def ctr_of(self, request_id: str) -> float:
        """The true CTR of a logged impression by its request id (KeyError when it was not logged)."""
        return self._logged[request_id]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks for ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
