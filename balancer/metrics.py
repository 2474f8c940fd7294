"""`/metrics`: Prometheus text exposition of every director and backend.

Built per scrape from `balancer.overview` (live counters of the data plane in this process +
stored health facts) by a custom Collector on a private CollectorRegistry, so nothing is
double-bookkept in prometheus_client's global registry. Open on the management listener,
like HAProxy's stats URI (it binds loopback by default).

Health-check figures come from the monitor (in this process, or worker 0's published ones under
`--workers`): checks done and the histogram of their durations
(`director_health_check_duration_seconds`, counted since that monitor started), besides the
stored `*_last_check_timestamp_seconds` and `*_state_change_timestamp_seconds`.

Several worker processes (`--workers > 1`): prometheus_client's multiprocess mode only
aggregates its own Counter/Gauge objects, while these counters live in each worker's data
plane. The equivalent is in `balancer.worker_stats`: each worker publishes its figures every
second and `livestats` adds the other workers' to its own, so whichever worker answers the
scrape reports the whole process group (counters and current gauges summed, `*_max` the
largest); health and facts come from the database and are shared.
"""
from __future__ import annotations

from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from proxy.request_metrics import BUCKETS

from . import overview
from .health.history import cumulative_buckets

D = ["director"]
B = ["director", "backend"]


