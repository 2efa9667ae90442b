"""`python -m app eval ranking [--seed N] [--days D] [--json]`: offer acceptance against the simulator's hidden truth.

Offline, no server (docs/acceptance.md). For the population and hidden truth of `--seed` (ml/sim/):

1. Searches. SEARCHES_PER_DAY a day for `--days` days, then a fresh test day of TEST_SEARCHES, from the simulator's
   own search stream (ml.sim.shopping.Searches: traveller by activity, route, 1-28 days ahead, party of 1 or 2,
   premium cabin 10 %) over the demo routes (app.demo.DEMO_ROUTES, their economy base fares; premium's is 2.5x),
   with FLIGHTS flights on the day, each with its own cabin utilisation (uniform 0-0.9).
2. The segment the search carries is the simulator's (ml.sim.shopping.search_segment: top-tier members premium,
   price sensitivity below 0.75 corporate, above 1.3 leisure, else economy).
3. Offers, priced with the retail domain's own pure functions (app.retail.pricing: fare_cents, discounted,
   percent_of; app.retail.offers: BUNDLES, rule_bundles, shortlist; app.retail.ranking: MARGIN_RATES, features,
   rule_probability). OfferService._bundles/_priced need a catalog service, so their arithmetic is mirrored in
   `drafts` (same order of bundles, items, tax, booking fee, margin and discount; a test compares it with real
   searches): the demo catalog's products (app.demo.DEMO_PRODUCTS), all with room, no recommended choice.
4. Outcomes, as the simulator draws them: each offer has one acceptance draw from `Truth.p_accept(traveller,
   ml.sim.shopping.ancillaries(its kinds), total, reference)`, the reference being the search's cheapest offer; an
   accepted offer is paid with probability P_PAY (ml.sim.shopping.PAY_SHARE). The label is paid. Unlike the
   simulator's shopper (who reads the first three offers and takes the first they accept), every offer here is
   judged on its own (one draw each, whatever its rank), so every drafted offer has a label.
5. Training: the logged rows are the offers the rules' shortlist showed on the training days (the rules serve
   until a trained model goes live), with their paid labels; `ml.acceptance.train` fits them.
6. Test day, rows: `oracle` (P_PAY x the true p_accept), `rules` (the rule fallback), `random` (uniform random
   scores) and `contrail` (the trained model), over every offer of every test search: AUC vs the paid label (with
   its Hanley-McNeil SE), log-loss, the AUC gap to the oracle, and revenue per search: each policy ranks the
   search's offers by P x margin and shows its shortlist (retail.max_offers, with the cheapest fare kept, as
   offer search does); the traveller looks at the top-ranked offer only and takes it when its draw accepts it
   (the same draws for every policy); revenue is its margin when it is paid, averaged over all searches, and
   expected revenue the true P_PAY x p_accept x margin of the top offer (no draw noise). With independent draws,
   a traveller who read on down the list would make the order by margin alone best, whatever P says (the
   exchange argument: a before b earns p_a p_b (m_a - m_b) more), so reading on measures no acceptance model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np

from app.config import RetailConfig
from app.demo import DEMO_PRODUCTS, DEMO_ROUTES
from app.retail.offers import BUNDLES, rule_bundles, shortlist
from app.retail.pricing import discounted, fare_cents, percent_of
from app.retail.ranking import MARGIN_RATES, OfferSummary, SearchContext, features, rule_probability
from eval.report import dumps
from ml.acceptance import SEGMENTS, AcceptanceModel, train
from ml.sim.population import Population, population
from ml.sim.shopping import PAY_SHARE, ancillaries, search_segment
from ml.sim.shopping import Searches as SearchStream
from ml.sim.truth import Truth
from ml.training import metrics

SEARCHES_PER_DAY = 2_000
DAYS = 7
TEST_SEARCHES = 20_000
FLIGHTS = 2                   # flights on the searched day (up to 10 offers; the shortlist shows 5)
P_PAY = PAY_SHARE              # an accepted offer is paid with this probability (the simulator's)
START = 1_800_000_000.0
DAY = 86_400.0
CABIN_FARE = {"economy": 1.0, "premium": 2.5}   # the premium cabin's base fare against economy's
PRICES = {kind: price for _, kind, _, price, _ in DEMO_PRODUCTS}
MAX_DAYS = 60


class BadArgument(ValueError):
    """An argument out of range (exit 2 with its message)."""


class Offer(NamedTuple):
    """A priced bundle as offer search drafts it (the fields shortlist and the ranker read)."""
    bundle: str
    total_cents: int
    margin_cents: int
    kinds: tuple[str, ...]
    summary: OfferSummary


class _Draft(NamedTuple):   # shortlist reads draft.offer.bundle and draft.offer.total_cents
    offer: Offer


def drafts(fares: list[int], passengers: int, segment: str, config: RetailConfig) -> list[Offer]:
    """Each flight's bundles for the party at its fare, as OfferService._bundles and _priced compute them."""
    out: list[Offer] = []
    for f, fare in enumerate(fares):
        for name in ["flight_only", "comfort", "premium", *rule_bundles(segment, passengers)]:
            items = [("Flight", fare * passengers)]
            listed = fare * passengers
            for kind, discount in BUNDLES[name]:
                items.append((kind, discounted(PRICES[kind], discount) * passengers))
                listed += PRICES[kind] * passengers
            subtotal = sum(total for _, total in items)
            total = subtotal + percent_of(subtotal, config.tax_percent) + config.booking_fee_cents
            margin = config.booking_fee_cents + sum(round(t * MARGIN_RATES[k]) for k, t in items)
            kinds = tuple(dict.fromkeys(k for k, _ in items))
            discount_percent = round(100 * (listed - subtotal) / listed, 3) if listed else 0.0
            out.append(Offer(name, total, margin, kinds, OfferSummary(f"f{f}-{name}", total, kinds, discount_percent)))
    return out


