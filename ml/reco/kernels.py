"""One user's personalized or cf list as a few compiled loops (numba): the served fast path.

Done with numpy, a single user's list was about sixty small array calls (the co-view rows of the recent items,
the embedding profile, four z-scores, the mask, a partial sort, the reasons' anchors), and each call's own
overhead cost more than its arithmetic over a few hundred items. These loops do the same arithmetic as
ml/reco/strategies.py in one call per step. Sums run in a different order from numpy's pairwise ones, so scores can
differ from the plain path's in the last bits; tests/unit/app/reco/test_fast_path.py compares the two answers.
Signatures are explicit, and the loops compile (or load from numba's on-disk cache) when first called or when a
server loads them in the background once it is ready (ml/compiled.py), not at import: only a request in a start's
first moments can wait for them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types

from ml.compiled import later

_F64 = types.Array(types.float64, 1, "C", readonly=True)
_F64W = types.Array(types.float64, 1, "C")
_I64 = types.Array(types.int64, 1, "C", readonly=True)
_B1 = types.Array(types.boolean, 1, "C", readonly=True)
_F32_2D = types.Array(types.float32, 2, "C", readonly=True)
_I32 = types.Array(types.int32, 1, "C", readonly=True)
_F32 = types.Array(types.float32, 1, "C", readonly=True)


@later(_F64W(_I64, _I32, _F32, _I64, _F64, _F64), boundscheck=False, cache=True)
def coview_row(indptr, indices, data, items, weights, divisor):
    """(items,) the user's recent row times the co-view matrix (its float32 counts and int32 columns as the features
    keep them: half the memory to read), divided by popularity^debias."""
    out = np.zeros(len(divisor))
    for k in range(len(items)):
        a, w = items[k], weights[k]
        for p in range(indptr[a], indptr[a + 1]):
            out[indices[p]] += w * data[p]
    for j in range(len(out)):
        out[j] /= divisor[j]
    return out


@later(types.void(_F64W), boundscheck=False, cache=True)
def _zscore(x):
    """In place: x minus its mean over its std; a constant x becomes zeros (ml/reco/ranking.zscore_rows)."""
    n = len(x)
    mean = 0.0
    for j in range(n):
        mean += x[j]
    mean /= n
    var = 0.0
    for j in range(n):
        var += (x[j] - mean) ** 2
    std = math.sqrt(var / n)
    for j in range(n):
        x[j] = (x[j] - mean) / std if std > 0 else 0.0


@later(_F64W(_F64W, _I64, _F64, _F32_2D, _F64, _F64, _F64), fastmath={"reassoc", "contract"},
            boundscheck=False, cache=True)
def blend(coview, items, weights, unit, popularity_z, recency_z, w):
    """(items,) the personalized blend: w[0..3] times the z-scored co-view, embedding similarity to the user's
    profile (the weighted sum of the recent items' unit vectors), popularity and recency. `coview` is overwritten.
    `unit` with no columns means no embeddings (that signal is zero). The dot products may be reassociated (SIMD)."""
    n, factors = unit.shape[0], unit.shape[1]
    _zscore(coview)
    similarity = np.zeros(len(coview))
    if factors:
        profile = np.zeros(factors)
        for k in range(len(items)):
            for d in range(factors):
                profile[d] += weights[k] * unit[items[k], d]
        for j in range(n):
            s = 0.0
            for d in range(factors):
                s += profile[d] * unit[j, d]
            similarity[j] = s
        _zscore(similarity)
    out = np.empty(len(coview))
    for j in range(len(coview)):
        out[j] = w[0] * coview[j] + w[1] * similarity[j] + w[2] * popularity_z[j] + w[3] * recency_z[j]
    return out


@later(types.Tuple((types.Array(types.int64, 1, "C"), _F64W))(_F64, _B1, types.int64),
            boundscheck=False, cache=True)
def top_n(scores, allowed, n):
    """The best `n` allowed items with a finite score, best first, equal scores by lower index
    (ml/reco/ranking.top_n after masking): kept sorted by insertion, n being small."""
    picked = np.empty(n, np.int64)
    values = np.empty(n)
    size = 0
    for j in range(len(scores)):
        s = scores[j]
        if not allowed[j] or not math.isfinite(s) or (size == n and s <= values[size - 1]):
            continue
        at = size if size < n else n - 1
        while at > 0 and values[at - 1] < s:
            if at < n:
                picked[at], values[at] = picked[at - 1], values[at - 1]
            at -= 1
        picked[at], values[at] = j, s
        if size < n:
            size += 1
    return picked[:size].copy(), values[:size].copy()


@later(types.Tuple((types.Array(types.int64, 1, "C"), types.Array(types.int64, 1, "C")))(
    _I64, _I32, _F32, _I64, _F64, _I64, _F32_2D), boundscheck=False, cache=True)
def anchors(indptr, indices, data, items, weights, picked, unit):
    """For each picked item, the recent item whose co-view contributed most (-1: none), and, when `unit` has
    columns, the recent item of positive weight whose embedding is most similar when the cosine is over 0.5 (-1:
    none). The first of equals wins, as numpy's argmax."""
    n = len(picked)
    where = np.full(len(indptr) - 1, -1, np.int64)  # picked item -> its column
    for c in range(n):
        where[picked[c]] = c
    strongest = np.full(n, -1, np.int64)
    best = np.zeros(n)
    for k in range(len(items)):
        a, w = items[k], weights[k]
        for p in range(indptr[a], indptr[a + 1]):
            c = where[indices[p]]
            if c >= 0 and w * data[p] > best[c]:
                best[c], strongest[c] = w * data[p], a
    similar = np.full(n, -1, np.int64)
    factors = unit.shape[1]
    if factors:
        for c in range(n):
            top = np.float32(0.5)
            for k in range(len(items)):
                if weights[k] <= 0:
                    continue
                cos = np.float32(0.0)
                for d in range(factors):
                    cos += unit[items[k], d] * unit[picked[c], d]
                if cos > top:
                    top, similar[c] = cos, items[k]
    return strongest, similar


_U64 = types.uint64


@later(types.Array(types.int64, 1, "C")(_B1, _I64, _U64, types.int64), boundscheck=False, cache=True)
def explore(allowed, kept, seed, k):
    """`k` distinct allowed items outside `kept`, drawn uniformly by a partial Fisher-Yates shuffle whose random
    numbers are splitmix64 of `seed`: the same seed draws the same items (fewer when fewer are left)."""
    rest = allowed.copy()
    for i in kept:
        rest[i] = False
    pool = np.flatnonzero(rest)
    m = len(pool)
    state = seed
    for t in range(min(k, m)):
        state += np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        j = t + np.int64(z % np.uint64(m - t))
        pool[t], pool[j] = pool[j], pool[t]
    return pool[:min(k, m)].copy()


@later(types.Tuple((types.Array(types.int64, 1, "C"), _F64W))(
    _I32, _F64, _F32, types.int64, types.float64, types.float64, types.float64), boundscheck=False, cache=True)
def recent_row(items, at, weight, start, now, ttl, decay):
    """A user's recent row from their events (oldest first) from `start` on: the events within `ttl` of `now`
    (ttl <= 0: all), the k-th of m weighted by decay^(m-1-k), summed per item in event order; (sorted items, sums)."""
    n = len(items)
    keep = np.empty(n - start, np.int64)
    m = 0
    for j in range(start, n):
        if ttl <= 0 or now - at[j] <= ttl:
            keep[m] = j
            m += 1
    pairs_item = np.empty(m, np.int64)
    pairs_value = np.empty(m)
    for k in range(m):
        j = keep[k]
        pairs_item[k] = items[j]
        pairs_value[k] = np.float64(weight[j]) * decay ** (m - 1 - k)
    order = np.argsort(pairs_item, kind="mergesort")  # stable: an item's events stay in event order
    out_items = np.empty(m, np.int64)
    out_sums = np.empty(m)
    size = 0
    for k in range(m):
        i = pairs_item[order[k]]
        if size and out_items[size - 1] == i:
            out_sums[size - 1] += pairs_value[order[k]]
        else:
            out_items[size], out_sums[size] = i, pairs_value[order[k]]
            size += 1
    return out_items[:size].copy(), out_sums[:size].copy()
