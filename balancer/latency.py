"""Response-time percentiles for the status page: p50 and p95 of the last minute.

The data plane keeps cumulative histograms (proxy.request_metrics: fixed buckets, summed over
the workers); a percentile since start-up says little about now. The status feed samples
them every second, and the figures shown come from the difference between the newest sample
and the oldest one still inside WINDOW: the requests that finished in the last minute.
Within a bucket the value is interpolated linearly, as Prometheus' histogram_quantile does;
in the last, open bucket it is reported as its lower bound.
"""
from __future__ import annotations

from collections import deque

from proxy.request_metrics import BUCKETS

WINDOW = 60.0  # seconds of requests the percentiles cover
QUANTILES = (("p50", 0.5), ("p95", 0.95))


def summed_counts(durations: dict) -> list[int]:
    """One histogram's counts from the per-status-class ones of a director or backend."""
    total = [0] * (len(BUCKETS) + 1)
    for histogram in durations.values():
        for i, count in enumerate(histogram["counts"]):
            total[i] += count
    return total


def quantile(counts: list[int], q: float) -> float | None:
    """The q-quantile (seconds) of non-cumulative bucket counts; None without requests."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i == len(BUCKETS):  # above the last bound: all we know is "more than it"
                return BUCKETS[-1]
            lower = BUCKETS[i - 1] if i else 0.0
            return lower + (BUCKETS[i] - lower) * (rank - seen) / count
        seen += count
    return BUCKETS[-1]


class LatencyTracker:
    """Per director and backend id: the histogram samples of the last WINDOW seconds."""

    def __init__(self, window: float = WINDOW):
        self.window = window
        self._samples: dict[tuple[str, int], deque] = {}

    def sample(self, directors: list[dict], now: float) -> None:
        seen = set()
        for director in directors:
            # A director's own figures hold only what it answered itself (503s): add its backends'.
            whole = summed_counts(director.get("durations") or {})
            for backend in director["backends"]:
                counts = summed_counts(backend.get("durations") or {})
                whole = [a + b for a, b in zip(whole, counts, strict=True)]
                self._add(("b", backend["id"]), now, counts)
                seen.add(("b", backend["id"]))
            self._add(("d", director["id"]), now, whole)
            seen.add(("d", director["id"]))
        for key in [k for k in self._samples if k not in seen]:
            del self._samples[key]

    def _add(self, key, now: float, counts: list[int]) -> None:
        samples = self._samples.get(key)
        if samples is None:
            samples = self._samples[key] = deque()
        samples.append((now, counts))
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()  # keep one sample at or before the window's start

    def percentiles(self, kind: str, item_id: int) -> dict | None:
        """{"p50": s, "p95": s, "requests": n} over the window, or None with no requests in it."""
        samples = self._samples.get((kind, item_id))
        if not samples or len(samples) < 2:
            return None
        (_, oldest), (_, newest) = samples[0], samples[-1]
        recent = [max(0, b - a) for a, b in zip(oldest, newest, strict=True)]  # a worker replaced: never negative
        if not sum(recent):
            return None
        return {**{name: quantile(recent, q) for name, q in QUANTILES}, "requests": sum(recent)}
