"""The control plane's side of the data plane's interfaces (proxy.config_source): the
database as the data plane's config source, and the data plane's live figures as the
stats provider of balancer.livestats."""
from __future__ import annotations

import functools
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from proxy.health_follow import HEALTH_FIELDS
from proxy.state import BACKEND_FIELDS, BUCKET_FIELDS, DIRECTOR_FIELDS, ROUTE_FIELDS, ConfigRows, DataPlane

from . import services, worker_stats
from .dbthread import close_connection, on_kept_connection
from .models import Backend, Bucket, Director, Route

DRAINED_ACTOR = "proxy:drained"


def _kept_connection(method):
    """A read made on the thread's kept connection (balancer.dbthread.on_kept_connection,
    retried once on a new connection when a reused one fails). The data plane makes every
    call in one thread (proxy.one_thread), so twice-a-second polls do not open a connection
    each: on PostgreSQL that is a new server process per poll."""

    @functools.wraps(method)
    def call(self, *args):
        return on_kept_connection(method, self, *args, retry_reused=True)
    return call


class DatabaseConfigSource:
    """proxy.config_source.ConfigSource over the ORM, on a connection kept between calls."""

    @_kept_connection
    def read_version(self) -> int:
        return services.current_version()

    @_kept_connection
    def read_rows(self) -> ConfigRows:
        with transaction.atomic():
            buckets: dict[int, list[dict]] = {}
            for bucket in Bucket.objects.values(*BUCKET_FIELDS):
                buckets.setdefault(bucket["director_id"], []).append(bucket)
            return ConfigRows(services.current_version(),
                              [{**row, "buckets": buckets.get(row["id"], [])}
                               for row in Director.objects.values(*DIRECTOR_FIELDS)],
                              list(Backend.objects.values(*BACKEND_FIELDS)),
                              list(Route.objects.values(*ROUTE_FIELDS)))  # the model orders by match order

    @_kept_connection
    def read_health(self, since: datetime, ids: list[int]) -> list[dict]:
        return list(Backend.objects.filter(Q(health_changed_at__gt=since) | Q(pk__in=ids)).values(*HEALTH_FIELDS))

    def remove_backend(self, backend_id: int) -> None:
        on_kept_connection(functools.partial(services.remove_backend, backend_id, actor=DRAINED_ACTOR))  # a write: once

    close = staticmethod(close_connection)

    def reaps_drained(self) -> bool:
        return worker_stats.worker_index() in (None, 0)  # under --workers, worker 0 for the group

    def in_flight_elsewhere(self, backend_id: int) -> int:
        return sum(b["load"]["current"] for b in worker_stats.peers().backends.get(backend_id, []))


class PlaneStats:
    """balancer.livestats provider over a DataPlane (same process)."""

    def __init__(self, plane: DataPlane):
        self.plane = plane

    def backend_stats(self, backend_id: int) -> dict | None:
        backend = self.plane.backends.get(backend_id)
        return backend.stats() if backend is not None else None

    def director_stats(self, director_id: int) -> dict | None:
        director = self.plane.director_by_id(director_id)
        return director.stats() if director is not None else None

    def snapshot(self) -> dict:
        directors = []
        for director in sorted(self.plane.directors.values(), key=lambda d: d.name):
            directors.append({
                "id": director.id, "name": director.name, "enabled": director.settings.enabled,
                **director.stats(), "responses": _responses(director.status_counts),
                "bytes": {"received": director.bytes_received, "sent": director.bytes_sent},
                "durations": director.traffic.as_dict()["durations"],
                "backends": [{
                    "id": b.id, "name": b.name, "role": b.role, "enabled": b.enabled, "health": b.health,
                    "terminating": b.terminating, "capacity": b.capacity, "load": b.load_counter.as_dict(),
                    "failures": b.failures, "responses": _responses(b.status_counts), **b.traffic.as_dict(),
                } for b in director.backends.values()],
            })
        return {"directors": directors}


def _responses(counts: list[int]) -> dict:
    return {"failed": counts[0], "1xx": counts[1], "2xx": counts[2], "3xx": counts[3], "4xx": counts[4], "5xx": counts[5]}
