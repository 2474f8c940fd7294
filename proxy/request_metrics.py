"""Per-request figures kept by the data plane: response-time histograms and body bytes
(SPEC §13: director_request_duration_seconds, director_upstream_response_seconds,
director_bytes_received_total, director_bytes_sent_total).

Fixed buckets and plain ints, so one observation is a bisect and two additions
(`record_request`, once per request). The objects
hang off the long-lived director and backend runtimes, so they survive reloads; what a worker
publishes (`as_dict`) is summed across workers by balancer.worker_stats.
"""
from __future__ import annotations

from bisect import bisect_left

# Prometheus' default buckets (seconds); the last count is +Inf.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class Histogram:
    """Non-cumulative counts per bucket (counts[i]: le BUCKETS[i], last: above them) and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def as_dict(self) -> dict:
        return {"counts": list(self.counts), "sum": self.sum}


class Traffic:
    """Request durations by status class, upstream response times and body bytes of one
    backend (or of the requests a director answered without a backend)."""

    __slots__ = ("durations", "upstream", "bytes_received", "bytes_sent")

    def __init__(self):
        self.durations: list[Histogram | None] = [None] * 6  # index status // 100, made on first use
        self.upstream = Histogram()
        self.bytes_received = 0
        self.bytes_sent = 0

    def as_dict(self) -> dict:
        """{"durations": {"2xx": {counts, sum}, ...}, "upstream": {counts, sum}, "bytes": {received, sent}}"""
        durations = {STATUS_CLASSES[i - 1]: h.as_dict() for i, h in enumerate(self.durations) if h is not None and i}
        return {"durations": durations, "upstream": self.upstream.as_dict(),
                "bytes": {"received": self.bytes_received, "sent": self.bytes_sent}}


def record_request(record) -> None:
    """Add a finished `proxy.request_record.RequestRecord` to its director's figures.
    Requests of no director (404, road warrior) have none to add to. Traffic.observe and
    Histogram.observe written out: this runs once per request."""
    director = record.director
    if director is None:
        return
    status_class = record.status // 100
    if not 1 <= status_class <= 5:
        status_class = 5
    received, sent = record.bytes_received, record.bytes_sent
    director.bytes_received += received
    director.bytes_sent += sent
    backend = record.backend
    traffic = backend.traffic if backend is not None else director.traffic
    traffic.bytes_received += received
    traffic.bytes_sent += sent
    histogram = traffic.durations[status_class]
    if histogram is None:
        histogram = traffic.durations[status_class] = Histogram()
    duration = record.duration
    histogram.counts[bisect_left(BUCKETS, duration)] += 1
    histogram.sum += duration
    upstream_time = record.upstream_time
    if upstream_time is not None and backend is not None:
        upstream = traffic.upstream
        upstream.counts[bisect_left(BUCKETS, upstream_time)] += 1
        upstream.sum += upstream_time
