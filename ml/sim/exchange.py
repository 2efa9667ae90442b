"""The simulator's exchange: the other bidders' prices, the floors, and how a won auction clears.

Used by the simulator driver (app/simulate.py, one request at a time) and by `eval ctr`'s economic comparison
(eval/ctr.py, a whole day at once); both take their draws from here so the two exchanges are the same.

- Competing price: the best other bid, a CPM (USD) drawn lognormal with median COMPETITION_MEDIAN_CPM and
  log-sd COMPETITION_SIGMA.
- Floor: the site's typical floor times a uniform jitter in FLOOR_JITTER, rounded to the cent.
- Our bid wins when it is above the competing price and not below the floor; it clears at the higher of the
  two, never above our bid (second price), truncated to 1/10,000 of a USD CPM.
"""

from __future__ import annotations

import math

import numpy as np

COMPETITION_MEDIAN_CPM = 4.5   # the competing bids' median CPM (USD), lognormal around it
COMPETITION_SIGMA = 0.6
FLOOR_JITTER = (0.8, 1.2)      # a request's floor: the site's floor times a uniform draw in this range


def draw_prices(rng: np.random.Generator, site_floors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(floors, competing prices), one each per entry of `site_floors` (each site's typical floor, USD CPM).

    All the floor jitters are drawn first, then the competing prices; for one request that is the order the
    simulator driver has always used."""
    site_floors = np.asarray(site_floors, dtype=np.float64)
    jitter = rng.uniform(FLOOR_JITTER[0], FLOOR_JITTER[1], site_floors.shape)
    floors = np.array([round(float(f), 2) for f in (site_floors * jitter).ravel()]).reshape(site_floors.shape)
    competing = rng.lognormal(math.log(COMPETITION_MEDIAN_CPM), COMPETITION_SIGMA, site_floors.shape)
    return floors, competing


def wins(bid: np.ndarray | float, competing: np.ndarray | float, floor: np.ndarray | float) -> np.ndarray:
    """Whether a bid wins: above the competing price and not below the floor. (The simulator driver checks only
    the competing price: the server never bids below the floor it is sent.)"""
    return np.logical_and(np.greater(bid, competing), np.greater_equal(bid, floor))


def clearing_price(bid: np.ndarray | float, competing: np.ndarray | float,
                   floor: np.ndarray | float) -> np.ndarray:
    """A won auction's price (USD CPM): the higher of the competing price and the floor, never above the bid,
    truncated to 1/10,000."""
    return np.floor(np.minimum(bid, np.maximum(competing, floor)) * 10_000) / 10_000
