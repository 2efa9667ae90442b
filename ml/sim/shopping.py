"""How simulated travellers shop: what they search for, and how they choose among the offers shown.

Pure and seeded, like the rest of ml/sim: the driver (app/simulate.py) sends the searches to the server and
answers its offers with the choices drawn here; evaluations ask the same functions. Only `search_segment` and the
search itself reach the server, as a carrier's booking flow would send them; the tastes and price sensitivity
that decide the choice stay hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ml.sim.population import Population, Traveller
from ml.sim.truth import Truth

# Which of the truth's ancillaries an offer's item kind gives (ml.sim.population.ANCILLARIES).
ANCILLARY_OF_KIND = {"Bag": "bag", "Seat": "seat", "Meal": "meal", "Insurance": "flex", "Lounge": "lounge",
                     "FastTrack": "lounge"}
CONSIDERED = 3          # a traveller looks at the first three offers shown, in order
PAY_SHARE = 0.9         # of accepted offers, this share is paid; the rest lapse (the hold expires)
HORIZON_DAYS = 28       # searches are for departures 1..HORIZON_DAYS days ahead


def search_segment(traveller: Traveller) -> str:
    """The segment a carrier's booking flow would tag the search with, from what it knows of the traveller:
    top-tier members are premium; the price-insensitive travel for work; the most price-sensitive for leisure."""
    if traveller.tier >= 1.0:
        return "premium"
    if traveller.price_sensitivity < 0.75:
        return "corporate"
    if traveller.price_sensitivity > 1.3:
        return "leisure"
    return "economy"


def ancillaries(kinds: Sequence[str]) -> list[str]:
    """The truth's ancillaries an offer with these item kinds includes."""
    return sorted({ANCILLARY_OF_KIND[k] for k in kinds if k in ANCILLARY_OF_KIND})


@dataclass(frozen=True)
class Search:
    """Everything random about one search and its outcome, drawn before it is sent."""
    n: int
    traveller: int
    route: int            # index into the routes the driver was given
    days_ahead: int
    passengers: int
    cabin: str
    choice_u: tuple[float, ...]   # one uniform per considered offer: accept offer i when u[i] < p_accept
    pay_u: float


class Searches:
    """The seeded stream of searches (a stream of its own: bids and searches do not shift each other)."""

    def __init__(self, pop: Population, seed: int, routes: int) -> None:
        self._pop = pop
        self._routes = routes
        self._rng = np.random.default_rng([seed, 0x5EA2C])
        self._n = 0

    def next(self) -> Search:
        rng, pop = self._rng, self._pop
        who = int(rng.choice(len(pop.travellers), p=pop.activity))
        search = Search(self._n, who, int(rng.integers(self._routes)), int(rng.integers(1, HORIZON_DAYS + 1)),
                        1 if rng.random() < 0.8 else 2, "premium" if rng.random() < 0.1 else "economy",
                        tuple(float(u) for u in rng.random(CONSIDERED)), float(rng.random()))
        self._n += 1
        return search


def choose(truth: Truth, traveller: Traveller, offers: Sequence[tuple[Sequence[str], float]],
           search: Search) -> tuple[int | None, list[float]]:
    """Which offer the traveller accepts (index, or None) and each shown offer's true acceptance probability.
    `offers`: (item kinds, total price) in the order shown. The reference price is the cheapest offer's: a bundle
    is judged by its ancillaries against what it costs above the bare fare."""
    if not offers:
        return None, []
    reference = min(price for _, price in offers) or 1.0
    p = [truth.p_accept(traveller, ancillaries(kinds), price, reference) for kinds, price in offers]
    for i, u in enumerate(search.choice_u[:len(offers)]):
        if u < p[i]:
            return i, p
    return None, p