@dataclass
class Searches:
    """Searches and every offer drafted for them (one row per offer)."""
    x: np.ndarray           # (offers, DIM) the ranker's features
    p_true: np.ndarray      # P_PAY x p_accept
    p_rules: np.ndarray
    accepted: np.ndarray    # the offer's acceptance draw
    paid: np.ndarray        # the label: accepted and paid
    margin: np.ndarray      # cents
    search: np.ndarray      # the search each offer belongs to
    bounds: np.ndarray      # (searches + 1,) offer index where each search starts
    cheapest: np.ndarray    # per search: index (within the search) of the cheapest flight-only offer
    bundles: list[str]
    totals: np.ndarray
    segments: list[str]     # per search

    def __len__(self) -> int:
        return len(self.bounds) - 1


def simulate(pop: Population, truth: Truth, rng: np.random.Generator, n: int, start: float, span: float,
             config: RetailConfig, stream: int = 0) -> Searches:
    """`n` searches at uniform times in [start, start + span), their offers and outcomes. The searches are the
    simulator's (ml.sim.shopping.Searches over the demo routes, seeded by the population's seed and `stream`)."""
    searches = SearchStream(pop, pop.seed * 1_000 + stream, len(DEMO_ROUTES))
    at = np.sort(rng.uniform(start, start + span, n))
    xs: list[list[float]] = []
    p_true, p_rules, margins, totals, bundles, owner, bounds, cheapest, segments = [], [], [], [], [], [], [0], [], []
    for s in range(n):
        q = searches.next()
        t = pop.travellers[q.traveller]
        segment = search_segment(t)
        _, _, _, base, _ = DEMO_ROUTES[q.route]
        hours = q.days_ahead * 24 + float(rng.uniform(-12, 12))
        cabin_base = round(base * CABIN_FARE[q.cabin])
        fares = [fare_cents(cabin_base, float(rng.uniform(0, 0.9)), hours, segment) for _ in range(FLIGHTS)]
        offers = drafts(fares, q.passengers, segment, config)
        departs = time.strftime("%Y-%m-%d", time.gmtime(at[s] + hours * 3600))
        ctx = SearchContext(t.user_id, True, "", "LIS", "BCN", departs, q.passengers, q.cabin, segment)
        xs += features(ctx, [o.summary for o in offers], float(at[s]))
        flight_only = [i for i, o in enumerate(offers) if o.bundle == "flight_only"]
        cheapest.append(min(flight_only, key=lambda i: offers[i].total_cents))
        reference = offers[cheapest[-1]].total_cents  # the simulator's: the cheapest offer shown
        for o in offers:
            p_true.append(P_PAY * truth.p_accept(t, ancillaries(o.kinds), o.total_cents, reference))
            p_rules.append(rule_probability(ctx, o.summary))
            margins.append(o.margin_cents)
            totals.append(o.total_cents)
            bundles.append(o.bundle)
            owner.append(s)
        bounds.append(len(p_true))
        segments.append(segment)
    p = np.asarray(p_true)
    accepted = rng.random(len(p)) < p / P_PAY
    paid = accepted & (rng.random(len(p)) < P_PAY)
    return Searches(np.asarray(xs), p, np.asarray(p_rules), accepted, paid, np.asarray(margins, dtype=np.float64),
                    np.asarray(owner), np.asarray(bounds), np.asarray(cheapest), bundles, np.asarray(totals), segments)


def shown(searches: Searches, scores: np.ndarray, size: int) -> list[list[int]]:
    """Per search, the offers (global indices) offer search would show, best first, for these P(accept) scores."""
    out: list[list[int]] = []
    for s in range(len(searches)):
        lo, hi = searches.bounds[s], searches.bounds[s + 1]
        drafted = cast(Any, [_Draft(Offer(searches.bundles[i], int(searches.totals[i]), 0, (), cast(Any, None)))
                             for i in range(lo, hi)])
        ranked = shortlist(drafted, list(scores[lo:hi] * searches.margin[lo:hi]), size, int(searches.cheapest[s]))
        out.append([lo + i for i in ranked])
    return out