class OverviewCollector(Collector):
    """Metric families of one overview (see `balancer.overview.merge`)."""

    def __init__(self, view: dict, database_up: bool = True):
        self.view = view
        self.database_up = database_up

    def collect(self):
        live = GaugeMetricFamily("director_live_stats", "1 when counters come from a data plane in this process")
        live.add_metric([], 1 if self.view["live"] else 0)
        database = GaugeMetricFamily("director_database_up", "1 when the stored health facts could be read")
        database.add_metric([], 1 if self.database_up else 0)
        yield live
        yield database
        yield from self._directors()
        yield from self._backends()
        yield from self._traffic()
        yield from self._cache()

    def _directors(self):
        f = {
            "enabled": GaugeMetricFamily("director_enabled", "1 when the director accepts requests", labels=D),
            "responses": CounterMetricFamily("director_responses", "Responses sent to clients by class, "
                                             "including the director's own 503s", labels=[*D, "class"]),
            "load": GaugeMetricFamily("director_load", "Requests being served by the director's backends", labels=D),
            "load_max": GaugeMetricFamily("director_load_max", "Highest load seen", labels=D),
            "queue": GaugeMetricFamily("director_queue_length", "Requests waiting for a free backend slot", labels=D),
            "queue_max": GaugeMetricFamily("director_queue_length_max", "Longest queue seen", labels=D),
            "queued": CounterMetricFamily("director_queued", "Requests that had to wait in the queue", labels=D),
            "dropped": CounterMetricFamily("director_dropped", "Requests refused with 503 (queue full or timed out, "
                                           "nothing available, director disabled)", labels=D),
        }
        for d in self.view["directors"]:
            name = [d["name"]]
            f["enabled"].add_metric(name, 1 if d["enabled"] else 0)
            for cls, count in d["responses"].items():
                if cls != "failed":
                    f["responses"].add_metric([*name, cls], count)
            f["load"].add_metric(name, d["load"]["current"])
            f["load_max"].add_metric(name, d["load"]["max"])
            f["queue"].add_metric(name, d["queued"]["current"])
            f["queue_max"].add_metric(name, d["queued"]["max"])
            f["queued"].add_metric(name, d["queued"]["total"])
            f["dropped"].add_metric(name, d["dropped"])
        yield from f.values()

    def _backends(self):
        f = {
            "requests": CounterMetricFamily("director_requests", "Requests finished by a backend, by response "
                                            "class; class=failed: upstream failures", labels=[*B, "class"]),
            "dispatched": CounterMetricFamily("director_backend_dispatched", "Requests handed to the backend "
                                              "(retries included)", labels=B),
            "load": GaugeMetricFamily("director_backend_load", "Requests in flight on the backend", labels=B),
            "load_max": GaugeMetricFamily("director_backend_load_max", "Highest load seen", labels=B),
            "capacity": GaugeMetricFamily("director_backend_capacity", "Concurrent request limit (0 = unlimited)",
                                          labels=B),
            "up": GaugeMetricFamily("director_backend_up", "1 when the health state is online; state: online, "
                                    "offline, undefined, disabled or draining", labels=[*B, "state"]),
            "enabled": GaugeMetricFamily("director_backend_enabled", "1 unless an operator disabled it", labels=B),
            "checked": GaugeMetricFamily("director_backend_last_check_timestamp_seconds",
                                         "Time of the last stored health check", labels=B),
            "changed": GaugeMetricFamily("director_backend_state_change_timestamp_seconds",
                                         "Time of the last health state change", labels=B),
            "checks": CounterMetricFamily("director_health_checks", "Health checks run by this process's monitor",
                                          labels=B),
            "duration": HistogramMetricFamily("director_health_check_duration_seconds",
                                              "How long health checks took (this process's monitor)", labels=B),
        }
        for d in self.view["directors"]:
            for b in d["backends"]:
                names = [d["name"], b["name"]]
                for cls, count in b["responses"].items():
                    f["requests"].add_metric([*names, cls], count)
                f["dispatched"].add_metric(names, b["load"]["total"])
                f["load"].add_metric(names, b["load"]["current"])
                f["load_max"].add_metric(names, b["load"]["max"])
                f["capacity"].add_metric(names, b["capacity"])
                f["up"].add_metric([*names, b["state"]], 1 if b["health"] == "online" else 0)
                f["enabled"].add_metric(names, 1 if b["enabled"] else 0)
                if b["last_checked"] is not None:
                    f["checked"].add_metric(names, b["last_checked"])
                if b["health_changed"] is not None:
                    f["changed"].add_metric(names, b["health_changed"])
                f["checks"].add_metric(names, b.get("checks", 0))
                histogram = b.get("check_histogram")
                if histogram is not None:
                    f["duration"].add_metric(names, cumulative_buckets(histogram["buckets"]), histogram["sum"])
        yield from f.values()


    def _traffic(self):
        """Request durations, upstream response times and body bytes (proxy.request_metrics)."""
        durations = HistogramMetricFamily(
            "director_request_duration_seconds", "Time from a request's head to the end of its response, by "
            "the backend that answered (empty: the director answered itself) and status class", labels=[*B, "class"])
        upstream = HistogramMetricFamily("director_upstream_response_seconds", "Time from sending a request to "
                                         "the backend until its response was ready to relay", labels=B)
        received = CounterMetricFamily("director_bytes_received", "Request body bytes received from clients", labels=D)
        sent = CounterMetricFamily("director_bytes_sent", "Response body bytes sent to clients", labels=D)
        for d in self.view["directors"]:
            received.add_metric([d["name"]], d["bytes"]["received"])
            sent.add_metric([d["name"]], d["bytes"]["sent"])
            for cls, figures in sorted(d["durations"].items()):
                durations.add_metric([d["name"], "", cls], *_histogram(figures))
            for b in d["backends"]:
                for cls, figures in sorted(b["durations"].items()):
                    durations.add_metric([d["name"], b["name"], cls], *_histogram(figures))
                if b["upstream"] is not None:
                    upstream.add_metric([d["name"], b["name"]], *_histogram(b["upstream"]))
        yield from (durations, upstream, received, sent)


    def _cache(self):
        """The response cache of each director (SPEC §15), summed over the worker processes."""
        f = {
            "objects": GaugeMetricFamily("director_cache_objects", "Responses stored in the cache", labels=D),
            "bytes": GaugeMetricFamily("director_cache_bytes", "Memory the stored responses take (bodies and an "
                                       "estimate for heads)", labels=D),
            "hits": CounterMetricFamily("director_cache_hits", "Requests answered from a fresh stored response",
                                        labels=D),
            "misses": CounterMetricFamily("director_cache_misses", "Cacheable requests (GET, HEAD) answered by a "
                                          "backend", labels=D),
            "shadow": CounterMetricFamily("director_cache_shadow", "Requests answered from a stored response "
                                          "instead of the director's own 502/503/504", labels=D),
        }
        for d in self.view["directors"]:
            for name, family in f.items():
                family.add_metric([d["name"]], d["cache"][name])
        yield from f.values()


def _histogram(figures: dict) -> tuple[list, float]:
    """(cumulative buckets, sum) for HistogramMetricFamily from {counts, sum}."""
    buckets, total = [], 0
    for bound, count in zip((*(str(b) for b in BUCKETS), "+Inf"), figures["counts"], strict=True):
        total += count
        buckets.append((bound, total))
    return buckets, figures["sum"]


def exposition(view: dict, database_up: bool = True) -> bytes:
    """The text format (version 0.0.4) of one overview."""
    registry = CollectorRegistry()
    registry.register(OverviewCollector(view, database_up))
    return generate_latest(registry)


async def metrics_view(request):
    view = await overview.current()
    response = HttpResponse(exposition(view, overview.FACTS.error is None), content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response["Cache-Control"] = "no-store"
    return response
