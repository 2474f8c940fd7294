"""What the operator views show: the data plane's live figures of every director and backend
merged with the stored health facts (state and since when, last check, last error, the last
transitions, time offline) and the routes (which directors no route reaches).

Shared by the status feed, /metrics, /haproxy/stats.csv and /-/ready. Call `current()` on the
event loop that runs the data plane (async views and consumers do). Stored facts are read in
one private thread (never on the event loop, which carries live traffic) and cached for
FACTS_MAX_AGE, so any number of status tabs and scrapers cost about one query a second.
Without a data plane in this process (`livestats` gives None) every figure comes from the
database and the counters are zero; `live` says which.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from . import livestats, status_routes
from .dbthread import DatabaseThread

log = logging.getLogger("director.views")

FACTS_MAX_AGE = 1.0  # seconds a read of the stored facts is reused
DB_TIMEOUT = 5.0  # seconds before a database read counts as failed
STATE_DISABLED = "disabled"
STATE_DRAINING = "draining"
RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "failed")

DIRECTOR_FACTS = ("id", "name", "enabled", "dynamic")
BACKEND_FACTS = ("id", "director_id", "name", "url", "role", "enabled", "terminating", "capacity", "health_state",
                 "last_checked", "last_error", "health_changed_at", "last_check_ok", "last_check_status",
                 "last_check_duration", "downtime", "terminate_protection")
ROUTE_FACTS = ("id", "host", "path", "director")

_database = DatabaseThread("director-views-db")


async def run_in_db_thread(func, *args):
    """`func(*args)` in the views' database thread, bounded by DB_TIMEOUT."""
    return await asyncio.wait_for(_database.run(func, *args), DB_TIMEOUT)


def ping_database() -> None:
    """Raise unless the database answers a trivial query. Blocking: run in the db thread."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


@dataclass(frozen=True)
class Facts:
    """Rows of the stored state, as read at `read_at` (epoch seconds)."""

    directors: tuple[dict, ...]
    backends: tuple[dict, ...]
    read_at: float
    transitions: dict[int, list[dict]] = field(default_factory=dict)  # backend id -> newest first
    routes: tuple[dict, ...] = ()  # in match order


EMPTY_FACTS = Facts((), (), 0.0)


def read_facts() -> Facts:
    """Blocking: run it in the db thread."""
    from django.db import transaction

    from .models import Backend, Director, Route

    with transaction.atomic():
        directors = tuple(Director.objects.values(*DIRECTOR_FACTS))
        backends = tuple(Backend.objects.values(*BACKEND_FACTS))
        routes = tuple(Route.objects.values(*ROUTE_FACTS))
        transitions = TRANSITIONS.read()
    return Facts(directors, backends, time.time(), transitions, routes)


class TransitionsMemo:
    """The stored transitions by backend, re-read only when a new one was written (the
    newest id moved): once per transition, not once a second."""

    def __init__(self):
        self._newest: int | None = None
        self._by_backend: dict[int, list[dict]] = {}

    def read(self) -> dict[int, list[dict]]:
        from django.db.models import Max

        from .models import HealthTransition

        newest = HealthTransition.objects.aggregate(newest=Max("id"))["newest"]
        if newest != self._newest:
            by_backend: dict[int, list[dict]] = {}
            for row in HealthTransition.objects.values("backend_id", "at", "old_state", "new_state", "reason"):
                by_backend.setdefault(row["backend_id"], []).append(
                    {"at": row["at"].timestamp(), "from": row["old_state"], "to": row["new_state"],
                     "reason": row["reason"]})
            self._newest, self._by_backend = newest, by_backend
        return self._by_backend


TRANSITIONS = TransitionsMemo()


class FactsCache:
    """The stored facts, re-read when older than `max_age`; concurrent callers share one read.
    After a failed read the last good facts stay available (`error` says why)."""

    def __init__(self, max_age: float = FACTS_MAX_AGE, reader=read_facts, clock=time.monotonic):
        self.max_age = max_age
        self._reader = reader
        self._clock = clock
        self._facts = EMPTY_FACTS
        self._read_at: float | None = None
        self._pending: asyncio.Future | None = None
        self.error: str | None = None

    def invalidate(self) -> None:
        self._read_at = None

    async def get(self) -> Facts:
        if self._read_at is not None and self._clock() - self._read_at < self.max_age:
            return self._facts
        if self._pending is None or self._pending.done() or self._pending.get_loop() is not asyncio.get_running_loop():
            self._pending = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._pending)

    async def _read(self) -> Facts:
        started = self._clock()
        try:
            self._facts = await run_in_db_thread(self._reader)
            self.error = None
        except Exception as exc:  # noqa: BLE001 - shown on the page; live figures still flow
            self.error = f"database unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
            log.warning("status views: %s", self.error)
        self._read_at = started
        return self._facts


FACTS = FactsCache()


async def current(facts: FactsCache = FACTS) -> dict:
    """The merged overview now (see `merge`)."""
    stored = await facts.get()
    return merge(livestats.get_snapshot(), stored, livestats.get_health_stats())


def display_state(enabled: bool, terminating: bool, health: str) -> str:
    """One word for a backend: disabled and draining win over its health state."""
    if not enabled:
        return STATE_DISABLED
    if terminating:
        return STATE_DRAINING
    return health


def merge(snapshot: dict | None, facts: Facts, checks: dict | None = None) -> dict:
    """{"live": bool, "directors": [{id, name, enabled, mutable, unreached, load, queued,
    dropped, responses, cache: {objects, bytes, hits, misses, shadow}, backends: [{id, name, url, role, enabled, terminating,
    terminate_protection, capacity, health, state, load, failures, responses, health_changed,
    downtime, last_checked, last_error, last_check: {at, ok, status, duration}, transitions:
    [{at, from, to, reason}], checks, check_histogram}]}]} with times as epoch seconds or
    None. Live figures and membership come from the snapshot when there is one; `checks` (a
    health monitor's stats: in this process or worker 0's) gives the last check exactly when
    it is newer than the stored one (stored checks are written in batches) and the check
    count and duration histogram. `unreached` says why no route reaches the director, or None."""
    stored = {row["id"]: row for row in facts.backends}
    directors_by_id = {row["id"]: row for row in facts.directors}
    unreached = status_routes.unreached(list(facts.routes), [d["name"] for d in facts.directors])
    checks = checks or {}

    def backend(live: dict) -> dict:
        return _backend(live, stored.get(live["id"]), checks.get(live["id"]), facts.transitions.get(live["id"], []))

    if snapshot is None:
        lives = _directors_from_facts(facts)
    else:
        lives = snapshot["directors"]
    directors = [_director(d, [backend(b) for b in d["backends"]], directors_by_id.get(d["id"], {}), unreached)
                 for d in lives]
    return {"live": snapshot is not None, "directors": directors}


def _director(live: dict, backends: list[dict], row: dict, unreached: dict[str, str]) -> dict:
    return {"id": live["id"], "name": live["name"], "enabled": live["enabled"], "mutable": bool(row.get("dynamic")),
            "unreached": unreached.get(live["name"]), "load": dict(live["load"]), "queued": dict(live["queued"]),
            "dropped": live["dropped"], "responses": _responses(live["responses"]),
            "cache": _cache(live.get("cache")), **_traffic(live, ("bytes", "durations")), "backends": backends,
            "buckets": _buckets(live)}


def _buckets(live: dict) -> list[dict]:
    """[{name, assured, ceiling, used, queued, dropped}] of a director with buckets (proxy.buckets)."""
    tokens = live.get("bucket_tokens") or {}
    return [{"name": name, "assured": tokens.get(name, [0, 0])[0], "ceiling": tokens.get(name, [0, 0])[1], **figures}
            for name, figures in (live.get("buckets") or {}).items()]


CACHE_FIGURES = ("objects", "bytes", "hits", "misses", "shadow")


def _cache(figures: dict | None) -> dict:
    """The director's response cache figures (proxy.cache), zeros without a data plane."""
    figures = figures or {}
    return {name: figures.get(name, 0) for name in CACHE_FIGURES}


