"""What one monitor remembers of a backend's checks: the last one (wall-clock time, result,
HTTP status, duration) and a histogram of check durations, for the status page, /metrics
(`director_health_check_duration_seconds`) and /haproxy/stats.csv. The database gets the
same facts in batches (monitor FLUSH_INTERVAL) and with every transition; pages in a process
running the monitor read them from here, exact to the check."""
from __future__ import annotations

import bisect
import time

from .probe import ProbeResult

# Upper bounds (seconds) of the duration histogram: a loopback check takes about a
# millisecond, a check that times out takes the director's timeouts (10 s by default).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class CheckHistory:
    """Checks of one backend by this monitor."""

    __slots__ = ("checks", "result", "checked_at", "duration", "bucket_counts", "duration_sum")

    def __init__(self):
        self.checks = 0
        self.result: ProbeResult | None = None
        self.checked_at: float | None = None  # epoch seconds the last check finished
        self.duration: float | None = None  # seconds the last check took
        self.bucket_counts = [0] * (len(DURATION_BUCKETS) + 1)  # the last: above every bound
        self.duration_sum = 0.0

    def add(self, result: ProbeResult, duration: float, now: float | None = None) -> None:
        self.checks += 1
        self.result = result
        self.duration = duration
        self.checked_at = time.time() if now is None else now
        self.bucket_counts[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        self.duration_sum += duration

    def as_dict(self) -> dict:
        """JSON-safe figures (workers publish them to each other as JSON)."""
        result = self.result
        return {"checks": self.checks, "last_checked": self.checked_at, "last_duration": self.duration,
                "last_ok": result.ok if result else None, "last_status": result.status if result else None,
                "last_error": result.error if result else "",
                "duration_buckets": list(self.bucket_counts), "duration_sum": self.duration_sum}


def cumulative_buckets(counts: list[int]) -> list[tuple[str, int]]:
    """Prometheus histogram buckets ("le", cumulative count), "+Inf" last."""
    bounds = [repr(b) for b in DURATION_BUCKETS] + ["+Inf"]
    total, buckets = 0, []
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        buckets.append((bound, total))
    return buckets
