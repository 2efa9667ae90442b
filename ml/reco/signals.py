"""The features strategies score with, computed from interactions on event time (pure, no I/O).

Each has a batch form here; the real-time layer keeps the same quantities incrementally
(a decayed sum multiplied by 2^(-dt/half_life) and added to equals the batch sum at `now`).
A half-life, window or TTL of 0 disables it, as the `reco.*` config keys do.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ml.reco.interactions import Interactions


def decay(age_s: np.ndarray, half_life_s: float) -> np.ndarray:
    """2^(-age / half_life): 1 at age 0, 0.5 at one half-life; all ones when half_life is 0."""
    age = np.maximum(np.asarray(age_s, dtype=np.float64), 0.0)
    if half_life_s <= 0:
        return np.ones_like(age)
    return np.exp2(-age / half_life_s)


def popularity(inter: Interactions, now: float | None = None, half_life_s: float = 0.0,
               window_s: float = 0.0) -> np.ndarray:
    """(n_items,) summed positive feedback weight, decayed from `now`, counting events within window_s of it."""
    now = inter.now if now is None else now
    w = np.maximum(inter.weight, 0.0).astype(np.float64) * decay(now - inter.time, half_life_s)
    if window_s > 0:
        w = np.where(now - inter.time <= window_s, w, 0.0)
    return np.bincount(inter.item, weights=w, minlength=inter.n_items)


def first_seen(inter: Interactions) -> np.ndarray:
    """(n_items,) the time of each item's first event, NaN for items without one."""
    out = np.full(inter.n_items, np.inf)
    np.minimum.at(out, inter.item, inter.time)
    out[np.isinf(out)] = np.nan
    return out


def last_seen(inter: Interactions) -> np.ndarray:
    """(n_items,) the time of each item's latest event, NaN for items without one."""
    out = np.full(inter.n_items, -np.inf)
    np.maximum.at(out, inter.item, inter.time)
    out[np.isinf(out)] = np.nan
    return out


def cooccurrence(inter: Interactions, window: int = 50, ttl_s: float = 0.0, half_life_s: float = 0.0,
                 now: float | None = None, mask: np.ndarray | None = None) -> sp.csr_matrix:
    """(n_items, n_items) co-occurrence counted both ways, as live traffic would build it.

    Each event pairs with the same user's previous `window` events (the recent-items list), when
    it came within ttl_s of them; the pair weighs the geometric mean of both feedback weights,
    decayed from `now` on the newer event's time. Negative feedback pairs with nothing; `mask`
    restricts the events counted (purchases only, for frequently bought together).
    """
    now = inter.now if now is None else now
    keep = inter.weight > 0
    if mask is not None:
        keep &= mask
    sub = inter.take(keep)
    n = inter.n_items
    if len(sub) == 0 or window <= 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    root = np.sqrt(sub.weight.astype(np.float64))
    rows, cols, vals = [], [], []
    for lag in range(1, window + 1):
        a = np.arange(len(sub) - lag)
        b = a + lag  # the newer event
        same = sub.user[a] == sub.user[b]
        if ttl_s > 0:
            same &= sub.time[b] - sub.time[a] <= ttl_s
        if not same.any():
            break
        a, b = a[same], b[same]
        diff = sub.item[a] != sub.item[b]
        a, b = a[diff], b[diff]
        v = root[a] * root[b] * decay(now - sub.time[b], half_life_s)
        rows += [sub.item[a], sub.item[b]]
        cols += [sub.item[b], sub.item[a]]
        vals += [v, v]
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    m.sum_duplicates()
    return m.astype(np.float32)


def user_profiles(inter: Interactions, users: np.ndarray, last_n: int = 50, half_life_s: float = 0.0,
                  position_decay: float = 1.0) -> sp.csr_matrix:
    """(len(users), n_items) each user's recent items: their last_n events (0: all), weighted for their taste.

    A weight is the event's feedback weight x 2^(-age/half_life) (age from the user's own latest
    event) x position_decay^k (k = 0 for the latest). Negative feedback keeps its sign.
    """
    starts = inter.user_starts()
    lo, hi = starts[users], starts[np.asarray(users) + 1]
    lo = np.maximum(lo, hi - last_n) if last_n > 0 else lo
    lengths = hi - lo
    out_start = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(lengths) else np.zeros(0, np.int64)
    idx = np.arange(int(lengths.sum())) - np.repeat(out_start - lo, lengths)  # the events, user by user
    row = np.repeat(np.arange(len(users)), lengths)
    newest = np.repeat(hi - 1, lengths)
    age = inter.time[newest] - inter.time[idx]
    w = inter.weight[idx].astype(np.float64) * decay(age, half_life_s) * position_decay ** (newest - idx)
    m = sp.csr_matrix((w, (row, inter.item[idx])), shape=(len(users), inter.n_items))
    m.sum_duplicates()
    return m


def user_items(inter: Interactions, users: np.ndarray) -> sp.csr_matrix:
    """(len(users), n_items) 1 where the user has any event with the item."""
    m = user_profiles(inter, users, last_n=0)
    m.data[:] = 1.0
    return m


def item_knn(matrix: sp.csr_matrix, k: int = 50, shrink: float = 0.0, block: int = 2048) -> sp.csr_matrix:
    """(n_items, n_items) cosine similarity on the binary user x item matrix, each item's top-k neighbours.

    Column j keeps the k items most similar to j, so user_items @ S scores j from its neighbours.
    Similarities are computed `block` columns at a time: memory n_items x block, not n_items^2.
    """
    x = sp.csc_matrix(matrix, dtype=np.float64)
    x.data[:] = 1.0
    xt = x.T.tocsr()
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    n = x.shape[1]
    parts = []
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        sim = np.asarray((xt @ x[:, lo:hi]).todense())
        denom = np.outer(norms, norms[lo:hi]) + shrink
        sim = np.divide(sim, denom, out=np.zeros_like(sim), where=denom > 0)
        sim[np.arange(lo, hi), np.arange(hi - lo)] = 0.0
        parts.append(top_k_columns(sim, k))
    return sp.hstack(parts, format="csr") if parts else sp.csr_matrix((n, n))


def top_k_columns(sim: np.ndarray, k: int) -> sp.csr_matrix:
    """Keep the k largest positive entries of each column of a dense matrix (ties by lower row index)."""
    n, m = sim.shape
    if k >= n:
        return sp.csr_matrix(np.where(sim > 0, sim, 0.0))
    order = np.argsort(-sim, axis=0, kind="stable")[:k]  # (k, m) row indexes per column
    cols = np.broadcast_to(np.arange(m), order.shape)
    vals = sim[order, cols]
    keep = vals > 0
    return sp.csr_matrix((vals[keep], (order[keep], cols[keep])), shape=(n, m))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
