"""Offer ranking: score = P(accept) × margin.

P(accept) comes from, in order of preference:
1. a remote ranking.RankingService, for `ranking.remote_share` of searches when
   `ranking.remote` is set, guarded by a circuit breaker;
2. the in-process logistic model (ml/acceptance.py), the live version of the "acceptance" model
   (app/learning/acceptance.py: trained from paid orders, evaluated before it is swapped in);
3. rules (the acceptance model's version 0, until a trained one goes live): a base rate per
   bundle (flight only 0.30, rule bundles 0.22, comfort 0.20, premium 0.08), × (1 + discount
   fraction), × 1.5 for the premium bundle shown to the premium segment, clipped to [0.01, 0.95].

Margin = booking fee + Σ item total × margin rate of its kind (MARGIN_RATES).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import numpy as np

from app.retail.pricing import day_start
from app.runtime.breaker import CircuitBreaker
from app.runtime.canary import Split
from app.runtime.clock import Clock
from ml.acceptance import BUNDLES, FEATURES, SEGMENTS, AcceptanceModel, offer_features

log = logging.getLogger("contrail.retail")

MARGIN_RATES = {"Flight": 0.10, "Seat": 0.90, "Bag": 0.80, "Meal": 0.50, "Lounge": 0.60, "CarbonOffset": 0.10,
                "Insurance": 0.40, "FastTrack": 0.70}
RULE_BASE = {"flight_only": 0.30, "comfort": 0.20, "premium": 0.08, "rule": 0.22}
COMFORT = frozenset({"Flight", "Seat", "Bag", "Meal"})
PREMIUM = frozenset({"Flight", "Seat", "Bag", "Meal", "Lounge", "FastTrack", "Insurance"})


@dataclass(frozen=True)
class SearchContext:
    user_id: str
    is_guest: bool
    session_id: str
    origin: str
    destination: str
    departure_date: str
    passengers: int
    cabin: str
    segment: str


class OfferSummary(msgspec.Struct, frozen=True, gc=False):
    """What a ranker knows of an offer: the RankingService's OfferFeatures."""

    offer_id: str
    total_cents: int
    product_codes: tuple[str, ...]
    discount_percent: float


@functools.lru_cache(maxsize=256)
def bundle_of(product_codes: tuple[str, ...]) -> str:
    codes = frozenset(product_codes)
    if codes == {"Flight"}:
        return "flight_only"
    if codes == COMFORT:
        return "comfort"
    if codes == PREMIUM:
        return "premium"
    return "rule"


def features(ctx: SearchContext, offers: list[OfferSummary], now: float) -> list[list[float]]:
    """Each offer's feature vector, for one search (the days to departure are the search's, the cheapest price the
    cheapest of these offers: offer search always shows the cheapest fare, so it is the same for the offers it ranks
    and the ones it logs)."""
    departs = day_start(ctx.departure_date)
    if departs is None:
        departs = now
    days = min(max(0.0, (departs - now) / 86_400), 365) / 365  # as offer_features computes it
    cheapest = min((o.total_cents for o in offers), default=0)
    vectors = []
    for offer in offers:
        x = list(_fixed_features(offer.total_cents, ctx.passengers, offer.discount_percent, offer.product_codes,
                                 ctx.segment, ctx.cabin, cheapest))
        x[_DAYS] = days
        vectors.append(x)
    return vectors


_DAYS = FEATURES.index("days_to_departure_fraction")


@functools.lru_cache(maxsize=4096)
def _fixed_features(total_cents: int, passengers: int, discount_percent: float, product_codes: tuple[str, ...],
                    segment: str, cabin: str, cheapest_cents: int) -> tuple[float, ...]:
    """An offer's features but the one that moves with the clock (days to departure): a search shows the
    same drafts again and again, so they are worked out once."""
    return tuple(offer_features(total_cents, passengers, discount_percent, len(set(product_codes)), segment, cabin,
                                0.0, bundle_of(product_codes), cheapest_cents))


def rule_probability(ctx: SearchContext, offer: OfferSummary) -> float:
    return _rule_probability(offer.product_codes, offer.discount_percent, ctx.segment)


@functools.lru_cache(maxsize=4096)
def _rule_probability(product_codes: tuple[str, ...], discount_percent: float, segment: str) -> float:
    bundle = bundle_of(product_codes)
    p = RULE_BASE[bundle] * (1 + discount_percent / 100)
    if bundle == "premium" and segment == "premium":
        p *= 1.5
    return min(0.95, max(0.01, p))


_BUNDLE_AT = FEATURES.index(f"bundle_{BUNDLES[0]}")
_DISCOUNT_AT = FEATURES.index("discount_fraction")
_PREMIUM_SEGMENT_AT = FEATURES.index("segment_premium")
assert FEATURES[_BUNDLE_AT:_BUNDLE_AT + len(BUNDLES)] == tuple(f"bundle_{b}" for b in BUNDLES) and "premium" in SEGMENTS


