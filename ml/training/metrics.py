"""Quality of a click-through-rate model: AUC, log-loss, the reliability curve and the promotion rule.

Every function is pure numpy over (n,) arrays of predicted click probabilities and 0/1 outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ml.model import SpikingNet, forward, outputs

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before taking logs


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U); tied scores share their average rank,
    so a constant scorer gets exactly 0.5. NaN when one class is absent."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(s, kind="stable")
    ranked = s[order]
    # Average rank (1-based) of each group of equal scores.
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], len(ranked)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def auc_se(value: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC measured on that many positives and negatives."""
    if positives == 0 or negatives == 0 or math.isnan(value):
        return math.inf
    q1, q2 = value / (2 - value), 2 * value * value / (1 + value)
    var = (value * (1 - value) + (positives - 1) * (q1 - value * value)
           + (negatives - 1) * (q2 - value * value)) / (positives * negatives)
    return math.sqrt(max(var, 0.0))


def log_loss(p: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy (nats)."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


@dataclass(frozen=True)
class Reliability:
    """The reliability curve: per bin of predicted CTR, its range, mean prediction, observed rate and rows."""
    lo: np.ndarray
    hi: np.ndarray
    predicted: np.ndarray
    observed: np.ndarray
    count: np.ndarray

    def ece(self) -> float:
        """Expected calibration error: the row-weighted mean |observed - predicted| over the bins."""
        n = self.count.sum()
        return float(np.sum(self.count * np.abs(self.observed - self.predicted)) / n) if n else math.nan

    def rows(self) -> list[dict[str, float]]:
        return [{"lo": float(a), "hi": float(b), "predicted": float(p), "observed": float(o), "count": int(c)}
                for a, b, p, o, c in zip(self.lo, self.hi, self.predicted, self.observed, self.count, strict=True)]


def reliability(p: np.ndarray, labels: np.ndarray, bins: int = 10) -> Reliability:
    """Bins of equal row count (quantiles of the prediction; clicks are rare, so equal-width bins would put
    nearly every row in one). Rows with the same prediction stay in one bin; empty bins are dropped."""
    q = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    edges = np.unique(np.quantile(q, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([q.min(), q.max()]) if len(q) else np.array([0.0, 1.0])
    which = np.clip(np.searchsorted(edges, q, side="right") - 1, 0, len(edges) - 2)
    k = len(edges) - 1
    count = np.bincount(which, minlength=k).astype(np.int64)
    keep = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(which, weights=q, minlength=k) / count
        observed = np.bincount(which, weights=y, minlength=k) / count
    return Reliability(edges[:-1][keep], edges[1:][keep], predicted[keep], observed[keep], count[keep])


def ece(p: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    return reliability(p, labels, bins).ece()


def predict_ctr(net: SpikingNet, x: np.ndarray) -> np.ndarray:
    """The CTR head's output, as the server computes it (hard spikes, float32)."""
    return outputs(forward(net, np.asarray(x, dtype=np.float32)))[1]


def evaluate(net: SpikingNet, x: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, float]:
    """A model's quality on logged rows: AUC (and its standard error), log-loss, ECE, mean prediction
    against the observed rate, and the rows and clicks it was measured on."""
    return metrics_of(predict_ctr(net, x), y, bins)


def metrics_of(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, float]:
    labels = np.asarray(y).astype(bool)
    clicks = int(labels.sum())
    value = auc(p, labels)
    return {"auc": value, "auc_se": auc_se(value, clicks, len(labels) - clicks), "log_loss": log_loss(p, labels),
            "ece": ece(p, labels, bins), "mean_ctr": float(np.mean(p)) if len(p) else math.nan,
            "rate": clicks / len(labels) if len(labels) else math.nan, "rows": float(len(labels)),
            "clicks": float(clicks)}


MIN_LOG_LOSS_GAIN = 1e-3  # relative: a candidate must cut the holdout log-loss by at least 0.1%
AUC_NOISE_SE = 1.0        # ...and may lose at most this many standard errors of the current model's AUC


def better(candidate: dict[str, float], current: dict[str, float]) -> bool:
    """The promotion rule, on metrics from evaluate() over the same holdout rows:
        candidate log-loss < current log-loss × (1 - MIN_LOG_LOSS_GAIN)
        and candidate AUC >= current AUC - AUC_NOISE_SE × SE(current AUC)   (Hanley-McNeil)
    Metrics measured on different rows are not comparable: ValueError."""
    if candidate["rows"] != current["rows"] or candidate["clicks"] != current["clicks"]:
        raise ValueError("candidate and current were measured on different holdout rows")
    if any(math.isnan(m[k]) for m in (candidate, current) for k in ("auc", "log_loss")):
        return False
    gains = candidate["log_loss"] < current["log_loss"] * (1 - MIN_LOG_LOSS_GAIN)
    noise = AUC_NOISE_SE * current["auc_se"]
    return bool(gains and candidate["auc"] >= current["auc"] - noise)
