"""Live load figures from the data plane, for pages that run in the same process (admin).

The data plane registers a provider at start; without one every lookup returns None, so the
admin still works when the proxy is not running in this process. Under `runproxy --workers`
the figures of the other workers are added (`balancer.worker_stats`).
"""
from __future__ import annotations

from typing import Protocol

from balancer import worker_stats


class StatsProvider(Protocol):
    def backend_stats(self, backend_id: int) -> dict | None: ...

    def director_stats(self, director_id: int) -> dict | None: ...

    def snapshot(self) -> dict: ...


_provider: StatsProvider | None = None


def register(provider: StatsProvider | None) -> None:
    """Install (or with None, remove) the process's live statistics provider."""
    global _provider
    _provider = provider


def get_backend_stats(backend_id: int) -> dict | None:
    if _provider is None:
        return None
    own = _provider.backend_stats(backend_id)
    others = worker_stats.peers().backends.get(backend_id)
    return worker_stats.merge_counts(own, others) if own is not None and others else own


def get_director_stats(director_id: int) -> dict | None:
    if _provider is None:
        return None
    own = _provider.director_stats(director_id)
    others = worker_stats.peers().directors.get(director_id)
    return worker_stats.merge_counts(own, others) if own is not None and others else own


_health = None


def register_health(monitor) -> None:
    """Install (or with None, remove) this process's health monitor (its `stats()`)."""
    global _health
    _health = monitor


def get_health_stats() -> dict | None:
    """Per backend id: {"checks", "last_duration", ...} from the monitor (in this worker or
    another one), or None. Under --workers the counted figures include those of monitors
    that are gone (a replaced worker 0), so /metrics never counts backwards."""
    peers = worker_stats.peers()
    stats = _health.stats() if _health is not None else peers.health
    return worker_stats.with_retired_checks(stats, peers.retired_health) or None


def local_figures() -> tuple[dict | None, dict | None]:
    """(snapshot, health stats) of this process alone: what a worker publishes."""
    snapshot = _provider.snapshot() if _provider is not None else None
    return snapshot, (_health.stats() if _health is not None else None)


def get_snapshot() -> dict | None:
    """Every director and backend with live figures, or None without a data plane here.

    {"directors": [{"id", "name", "enabled", "load": {current, max, total},
      "queued": {current, max, total}, "dropped", "responses": {"1xx".."5xx", "failed"},
      "backends": [{"id", "name", "role", "enabled", "health", "terminating", "capacity",
                    "load": {...}, "failures", "responses": {...}}]}]}
    """
    if _provider is None:
        return None
    return worker_stats.merge_snapshots(_provider.snapshot(), worker_stats.peers())