def rule_probabilities(x: np.ndarray) -> np.ndarray:
    """The rules' probabilities from logged feature rows (FEATURES order), as rule_probability gives them for the
    offers the rows describe: the rules read only the bundle, the discount and the premium segment, all of which
    the features hold. The learner measures the rules on held-out rows with it while they are live."""
    x = np.asarray(x, dtype=np.float64)
    if not len(x):
        return np.zeros(0)
    bundle = np.argmax(x[:, _BUNDLE_AT:_BUNDLE_AT + len(BUNDLES)], axis=1)
    base = np.array([RULE_BASE[b] for b in BUNDLES])[bundle]
    p = base * (1 + x[:, _DISCOUNT_AT])
    p = np.where((np.asarray(BUNDLES)[bundle] == "premium") & (x[:, _PREMIUM_SEGMENT_AT] > 0.5), p * 1.5, p)
    return np.clip(p, 0.01, 0.95)


RemoteRank = Callable[[SearchContext, list[OfferSummary], float], Awaitable[list[float]]]


class Ranker:
    def __init__(self, config, metrics, clock: Clock, rng: random.Random | None = None,
                 remote: RemoteRank | None = None) -> None:
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self.model: AcceptanceModel | None = None
        self.canary: Split[AcceptanceModel | None] | None = None   # a canary version beside the live one
        self.remote = remote
        self._calls = {source: metrics.ranking_calls.labels(source) for source in ("remote", "model", "rules")}
        self.breaker = CircuitBreaker(clock, failures=config.breaker_failures, open_s=config.breaker_open_s,
                                      successes=config.breaker_successes, on_change=metrics.ranking_breaker.set)

    @property
    def model_version(self) -> str:
        """The local model's version: its registry label (acceptance-<n>), or rules."""
        if self.model is None:
            return "rules"
        return self.model.version or f"logistic-{self.model.trained_on}"

    def serve(self, model: AcceptanceModel | None) -> None:
        """Rank with `model` from the next search on (None: the rules)."""
        self.model = model

    def local(self, ctx: SearchContext, offers: list[OfferSummary]) -> list[float]:
        """Acceptance probabilities from the in-process model, or the rules before it is trained."""
        split = self.canary
        if split is None:
            return self._local(self.model, ctx, offers)
        return self._split(split, ctx, offers)

    def _local(self, model: AcceptanceModel | None, ctx: SearchContext, offers: list[OfferSummary]) -> list[float]:
        if model is None:
            return [rule_probability(ctx, o) for o in offers]
        now = self._clock.now()
        return [float(p) for p in model.predict(np.array(features(ctx, offers, now)))]

    def _split(self, split: Split[AcceptanceModel | None], ctx: SearchContext,
               offers: list[OfferSummary]) -> list[float]:
        """A search ranked by the canary when its traveller falls in the canary's share (one traveller sees one
        version), each version timed and its failures counted alike; a search the canary fails is ranked by the
        live version."""
        if split.takes(ctx.user_id or ctx.session_id):
            started = time.perf_counter()
            try:
                p = self._local(split.model, ctx, offers)
            except Exception as exc:
                split.canary.failed()
                log.warning("canary acceptance model failed", extra={"version": split.version,
                                                                     "error": str(exc)[:200]})
            else:
                split.canary.observe(time.perf_counter() - started)
                return p
        started = time.perf_counter()
        try:
            p = self._local(self.model, ctx, offers)
        except Exception:
            split.live.failed()
            raise
        split.live.observe(time.perf_counter() - started)
        return p

    async def probabilities(self, ctx: SearchContext, offers: list[OfferSummary]) -> tuple[list[float], str]:
        """(probabilities, source): source is remote, model or rules."""
        cfg, m = self._config, self._metrics
        if self.remote is not None and cfg.remote_share > 0 and self._rng.random() < cfg.remote_share:
            if not self.breaker.allow():
                m.ranking_fallbacks.labels("open").inc()
            else:
                started = time.perf_counter()
                try:
                    result = await self.remote(ctx, offers, cfg.remote_deadline_ms / 1000)
                    if len(result) != len(offers):
                        raise ValueError("remote ranker answered for a different number of offers")
                except TimeoutError:
                    self.breaker.failed()
                    m.ranking_fallbacks.labels("timeout").inc()
                except Exception as exc:  # any remote failure falls back to the local model
                    self.breaker.failed()
                    m.ranking_fallbacks.labels("error").inc()
                    log.warning("remote ranker failed", extra={"error": str(exc)[:200]})
                else:
                    if (time.perf_counter() - started) * 1000 > cfg.breaker_slow_ms:
                        self.breaker.failed()
                        m.ranking_fallbacks.labels("slow").inc()
                    else:
                        self.breaker.succeeded()
                    self._calls["remote"].inc()
                    return result, "remote"
        source = "model" if self.model is not None else "rules"
        self._calls[source].inc()
        return self.local(ctx, offers), source
