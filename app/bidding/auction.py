"""The batch auction: every scored request's prices, and the winners of the simple ones, in one pass.

The batcher hands a whole batch's outputs to `settle`. Prices for every candidate row of
every request, the floor check and each request's winner are a dozen vectorised numpy
calls per batch instead of a dozen per request: small-array numpy calls cost a few
microseconds each on a busy server, which is most of what choosing a bid used to cost.

A request is "simple" when it has one impression and no deals: its winner is the
highest-ranked candidate whose price reaches the floor. Other requests get their prices
and ranks here and choose per impression in the processor.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

NO_FLOOR = math.inf  # a request that is not simple: no winner is picked in the batch


class Terms(NamedTuple):
    """What the auction needs from one request, besides its scores."""
    caps: np.ndarray   # each candidate's bid cap in micros (float64)
    boost: float       # loyalty tier multiplier on rank and price
    floor: float       # micros the simple request's winning price must reach; NO_FLOOR otherwise


class Settled(NamedTuple):
    """One request's share of a settled batch."""
    winner: int = -1                  # the winning candidate of a simple request, -1 for none
    price: int = 0                    # its price in micros
    # For the other requests, to choose per impression:
    rank: np.ndarray | None = None    # score × boost per candidate
    prices: np.ndarray | None = None  # micros per candidate, never above its cap


def prices_for(caps: np.ndarray, bid_factor: np.ndarray, boost: np.ndarray | float) -> np.ndarray:
    """A candidate's price: its cap scaled by the model's bid factor (a quarter to all of it) and the
    tier boost, rounded down to a whole micro, never above the cap."""
    return np.minimum(caps, np.floor(caps * (0.25 + 0.75 * bid_factor.astype(np.float64)) * boost))


def settle(terms: list[Terms], score: np.ndarray, ctr: np.ndarray, bid_factor: np.ndarray,
           sizes: list[int]) -> list[Settled]:
    """Settle a batch: `terms[k]` and `sizes[k]` belong to the k-th request's rows, in order."""
    starts, start = [], 0
    for n in sizes:
        starts.append(start)
        start += n
    if len(terms) == 1:
        caps = terms[0].caps
        boosts: np.ndarray | float = terms[0].boost
    else:
        caps = np.concatenate([t.caps for t in terms])
        boosts = np.repeat([t.boost for t in terms], sizes) if any(t.boost != 1.0 for t in terms) else 1.0
    prices = prices_for(caps, bid_factor, boosts)
    if isinstance(boosts, float):
        rank = score * boosts if boosts != 1.0 else score
    else:
        rank = score * boosts.astype(np.float32)  # ranks stay float32, as score × boost is per request
    floors = [t.floor for t in terms]
    settled = [Settled() if f != NO_FLOOR else Settled(rank=rank[s:s + n], prices=prices[s:s + n])
               for f, s, n in zip(floors, starts, sizes)]
    if any(f != NO_FLOOR for f in floors):
        n = sizes[0]
        if sizes.count(n) == len(sizes):
            # Every request has as many candidates (the usual case): the batch is a (requests, n) matrix.
            eligible = prices.reshape(-1, n) >= np.array(floors)[:, None]
            masked = np.where(eligible, rank.reshape(-1, n), -np.inf).ravel()
            first = masked.reshape(-1, n).argmax(axis=1) + np.array(starts)
            best = masked[first]
        else:
            eligible = prices >= (np.repeat(floors, sizes) if len(terms) > 1 else floors[0])
            masked = np.where(eligible, rank, -np.inf)
            best = np.maximum.reduceat(masked, starts)
            # The first row of each request that reaches its best: np.argmax's choice, per segment.
            hits = np.flatnonzero(masked == np.repeat(best, sizes))
            first = hits[np.searchsorted(hits, starts)]
        for k, (top, row, price) in enumerate(zip(best.tolist(), first.tolist(), prices[first].tolist())):
            if top != -math.inf:  # a NO_FLOOR request never has an eligible row
                settled[k] = Settled(row - starts[k], int(price))
    return settled
