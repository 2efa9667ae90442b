"""Lifetime value: each customer's predicted value over a horizon, with bounds and reasons (the SyncValue service).

The model (ml/ltv) is fitted on the carrier's own purchases (the loyalty ledger: orders, ingested and point-of-sale
purchases, less refunds), evaluated on a time holdout before it goes live, stored, and refitted on a schedule and
after enough new purchases. A prediction reads the customer's purchases from the request or, when the request
brings none, from the store (held in a bounded cache that each new purchase of the customer invalidates).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

import ml.ltv as ltv
from app.errors import InvalidInput, NotFound
from app.learning.versions import Run, Versioning
from app.ltv.values import PlatformMedian
from app.ltv.versions import LtvVersions
from app.runtime.canary import Split
from app.runtime.clock import Clock
from app.runtime.lru import LRU
from state.ltv import Purchase, SavedLtvModel
from state.models import LIVE
from state.ports import LtvStore

log = logging.getLogger("contrail.ltv")

DAY_S = 86_400.0
_MISSING = object()
MAX_HORIZON_DAYS = 3650
# The earliest event time a history may hold (2000-01-01, epoch ms): anything before is taken for seconds sent as
# milliseconds (1.7e9 s reads as 1970-01-20), which would make every purchase decades old.
EARLIEST_EVENT_MS = 946_684_800_000
# A CAC below this (a cent) is no CAC: dividing by a few picocents would answer a ratio of inf or 1e300.
MIN_CAC = 0.01
DISTRIBUTION_S = 600.0  # how long the customers' value distribution is reused for the same model and horizon
PURCHASE_TYPES = frozenset({"purchase", "order", "transaction"})
SUCCESS, FALLBACK, INVALID_INPUT, NO_HISTORY, MODEL_NOT_READY = (
    "SUCCESS", "FALLBACK", "INVALID_INPUT", "NO_HISTORY", "MODEL_NOT_READY")


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a request's history."""
    timestamp_ms: int
    event_type: str
    event_value: float


@dataclass(slots=True)  # not frozen: a frozen dataclass sets each field through object.__setattr__, 2x the cost
class Ask:
    """One customer to predict. `events` None: the customer's purchases from the store. A question that cannot be
    asked raises InvalidInput naming what is wrong (every edge asks through this)."""
    customer_id: str
    platform: str = ""
    events: tuple[Event, ...] | None = None
    current_cac: float = 0.0
    horizon_days: int = 0
    request_id: str = ""
    explain: bool = True

    def __post_init__(self) -> None:
        if not self.customer_id and not self.events:
            raise InvalidInput("customer_id is required when event_history is empty", {"field": "customer_id"})
        if len(self.customer_id) > 256:
            raise InvalidInput("customer_id is at most 256 characters", {"field": "customer_id"})
        if not 0 <= self.horizon_days <= MAX_HORIZON_DAYS:
            raise InvalidInput(f"horizon_days must be 0 (the configured horizon) to {MAX_HORIZON_DAYS}",
                               {"field": "horizon_days"})
        if not 0 <= self.current_cac < math.inf:  # also refuses NaN
            raise InvalidInput("current_cac must be a number, 0 or more", {"field": "current_cac"})


@dataclass(slots=True)
class Answer:
    request_id: str
    customer_id: str
    status: str
    predicted_ltv: float = 0.0
    confidence: float = 0.0
    ltv_lower_bound: float = 0.0
    ltv_upper_bound: float = 0.0
    expected_purchases: float = 0.0
    probability_alive: float = 0.0
    horizon_days: int = 0
    currency: str = ""
    model_version: str = ""
    ltv_to_cac: float = 0.0
    message: str = ""
    inference_time_us: int = 0
    top_features: tuple[tuple[str, float, float], ...] = ()  # (input, contribution, value), largest first

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__ if k != "top_features"}
        out["top_features"] = [{"name": n, "importance": i, "value": v} for n, i, v in self.top_features]
        return out