def _backend(live: dict, row: dict | None, checks: dict | None, transitions: list[dict]) -> dict:
    row = row or {}
    checks = checks or {}
    last_check, last_error = _last_check(row, checks)
    return {
        "id": live["id"], "name": live["name"], "url": row.get("url", ""), "role": live["role"],
        "enabled": live["enabled"], "terminating": live["terminating"],
        "terminate_protection": bool(row.get("terminate_protection")), "capacity": live["capacity"],
        "health": live["health"], "state": display_state(live["enabled"], live["terminating"], live["health"]),
        "load": dict(live["load"]), "failures": live["failures"], "responses": _responses(live["responses"]),
        "health_changed": _epoch(row.get("health_changed_at")), "downtime": row.get("downtime") or 0.0,
        "last_checked": last_check["at"], "last_error": last_error, "last_check": last_check,
        "transitions": transitions, "checks": checks.get("checks", 0),
        "check_histogram": ({"buckets": checks["duration_buckets"], "sum": checks["duration_sum"]}
                            if "duration_buckets" in checks else None),
        **_traffic(live, ("bytes", "durations", "upstream")),
    }


def _last_check(row: dict, checks: dict) -> tuple[dict, str]:
    """The newer of the stored last check and the monitor's, and its error."""
    stored_at = _epoch(row.get("last_checked"))
    monitor_at = checks.get("last_checked")
    if monitor_at is not None and (stored_at is None or monitor_at >= stored_at):
        return ({"at": monitor_at, "ok": checks.get("last_ok"), "status": checks.get("last_status"),
                 "duration": checks.get("last_duration")}, checks.get("last_error") or "")
    return ({"at": stored_at, "ok": row.get("last_check_ok"), "status": row.get("last_check_status"),
             "duration": row.get("last_check_duration")}, row.get("last_error") or "")


def _traffic(live: dict, keys: tuple[str, ...]) -> dict:
    """Request figures of proxy.request_metrics (bytes {received, sent}, durations by status
    class and upstream times as {counts, sum}); empty ones without a data plane."""
    empty = {"bytes": {"received": 0, "sent": 0}, "durations": {}, "upstream": None}
    return {key: live.get(key, empty[key]) for key in keys}


def _directors_from_facts(facts: Facts) -> list[dict]:
    """The live-figure shape of every stored director and backend, with zero counters."""
    members: dict[int, list[dict]] = {d["id"]: [] for d in facts.directors}
    for row in facts.backends:
        if row["director_id"] in members:
            members[row["director_id"]].append(
                {**row, "health": row["health_state"], "load": _zero_counter(), "failures": 0, "responses": {}})
    live_director = {"load": _zero_counter(), "queued": _zero_counter(), "dropped": 0, "responses": {}}
    return [{**live_director, **d, "backends": members[d["id"]]} for d in sorted(facts.directors, key=lambda d: d["name"])]


def _zero_counter() -> dict:
    return {"current": 0, "max": 0, "total": 0}


def _responses(counts: dict) -> dict:
    return {name: counts.get(name, 0) for name in RESPONSE_CLASSES}


def _epoch(value) -> float | None:
    return value.timestamp() if value is not None else None


def total_responses(entry: dict) -> int:
    """Requests finished by a director or backend (every response class and failures)."""
    return sum(entry["responses"].values())
