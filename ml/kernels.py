"""The fp32 spiking network over a whole inference batch, as one compiled loop (numba).

Done with numpy, a batch was about thirty array calls (the user blocks' product, a
gather, the candidate columns' product, the threshold, the second layer, tanh and its
scaling), and on a busy server each call's own overhead cost more than its arithmetic:
about 80 us a batch, whether it held one request or sixteen. This loop does the same
arithmetic in one call. For each request it works out the user block's product once;
the candidate columns' product is worked out once per distinct block of candidate rows
(requests that share one, the usual case, share it); then, hidden unit by hidden unit,
it thresholds and accumulates all of the request's candidate rows at once, the rows
being the SIMD lanes. np.tanh then runs over all outputs together (vectorised, where a
scalar tanh per row cost more than the layers themselves).

Sums may be reassociated for SIMD, so results can differ from numpy's in the last bits
of float32, as two BLAS builds do. Signatures are explicit. The kernel compiles (or
loads from numba's on-disk cache) when a server opens its storage, before it is ready
(Platform.open_storage, BID_LOOPS), never on a bid; a command that never bids never loads it.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import types

from ml.compiled import later

_F32 = types.Array(types.float32, 1, "C", readonly=True)
_F32_2D = types.Array(types.float32, 2, "C", readonly=True)
_I64 = types.Array(types.int64, 1, "C", readonly=True)


@later(types.Array(types.float32, 2, "C")(_F32_2D, _F32_2D, _I64, _I64, types.int64, _F32_2D, _F32, _F32_2D,
                                          types.float32, _F32_2D, _F32),
       fastmath={"reassoc", "nsz", "contract"}, boundscheck=False, cache=True)
def _layers(users, cand_rows, cand_start, cand_len, total, w1, b1, w_cand, theta, w2t, b2):
    """(3, total) pre-activations: request k's rows are users[k] with each of
    cand_rows[cand_start[k]:cand_start[k] + cand_len[k]] as its candidate columns."""
    out = np.empty((3, total), np.float32)
    calls, dim = users.shape
    hidden, columns = w1.shape[1], cand_rows.shape[1]
    most = 0
    for k in range(calls):
        most = max(most, cand_len[k])
    per_user = np.empty(hidden, np.float32)
    cand_t = np.empty((columns, most), np.float32)
    per_cand = np.empty((hidden, most), np.float32)  # hidden unit j's share from candidate row r: [j, r]
    z0, z1, z2 = np.empty(most, np.float32), np.empty(most, np.float32), np.empty(most, np.float32)
    block_start, block_len = -1, -1
    row = 0
    for k in range(calls):
        per_user[:] = b1
        for d in range(dim):
            x = users[k, d]
            if x != 0.0:  # most of a user block is zero (no profile, few segments)
                for j in range(hidden):
                    per_user[j] += x * w1[d, j]
        start, n = cand_start[k], cand_len[k]
        if start != block_start or n != block_len:  # a new block of candidate rows
            for q in range(columns):
                for r in range(n):
                    cand_t[q, r] = cand_rows[start + r, q]
            for j in range(hidden):
                share = per_cand[j]
                for r in range(n):
                    share[r] = cand_t[0, r] * w_cand[0, j]
                for q in range(1, columns):
                    weight = w_cand[q, j]
                    for r in range(n):
                        share[r] += cand_t[q, r] * weight
            block_start, block_len = start, n
        for r in range(n):
            z0[r], z1[r], z2[r] = b2[0], b2[1], b2[2]
        for j in range(hidden):
            base, share = per_user[j], per_cand[j]
            a, b, c = w2t[0, j], w2t[1, j], w2t[2, j]
            for r in range(n):
                spike = np.float32(base + share[r] > theta)
                z0[r] += spike * a
                z1[r] += spike * b
                z2[r] += spike * c
        for r in range(n):
            out[0, row + r], out[1, row + r], out[2, row + r] = z0[r], z1[r], z2[r]
        row += n
    return out


@functools.lru_cache(maxsize=512)
def repeated(value: int, calls: int) -> np.ndarray:
    """`calls` copies of `value` as a read-only int64 array, shared by the batches of that size (the row
    starts and lengths of requests that all use one candidate array, and their caps' starts)."""
    out = np.full(calls, value, dtype=np.int64)
    out.flags.writeable = False
    return out


def spiking_outputs(users: np.ndarray, cands: list[np.ndarray], w1: np.ndarray, b1: np.ndarray,
                    w_cand: np.ndarray, theta: np.float32, w2t: np.ndarray, b2: np.ndarray,
                    scale: np.ndarray) -> np.ndarray:
    """(3, rows) float32: tanh of the network's outputs for request k = users[k] with each row of
    cands[k] as its candidate columns, requests in order; rows 1 and 2 are then shifted by one and
    multiplied by `scale` (2, 1)."""
    first = cands[0]
    if all(c is first for c in cands):  # no frequency cap in use: every request has the same columns
        rows, total = first, len(first) * len(cands)
        start, length = repeated(0, len(cands)), repeated(len(first), len(cands))
    else:
        rows = np.concatenate(cands)
        total = len(rows)
        length = np.array([len(c) for c in cands], dtype=np.int64)
        start = np.zeros(len(cands), dtype=np.int64)
        np.cumsum(length[:-1], out=start[1:])
    try:
        out = _layers(users, rows, start, length, total, w1, b1, w_cand, theta, w2t, b2)
    except TypeError:  # not C-ordered float32 (the batcher's arrays always are)
        out = _layers(np.ascontiguousarray(users, dtype=np.float32), np.ascontiguousarray(rows, dtype=np.float32),
                      start, length, total, w1, b1, w_cand, theta, w2t, b2)
    np.tanh(out, out=out)
    tail = out[1:]
    tail += 1.0
    tail *= scale
    return out
