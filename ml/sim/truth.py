"""The hidden ground truth of a seed: how its travellers behave.

Click (what the bid scorer must learn) depends only on what Contrail is told, through the bidding feature
layout (ml/features.py): the profile the simulator writes (interests, segments, loyalty tier, last seen) and
the request's device type. Its form, with weights drawn from the seed:

    s      = a · interests + Σ_{seg in segments} b[seg] + c · tier + r · recency + d[devicetype]
    z      = μ + σ (s − m) / v     (m: the median of s over a sample of the population's own traffic;
                                      v: its interquartile range / 1.349, a spread a few outliers cannot inflate)
    p_click = LO + (HI − LO) · sigmoid(z)          LO = 0.2 %, HI = 5 %

a: 64 interest weights, N(0, 1); b: 64 segment effects, N(0, 0.6); c ~ U(0.3, 0.8) (loyal travellers click
more); r ~ U(0.5, 1.2) (recently seen travellers click more); d: one effect per device type. Standardising s on
the population's own traffic fixes the spread (σ = 2.5) and level (μ = −3.0), so every seed's click rates sit in
the range real ads see (about 1 % on average, never outside 0.2–5 %) and the oracle ranks impressions with an
AUC of about 0.75–0.79 (the expected AUC was at least 0.75 for every seed from 0 to 19). The site, the
creative and the offer position play no part in clicking.

Hidden traits shift what follows a click and what offers and mail do, never the click itself:
- p_convert (a booking after a click): the traveller's price sensitivity, tier, and whether the site is a
  travel site (IAB20), logistic around 4 %.
- p_accept (an offer bundle at a price): logistic in the traveller's taste for the bundle's ancillaries,
  minus price sensitivity × price / reference price.
- email: p_open from email affinity and tier; p_click given open from the traveller's interest in its topic.
- loyalty: flights per year and the chance of redeeming stars, from tier and activity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml import features
from ml.sim.population import ANCILLARIES, N_INTERESTS, N_SEGMENTS, Population, Site, Traveller

LO, HI = 0.002, 0.05
SPREAD, LEVEL = 2.5, -3.0
DEVICE_TYPES = 8  # OpenRTB devicetype 0..7 (the feature's clamp)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class Truth:
    """The hidden behaviour of a population: deterministic for its seed."""

    def __init__(self, population: Population) -> None:
        self.population = population
        rng = np.random.default_rng([population.seed, 0x72D7])
        self.interest_w = rng.normal(0.0, 1.0, N_INTERESTS)
        self.segment_w = rng.normal(0.0, 0.6, N_SEGMENTS)
        self.tier_w = float(rng.uniform(0.3, 0.8))
        self.recency_w = float(rng.uniform(0.5, 1.2))
        self.device_w = rng.normal(0.0, 0.3, DEVICE_TYPES)
        # Conversion, acceptance, email and loyalty: hidden weights.
        self.convert_base = float(rng.normal(-3.2, 0.15))
        self.convert_travel_site = float(rng.uniform(0.3, 0.8))
        self.accept_base = float(rng.normal(0.5, 0.2))
        self.open_base = float(rng.normal(-1.2, 0.2))
        self.click_base = float(rng.normal(-2.5, 0.2))
        # Standardise the score on the population's own traffic: a large sample of its impressions.
        pop = population
        imps = pop.sample_impressions(np.random.default_rng([pop.seed, 0x5CA1E]), 20_000)
        who = imps["traveller"]
        s = self._score(pop.interests[who], pop.segment_matrix[who], pop.loyalty[who, 0], imps["recency"],
                        imps["device"])
        # A robust centre and spread (median, interquartile range / 1.349): a small far-off cluster of
        # travellers does not squeeze everyone else's click rates together.
        q1, med, q3 = np.quantile(s, [0.25, 0.5, 0.75])
        self._mean = float(med)
        self._scale = float(q3 - q1) / 1.349 or 1.0

    def _score(self, interests, segments, tier, recency, device):
        device = np.clip(np.asarray(device, dtype=np.int64), 0, DEVICE_TYPES - 1)
        return (interests @ self.interest_w + segments @ self.segment_w + self.tier_w * tier
                + self.recency_w * recency + self.device_w[device])

    # ---- click: observable features only ----
    def p_click_features(self, interests: np.ndarray, segments: np.ndarray, tier: np.ndarray | float,
                         recency: np.ndarray | float, device: np.ndarray | int) -> np.ndarray:
        """The click probability from the observable features alone (vectorised over rows): interests (n, 64)
        in [0, 1], segments one-hot (n, 64), the loyalty tier feature, the recency feature, the devicetype."""
        s = self._score(np.asarray(interests, dtype=float), np.asarray(segments, dtype=float), tier, recency, device)
        z = LEVEL + SPREAD * (s - self._mean) / self._scale
        return LO + (HI - LO) * _sigmoid(z)

    def p_click_rows(self, x: np.ndarray) -> np.ndarray:
        """The click probability of rows of the 256-feature bidding layout (ml/features.py)."""
        x = np.atleast_2d(x)
        device = np.rint(x[:, features.DEVICE_TYPE] * 7).astype(np.int64)
        return self.p_click_features(x[:, features.INTERESTS], x[:, features.SEGMENTS], x[:, features.LOYALTY.start],
                                     x[:, features.RECENCY], device)

    def p_click(self, traveller: Traveller, device: int, recency: float) -> float:
        seg = np.zeros(N_SEGMENTS)
        seg[list(traveller.segments)] = 1.0
        return float(self.p_click_features(traveller.interests[None, :], seg[None, :], traveller.tier, recency,
                                           device)[0])

    def p_click_impressions(self, imps: dict[str, np.ndarray]) -> np.ndarray:
        """The click probability of impressions sampled with Population.sample_impressions."""
        pop, who = self.population, imps["traveller"]
        return self.p_click_features(pop.interests[who], pop.segment_matrix[who], pop.loyalty[who, 0],
                                     imps["recency"], imps["device"])

    # ---- hidden traits: conversion, offers, email, loyalty ----
    def p_convert(self, traveller: Traveller, site: Site) -> float:
        """A booking given a click on an ad shown on `site`."""
        z = (self.convert_base - 0.8 * (traveller.price_sensitivity - 1.0) + 0.6 * traveller.tier
             + (self.convert_travel_site if site.category == "IAB20" else 0.0))
        return float(_sigmoid(z))

    def p_accept(self, traveller: Traveller, ancillaries: Sequence[str], price: float, reference_price: float) -> float:
        """The traveller accepts an offer bundle with these ancillaries at `price` (reference: the route's
        usual fare)."""
        taste = sum(float(traveller.ancillary_taste[ANCILLARIES.index(a)]) for a in ancillaries if a in ANCILLARIES)
        z = self.accept_base + 0.5 * taste - 2.0 * traveller.price_sensitivity * (price / reference_price - 1.0)
        return float(_sigmoid(z))

    def p_email_open(self, traveller: Traveller) -> float:
        return float(_sigmoid(self.open_base + traveller.email_affinity + 0.5 * traveller.tier))

    def p_email_click(self, traveller: Traveller, topic: int) -> float:
        """A click given an open, for an email about interest slot `topic`."""
        return float(_sigmoid(self.click_base + 2.0 * traveller.interests[topic % N_INTERESTS]))

    def flights_per_year(self, traveller: Traveller) -> float:
        return float(1.0 + 6.0 * traveller.tier + 2.0 * traveller.activity)

    def p_redeem(self, traveller: Traveller) -> float:
        """The chance of redeeming stars in a month."""
        return float(_sigmoid(-2.5 + 1.5 * traveller.tier + 0.3 * np.log(traveller.activity)))
