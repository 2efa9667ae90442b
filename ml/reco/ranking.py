"""Turning scores into lists: per-user normalisation, tie-breaking, exclusions and top-n."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def zscore_rows(x: np.ndarray) -> np.ndarray:
    """Each row minus its mean over its std (a constant row becomes zeros), so signals add on one scale."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return np.divide(x - mean, std, out=np.zeros_like(x), where=std > 0)


def rank_rows(x: np.ndarray) -> np.ndarray:
    """Each row's values replaced by their rank in 0..1 (ties share their mean rank)."""
    from scipy.stats import rankdata

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[1]
    return (rankdata(x, axis=1) - 1.0) / max(n - 1, 1)


def lexicographic(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Scores that order by primary, then secondary; items equal in both stay tied.

    Used where a strategy's own score leaves many items tied (no co-occurrence, empty window):
    those fall back to popularity instead of to their index.
    """
    p = np.atleast_2d(np.asarray(primary, dtype=np.float64))
    s = np.broadcast_to(np.asarray(secondary, dtype=np.float64), p.shape)
    out = np.empty(p.shape, dtype=np.float64)
    for r in range(p.shape[0]):
        order = np.lexsort((s[r], p[r]))
        ps, ss = p[r][order], s[r][order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = (ps[1:] != ps[:-1]) | (ss[1:] != ss[:-1])
        out[r, order] = np.cumsum(new)
    return out if np.ndim(primary) == 2 else out[0]


def exclude(scores: np.ndarray, excluded: sp.csr_matrix) -> np.ndarray:
    """A copy with each row's excluded items (nonzeros of that row) set to -inf: never returned."""
    s = np.array(scores, dtype=np.float64, copy=True)
    rows = np.repeat(np.arange(excluded.shape[0]), np.diff(excluded.indptr))
    s[rows, excluded.indices] = -np.inf
    return s


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores), each (rows, n), best first; excluded (-inf) items come back as -1 padding at the end.

    Equal scores are listed by lower item index, also where they meet at the n-th place (a stable sort), so a
    list does not change between calls or between the plain and the compiled path.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n = max(0, min(n, s.shape[1]))
    items = np.argsort(-s, axis=1, kind="stable")[:, :n]
    vals = np.take_along_axis(s, items, axis=1)
    items = np.where(np.isfinite(vals), items, -1)
    return items, vals
