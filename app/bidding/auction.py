"""The batch auction: every scored request's prices, and the winners of the simple ones, in one pass.

The batcher hands a whole batch's outputs to `settle`. Prices for every candidate row of
every request, the floor check and each request's winner are one compiled loop (numba)
over the batch: as numpy it was about fifteen array calls a batch, whose overhead on a
busy server was most of what choosing the bids cost.

A request is "simple" when it has one impression and no deals: its winner is the
highest-ranked candidate whose price reaches the floor. Other requests get their prices
and ranks here and choose per impression in the processor.

A candidate's price is its cap scaled by the model's bid factor (a quarter to all of it)
and the loyalty tier boost, rounded down to a whole micro, never above the cap:
    min(cap, floor(cap × (0.25 + 0.75 × bid factor) × boost))
computed in float64 in that order (tests check it against numpy's evaluation of the same).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec
import numpy as np
from numba import types

from ml.compiled import later
from ml.kernels import repeated

NO_FLOOR = math.inf  # a request that is not simple: no winner is picked in the batch


class Terms(NamedTuple):
    """What the auction needs from one request, besides its scores."""
    caps: np.ndarray   # each candidate's bid cap in micros (float64)
    boost: float       # loyalty tier multiplier on rank and price
    floor: float       # micros the simple request's winning price must reach; NO_FLOOR otherwise


class Settled(msgspec.Struct, frozen=True, gc=False):
    """One request's share of a settled batch (a Struct: built in C, once per request of every batch)."""
    winner: int = -1                  # the winning candidate of a simple request, -1 for none
    price: int = 0                    # its price in micros
    # For the other requests, to choose per impression:
    rank: np.ndarray | None = None    # score × boost per candidate
    prices: np.ndarray | None = None  # micros per candidate, never above its cap


_F32 = types.Array(types.float32, 1, "C", readonly=True)
_F64 = types.Array(types.float64, 1, "C", readonly=True)
_I64 = types.Array(types.int64, 1, "C", readonly=True)
_TERMS = types.Array(types.float64, 2, "C", readonly=True)
_RESULT = types.Tuple((types.Array(types.int64, 2, "C"), types.Array(types.float32, 1, "C"),
                       types.Array(types.float64, 1, "C")))


@later(_RESULT(_F32, _F32, _F64, _I64, _TERMS), boundscheck=False, cache=True)
def _auction(score, bid_factor, caps, cap_start, terms):
    """terms[k] = (boost, floor, candidates) of request k, whose rows follow request k-1's and whose
    caps start at caps[cap_start[k]]. Every row's rank and price, and each request's (winner, price):
    winner -1 for none. No fast-math: the prices are IEEE float64 in the documented order."""
    calls = terms.shape[0]
    won = np.empty((calls, 2), np.int64)
    rank = np.empty(len(score), np.float32)
    prices = np.empty(len(score), np.float64)
    row = 0
    for k in range(calls):
        boost, floor, size = terms[k, 0], terms[k, 1], int(terms[k, 2])
        boost32 = np.float32(boost)
        best = -np.inf
        winner = -1
        for i in range(size):
            cap = caps[cap_start[k] + i]
            p = min(cap, math.floor(cap * (0.25 + 0.75 * np.float64(bid_factor[row])) * boost))
            r = score[row] * boost32
            prices[row] = p
            rank[row] = r
            if p >= floor and r > best:  # a NO_FLOOR request never has an eligible row
                best = r
                winner = i
            row += 1
        won[k, 0] = winner
        won[k, 1] = np.int64(prices[row - size + winner]) if winner >= 0 else 0
    return won, rank, prices


def settle(terms: list[Terms], score: np.ndarray, ctr: np.ndarray, bid_factor: np.ndarray,
           sizes: list[int]) -> list[Settled]:
    """Settle a batch: `terms[k]` and `sizes[k]` belong to the k-th request's rows, in order."""
    calls = len(terms)
    caps = terms[0].caps
    if all(t.caps is caps for t in terms):  # requests of one shape share their caps
        cap_start = repeated(0, calls)
    else:
        caps = np.concatenate([t.caps for t in terms])
        cap_start = np.zeros(calls, dtype=np.int64)
        np.cumsum(sizes[:-1], out=cap_start[1:])
    floors = [t.floor for t in terms]
    table = np.array([(t.boost, f, n) for t, f, n in zip(terms, floors, sizes, strict=True)], dtype=np.float64)
    try:
        won, rank, prices = _auction(score, bid_factor, caps, cap_start, table)
    except TypeError:  # not C-ordered arrays of the kernel's types (the batcher's always are)
        won, rank, prices = _auction(np.ascontiguousarray(score, dtype=np.float32),
                                     np.ascontiguousarray(bid_factor, dtype=np.float32),
                                     np.ascontiguousarray(caps, dtype=np.float64), cap_start, table)
    settled, start = [], 0
    for f, n, (w, p) in zip(floors, sizes, won.tolist(), strict=True):
        if f == NO_FLOOR:  # several impressions or deals: the processor chooses from every price
            settled.append(Settled(rank=rank[start:start + n], prices=prices[start:start + n]))
        else:
            settled.append(Settled(w, p) if w >= 0 else Settled())
        start += n
    return settled
