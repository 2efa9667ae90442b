"""A seeded population of synthetic travellers and publisher sites.

Everything comes from `numpy.random.default_rng(seed)`: the same seed gives the same population, a different
seed a different one. A traveller has what Contrail can be told (the profile the simulator writes with
`PUT /v1/profiles/{user_id}`: interests, segments, loyalty, last seen; and the device of each request) and
hidden traits it is never told (price sensitivity, home airport, activity, ancillary tastes, email habits).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

N_INTERESTS = 64   # ml/features.py's interest block
N_SEGMENTS = 64    # ml/features.py's segment one-hot block
N_THEMES = 8       # interest archetypes ("beach", "city breaks", "ski", ...) a traveller mixes
TIERS = np.array([0.0, 0.5, 1.0])           # the loyalty tier feature: Blue, Gold, Reserve
TIER_SHARE = np.array([0.75, 0.2, 0.05])
DEVICES = np.array([4, 2, 5])               # OpenRTB devicetype: phone, personal computer, tablet
DEVICE_SHARE = np.array([0.55, 0.35, 0.10])
PRIMARY_DEVICE_SHARE = 0.8                  # how often a traveller's request comes from their own device
AIRPORTS = ("LIS", "OPO", "FAO", "MAD", "BCN", "LHR", "DUB", "CDG", "AMS")
COUNTRY = {"LIS": "PRT", "OPO": "PRT", "FAO": "PRT", "MAD": "ESP", "BCN": "ESP", "LHR": "GBR", "DUB": "IRL",
           "CDG": "FRA", "AMS": "NLD"}
ANCILLARIES = ("bag", "seat", "meal", "flex", "lounge")
SITE_CATEGORIES = ("IAB20", "IAB12", "IAB17", "IAB9", "IAB1", "IAB19")  # travel, news, sports, hobbies, arts, tech
SIZES = ((300, 250), (728, 90), (320, 50), (300, 600))


@dataclass(frozen=True)
class Traveller:
    """One traveller, as the simulator knows them (the server is only ever told `profile()`)."""
    index: int
    user_id: str
    interests: np.ndarray        # (64,) weights in [0, 1], sparse, rounded to 4 places (what the profile says)
    segments: tuple[int, ...]    # segment ids in [0, 64)
    loyalty: np.ndarray          # (8,) the loyalty feature block as ml/features.py lays it out
    days_since_seen: float       # last seen this many days before the run starts
    device: int                  # the OpenRTB devicetype they mostly use
    home_airport: str
    price_sensitivity: float     # hidden: how much price puts them off an offer (1 = typical)
    activity: float              # hidden: relative rate of impressions (mean 1)
    ancillary_taste: np.ndarray  # hidden: (len(ANCILLARIES),) utility of each ancillary in a bundle
    email_affinity: float        # hidden: log-odds shift of opening email

    @property
    def tier(self) -> float:
        return float(self.loyalty[0])

    def profile(self, now: float) -> dict:
        """The body of `PUT /v1/profiles/{user_id}` at wall-clock time `now`."""
        return {"interests": [float(x) for x in self.interests], "segments": list(self.segments),
                "loyalty": [float(x) for x in self.loyalty], "last_seen": now - self.days_since_seen * 86_400}


@dataclass(frozen=True)
class Site:
    """A publisher's site: where impressions come from."""
    index: int
    site_id: str
    domain: str
    category: str        # its IAB content category
    popularity: float    # relative share of impressions (sums to 1 over the sites)
    floor: float         # its typical bid floor (CPM, USD)
    size: tuple[int, int]


