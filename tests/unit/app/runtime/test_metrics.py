"""The loop-thread counters and histograms: what a Prometheus scrape of them reads."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.runtime.metrics import Metrics


def _samples(metrics: Metrics) -> dict[tuple, float]:
    text = metrics.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counters_add_up_per_label_set_whatever_type_the_values_came_in():
    m = Metrics()
    m.http_requests.labels("/v1/bid", "POST", "200").inc()
    m.http_requests.labels("/v1/bid", "POST", 200).inc(2)  # an int status is the same series as "200"
    m.http_requests.labels("/v1/bid", "POST", "204").inc()
    m.events_logged.inc(5)
    got = _samples(m)
    assert got[("contrail_http_requests_total", (("method", "POST"), ("route", "/v1/bid"), ("status", "200")))] == 3
    assert got[("contrail_http_requests_total", (("method", "POST"), ("route", "/v1/bid"), ("status", "204")))] == 1
    assert got[("contrail_events_logged_total", ())] == 5
    assert got[("contrail_events_dropped_total", ())] == 0  # an unlabelled counter is exposed from the start


def test_histogram_buckets_are_cumulative_and_inclusive_of_their_bound():
    m = Metrics()
    h = m.bid_latency.labels("rest")
    for seconds in (0.0005, 0.0007, 0.003, 7.0):
        h.observe(seconds)
    got = _samples(m)

    def bucket(le: str) -> float:
        return got[("contrail_bid_seconds_bucket", (("le", le), ("protocol", "rest")))]
    assert bucket("0.0005") == 1  # an observation equal to a bound counts in that bucket
    assert bucket("0.001") == 2 and bucket("0.0025") == 2 and bucket("0.005") == 3
    assert bucket("2.5") == 3 and bucket("+Inf") == 4
    assert got[("contrail_bid_seconds_count", (("protocol", "rest"),))] == 4
    assert got[("contrail_bid_seconds_sum", (("protocol", "rest"),))] == pytest.approx(7.0042)


def test_wrong_number_of_labels_is_refused():
    m = Metrics()
    with pytest.raises(ValueError, match="route"):
        m.http_requests.labels("/v1/bid", "POST")