# A customer's purchases reduced to what a prediction needs besides the time: (repeat purchases, days from the first
# purchase to the last, the first purchase's day, the mean repeat purchase), by the summary's own conventions (same-day
# purchases merged), then the carrier's own features (EXTRA, NaN where unknown: a request's history has no channels).
# Held per customer as a tuple of floats, which the collector stops tracking at once.
Reduced = tuple[float, ...]
# Beyond recency, frequency and spend: the share of purchases made digitally, and how many channels the customer
# buys through. The model uses them only where they lower its inner-split error (ml/ltv).
EXTRA = ("digital_share", "channels")
DIGITAL = frozenset({"web", "mobile_app"})


def _extras(channels: list[str]) -> tuple[float, float]:
    return sum(c in DIGITAL for c in channels) / len(channels), float(len(set(channels)))


def _reduce(days: list[float], values: list[float], channels: list[str] | None) -> Reduced | None:
    if not days:
        return None
    _, s = ltv.summarise(np.zeros(len(days), dtype=np.int64), np.array(days), np.array(values), max(days) + 1)
    extra = _extras(channels) if channels else (math.nan, math.nan)
    return (float(s.frequency[0]), float(s.recency[0]), float(np.floor(min(days))), float(s.monetary[0]), *extra)


@dataclass(frozen=True)
class _Canary:
    """A canary version as it scores: its model and its own remembered predictions."""
    model: ltv.LTVModel
    predictions: LRU[tuple, tuple]