@dataclass(frozen=True)
class Population:
    seed: int
    travellers: tuple[Traveller, ...]
    sites: tuple[Site, ...]

    @cached_property
    def by_id(self) -> dict[str, Traveller]:
        return {t.user_id: t for t in self.travellers}

    @cached_property
    def interests(self) -> np.ndarray:
        """(n, 64) every traveller's interest weights."""
        return np.stack([t.interests for t in self.travellers])

    @cached_property
    def segment_matrix(self) -> np.ndarray:
        """(n, 64) the segments one-hot."""
        m = np.zeros((len(self.travellers), N_SEGMENTS))
        for t in self.travellers:
            m[t.index, list(t.segments)] = 1.0
        return m

    @cached_property
    def loyalty(self) -> np.ndarray:
        return np.stack([t.loyalty for t in self.travellers])

    @cached_property
    def activity(self) -> np.ndarray:
        a = np.array([t.activity for t in self.travellers])
        return a / a.sum()

    @cached_property
    def site_share(self) -> np.ndarray:
        return np.array([s.popularity for s in self.sites])

    def recency(self, traveller: Traveller, elapsed_s: float = 0.0) -> float:
        """The recency feature the server computes `elapsed_s` after the run started (ml/features.py)."""
        return 1.0 / (1.0 + traveller.days_since_seen + max(0.0, elapsed_s) / 86_400)

    def sample_impressions(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """`n` impressions: traveller index (by activity), site index (by popularity), device, recency at start."""
        who = rng.choice(len(self.travellers), size=n, p=self.activity)
        where = rng.choice(len(self.sites), size=n, p=self.site_share)
        primary = np.array([self.travellers[i].device for i in who])
        other = rng.choice(DEVICES, size=n, p=DEVICE_SHARE)
        device = np.where(rng.random(n) < PRIMARY_DEVICE_SHARE, primary, other)
        recency = np.array([self.recency(self.travellers[i]) for i in who])
        return {"traveller": who, "site": where, "device": device, "recency": recency}


def _interests(rng: np.random.Generator, themes: np.ndarray, mix: np.ndarray) -> np.ndarray:
    raw = mix @ themes + rng.gamma(0.3, 0.05, N_INTERESTS)
    keep = np.argsort(raw)[-rng.integers(4, 11):]   # a sparse profile: 4..10 slots
    out = np.zeros(N_INTERESTS)
    out[keep] = raw[keep] / raw[keep].max()
    return np.round(out, 4)


def population(seed: int, n_travellers: int = 2000, n_sites: int = 40) -> Population:
    """The population of a seed (ids carry the seed, so several seeds can share one server)."""
    rng = np.random.default_rng([seed, 0x5_1A_7E])
    # Each theme: a few interest slots it weighs, and the segments its followers tend to be in.
    themes = np.zeros((N_THEMES, N_INTERESTS))
    theme_segments = []
    for k in range(N_THEMES):
        slots = rng.choice(N_INTERESTS, size=6, replace=False)
        themes[k, slots] = rng.dirichlet(np.ones(6)) * 3
        theme_segments.append(rng.choice(N_SEGMENTS, size=5, replace=False))
    theme_share = rng.dirichlet(np.full(N_THEMES, 2.0))
    travellers = []
    for i in range(n_travellers):
        n_mix = rng.integers(1, 4)
        picked = rng.choice(N_THEMES, size=n_mix, replace=False, p=theme_share)
        mix = np.zeros(N_THEMES)
        mix[picked] = rng.dirichlet(np.ones(n_mix))
        interests = _interests(rng, themes, mix)
        segs = {int(rng.choice(theme_segments[k])) for k in picked}
        segs |= {int(s) for s in rng.choice(N_SEGMENTS, size=rng.integers(0, 3), replace=False)}
        tier = float(rng.choice(TIERS, p=TIER_SHARE))
        stars = rng.gamma(2.0, 600 + 3000 * tier)
        loyalty = np.round(np.array([
            tier, min(stars / 5000, 4.0), rng.random(), (1 + tier) / 2, 1 / (1 + rng.exponential(4)),
            float(rng.random() < 1 / 12), float(rng.integers(0, 4)) / 3, min(stars * rng.uniform(2, 6) / 50_000, 4.0),
        ]), 4)
        airport = AIRPORTS[int(rng.integers(len(AIRPORTS)))]
        travellers.append(Traveller(
            index=i, user_id=f"sim{seed}-t{i:05d}", interests=interests, segments=tuple(sorted(segs)),
            loyalty=loyalty, days_since_seen=round(float(rng.exponential(3.0)), 4),
            device=int(rng.choice(DEVICES, p=DEVICE_SHARE)), home_airport=airport,
            price_sensitivity=float(rng.lognormal(0.0, 0.4)), activity=float(rng.lognormal(0.0, 0.8)),
            ancillary_taste=rng.normal(0.0, 1.0, len(ANCILLARIES)) + interests[:len(ANCILLARIES)],
            email_affinity=float(rng.normal(0.0, 0.8))))
    pop = rng.dirichlet(np.full(n_sites, 0.7))
    sites = tuple(Site(index=j, site_id=f"sim{seed}-s{j:03d}", domain=f"site{j}.sim{seed}.example",
                       category=SITE_CATEGORIES[int(rng.integers(len(SITE_CATEGORIES)))], popularity=float(pop[j]),
                       floor=round(float(rng.uniform(0.1, 1.0)), 2), size=SIZES[int(rng.integers(len(SIZES)))])
                  for j in range(n_sites))
    return Population(seed, tuple(travellers), sites)
