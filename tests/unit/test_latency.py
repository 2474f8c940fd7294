"""p50/p95 of the last minute from cumulative histograms (balancer.latency)."""
import pytest

from balancer.latency import LatencyTracker, quantile
from proxy.request_metrics import BUCKETS

EMPTY = [0] * (len(BUCKETS) + 1)


def counts(**by_bound) -> list[int]:
    """Non-cumulative counts keyed by a bucket's upper bound, e.g. counts(b0_25=10)."""
    result = list(EMPTY)
    for name, n in by_bound.items():
        bound = float(name[1:].replace("_", "."))
        result[BUCKETS.index(bound)] = n
    return result


def test_quantiles_interpolate_within_the_bucket():
    ten_in_100_to_250ms = counts(b0_25=10)
    assert quantile(ten_in_100_to_250ms, 0.5) == pytest.approx(0.175)
    assert quantile(ten_in_100_to_250ms, 0.95) == pytest.approx(0.2425)
    assert quantile(EMPTY, 0.5) is None


def test_the_open_last_bucket_reports_its_lower_bound():
    slow = list(EMPTY)
    slow[-1] = 3
    assert quantile(slow, 0.95) == BUCKETS[-1]


def frame(backend_counts: list[int], own: list[int] = EMPTY) -> list[dict]:
    return [{"id": 1, "durations": {"5xx": {"counts": own, "sum": 0}},
             "backends": [{"id": 7, "durations": {"2xx": {"counts": backend_counts, "sum": 0}}}]}]


def test_only_the_last_window_counts_and_a_director_adds_its_backends():
    tracker = LatencyTracker(window=60)
    tracker.sample(frame(counts(b0_005=1000)), now=0)  # fast requests, long ago
    tracker.sample(frame(counts(b0_005=1000)), now=30)
    assert tracker.percentiles("b", 7) is None  # nothing finished since
    tracker.sample(frame(counts(b0_005=1000, b0_25=10), own=counts(b0_005=10)), now=100)
    backend = tracker.percentiles("b", 7)
    assert backend["requests"] == 10 and 0.1 < backend["p50"] < backend["p95"] <= 0.25
    director = tracker.percentiles("d", 1)
    assert director["requests"] == 20 and director["p50"] <= 0.1  # its own fast 503s and the backend's


def test_a_replaced_worker_never_gives_negative_counts():
    tracker = LatencyTracker(window=60)
    tracker.sample(frame(counts(b0_25=10)), now=0)
    tracker.sample(frame(counts(b0_25=4, b0_5=2)), now=1)  # totals went down: a worker's share left
    assert tracker.percentiles("b", 7)["requests"] == 2
