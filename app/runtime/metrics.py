"""Prometheus metrics for one Contrail instance (its own registry, never module globals).

The counters and histograms the request paths update are LoopCounter and LoopHistogram:
plain numbers in labelled children, updated only from the event loop thread, so an update
takes no lock. prometheus_client's own instruments lock every update and resolve their
labels on every call; a REST bid made six such updates, and they cost it 12 us of the
loop's 145 (8%). prometheus_client still renders the exposition (through collect()), and
keeps the instruments that other threads update (garbage collector pauses) or that are set
rarely (gauges).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from app.runtime.lru import CacheCollector

# The *_created series double the exposition size and nobody graphs them.
disable_created_metrics()

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# For calls measured in microseconds, whose p95 and p99 are read back from the buckets.
FINE_LATENCY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 7.5e-5, 1e-4, 1.5e-4, 2e-4, 3e-4, 4e-4, 5e-4, 7.5e-4, 0.001, 0.0015,
                        0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket (not cumulative); the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value
        self.sum += value


_Child = TypeVar("_Child", _CounterChild, _HistogramChild)


class _LoopFamily(Generic[_Child]):
    """A labelled family of children, each found by its label values (positional, as given)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self._name, self._doc, self._labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple, _Child] = {}  # label values as given -> child
        self._by_text: dict[tuple[str, ...], _Child] = {}  # label values as exposed -> child
        if not labelnames:
            self._default: _Child = self.labels()
        registry.register(self)

    def _child(self) -> _Child:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError

    def labels(self, *values: object) -> _Child:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes labels {self._labelnames}, got {values!r}")
            text = tuple(str(v) for v in values)
            child = self._children[values] = self._by_text.setdefault(text, self._child())
        return child


class LoopCounter(_LoopFamily[_CounterChild]):
    """A counter updated only on the event loop thread."""

    def _child(self) -> _CounterChild:
        return _CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self._default.value += amount

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labelnames)
        for text, child in self._by_text.items():
            family.add_metric(text, child.value)
        yield family


