"""Prometheus metrics for one Contrail instance (its own registry, never module globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, disable_created_metrics, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

# The *_created series double the exposition size and nobody graphs them.
disable_created_metrics()

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Every metric the platform exports; domains add theirs through `registry`."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter("contrail_http_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.http_latency = Histogram("contrail_http_request_seconds", "HTTP request latency",
                                      ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.grpc_calls = Counter("contrail_grpc_calls", "gRPC calls", ["method", "code"], registry=r)
        self.grpc_latency = Histogram("contrail_grpc_call_seconds", "gRPC call latency", ["method"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.gc_pauses = Histogram("contrail_gc_pause_seconds", "Garbage collector pauses (the loop stands still)",
                                   ["generation"], buckets=LATENCY_BUCKETS, registry=r)
        self.task_restarts = Counter("contrail_task_restarts", "Background task restarts", ["task"], registry=r)
        self.events_logged = Counter("contrail_events_logged", "Events accepted into the event log", registry=r)
        self.events_dropped = Counter("contrail_events_dropped", "Events dropped because the queue was full",
                                      registry=r)
        self.events_written = Counter("contrail_events_written", "Events written to the event log file",
                                      registry=r)
        self.ws_clients = Gauge("contrail_ws_clients", "Connected websocket clients", ["stream"], registry=r)
        self.ws_dropped = Counter("contrail_ws_dropped_messages", "Messages dropped for slow websocket clients",
                                  ["stream"], registry=r)
        self.ws_disconnects = Counter("contrail_ws_lag_disconnects", "Websocket clients disconnected for lag",
                                      ["stream"], registry=r)
        self.commit_group = Histogram("contrail_sqlite_commit_group_size", "Writes per SQLite commit", ["db"],
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r)
        self.commit_latency = Histogram("contrail_sqlite_commit_seconds", "SQLite group commit latency", ["db"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.wal_pages = Gauge("contrail_sqlite_wal_pages", "Pages in the write-ahead log at the last checkpoint",
                               ["db"], registry=r)
        self.rate_limited = Counter("contrail_rate_limited", "Requests refused by rate limits", ["scope"],
                                    registry=r)
        self.bid_requests = Counter("contrail_bid_requests", "Bid requests by protocol and outcome",
                                    ["protocol", "outcome"], registry=r)
        self.bid_invalid = Counter("contrail_bid_invalid", "Invalid bid requests by reason", ["reason"], registry=r)
        self.bid_nobids = Counter("contrail_bid_nobids", "No-bids by reason", ["reason"], registry=r)
        self.bid_latency = Histogram("contrail_bid_seconds", "Bid pipeline latency", ["protocol"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.bid_notices = Counter("contrail_bid_notices", "Win/billing/loss notices", ["kind", "result"],
                                   registry=r)
        self.profile_lookups = Counter("contrail_profile_lookups", "Profile cache lookups", ["tier", "result"],
                                       registry=r)
        self.model_info = Gauge("contrail_model_info", "Loaded scoring model (value 1)", ["version"], registry=r)
        self.batch_calls = Histogram("contrail_inference_batch_calls", "Scoring calls per inference batch",
                                     buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.batch_wait = Histogram("contrail_inference_batch_wait_seconds",
                                    "How long the oldest call of a batch waited before the flush",
                                    buckets=(0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.002, 0.005), registry=r)
        self.offers_generated = Counter("contrail_offers_generated", "Offers priced and persisted", registry=r)
        self.orders = Counter("contrail_order_transitions", "Order state changes", ["to"], registry=r)
        self.payments = Counter("contrail_payments", "Payment attempts by result", ["result"], registry=r)
        self.ranking_calls = Counter("contrail_ranking_calls", "Searches ranked, by who ranked them",
                                     ["source"], registry=r)
        self.ranking_fallbacks = Counter("contrail_ranking_fallbacks", "Remote ranking calls that fell back locally",
                                         ["reason"], registry=r)
        self.ranking_breaker = Gauge("contrail_ranking_breaker_state",
                                     "Remote ranker circuit breaker: 0 closed, 1 half-open, 2 open", registry=r)
        self._queue_depths: dict[str, object] = {}
        r.register(_QueueDepths(self._queue_depths))

    def watch_queue(self, name: str, depth) -> None:
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
    def __init__(self, depths: dict) -> None:
        self._depths = depths

    def collect(self):
        family = GaugeMetricFamily("contrail_queue_depth", "Items waiting in internal queues", labels=["queue"])
        for name, depth in self._depths.items():
            family.add_metric([name], float(depth()))
        yield family