class LtvService:
    def __init__(self, config: Any, currency: str, store: LtvStore, clock: Clock, metrics: Any,
                 versioning: Versioning | None = None) -> None:
        self._config = config
        self.currency = currency
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self.model: ltv.LTVModel | None = None
        self.saved: SavedLtvModel | None = None
        self.canary: Split[SavedLtvModel] | None = None  # a canary version beside the live one
        self._canary: _Canary | None = None
        # Registered versions (the app): each fit is recorded, served live or sent out as a canary. Without (a
        # service on its own), a fit that passed its holdout goes live.
        self.versions = LtvVersions(self, store, versioning, clock, metrics) if versioning is not None else None
        self.histories: LRU[str, Reduced | None] = LRU(config.cache_entries, "ltv_customers")
        self._forgotten = 0  # bumped by forget(): a history read before it is not held after it
        self.predictions: LRU[tuple, tuple] = LRU(config.cache_entries, "ltv_predictions")
        self.recent = PlatformMedian(config.platform_multipliers)  # the fallback's window per platform
        self.purchases_since_fit = 0
        self._attempted_at = 0.0  # the clock when the schedule last asked for a refit
        self.started = time.monotonic()
        self._fitting = asyncio.Lock()
        self._today = (0, 0)  # (UTC day number, predictions that day)
        self._distribution: tuple[tuple, float, dict[str, Any]] | None = None
        # Single predictions that arrived together, scored in one model call (see _score_together); bounded by the
        # calls in flight, each of which waits on its entry.
        self._waiting: list[tuple[list[Reduced | None], list[Ask], list[Answer], asyncio.Future[None]]] = []

    # ---- the model ----
    @property
    def max_batch(self) -> int:
        return int(self._config.max_batch)

    @property
    def version(self) -> str:
        return self.saved.version if self.saved is not None else ""

    async def load(self) -> None:
        saved = await self._store.latest_model()
        if saved is not None:
            self.serve(saved)
            # The purchases stored since that fit, as the live process counted them (a restart must not put off
            # a refit that `refit_after_purchases` had made nearly due).
            self.purchases_since_fit = max(0, await self._store.purchase_count() - saved.purchases)

    def serve(self, saved: SavedLtvModel) -> None:
        self.model = ltv.LTVModel.from_bytes(saved.body)
        self.saved = saved
        self.predictions.clear()
        self._metrics.ltv_model.clear()
        self._metrics.ltv_model.labels(saved.version).set(1)
        for name, value in saved.evaluation.items():
            self._metrics.ltv_evaluation.labels(name).set(value)

    def serve_canary(self, split: Split[SavedLtvModel] | None) -> None:
        """Serve `split`'s version to the customers it takes, beside the live one (None: the live one to all)."""
        self._canary = None
        if split is not None:
            cache: LRU[tuple, tuple] = LRU(self._config.cache_entries, "ltv_canary_predictions")
            self._metrics.caches.register(cache)  # by name: the next canary's replaces it
            self._canary = _Canary(ltv.LTVModel.from_bytes(split.model.body), cache)
        self.canary = split

    async def refit(self, actor: Any = "learning") -> dict[str, Any]:
        """Fit on every purchase in a worker thread, after evaluating the same recipe on a time holdout (fitted on
        what came before the last `holdout_days`); see _fit for when it goes live."""
        async with self._fitting:
            purchases = await self._store.purchases()
            counted = self.purchases_since_fit
            started = time.perf_counter()
            now = self._clock.now()
            outcome = await asyncio.to_thread(_fit, purchases, now, self._config.holdout_days, self.model is None)
            # What this attempt saw no longer makes a refit due, whether or not it went live.
            self.purchases_since_fit = max(0, self.purchases_since_fit - counted)
            if not outcome["live"]:
                log.info("ltv model kept out", extra={"reason": outcome["reason"]})
                answer = {**outcome, "status": "kept_out", "model": self.version,
                          "seconds": round(time.perf_counter() - started, 3)}
                await self._report(answer, now, len(purchases), actor)
                return answer
            if self.versions is None:
                sequence = (self.saved.sequence if self.saved is not None else 0) + 1
            else:
                sequence = max(1, await self.versions.next_sequence())
            saved = SavedLtvModel(sequence, outcome["kind"], now, outcome.pop("body"), outcome["evaluation"],
                                  outcome["customers"], len(purchases))
            status = "live"
            if self.versions is None:
                await self._store.save_model(saved)  # stored first: what serves is what a restart serves
                self.serve(saved)
            else:  # stored, registered, and served live or as a canary (a first model goes live: any beats none)
                recorded = await self.versions.offer(saved, sequence, saved.version, {
                    "evaluation": saved.evaluation, "customers": saved.customers, "purchases": saved.purchases},
                    outcome["reason"], may_canary=self.model is not None)
                if recorded.status != LIVE:
                    status = "canary" if recorded.canary is not None else "recorded"
                    outcome["reason"] = recorded.note if recorded.canary is None else \
                        f"{outcome['reason']}; serving {recorded.canary.share:.0%} of customers as a canary"
                    outcome["live"] = False
            log.info("ltv model fitted", extra={"version": saved.version, "status": status, **saved.evaluation})
            answer = {**outcome, "status": status, "model": self.version, "candidate": saved.version,
                      "seconds": round(time.perf_counter() - started, 3)}
            await self._report(answer, now, len(purchases), actor)
            return answer

    async def _report(self, answer: dict[str, Any], at: float, purchases: int, actor: Any) -> None:
        self._metrics.ltv_fits.labels(answer["status"]).inc()
        if self.versions is None:
            return
        status = {"live": "promoted", "kept_out": "rejected" if "evaluation" in answer else "skipped"}.get(
            answer["status"], answer["status"])
        candidate = {k: float(v) for k, v in answer.get("evaluation", {}).items()}
        await self.versions.report(Run("ltv", status, answer["reason"], at, answer["seconds"], purchases,
                                       int(answer.get("customers", 0)), answer.get("candidate"), candidate), actor)

    async def maybe_refit(self) -> None:
        """The supervisor's tick: refit when the interval has passed or enough purchases came since the last fit."""
        c = self._config
        now = self._clock.now()
        # Since the last fit or the last attempt (one that found too little data waits its interval too).
        since = max(self.saved.trained_at if self.saved is not None else 0.0, self._attempted_at)
        due = (c.refit_interval_s > 0 and now - since >= c.refit_interval_s) or \
            (c.refit_after_purchases > 0 and self.purchases_since_fit >= c.refit_after_purchases) or \
            (self.model is None and self.purchases_since_fit > 0)
        if due:
            self._attempted_at = now
            await self.refit()

    # ---- purchases ----
    def purchased(self, customer_id: str) -> None:
        """A customer bought (or was refunded): their cached history is stale, and a refit comes nearer."""
        self.changed(customer_id)
        self.purchases_since_fit += 1

    def changed(self, customer_id: str) -> None:
        """The customer's records changed, here or on another node: their history is read again when next asked."""
        self.histories.pop(customer_id)

    def forget(self, customer_id: str) -> None:
        """An erased customer: their held purchases and the distribution naming them are dropped. (What the store
        answers for them afterwards is the store's: it must leave an erased customer's purchases out.)"""
        self.histories.pop(customer_id)
        self._forgotten += 1
        self._distribution = None

    async def _own(self, customer_id: str) -> Reduced | None:
        held = self.histories.get(customer_id, _MISSING)
        if held is _MISSING:
            forgotten = self._forgotten
            purchases = await self._store.customer_purchases(customer_id)
            held = _reduce([p.at / DAY_S for p in purchases], [p.amount_cents / 100 for p in purchases],
                           [p.channel for p in purchases])
            if forgotten == self._forgotten:  # nobody was erased while it was read
                self.histories.put(customer_id, held)
        return held  # type: ignore[return-value]

    # ---- predictions ----
    async def predict(self, asks: list[Ask]) -> list[Answer]:
        """One answer per ask, in order; a bad ask is an INVALID_INPUT answer, not an error of the whole call."""
        if len(asks) > self._config.max_batch:
            raise InvalidInput(f"at most {self._config.max_batch} customers per call")
        started = time.perf_counter()
        now = self._clock.now()
        horizon, version, currency = self._config.horizon_days, self.version, self.currency
        answers = [Answer(a.request_id, a.customer_id, SUCCESS, currency=currency,
                          horizon_days=a.horizon_days or horizon, model_version=version) for a in asks]
        rows: list[int] = []
        reduced: list[Reduced | None] = []
        histories = self.histories
        for k, ask in enumerate(asks):
            try:
                if ask.events is not None:
                    r = self._request_history(ask, now)
                else:  # the cache inline: a batch of known customers never suspends
                    held = histories.get(ask.customer_id, _MISSING)
                    r = await self._own(ask.customer_id) if held is _MISSING else held  # type: ignore[assignment]
            except InvalidInput as exc:
                answers[k].status, answers[k].message = INVALID_INPUT, exc.message
                continue
            rows.append(k)
            reduced.append(r)
        if self.model is None:
            for k in rows:
                self._fallback(answers[k], asks[k].platform, "no model has been fitted yet")
        elif self.canary is not None and rows:
            self._score_split(self.canary, rows, reduced, asks, answers, now / DAY_S)
        elif len(rows) == 1 and not self._score(self.model, rows, reduced, asks, answers, now / DAY_S, recall=True):
            await self._score_together(reduced, [asks[rows[0]]], [answers[rows[0]]])
        elif rows:
            self._score(self.model, rows, reduced, asks, answers, now / DAY_S)
        elapsed = time.perf_counter() - started
        per = int(elapsed / max(len(asks), 1) * 1e6)
        statuses: dict[str, int] = {}
        for answer in answers:
            answer.inference_time_us = per
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
        for status, count in statuses.items():
            self._metrics.ltv_predictions.labels(status).inc(count)
        self._metrics.ltv_latency.labels("one" if len(asks) == 1 else "batch").observe(elapsed)
        self._count_today(len(answers))
        return answers

    def _request_history(self, ask: Ask, now: float) -> Reduced | None:
        assert ask.events is not None
        if len(ask.events) > self._config.max_events:
            raise InvalidInput(f"event_history holds at most {self._config.max_events} events")
        days, values = [], []
        latest = (now + 86_400) * 1000  # a day of clock skew
        for i, e in enumerate(ask.events):
            if not EARLIEST_EVENT_MS <= e.timestamp_ms <= latest:
                raise InvalidInput(event_time_error(i, e.timestamp_ms))
            if not math.isfinite(e.event_value) or not 0 <= e.event_value <= 1e9:
                raise InvalidInput(f"event_history[{i}].event_value must be 0 to 1,000,000,000")
            if e.event_type.lower() in PURCHASE_TYPES:
                days.append(e.timestamp_ms / 1000 / DAY_S)
                values.append(e.event_value)
        return _reduce(days, values, None)

    def _score_together(self, reduced: list[Reduced | None], asks: list[Ask], answers: list[Answer]
                        ) -> asyncio.Future[None]:
        """Score one customer with every other single prediction that is ready in the same turn of the event
        loop. The model's cost per call is mostly fixed (array set-up, 64 coalitions to explain), so concurrent
        callers share it: the first schedules the scoring for the loop's next turn and the rest join it."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._score_waiting)
        self._waiting.append((reduced, asks, answers, done))
        return done

    def _score_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        reduced = [r for w in waiting for r in w[0]]
        asks = [a for w in waiting for a in w[1]]
        answers = [a for w in waiting for a in w[2]]
        try:
            if self.model is None:  # the model cannot be unloaded; kept for the type checker
                raise RuntimeError("no lifetime-value model")
            self._score(self.model, list(range(len(asks))), reduced, asks, answers, self._clock.now() / DAY_S)
        except Exception as exc:  # every caller hears of it, none waits forever
            for *_, done in waiting:
                if not done.done():
                    done.set_exception(exc)
            return
        self._metrics.ltv_scored_together.observe(len(waiting))
        for *_, done in waiting:
            if not done.done():  # a caller that gave up (its deadline passed) cancelled its future
                done.set_result(None)

    def _score_split(self, split: Split[SavedLtvModel], rows: list[int], reduced: list[Reduced | None],
                     asks: list[Ask], answers: list[Answer], now_day: float) -> None:
        """While a canary runs: each customer is scored by the version their id falls to (one customer sees one
        version), each version's pass timed and its failures counted alike; customers the canary fails are scored
        by the live version."""
        live, canary = self.model, self._canary
        assert live is not None and canary is not None
        theirs = {j for j, k in enumerate(rows) if split.takes(asks[k].customer_id)}
        if theirs:
            mine = [k for j, k in enumerate(rows) if j in theirs]

            def by_canary() -> bool:
                return self._score(canary.model, mine, [r for j, r in enumerate(reduced) if j in theirs], asks,
                                   answers, now_day, cache=canary.predictions)
            if split.by_canary(by_canary, len(mine)):
                for k in mine:
                    answers[k].model_version = split.version
                rows = [k for j, k in enumerate(rows) if j not in theirs]
                reduced = [r for j, r in enumerate(reduced) if j not in theirs]
        if rows:
            split.by_live(lambda: self._score(live, rows, reduced, asks, answers, now_day), len(rows))

    def _score(self, model: ltv.LTVModel, rows: list[int], reduced: list[Reduced | None], asks: list[Ask],
               answers: list[Answer], now_day: float, recall: bool = False,
               cache: LRU[tuple, tuple] | None = None) -> bool:
        """Predict the rows' customers (a new customer, all zeros, for those without purchases), one model call
        per horizon asked. A prediction depends on the reduced purchases, the day and the horizon alone, so it
        is remembered by those (`ltv_predictions`): a customer asked again the same day costs a lookup.
        With `recall`, only remembered predictions are answered: False (and nothing answered) if one is not."""
        day = int(now_day)
        remembered = self.predictions if cache is None else cache
        keys = [(reduced[j], day, answers[k].horizon_days, asks[k].explain) for j, k in enumerate(rows)]
        known = [remembered.get(key) for key in keys]
        missing = [j for j, hit in enumerate(known) if hit is None]
        if missing and recall:
            return False
        if missing:
            new = (0.0, 0.0, now_day, 0.0) + (math.nan,) * len(EXTRA)
            table = np.array([reduced[j] or new for j in missing], dtype=np.float64)
            extra = table[:, 4:]
            for c, name in enumerate(EXTRA):  # unknown: the average customer's, which moves nothing
                extra[np.isnan(extra[:, c]), c] = model.population.get(name, 0.0)
            summary = ltv.Summary(table[:, 0], table[:, 1], np.maximum(now_day - table[:, 2], 0.0), table[:, 3],
                                  extra, EXTRA)
            horizons = [keys[j][2] for j in missing]
            rate = self._config.annual_discount_rate
            for horizon in sorted(set(horizons)):
                at = [i for i, h in enumerate(horizons) if h == horizon]
                part = summary if len(at) == len(missing) else summary.take(np.array(at))
                p = model.predict(part, float(horizon), rate)
                columns = zip(p.ltv.tolist(), p.ltv_lower.tolist(), p.ltv_upper.tolist(), p.confidence.tolist(),
                              p.expected_purchases.tolist(), p.probability_alive.tolist(), strict=True)
                wanted = [row for row, i in enumerate(at) if keys[missing[i]][3]]  # rows asked to explain
                explained = dict(zip(wanted, model.explain_many(part, wanted, float(horizon), rate), strict=True)) \
                    if wanted else {}
                for row, (i, values) in enumerate(zip(at, columns, strict=True)):
                    j = missing[i]
                    known[j] = prediction = (*values, tuple(explained.get(row, ())))
                    remembered.put(keys[j], prediction)
        for j, k in enumerate(rows):
            value, lower, upper, confidence, purchases, alive, reasons = known[j]  # type: ignore[misc]
            a, ask = answers[k], asks[k]
            if not (math.isfinite(value) and math.isfinite(lower) and math.isfinite(upper)):
                # Never a NaN to a caller. (No input found gives one since the long histories that overflowed the
                # hypergeometric terms are taken by Euler's transformation, ml/ltv/base.py.)
                self._fallback(a, ask.platform, "the model cannot value a history like this one")
                continue
            a.predicted_ltv, a.ltv_lower_bound, a.ltv_upper_bound = value, lower, upper
            a.confidence, a.expected_purchases, a.probability_alive = confidence, purchases, alive
            a.top_features = reasons
            a.ltv_to_cac = value / ask.current_cac if ask.current_cac >= MIN_CAC else 0.0
            if reduced[j] is None:
                a.status, a.message = NO_HISTORY, "no purchase known for this customer: a new customer's value"
            self.recent.remember(ask.platform, value)
        return True

    def heuristic(self, platform: str) -> float | None:
        """The fallback: the median of the platform's last 100 predictions (of all platforms' when it has none)
        times the platform's multiplier (1 for platforms the configuration does not name)."""
        return self.recent.heuristic(platform)

    def _fallback(self, answer: Answer, platform: str, why: str) -> None:
        value = self.heuristic(platform)
        self._metrics.ltv_fallbacks.labels("heuristic" if value is not None else "none").inc()
        if value is None:
            answer.status, answer.message = MODEL_NOT_READY, f"{why}, and no prediction to fall back on"
            return
        answer.status, answer.message = FALLBACK, f"{why}: the platform's recent median"
        answer.predicted_ltv = answer.ltv_lower_bound = answer.ltv_upper_bound = value
        answer.model_version = "heuristic"

    def _count_today(self, n: int) -> None:
        day = int(self._clock.now() // DAY_S)
        self._today = (day, (self._today[1] if self._today[0] == day else 0) + n)

    async def value(self, customer_id: str) -> float | None:
        """The customer's predicted value over the configured horizon, for activation's LTV bands: None when there
        is no model to ask, or no purchase of theirs is known (NO_HISTORY's prior is no one's value: it would put
        every stranger in a high band)."""
        [answer] = await self.predict([Ask(customer_id, explain=False)])
        return answer.predicted_ltv if answer.status == SUCCESS else None

    async def customer(self, customer_id: str, horizon_days: int = 0) -> Answer:
        """One customer's value from their own purchases (404 for an id with no purchase and no model answer)."""
        [answer] = await self.predict([Ask(customer_id, horizon_days=horizon_days)])
        if answer.status == MODEL_NOT_READY:
            raise NotFound(answer.message)
        return answer

    async def distribution(self, horizon_days: int = 0, bins: int = 12, top: int = 10) -> dict[str, Any]:
        """Every customer's predicted value now (from the store's purchases, in a worker thread), as quantiles,
        a histogram and the most valuable customers; kept per model version and horizon for `DISTRIBUTION_S`."""
        horizon = horizon_days or self._config.horizon_days
        model, version = self.model, self.version
        if model is None:
            raise NotFound("no lifetime-value model has been fitted yet")
        key = (version, horizon, bins, top)
        held = self._distribution
        if held is not None and held[0] == key and time.monotonic() - held[1] < DISTRIBUTION_S:
            return held[2]
        purchases = await self._store.purchases()
        answer = await asyncio.to_thread(_distribution, model, purchases, self._clock.now(), horizon,
                                         self._config.annual_discount_rate, bins, top)
        answer.update(model_version=version, horizon_days=horizon, currency=self.currency)
        self._distribution = (key, time.monotonic(), answer)
        return answer

    # ---- health ----
    def health(self) -> dict[str, Any]:
        evaluation = self.saved.evaluation if self.saved is not None else {}
        accuracy = evaluation.get("accuracy", 0.0)
        hist = self._metrics.ltv_latency.labels("one")  # the health figures are of single predictions
        count = sum(hist.counts)
        day = int(self._clock.now() // DAY_S)
        return {"is_healthy": self.model is not None and accuracy >= self._config.target_accuracy,
                "model_version": self.version, "uptime_seconds": int(time.monotonic() - self.started),
                "current_accuracy": accuracy, "target_accuracy": self._config.target_accuracy,
                "predictions_today": self._today[1] if self._today[0] == day else 0,
                "avg_latency_us": hist.sum / count * 1e6 if count else 0.0,
                "p95_latency_us": _quantile(hist, 0.95) * 1e6, "p99_latency_us": _quantile(hist, 0.99) * 1e6,
                "holdout_mae": evaluation.get("mae", 0.0), "holdout_rmse": evaluation.get("rmse", 0.0),
                "holdout_customers": int(evaluation.get("customers", 0)),
                "trained_at_ms": int(self.saved.trained_at * 1000) if self.saved is not None else 0}


def event_time_error(index: int, timestamp_ms: int) -> str:
    """Why event_history[index]'s time cannot be used (it is before 2000-01-01 or in the future)."""
    field = f"event_history[{index}].timestamp_ms"
    if timestamp_ms <= 0:
        return f"{field} must be a time in epoch milliseconds, from 2000-01-01"
    if timestamp_ms < EARLIEST_EVENT_MS:
        return (f"{field} is {timestamp_ms}, before 2000-01-01: it looks like seconds, not milliseconds "
                "(multiply by 1000)")
    return f"{field} must be a time in epoch milliseconds, not in the future"


def _quantile(hist: Any, q: float) -> float:
    """The q-quantile of a bucketed histogram, interpolated linearly inside its bucket."""
    total = sum(hist.counts)
    if not total:
        return 0.0
    rank, seen, lower = q * total, 0, 0.0
    for bound, count in zip((*hist.bounds, math.inf), hist.counts, strict=True):
        if count and seen + count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
        lower = bound
    return lower


def _columns(purchases: list[Purchase]) -> tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray]:
    """(customer id -> index, and per purchase: the customer's index, the day, the value in currency units)."""
    index: dict[str, int] = {}
    n = len(purchases)
    customer = np.fromiter((index.setdefault(p.customer_id, len(index)) for p in purchases), dtype=np.int64, count=n)
    day = np.fromiter((p.at / DAY_S for p in purchases), dtype=np.float64, count=n)
    value = np.fromiter((p.amount_cents / 100 for p in purchases), dtype=np.float64, count=n)
    return index, customer, day, value


def _extra_columns(purchases: list[Purchase], index: dict[str, int], until: float = math.inf
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(customer indexes, their EXTRA features) from the purchases made up to `until` (epoch s)."""
    by: dict[int, list[str]] = {}
    for p in purchases:
        if p.at <= until:
            by.setdefault(index[p.customer_id], []).append(p.channel)
    ids = np.array(sorted(by), dtype=np.int64)
    return ids, np.array([_extras(by[i]) for i in ids.tolist()], dtype=np.float64).reshape(len(ids), len(EXTRA))


def _fit(purchases: list[Purchase], now: float, holdout_days: int, first: bool) -> dict[str, Any]:
    """(in a worker thread) Evaluate on the time holdout, then fit on everything. A model that did more than 5% worse
    than plain Pareto/NBD on the holdout replaces no serving model (the first fit always serves: any beats none)."""
    if not purchases:
        return {"live": False, "reason": "no purchase stored yet", "customers": 0}
    index, customer, day, value = _columns(purchases)
    now_day = now / DAY_S
    try:
        calibration = _extra_columns(purchases, index, (now_day - holdout_days) * DAY_S)  # nothing of the holdout
        report = ltv.holdout(customer, day, value, now_day - holdout_days, holdout_days, calibration, EXTRA)
    except ValueError as exc:
        return {"live": False, "reason": f"holdout evaluation: {exc}", "customers": len(index)}
    rows = {r["name"]: r for r in report["rows"]}
    served, baseline = rows.get("contrail"), rows.get("Pareto/NBD")
    if served is None:
        return {"live": False, "reason": "the holdout evaluation has no contrail row", "customers": len(index)}
    total_actual = float(report["total_actual"])
    accuracy = 1 - abs(served["total_predicted"] - total_actual) / total_actual if total_actual > 0 else 0.0
    evaluation = {"mae": float(served["mae"]), "rmse": float(served["rmse"]),
                  "total_predicted": float(served["total_predicted"]), "total_actual": total_actual,
                  "accuracy": max(0.0, accuracy), "customers": float(report["customers"])}
    if not first and baseline is not None and served["mae"] > baseline["mae"] * 1.05:
        return {"live": False, "reason": f"holdout MAE {served['mae']:.3f} worse than Pareto/NBD's "
                f"{baseline['mae']:.3f}", "customers": len(index), "evaluation": evaluation}
    try:
        _, _, model = ltv.fit_transactions(customer, day, value, now_day, _extra_columns(purchases, index), EXTRA)
    except ValueError as exc:
        return {"live": False, "reason": str(exc), "customers": len(index), "evaluation": evaluation}
    return {"live": True, "reason": "evaluated on the holdout", "kind": model.kind, "body": model.to_bytes(),
            "customers": len(index), "evaluation": evaluation}


def _distribution(model: ltv.LTVModel, purchases: list[Purchase], now: float, horizon_days: int, rate: float,
                  bins: int, top: int) -> dict[str, Any]:
    """(in a worker thread) Quantiles, a histogram (equal widths up to the 99th percentile, the rest in the last
    bin) and the top customers of every customer's predicted value."""
    if not purchases:
        return {"customers": 0, "total": 0.0, "mean": 0.0, "quantiles": {}, "bins": [], "top": []}
    index, customer, day, value = _columns(purchases)
    ids, summary = ltv.summarise(customer, day, value, now / DAY_S, _extra_columns(purchases, index), EXTRA)
    p = model.predict(summary, float(horizon_days), rate)
    values = p.ltv
    names = list(index)
    edge = float(np.quantile(values, 0.99)) or float(values.max()) or 1.0
    edges = np.linspace(0.0, edge, bins + 1)
    counts = np.histogram(np.minimum(values, edge), edges)[0]
    best = np.argsort(-values)[:top]
    return {"customers": int(len(values)), "total": float(values.sum()), "mean": float(values.mean()),
            "quantiles": {f"p{q}": float(np.quantile(values, q / 100)) for q in (10, 25, 50, 75, 90, 99)},
            "bins": [{"lower": float(edges[k]), "upper": float(edges[k + 1]) if k < bins - 1 else None,
                      "customers": int(counts[k])} for k in range(bins)],
            "top": [{"customer_id": names[int(ids[i])], "predicted_ltv": float(values[i]),
                     "ltv_lower_bound": float(p.ltv_lower[i]), "ltv_upper_bound": float(p.ltv_upper[i]),
                     "probability_alive": float(p.probability_alive[i])} for i in best]}
