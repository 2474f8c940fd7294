"""Bucket objects of a director for the API (SPEC §15): definition plus tokens.

`assured` and `ceiling` follow from the director's backends as stored (the capacities of its
online, enabled active backends, else its backups'; null when one of them has no capacity
limit), computed by the data plane's own rules (proxy.buckets); `used`, `queued` and
`dropped` are the data plane's live figures (summed over workers; zeros without a data
plane in this process).
"""
from __future__ import annotations

from typing import NamedTuple

from proxy.buckets import UNLIMITED, serving_capacity, token_figures

from . import livestats
from .choices import HealthState, Role
from .models import Director


class _Member(NamedTuple):
    available: bool
    capacity: int


class _Pool(NamedTuple):
    members: list


def root_tokens(director: Director) -> int:
    """The director's root size from its stored backends (proxy.buckets.serving_capacity)."""
    active, backup = [], []
    for backend in director.backends.all():
        available = backend.enabled and backend.health_state == HealthState.ONLINE and not backend.terminating
        (backup if backend.role == Role.BACKUP else active).append(_Member(available, backend.capacity))
    return serving_capacity(_Pool(active), _Pool(backup))


def buckets_json(director: Director, only: str | None = None) -> list[dict]:
    """The director's bucket objects (`only`: that one), buckets and backends prefetched."""
    rows = [{"name": b.name, "parent": b.parent, "rate": b.rate, "ceil": b.ceil} for b in director.buckets.all()]
    if not rows:
        return []
    figures = token_figures(root_tokens(director), rows)
    live = (livestats.get_director_stats(director.pk) or {}).get("buckets") or {}
    result = []
    for row in rows:
        if only is not None and row["name"] != only:
            continue
        assured, ceiling = figures.get(row["name"], (0, 0))
        mine = live.get(row["name"]) or {}
        result.append({**row, "tokens": {"assured": _tokens(assured), "ceiling": _tokens(ceiling),
                                         "used": mine.get("used", 0)},
                       "queued": mine.get("queued", 0), "dropped": mine.get("dropped", 0)})
    return result


def _tokens(count: int) -> int | None:
    return None if count >= UNLIMITED else count
