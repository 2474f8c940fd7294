"""Live load figures from the data plane, for pages that run in the same process (admin).

The data plane registers a provider at start; without one every lookup returns None, so the
admin still works when the proxy is not running in this process.
"""
from __future__ import annotations

from typing import Protocol


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
    return _provider.backend_stats(backend_id) if _provider is not None else None


def get_director_stats(director_id: int) -> dict | None:
    return _provider.director_stats(director_id) if _provider is not None else None


_health = None


def register_health(monitor) -> None:
    """Install (or with None, remove) this process's health monitor (its `stats()`)."""
    global _health
    _health = monitor


def get_health_stats() -> dict | None:
    """Per backend id: {"checks", "last_duration", ...} from the monitor, or None."""
    return _health.stats() if _health is not None else None


def get_snapshot() -> dict | None:
    """Every director and backend with live figures, or None without a data plane here.

    {"directors": [{"id", "name", "enabled", "load": {current, max, total},
      "queued": {current, max, total}, "dropped", "responses": {"1xx".."5xx", "failed"},
      "backends": [{"id", "name", "role", "enabled", "health", "terminating", "capacity",
                    "load": {...}, "failures", "responses": {...}}]}]}
    """
    return _provider.snapshot() if _provider is not None else None