class LoopHistogram(_LoopFamily[_HistogramChild]):
    """A histogram updated only on the event loop thread."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry,
                 buckets: Sequence[float]) -> None:
        self._bounds = tuple(float(b) for b in buckets)
        super().__init__(name, documentation, labelnames, registry)

    def _child(self) -> _HistogramChild:
        return _HistogramChild(self._bounds)

    def observe(self, value: float) -> None:
        self._default.observe(value)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)
        edges = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        for text, child in self._by_text.items():
            cumulative, total = [], 0
            for edge, count in zip(edges, child.counts, strict=True):
                total += count
                cumulative.append((edge, total))
            family.add_metric(text, cumulative, child.sum)
        yield family


class Metrics:
    """Every metric the platform exports; domains add theirs through `registry`."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.http_requests = LoopCounter("contrail_http_requests", "HTTP requests", ["route", "method", "status"], r)
        self.http_latency = LoopHistogram("contrail_http_request_seconds", "HTTP request latency", ["route", "method"],
                                          r, LATENCY_BUCKETS)
        self.grpc_calls = LoopCounter("contrail_grpc_calls", "gRPC calls", ["method", "code"], r)
        self.grpc_latency = LoopHistogram("contrail_grpc_call_seconds", "gRPC call latency", ["method"], r,
                                          LATENCY_BUCKETS)
        # Collections run on whichever thread allocates: this one keeps prometheus_client's lock.
        self.gc_pauses = Histogram("contrail_gc_pause_seconds", "Garbage collector pauses (the loop stands still)",
                                   ["generation"], buckets=LATENCY_BUCKETS, registry=r)
        self.task_restarts = LoopCounter("contrail_task_restarts", "Background task restarts", ["task"], r)
        # Counted on the exporter's thread, hence a thread-safe counter.
        self.trace_spans = Counter("contrail_trace_spans", "Spans sent to the OTLP collector, by outcome "
                                   "(exported, failed)", ["outcome"], registry=r)
        self.events_logged = LoopCounter("contrail_events_logged", "Events accepted into the event log", (), r)
        self.events_dropped = LoopCounter("contrail_events_dropped", "Events dropped because the queue was full",
                                          (), r)
        self.events_written = LoopCounter("contrail_events_written", "Events written to the event log file", (), r)
        self.events_bytes_written = LoopCounter("contrail_events_bytes_written", "Bytes of event rows written to the "
                                                "event log (payload, type and row overhead; before indexes)", (), r)
        self.events_sample_dropped = LoopCounter("contrail_events_sample_dropped", "Sampled whole records of counted "
                                                 "events dropped because the queue was full (their counts are kept)",
                                                 (), r)
        self.database_bytes = Gauge("contrail_database_bytes", "A SQLite database's size on disk (its file and "
                                    "WAL)", ["db"], registry=r)
        self.database_over_budget = Gauge("contrail_database_over_budget", "1 when a database's pages in use are "
                                          "past its budget after the retention pass (storage.max_database_bytes): "
                                          "what is left is records, never pruned for it", ["db"], registry=r)
        self.rows_pruned = LoopCounter("contrail_rows_pruned", "Stored rows deleted by the retention pass, by what "
                                       "(events by age or size, profiles past their TTL, notices, impressions, ...)",
                                       ["what"], r)
        self.ws_clients = Gauge("contrail_ws_clients", "Connected websocket clients", ["stream"], registry=r)
        self.ws_dropped = LoopCounter("contrail_ws_dropped_messages", "Messages dropped for slow websocket clients",
                                      ["stream"], r)
        self.ws_disconnects = LoopCounter("contrail_ws_lag_disconnects", "Websocket clients disconnected for lag",
                                          ["stream"], r)
        self.commit_group = LoopHistogram("contrail_sqlite_commit_group_size", "Writes per SQLite commit", ["db"], r,
                                          (1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.commit_latency = LoopHistogram("contrail_sqlite_commit_seconds", "SQLite group commit latency", ["db"],
                                            r, LATENCY_BUCKETS)
        self.wal_pages = Gauge("contrail_sqlite_wal_pages", "Pages in the write-ahead log at the last checkpoint",
                               ["db"], registry=r)
        self.http_connections = Gauge("contrail_http_connections", "Open HTTP connections", registry=r)
        self.delivery_users = Gauge("contrail_delivery_users", "Users with impressions in memory (for frequency caps; "
                                    "forgotten a day after their last)", registry=r)
        self.redis_failures = Gauge("contrail_redis_failed_commands", "Redis commands since start that found it "
                                    "unreachable (each refused its request: 503, or a no-bid)", registry=r)
        self.http_closed = LoopCounter("contrail_http_connections_closed",
                                       "HTTP connections closed for a limit: max_connections, slow headers or body",
                                       ["reason"], r)
        self.bus_failures = LoopCounter("contrail_bus_subscriber_failures", "Event subscribers that raised",
                                        ["event"], r)
        self.bus_dropped = LoopCounter("contrail_bus_dropped", "Events dropped by a full subscriber queue",
                                       ["event"], r)
        self.rate_limited = LoopCounter("contrail_rate_limited", "Requests refused by rate limits", ["scope"], r)
        self.bid_requests = LoopCounter("contrail_bid_requests", "Bid requests by protocol and outcome",
                                        ["protocol", "outcome"], r)
        self.bid_invalid = LoopCounter("contrail_bid_invalid", "Invalid bid requests by reason", ["reason"], r)
        self.bid_nobids = LoopCounter("contrail_bid_nobids", "No-bids by reason", ["reason"], r)
        self.bid_latency = LoopHistogram("contrail_bid_seconds", "Bid pipeline latency", ["protocol"], r,
                                         LATENCY_BUCKETS)
        self.record_changes = LoopCounter("contrail_record_changes", "Notices of records another node changed "
                                          "(sent, received, applied, dropped: the queue to NATS was full, failed)",
                                          ["event"], r)
        self.bid_notices = LoopCounter("contrail_bid_notices", "Win/billing/loss notices", ["kind", "result"], r)
        self.bid_value_priced = LoopCounter("contrail_bid_value_priced", "Bids priced by the customer's lifetime "
                                            "value, by the value's source (model, remote, fallback)", ["source"], r)
        self.bid_value_dropped = LoopCounter("contrail_bid_value_dropped", "Bids not made: the customer's lifetime "
                                             "value priced them below the floor, by the value's source", ["source"], r)
        self.bid_value_burst_refused = LoopCounter("contrail_bid_value_burst_refused", "Value raises refused: the "
                                                   "window's burst budget was spent (the bid kept the auction's "
                                                   "price)", (), r)
        self.profile_lookups = LoopCounter("contrail_profile_lookups", "Profile cache lookups", ["tier", "result"], r)
        self.model_info = Gauge("contrail_model_info", "Loaded scoring model (value 1)", ["version"], registry=r)
        self.model_trainings = LoopCounter("contrail_model_trainings", "Model retrains, by model and outcome "
                                           "(promoted, rejected, recorded, skipped)", ["model", "outcome"], r)
        self.model_training_seconds = LoopHistogram("contrail_model_training_seconds", "Wall time of a model retrain",
                                                    ["model"], r, (1, 2, 5, 10, 30, 60, 120, 300, 600))
        self.model_holdout = Gauge("contrail_model_holdout", "The live version's held-out quality, by model and "
                                   "metric (auc, log_loss, ece)", ["model", "metric"], registry=r)
        self.model_canary_decisions = LoopCounter("contrail_model_canary_decisions", "Canary model versions ended, "
                                                  "by model and decision (promoted, rolled_back, aborted)",
                                                  ["model", "decision"], r)
        self.model_canary_calls = Gauge("contrail_model_canary_calls", "Calls served in the running canary, by model "
                                        "and arm (canary, live)", ["model", "arm"], registry=r)
        self.model_canary_p95 = Gauge("contrail_model_canary_p95_seconds", "95th-percentile scoring time in the "
                                      "running canary, by model and arm", ["model", "arm"], registry=r)
        self.model_canary_error_rate = Gauge("contrail_model_canary_error_rate", "Share of failed calls in the "
                                             "running canary, by model and arm", ["model", "arm"], registry=r)
        self.loop_lag = LoopHistogram("contrail_event_loop_lag_seconds", "How late the event loop woke a 50 ms timer",
                                      (), r, (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
        self.batch_calls = LoopHistogram("contrail_inference_batch_calls", "Scoring calls per inference batch", (), r,
                                         (1, 2, 4, 8, 16, 32, 64))
        self.batch_wait = LoopHistogram("contrail_inference_batch_wait_seconds",
                                        "How long the oldest call of a batch waited before the flush", (), r,
                                        (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.002, 0.005))
        self.offers_generated = LoopCounter("contrail_offers_generated", "Offers priced and persisted", (), r)
        self.offers_evicted = LoopCounter("contrail_offers_evicted", "Active offers let go of from memory for "
                                          "retail.max_offers_in_memory (read back from the database on access)", (), r)
        self.orders = LoopCounter("contrail_order_transitions", "Order state changes", ["to"], r)
        self.payments = LoopCounter("contrail_payments", "Payment attempts by result", ["result"], r)
        self.ranking_calls = LoopCounter("contrail_ranking_calls", "Searches ranked, by who ranked them", ["source"],
                                         r)
        self.ranking_fallbacks = LoopCounter("contrail_ranking_fallbacks",
                                             "Remote ranking calls that fell back locally", ["reason"], r)
        self.ranking_breaker = Gauge("contrail_ranking_breaker_state",
                                     "Remote ranker circuit breaker: 0 closed, 1 half-open, 2 open", registry=r)
        self._queue_depths: dict[str, Callable[[], float]] = {}
        r.register(_QueueDepths(self._queue_depths))
        self.reco_requests = LoopCounter("contrail_reco_requests", "Recommendation lists served, by strategy",
                                         ["strategy"], r)
        self.reco_latency = LoopHistogram("contrail_reco_seconds", "Recommendation latency, by strategy",
                                          ["strategy"], r, buckets=LATENCY_BUCKETS)
        self.reco_cache = LoopCounter("contrail_reco_cache", "Recommendation list cache lookups", ["result"], r)
        self.reco_events = LoopCounter("contrail_reco_events", "Feedback events applied to the features", ["kind"], r)
        self.reco_events_dropped = LoopCounter("contrail_reco_events_dropped", "Feedback events not learned from, by "
                                               "reason (item_limit: a new item past reco.max_items)", ["reason"], r)
        self.reco_update_seconds = LoopHistogram("contrail_reco_feature_update_seconds",
                                                 "Feature-update lag: from ingest accepting a batch to its features "
                                                 "applied",
                                                 (), r, buckets=LATENCY_BUCKETS)
        self.reco_model = Gauge("contrail_reco_model_info", "Serving recommendation model (value 1)",
                                ["version", "weights"], registry=r)
        # model="serving": the version lists come from; "candidate": the last training's (live or kept out) or the
        # canary's; each as evaluated on held-out events when it was trained
        self.reco_evaluation = Gauge("contrail_reco_evaluation", "Held-out quality of the serving recommendation "
                                     "model and of the last candidate, as evaluated when each was trained",
                                     ["metric", "model"], registry=r)
        self.reco_trainings = LoopCounter("contrail_reco_trainings", "Recommendation trainings by outcome",
                                          ["outcome"], r)
        self.reco_checkpoints = LoopCounter("contrail_reco_checkpoints", "Recommendation feature checkpoints by "
                                            "outcome (stored, unchanged, skipped)", ["outcome"], r)
        self.reco_checkpoint_seconds = LoopHistogram("contrail_reco_checkpoint_seconds",
                                                     "Recommendation feature checkpoints: the copy on the event loop "
                                                     "(loop), how long records waited (held), and the whole, encoding "
                                                     "and storing included (total)",
                                                     ["part"], r, buckets=LATENCY_BUCKETS)
        self.reco_checkpoint_bytes = Gauge("contrail_reco_checkpoint_bytes",
                                           "Size of the last recommendation feature checkpoint stored", registry=r)
        self.ltv_predictions = LoopCounter("contrail_ltv_predictions", "Lifetime-value predictions, by status",
                                           ["status"], r)
        self.ltv_latency = LoopHistogram("contrail_ltv_seconds", "Lifetime-value prediction latency per call, "
                                         "by call (one customer, or a batch)", ["call"], r,
                                         buckets=FINE_LATENCY_BUCKETS)
        self.ltv_scored_together = LoopHistogram(
            "contrail_ltv_scored_together", "Single lifetime-value predictions scored in one model call (concurrent "
            "calls share it)", (), r, buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.ltv_model = Gauge("contrail_ltv_model_info", "Serving lifetime-value model (value 1)", ["version"],
                               registry=r)
        self.ltv_evaluation = Gauge("contrail_ltv_evaluation", "The serving lifetime-value model's holdout numbers",
                                    ["metric"], registry=r)
        self.ltv_fits = LoopCounter("contrail_ltv_fits", "Lifetime-value fits by outcome", ["outcome"], r)
        self.ltv_fallbacks = LoopCounter("contrail_ltv_fallbacks", "Lifetime-value answers by the platform heuristic "
                                         "(heuristic) or with nothing to fall back on (none)", ["kind"], r)
        # The lifetime values bids read (app/ltv/values.py).
        self.ltv_values_served = LoopCounter(
            "contrail_ltv_values_served", "Lifetime values read by bids, by source (model, remote, fallback, none)",
            ["source"], r)
        self.ltv_value_fallbacks = LoopCounter(
            "contrail_ltv_value_fallbacks", "Lifetime values read by bids not from a model: the platform heuristic's "
            "(heuristic) or nothing (none)", ["kind"], r)
        self.ltv_value_calls = LoopCounter("contrail_ltv_value_calls", "Lifetime-value refresh calls by outcome",
                                           ["outcome"], r)
        self.ltv_value_rejected = LoopCounter("contrail_ltv_value_rejected", "Predicted lifetime values not "
                                              "believed (not cached), by reason", ["reason"], r)
        self.ltv_value_breaker = Gauge("contrail_ltv_value_breaker_state", "Lifetime-value model circuit breaker: "
                                       "0 closed, 1 half-open, 2 open", registry=r)
        # Campaigns: reports' roll-up, offer-selection policies, the team's tools.
        self.rollup_events = LoopCounter("contrail_campaign_rollup_events", "Event-log events taken into campaign "
                                         "reports' hourly totals", (), r)
        self.rollup_conflicts = LoopCounter("contrail_campaign_rollup_conflicts", "Campaign report roll-up passes "
                                            "that stopped because another pass (another node) took the same events "
                                            "first", (), r)
        self.rollup_lag = Gauge("contrail_campaign_rollup_lag_seconds", "Age of the newest event the campaign "
                                "reports have taken in, when it was taken in", registry=r)
        self.policy_choices = LoopCounter("contrail_policy_choices", "Offer-selection decisions, by who decided "
                                          "(local, remote, fallback)", ["source"], r)
        self.policy_fallbacks = LoopCounter("contrail_policy_fallbacks", "Decisions the local policy made because the "
                                            "decision service failed, was slow or its breaker was open, by reason",
                                            ["reason"], r)
        self.policy_rewards = LoopCounter("contrail_policy_rewards", "Reward signals offered to policies, by outcome "
                                          "(learned, repeat, no_policy, unknown_arm, conflict)", ["outcome"], r)
        self.policy_forward_failures = LoopCounter("contrail_policy_forward_failures", "Learned rewards the "
                                                   "decision service was not told, by reason (failed: it refused or "
                                                   "was unreachable after retries; dropped: too many in flight)",
                                                   ["reason"], r)
        self.policy_breaker = Gauge("contrail_policy_breaker_state", "Decision service circuit breaker: 0 closed, "
                                    "1 half-open, 2 open", registry=r)
        self.integration_calls = LoopCounter("contrail_integration_calls", "Calls to the team's tools (task "
                                             "management, assets, BI), by tool and outcome (ok, retry, failed)",
                                             ["tool", "outcome"], r)
        self.dam_assets_failing = Gauge("contrail_dam_assets_failing", "Imported creatives whose asset the last "
                                        "asset-library sync could not read (GET /v1/admin/campaigns/{id}/assets says "
                                        "which and why)", registry=r)
        # DSP routing (app/dsp/).
        self.dsp_calls = LoopCounter("contrail_dsp_calls", "Calls to DSPs by platform and outcome (bid, nobid, "
                                     "timeout, error, skipped: too little time, open: breaker open)",
                                     ["platform", "outcome"], r)
        self.dsp_latency = LoopHistogram("contrail_dsp_call_seconds", "DSP call latency (answers and errors; "
                                         "timeouts excluded)", ["platform"], r, LATENCY_BUCKETS)
        self.dsp_bids = LoopCounter("contrail_dsp_bids", "DSP bids by platform and fate (won: best for its imp, lost, "
                                    "dropped: below floor, unknown imp or currency; held: for a line item of a "
                                    "campaign that is not live)", ["platform", "fate"], r)
        self.dsp_wins = LoopCounter("contrail_dsp_wins", "DSP wins recorded (repeats excluded)", ["platform"], r)
        self.dsp_spend = LoopCounter("contrail_dsp_spend_micros", "DSP spend recorded, micros of the bidding "
                                     "currency", ["platform"], r)
        self.dsp_forwarded = LoopCounter(
            "contrail_dsp_notices_forwarded", "DSPs' own win/billing URLs called, by platform and result (ok; "
            "refused: a 4xx; retried: a 5xx or no answer, called again later; failed: given up)",
            ["platform", "result"], r)
        self.dsp_breaker = Gauge("contrail_dsp_breaker_state", "DSP circuit breaker: 0 closed, 1 half-open, 2 open",
                                 ["platform"], registry=r)
        self.dsp_route_latency = LoopHistogram("contrail_dsp_route_seconds", "POST /v1/dsp/bid from arrival to "
                                               "answer", (), r, LATENCY_BUCKETS)
        self.bids_forgotten_live = LoopCounter("contrail_bids_forgotten_live", "Bids forgotten before they expired "
                                               "because more than bidding.max_live_bids were live (their notices "
                                               "find no bid: raise it)", (), r)
        self.caches = CacheCollector()  # every bounded LRU, by name
        r.register(self.caches)

    def watch_queue(self, name: str, depth: Callable[[], float]) -> None:
        """Export `depth()` as contrail_queue_depth{queue=name}."""
        self._queue_depths[name] = depth

    def commit_observer(self, db: str):
        group, latency = self.commit_group.labels(db), self.commit_latency.labels(db)

        def observe(size: int, seconds: float) -> None:
            group.observe(size)
            latency.observe(seconds)
        return observe

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _QueueDepths:
    def __init__(self, depths: dict[str, Callable[[], float]]) -> None:
        self._depths = depths

    def collect(self):
        family = GaugeMetricFamily("contrail_queue_depth", "Items waiting in internal queues", labels=["queue"])
        for name, depth in self._depths.items():
            family.add_metric([name], float(depth()))
        yield family