def revenue(searches: Searches, lists: list[list[int]]) -> dict[str, float]:
    """The traveller looks at the policy's top-ranked offer only: revenue is its margin when its draw accepts it and
    it is paid (expected revenue is then P_PAY x p_accept x margin, which the oracle's order maximises)."""
    top = np.array([ranked[0] for ranked in lists])
    paid = searches.paid[top]
    n = max(1, len(lists))
    return {"revenue_per_search": float(searches.margin[top][paid].sum()) / 100 / n,
            "accept_rate": float(searches.accepted[top].sum()) / n, "paid_rate": float(paid.sum()) / n,
            "expected_revenue_per_search": float((searches.p_true[top] * searches.margin[top]).sum()) / 100 / n}


def evaluate(seed: int = 0, days: float = DAYS, test_searches: int = TEST_SEARCHES,
             searches_per_day: int = SEARCHES_PER_DAY) -> dict[str, Any]:
    if not (math.isfinite(days) and 0 < days <= MAX_DAYS):
        raise BadArgument(f"--days must be in (0, {MAX_DAYS}]")
    n_train = int(round(days * searches_per_day))
    if n_train < 100 or test_searches < 100:
        raise BadArgument("at least 100 training and 100 test searches are needed")
    started = time.perf_counter()
    config = RetailConfig()
    pop = population(seed)
    truth = Truth(pop)
    logged = simulate(pop, truth, np.random.default_rng([seed, 0xACC, 1]), n_train, START, days * DAY, config, 1)
    rows = np.concatenate(shown(logged, logged.p_rules, config.max_offers))  # what the rules showed, and logged
    model: AcceptanceModel = train(logged.x[rows], logged.paid[rows].astype(np.float64), version="eval")
    built = time.perf_counter()
    test = simulate(pop, truth, np.random.default_rng([seed, 0xACC, 2]), test_searches, START + days * DAY, DAY,
                    config, 2)
    scores = {"oracle": test.p_true, "rules": test.p_rules,
              "random": np.random.default_rng([seed, 0xACC, 3]).random(len(test.p_true)),
              "contrail": model.predict(test.x)}
    y = test.paid
    out: list[dict[str, Any]] = []
    for name, p in scores.items():
        m = metrics.metrics_of(p, y)
        out.append({"name": name, "auc": m["auc"], "auc_se": m["auc_se"], "log_loss": m["log_loss"],
                    "mean_p": m["mean_ctr"], **revenue(test, shown(test, p, config.max_offers))})
    oracle, rules = out[0], out[1]
    for r in out:
        r["auc_gap"] = oracle["auc"] - r["auc"]
        r["revenue_vs_rules"] = r["revenue_per_search"] / rules["revenue_per_search"] - 1
    shares = {s: test.segments.count(s) / len(test) for s in SEGMENTS}
    return {
        "seed": seed, "days": days, "p_pay": P_PAY, "rows": out, "segments": shares,
        "train": {"searches": n_train, "offers_logged": int(len(rows)), "accepted": int(logged.accepted[rows].sum()),
                  "paid": int(logged.paid[rows].sum())},
        "test": {"searches": len(test), "offers": int(len(y)), "paid": int(y.sum()),
                 "accepted": int(test.accepted.sum())},
        "seconds": round(time.perf_counter() - started, 2), "train_seconds": round(built - started, 2),
    }


def table(report: dict[str, Any]) -> str:
    tr, te = report["train"], report["test"]
    seg = ", ".join(f"{k} {100 * v:.0f}%" for k, v in report["segments"].items())
    lines = [f"seed {report['seed']}: trained on {report['days']:g} simulated days ({tr['searches']:,} searches, "
             f"{tr['offers_logged']:,} offers shown by the rules, {tr['accepted']:,} accepted, {tr['paid']:,} paid); "
             f"tested on a fresh day ({te['searches']:,} searches, {te['offers']:,} offers, {te['paid']:,} paid; "
             f"accepted offers paid with p={report['p_pay']:g}); segments: {seg}", ""]
    head = (f"{'model':<8}  {'AUC':>6}  {'± se':>6}  {'log-loss':>8}  {'mean p':>6}  {'AUC gap':>7}  "
            f"{'$/search':>8}  {'exp $':>7}  {'vs rules':>8}  {'paid/search':>11}")
    lines += [head, "-" * len(head)]
    for r in report["rows"]:
        lines.append(f"{r['name']:<8}  {r['auc']:6.4f}  {r['auc_se']:6.4f}  {r['log_loss']:8.5f}  {r['mean_p']:6.4f}  "
                     f"{r['auc_gap']:+7.4f}  {r['revenue_per_search']:8.3f}  {r['expected_revenue_per_search']:7.3f}  "
                     f"{100 * r['revenue_vs_rules']:+7.1f}%  "
                     f"{r['paid_rate']:11.4f}")
    lines += ["", "$/search: margin (USD) of the paid offer per search, the traveller looking at the policy's "
                  "top-ranked offer only; exp $: its true expected margin; vs rules: $/search against the rules",
              f"{report['seconds']:.1f} s"]
    return "\n".join(lines)


def as_json(report: dict[str, Any]) -> str:
    return dumps(report)
